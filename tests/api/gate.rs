//! The gate of record end to end: verdicts and status codes, Argo's verdict mode, Flagger's
//! webhook, deploy records and their incidents, `opsdoctor gate` and `opsdoctor deploys`, and the
//! documented examples run against the real binary.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{json, Value};
use testkit::hostname::HostnameMode;
use testkit::openai::OpenAiMode;
use testkit::stripe::StripeMode;

use crate::helpers::{
    decode, run_cli, with, ApiClient, Backend, InProcessApp, Stack, TestDb, ADMIN_TOKEN,
};
use crate::on_both_backends;

on_both_backends!(
    verdicts_status_codes_and_records,
    deploys_are_recorded_with_their_gates,
    a_burst_of_verdicts_is_stored_whole,
    one_bad_gate_call_costs_no_other_verdict,
    the_writer_rejects_only_the_rows_the_database_refuses,
    head_answers_like_get_and_stores_nothing
);

async fn gate(app: &ApiClient, query: &str) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let resp = app
        .request(reqwest::Method::GET, &format!("/ops/gate?{query}"))
        .send()
        .await
        .unwrap();
    let headers = resp.headers().clone();
    let (status, body) = decode(resp).await;
    (status, headers, body)
}

fn sources(body: &Value) -> Vec<&str> {
    body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["source"].as_str().unwrap())
        .collect()
}

async fn verdicts_status_codes_and_records(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let stack = Stack::healthy().await;
    let env = stack.env();
    let app = InProcessApp::spawn_with(
        &db,
        &with(
            &env,
            &[
                ("REQUIRED_CHECKS", "database,stripe"),
                ("GATE_RETRY_AFTER_S", "7"),
            ],
        ),
        &[],
    )
    .await;

    let (status, headers, body) = gate(&app, "env=prod&release=v1").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers["x-gate-verdict"], "pass");
    assert_eq!(body["verdict"], "pass");
    assert_eq!(body["required"], json!(["database", "stripe"]));
    assert!(
        sources(&body).iter().all(|s| *s == "fresh"),
        "nothing cached yet: {body}"
    );
    assert!(
        body["gateId"].as_str().is_some() && body["summary"].as_str().unwrap().starts_with("pass")
    );

    let hits = stack.stripe.hits();
    let started = Instant::now();
    let (status, _, body) = gate(&app, "env=prod&release=v1").await;
    assert_eq!(status, StatusCode::OK);
    assert!(sources(&body).iter().all(|s| *s == "cached"), "{body}");
    assert_eq!(
        stack.stripe.hits(),
        hits,
        "a fresh-enough result does not call the API again"
    );
    assert!(started.elapsed() < Duration::from_secs(1));

    stack.openai.set(OpenAiMode::InvalidKey);
    let (status, headers, body) = gate(&app, "env=prod&release=v1&max_age=0").await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "partial is 503 by default: {body}"
    );
    assert_eq!(headers["x-gate-verdict"], "partial");
    assert_eq!(headers["retry-after"], "7");
    assert!(
        body["summary"].as_str().unwrap().contains("openai=auth"),
        "{body}"
    );
    let (status, _, body) = gate(&app, "env=prod&release=v1&allow_partial=1").await;
    assert_eq!(
        (status, body["verdict"].as_str()),
        (StatusCode::OK, Some("partial"))
    );

    stack.stripe.set(StripeMode::InvalidKey);
    let (status, headers, body) = gate(&app, "env=prod&release=v1&max_age=0").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["x-gate-verdict"], "fail");
    let stripe = body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "stripe")
        .unwrap()
        .clone();
    assert_eq!(
        (
            stripe["reason"].as_str(),
            stripe["transient"].as_bool(),
            stripe["required"].as_bool()
        ),
        (Some("auth"), Some(false), Some(true))
    );
    let (status, headers, body) = gate(&app, "env=prod&release=v1&mode=verdict").await;
    assert_eq!(status, StatusCode::OK, "verdict mode is always 200");
    assert_eq!(
        (
            headers["x-gate-verdict"].to_str().unwrap(),
            body["verdict"].as_str()
        ),
        ("fail", Some("fail"))
    );
    let (status, _, body) = gate(&app, "env=prod&release=v1&require=database").await;
    assert_eq!(
        (status, body["verdict"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("partial")),
        "stripe is optional here: {body}"
    );
    let (_, _, body) = gate(
        &app,
        "env=prod&release=v1&require=database,cloudflare&max_age=0",
    )
    .await;
    assert_eq!(
        body["verdict"], "partial",
        "stripe and openai fail but are optional here: {body}"
    );

    for (query, field) in [
        ("release=v1", "env"),
        ("env=prod", "release"),
        ("env=prod&release=v1&require=redis", "require"),
        ("env=prod&release=v1&max_age=soon", "max_age"),
        ("env=prod&release=v1&mode=loud", "mode"),
        ("env=prod&release=v1&allow_partial=maybe", "allow_partial"),
        ("env=has space&release=v1", "env"),
    ] {
        let (status, _, body) = gate(&app, query).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body["error"]["field"], field, "{query}: {body}");
    }

    let (status, listed) = app
        .get("/ops/gate/evaluations?env=prod&release=v1&limit=3")
        .await;
    assert_eq!(status, StatusCode::OK);
    let mut seen = listed["items"].as_array().unwrap().len();
    let mut cursor = listed["nextCursor"].as_str().map(str::to_owned);
    while let Some(c) = cursor {
        let (_, page) = app
            .get(&format!(
                "/ops/gate/evaluations?env=prod&release=v1&limit=3&cursor={c}"
            ))
            .await;
        seen += page["items"].as_array().unwrap().len();
        cursor = page["nextCursor"].as_str().map(str::to_owned);
    }
    assert_eq!(seen, 8, "every evaluation is stored");
    assert_eq!(listed["items"][0]["source"], "api");

    // Flagger's webhook: 200 lets the rollout proceed, anything else holds it.
    let payload = json!({"name": "web", "namespace": "prod", "phase": "Progressing", "checksum": "85d557f47b", "metadata": {"release": "v1"}});
    let (status, held) = app.post("/ops/gate", payload.clone()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{held}");
    assert!(held["summary"].as_str().unwrap().contains("stripe=auth"));
    stack.stripe.set(StripeMode::Ok { livemode: false });
    stack.openai.set(OpenAiMode::Ok);
    let mut fresh = payload.clone();
    fresh["metadata"]["max_age"] = json!("0");
    let (status, go) = app.post("/ops/gate", fresh).await;
    assert_eq!(status, StatusCode::OK, "{go}");
    let (_, flagger) = app
        .get("/ops/gate/evaluations?env=prod&release=v1&limit=1")
        .await;
    assert_eq!(flagger["items"][0]["source"], "flagger");
    assert_eq!(
        flagger["items"][0]["details"]["context"]["flagger"]["checksum"],
        "85d557f47b"
    );
    let (status, body) = app.post("/ops/gate", json!({"name": "web"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
}

async fn deploys_are_recorded_with_their_gates(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let app = InProcessApp::spawn(&db).await;
    let start = |version: &str| json!({"environment": "prod", "version": version, "gitSha": format!("sha-{version}"), "strategy": "blue-green", "startedBy": "ci", "externalIds": {"ciRun": "42", "argo": "run-7"}});

    let (status, first) = app.post("/ops/deploys", start("v1")).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let first_id = first["id"].as_str().unwrap().to_owned();
    assert_eq!(first["status"], "running");
    assert_eq!(first["externalIds"]["argo"], "run-7");
    let (_, _, verdict) = gate(&app, "env=prod&release=v1").await;
    assert_eq!(
        verdict["deployId"],
        first_id.as_str(),
        "the gate links the running deploy"
    );
    let (status, done) = app
        .post(
            &format!("/ops/deploys/{first_id}/finish"),
            json!({"status": "succeeded", "reportJson": {"durationS": 93}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(
        (done["status"].as_str(), done["incidentId"].as_str()),
        (Some("succeeded"), None)
    );
    let (status, again) = app
        .post(
            &format!("/ops/deploys/{first_id}/finish"),
            json!({"status": "failed"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");

    let (_, second) = app.post("/ops/deploys", start("v2")).await;
    let second_id = second["id"].as_str().unwrap().to_owned();
    let (_, _, v2_gate) = gate(&app, "env=prod&release=sha-v2").await;
    assert_eq!(
        v2_gate["deployId"],
        second_id.as_str(),
        "a release may be named by its git sha"
    );
    let (status, failed) = app
        .post(
            &format!("/ops/deploys/{second_id}/finish"),
            json!({"status": "rolled_back", "reason": "p99 doubled"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let incident_id = failed["incidentId"]
        .as_str()
        .expect("a rolled-back deploy opens an incident")
        .to_owned();
    let (_, incident) = app.get(&format!("/ops/incidents/{incident_id}")).await;
    assert_eq!(
        (incident["category"].as_str(), incident["severity"].as_str()),
        (Some("DEPLOY"), Some("CRITICAL"))
    );
    assert!(incident["summary"]
        .as_str()
        .unwrap()
        .contains("p99 doubled"));
    let linked = &incident["events"][0]["metadataJson"]["gateEvaluations"];
    assert_eq!(
        linked[0]["gateId"], v2_gate["gateId"],
        "its timeline links the deploy's gate verdicts: {incident}"
    );

    let (status, shown) = app.get(&format!("/ops/deploys/{second_id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["gateEvaluations"].as_array().unwrap().len(), 1);
    app.post(
        "/ops/deploys",
        json!({"environment": "staging", "version": "v3"}),
    )
    .await;
    let (_, prod) = app.get("/ops/deploys?env=prod&limit=1").await;
    assert_eq!(prod["items"][0]["id"], second_id.as_str(), "newest first");
    let (_, rest) = app
        .get(&format!(
            "/ops/deploys?env=prod&limit=1&cursor={}",
            prod["nextCursor"].as_str().unwrap()
        ))
        .await;
    assert_eq!(rest["items"][0]["id"], first_id.as_str());
    assert_eq!(rest["nextCursor"], Value::Null);

    for (body, field) in [
        (json!({"version": "v1"}), "environment"),
        (json!({"environment": "prod", "version": ""}), "version"),
        (
            json!({"environment": "prod", "version": "v1", "externalIds": [1]}),
            "externalIds",
        ),
    ] {
        let (status, err) = app.post("/ops/deploys", body.clone()).await;
        assert!(status.is_client_error(), "{body}: {status}");
        assert!(err.to_string().contains(field), "{body}: {err}");
    }
    let (_, third) = app.post("/ops/deploys", start("v4")).await;
    let (status, err) = app
        .post(
            &format!("/ops/deploys/{}/finish", third["id"].as_str().unwrap()),
            json!({"status": "exploded"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(err["error"]["field"], "status");
    let (status, _) = app
        .post(
            "/ops/deploys/cm0000000000000000000000/finish",
            json!({"status": "failed"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Runs `opsdoctor gate` against the app with its token in the environment.
fn gate_cli(app: &ApiClient, args: &[&str]) -> (Option<i32>, String, String, Duration) {
    let started = Instant::now();
    let mut all = vec![
        "gate",
        "--url",
        &app.base,
        "--env",
        "prod",
        "--release",
        "v1",
    ];
    all.extend_from_slice(args);
    let (exit, stdout, stderr) = run_cli(None, &[("OPSDOCTOR_TOKEN", ADMIN_TOKEN)], &all);
    (exit.code(), stdout, stderr, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gate_command_exit_codes_and_waiting() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let stack = Stack::healthy().await;
    let env = stack.env();
    let app = InProcessApp::spawn_with(
        &db,
        &with(
            &env,
            &[
                ("REQUIRED_CHECKS", "database,stripe,tunnel"),
                ("GATE_RETRY_AFTER_S", "1"),
            ],
        ),
        &[],
    )
    .await;

    let (code, stdout, stderr, _) = gate_cli(&app, &["--timeout", "5s", "--interval", "200ms"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.starts_with("pass"), "{stdout}");
    assert!(
        stderr.contains("[1/25 t=0s] pass database=pass tunnel=pass"),
        "{stderr}"
    );

    let (code, stdout, _, _) = gate_cli(
        &app,
        &[
            "--timeout",
            "5s",
            "--interval",
            "200ms",
            "--consecutive-successes",
            "2",
            "--format",
            "json",
            "--max-age",
            "0s",
        ],
    );
    assert_eq!(code, Some(0));
    let out: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        (out["verdict"].as_str(), out["attempts"].as_u64()),
        (Some("pass"), Some(2))
    );

    // A failure waiting cannot fix ends the wait at once.
    stack.stripe.set(StripeMode::InvalidKey);
    let (code, stdout, stderr, took) = gate_cli(
        &app,
        &["--timeout", "30s", "--interval", "200ms", "--max-age", "0s"],
    );
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(
        stderr.contains("stripe=auth") && stderr.contains("waiting cannot fix"),
        "{stderr}"
    );
    stack.stripe.set(StripeMode::Ok { livemode: false });

    // Only an optional check fails: partial, accepted at once with --allow-partial.
    stack.openai.set(OpenAiMode::InvalidKey);
    let (code, stdout, _, _) = gate_cli(
        &app,
        &[
            "--timeout",
            "5s",
            "--interval",
            "200ms",
            "--max-age",
            "0s",
            "--allow-partial",
        ],
    );
    assert_eq!(code, Some(2), "{stdout}");
    let (code, _, stderr, took) = gate_cli(
        &app,
        &["--timeout", "2s", "--interval", "200ms", "--max-age", "0s"],
    );
    assert_eq!(code, Some(2), "still partial at the deadline: {stderr}");
    // Retry-After (1 s) is honoured: far fewer attempts than 2 s / 200 ms.
    let attempts = stderr.lines().filter(|l| l.starts_with('[')).count();
    assert!((2..=3).contains(&attempts), "{attempts} attempts: {stderr}");
    assert!(took < Duration::from_secs(4), "{took:?}");
    stack.openai.set(OpenAiMode::Ok);

    // A transient failure is waited out, and recovery is seen.
    stack.hostname.set(HostnameMode::NotRouting);
    let hostname = std::sync::Arc::new(stack.hostname);
    let flip = hostname.clone();
    let flipper = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        flip.set(HostnameMode::Ok);
    });
    let (code, stdout, stderr, _) = tokio::task::spawn_blocking({
        let base = app.base.clone();
        move || {
            let (exit, stdout, stderr) = run_cli(
                None,
                &[("OPSDOCTOR_TOKEN", ADMIN_TOKEN)],
                &[
                    "gate",
                    "--url",
                    &base,
                    "--env",
                    "prod",
                    "--release",
                    "v1",
                    "--timeout",
                    "10s",
                    "--interval",
                    "300ms",
                    "--max-age",
                    "0s",
                ],
            );
            (exit.code(), stdout, stderr, ())
        }
    })
    .await
    .unwrap();
    flipper.await.unwrap();
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stderr.contains("fail") && stderr.contains("tunnel=not_routing"),
        "{stderr}"
    );

    // Could not evaluate: bad token, bad arguments, unreachable service.
    let (exit, _, stderr) = run_cli(
        None,
        &[("OPSDOCTOR_TOKEN", "wrong-token-0123456789")],
        &[
            "gate",
            "--url",
            &app.base,
            "--env",
            "prod",
            "--release",
            "v1",
            "--timeout",
            "2s",
        ],
    );
    assert_eq!(exit.code(), Some(3), "{stderr}");
    let (exit, _, _) = run_cli(
        None,
        &[],
        &[
            "gate",
            "--url",
            &app.base,
            "--env",
            "prod",
            "--release",
            "v1",
        ],
    );
    assert_eq!(exit.code(), Some(3), "no token in the environment");
    let (code, _, stderr, _) = gate_cli(&app, &["--timeout", "soon"]);
    assert_eq!(code, Some(3), "{stderr}");
    let (code, _, stderr, _) = gate_cli(&app, &["--require", "redis", "--timeout", "2s"]);
    assert_eq!(code, Some(3), "{stderr}");
    let (exit, _, stderr) = run_cli(
        None,
        &[("OPSDOCTOR_TOKEN", ADMIN_TOKEN)],
        &[
            "gate",
            "--url",
            &testkit::refused_url(),
            "--env",
            "prod",
            "--release",
            "v1",
            "--timeout",
            "1s",
            "--interval",
            "200ms",
        ],
    );
    assert_eq!(exit.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("service unreachable (connection refused)"),
        "{stderr}"
    );
}

/// The documented examples, run as written against the real binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documented_examples_work() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let stack = Stack::healthy().await;
    let env = stack.env();
    let app = InProcessApp::spawn_with(
        &db,
        &with(&env, &[("REQUIRED_CHECKS", "database,stripe")]),
        &[],
    )
    .await;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_opsdoctor"))
        .parent()
        .unwrap()
        .to_owned();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let script = root.join("docs/examples/deploy.sh");
    let deploy = |release: &str, deploy_cmd: &str| {
        std::process::Command::new("bash")
            .arg(&script)
            .env_clear()
            .env("PATH", &path)
            .env("OPSDOCTOR_URL", &app.base)
            .env("OPSDOCTOR_TOKEN", ADMIN_TOKEN)
            .env("RELEASE", release)
            .env("DEPLOY_CMD", deploy_cmd)
            .env("ROLLBACK_CMD", "true")
            .env("GATE_TIMEOUT", "4s")
            .env("GATE_INTERVAL", "200ms")
            .env("GATE_START_PERIOD", "0s")
            .output()
            .unwrap()
    };
    let out = deploy("v10", "true");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, deploys) = app.get("/ops/deploys?env=prod").await;
    let latest = &deploys["items"][0];
    assert_eq!(
        (latest["version"].as_str(), latest["status"].as_str()),
        (Some("v10"), Some("succeeded"))
    );
    let (_, shown) = app
        .get(&format!("/ops/deploys/{}", latest["id"].as_str().unwrap()))
        .await;
    assert_eq!(
        shown["gateEvaluations"].as_array().unwrap().len(),
        3,
        "one pre-deploy and two post-deploy verdicts"
    );

    let out = deploy("v11", "false");
    assert!(!out.status.success());
    let (_, deploys) = app.get("/ops/deploys?env=prod").await;
    assert_eq!(
        (
            deploys["items"][0]["status"].as_str(),
            deploys["items"][0]["incidentId"].is_string()
        ),
        (Some("failed"), true)
    );

    // The monitor (here, one run) sees Stripe fail; the pre-deploy gate reuses that result.
    stack.stripe.set(StripeMode::InvalidKey);
    let (status, _) = app.post("/ops/doctor/run", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let out = deploy("v12", "true");
    assert!(!out.status.success());
    let (_, deploys) = app.get("/ops/deploys?env=prod").await;
    assert_eq!(
        deploys["items"][0]["status"], "canceled",
        "the pre-deploy gate held it"
    );
    stack.stripe.set(StripeMode::Ok { livemode: false });
    let (status, rerun) = app.post("/ops/doctor/run", json!({})).await;
    assert_eq!(
        (status, rerun["status"].as_str()),
        (StatusCode::OK, Some("pass")),
        "{rerun}"
    );

    // The GitHub Actions step's script, with the expression filled in as Actions would.
    let workflow = std::fs::read_to_string(root.join("docs/examples/github-actions.yml")).unwrap();
    let run_block: Vec<&str> = workflow
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("run: |"))
        .skip(1)
        .take_while(|l| l.starts_with("          "))
        .collect();
    let step = run_block
        .join("\n")
        .replace("${{ github.sha }}", "v10")
        .replace(
            "jq -r .verdict gate.json",
            "grep -o '\"verdict\":\"[a-z]*\"' gate.json",
        );
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("bash")
        .args(["-eo", "pipefail", "-c", &step])
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", &path)
        .env("OPSDOCTOR_URL", &app.base)
        .env("OPSDOCTOR_TOKEN", ADMIN_TOKEN)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{step}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"verdict\":\"pass\""));

    // Argo's web metric: the URL answers 200 with the verdict at the jsonPath, judged by successCondition.
    let template =
        std::fs::read_to_string(root.join("docs/examples/argo-analysis-template.yaml")).unwrap();
    let field = |name: &str| {
        template
            .lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .unwrap()
            .trim()
            .to_owned()
    };
    let url = field("url:")
        .trim_matches('"')
        .replace("http://opsdoctor.ops.svc.cluster.local:8080", &app.base)
        .replace("{{args.release}}", "v10");
    let json_path = field("jsonPath:").trim_matches('"').to_owned();
    assert_eq!(field("successCondition:"), r#"result == "pass""#);
    let key = json_path.trim_start_matches("{$.").trim_end_matches('}');
    for (mode, expected) in [
        (StripeMode::Ok { livemode: false }, "pass"),
        (StripeMode::InvalidKey, "fail"),
    ] {
        stack.stripe.set(mode);
        let resp = app
            .client
            .get(format!("{url}&max_age=0"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            StatusCode::OK,
            "Argo needs 2xx to read the verdict"
        );
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body[key], expected);
    }

    // The Kubernetes probes' paths, on a healthy stack.
    stack.stripe.set(StripeMode::Ok { livemode: false });
    app.post("/ops/doctor/run", json!({})).await;
    let probes =
        std::fs::read_to_string(root.join("docs/examples/kubernetes-probes.yaml")).unwrap();
    let paths: Vec<&str> = probes
        .lines()
        .filter_map(|l| l.trim().strip_prefix("path: "))
        .collect();
    assert_eq!(paths, ["/health/ready", "/health/live"]);
    for p in paths {
        let (status, _) = app.get(p).await;
        assert_eq!(status, StatusCode::OK, "{p}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_process_serves_the_gate_from_the_stored_run() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let stack = Stack::healthy().await;
    let env = stack.env();
    let monitor = InProcessApp::spawn_with(&db, &with(&env, &[]), &[]).await;
    let (status, _) = monitor.post("/ops/doctor/run", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let hits = (stack.stripe.hits(), stack.openai.hits());
    let other = InProcessApp::spawn_with(&db, &with(&env, &[]), &[]).await;
    let (status, _, body) = gate(&other, "env=prod&release=v1&max_age=60").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(sources(&body).iter().all(|s| *s == "stored"), "{body}");
    assert_eq!(
        (stack.stripe.hits(), stack.openai.hits()),
        hits,
        "no external call for a stored result"
    );
}

/// Verdicts are answered before their rows commit: a burst larger than one insert batch must still
/// land whole, in the table within moments (what another process reads) and in this process's
/// listing at once.
async fn a_burst_of_verdicts_is_stored_whole(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let app = InProcessApp::spawn(&db).await;
    const BURST: usize = 150;
    let queries: Vec<String> = (0..BURST)
        .map(|i| format!("env=burst&release=r{}", i % 3))
        .collect();
    let answers = futures::future::join_all(queries.iter().map(|q| gate(&app, q))).await;
    let mut answered: Vec<String> = answers
        .iter()
        .map(|(status, _, body)| {
            assert_eq!(*status, StatusCode::OK, "{body}");
            body["gateId"].as_str().unwrap().to_owned()
        })
        .collect();
    answered.sort();

    // Straight from the table, as another process would read it: there within a second.
    let conn = db.connect().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let stored: Vec<String> = loop {
        let mut ids: Vec<String> = entity::ops_gate_evaluation::Entity::find()
            .filter(entity::ops_gate_evaluation::Column::Environment.eq("burst"))
            .all(&conn)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        ids.sort();
        if ids.len() >= BURST || Instant::now() > deadline {
            break ids;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(stored, answered, "every answered verdict is in the table");

    let (status, page) = app.get("/ops/gate/evaluations?env=burst&limit=500").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let mut listed: Vec<String> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["gateId"].as_str().unwrap().to_owned())
        .collect();
    listed.sort();
    assert_eq!(listed, answered, "the listing shows every answered verdict");
}

/// The stored verdicts of one environment, as listed (the listing flushes the writer first).
async fn listed_ids(app: &ApiClient, env: &str) -> Vec<String> {
    let (status, page) = app
        .get(&format!("/ops/gate/evaluations?env={env}&limit=500"))
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let mut ids: Vec<String> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["gateId"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// Rounds of 30 ordinary gate calls and one Flagger call carrying a NUL, sent together so they
/// share an insert batch: the NUL call is refused, and every ordinary verdict is stored.
async fn one_bad_gate_call_costs_no_other_verdict(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let app = InProcessApp::spawn(&db).await;
    let mut answered = Vec::new();
    for round in 0..3 {
        let queries: Vec<String> = (0..30)
            .map(|i| format!("env=round&release=r{round}-{i}"))
            .collect();
        let ordinary = futures::future::join_all(queries.iter().map(|q| gate(&app, q)));
        let poisoned = app.post(
            "/ops/gate",
            json!({"name": "web", "namespace": "round", "phase": "pre-rollout",
                   "metadata": {"env": "round", "note": "a\u{0}b"}}),
        );
        let (ordinary, (status, body)) = tokio::join!(ordinary, poisoned);
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"]["field"], "metadata.note", "{body}");
        for (status, _, body) in ordinary {
            assert_eq!(status, StatusCode::OK, "{body}");
            answered.push(body["gateId"].as_str().unwrap().to_owned());
        }
    }
    answered.sort();
    assert_eq!(listed_ids(&app, "round").await, answered);
}

/// A gate evaluation row as the evaluator builds it.
fn evaluation_row(
    id: &str,
    summary: &str,
    deploy_id: Option<&str>,
) -> entity::ops_gate_evaluation::ActiveModel {
    entity::ops_gate_evaluation::ActiveModel {
        id: Set(id.to_owned()),
        created_at: Set(chrono::Utc::now().naive_utc()),
        environment: Set("writer".to_owned()),
        release: Set("v1".to_owned()),
        verdict: Set("pass".to_owned()),
        summary: Set(summary.to_owned()),
        source: Set("api".to_owned()),
        checks_json: Set(json!({"checks": []})),
        deploy_id: Set(deploy_id.map(str::to_owned)),
    }
}

/// Defence in depth behind validation: a row the database refuses (a deploy that does not exist;
/// on PostgreSQL also a NUL in text and in JSON) is rejected alone, and the rest of its batch is
/// stored.
async fn the_writer_rejects_only_the_rows_the_database_refuses(backend: Backend) {
    use migration::MigratorTrait;
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let conn = db.connect().await;
    migration::Migrator::up(&conn, None).await.unwrap();
    let recorder = api::store::EvaluationStore::spawn(conn.clone(), Default::default());
    let mut good = Vec::new();
    for i in 0..30 {
        let id = format!("good{i:02}");
        if i == 10 {
            recorder
                .record(evaluation_row("bad-deploy", "x", Some("no-such-deploy")))
                .await;
        }
        if i == 20 && backend == Backend::Postgres {
            recorder
                .record(evaluation_row("bad-nul", "a\u{0}b", None))
                .await;
            let mut row = evaluation_row("bad-json", "x", None);
            row.checks_json = Set(json!({"context": {"note": "a\u{0}b"}}));
            recorder.record(row).await;
        }
        recorder.record(evaluation_row(&id, "ok", None)).await;
        good.push(id);
    }
    recorder.flush().await;
    let mut stored: Vec<String> = entity::ops_gate_evaluation::Entity::find()
        .all(&conn)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    stored.sort();
    assert_eq!(stored, good);
}

/// HEAD answers like GET (status and headers, no body) and, having no side effect, stores no
/// verdict.
async fn head_answers_like_get_and_stores_nothing(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let app = InProcessApp::spawn(&db).await;
    let resp = app
        .request(reqwest::Method::HEAD, "/ops/gate?env=head&release=v1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["x-gate-verdict"], "pass");
    assert_eq!(resp.headers()["cache-control"], "no-store");
    assert!(resp.bytes().await.unwrap().is_empty());
    let resp = app
        .request(
            reqwest::Method::HEAD,
            "/ops/gate?env=head&release=v1&require=stripe",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()["x-gate-verdict"], "fail");
    assert!(resp.headers().contains_key("retry-after"));
    assert_eq!(listed_ids(&app, "head").await, Vec::<String>::new());
    let conn = db.connect().await;
    let rows = entity::ops_gate_evaluation::Entity::find()
        .all(&conn)
        .await
        .unwrap();
    assert!(rows.is_empty(), "HEAD stored {rows:?}");

    let (status, _, body) = gate(&app, "env=head&release=v1").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        listed_ids(&app, "head").await,
        [body["gateId"].as_str().unwrap()]
    );
}
