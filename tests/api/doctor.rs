//! The doctor end to end: runs against local stand-ins for every API, incidents from failures,
//! escalation and recovery, the bundle, `/health/status`, single flight, rate limit, timeouts,
//! the background monitor and the `opsdoctor doctor` command.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use testkit::openai::OpenAiMode;
use testkit::stripe::StripeMode;

use crate::helpers::{decode, run_cli, with, ApiClient, Backend, InProcessApp, Stack, TestDb};
use crate::on_both_backends;

on_both_backends!(failures_open_extend_escalate_and_recover);

async fn run(app: &ApiClient) -> Value {
    let (status, body) = app.post("/ops/doctor/run", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn result<'a>(run: &'a Value, name: &str) -> &'a Value {
    run["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {run}"))
}

fn actions(run: &Value, check: &str) -> Vec<String> {
    run["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["check"] == check)
        .map(|a| a["action"].as_str().unwrap().to_owned())
        .collect()
}

async fn failures_open_extend_escalate_and_recover(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let stack = Stack::healthy().await;
    let app = stack
        .serve(
            &db,
            &[
                ("REQUIRED_CHECKS", "database,stripe"),
                ("DOCTOR_ESCALATE_AFTER_RUNS", "3"),
            ],
        )
        .await;

    let healthy = run(&app).await;
    let names: Vec<&str> = healthy["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["database", "tunnel", "openai", "stripe", "cloudflare"],
        "fixed order"
    );
    assert_eq!(healthy["status"], "pass", "{healthy}");
    assert!(healthy["id"].as_str().is_some(), "the run is stored");
    assert_eq!(healthy["incidents"], json!([]));

    stack.stripe.set(StripeMode::InvalidKey);
    stack.openai.set(OpenAiMode::QuotaExhausted);
    let first = run(&app).await;
    assert_eq!(first["status"], "fail", "stripe is required");
    assert_eq!(result(&first, "stripe")["reason"], "auth");
    assert_eq!(result(&first, "openai")["reason"], "quota_exhausted");
    assert_eq!(actions(&first, "stripe"), ["opened"]);
    assert_eq!(actions(&first, "openai"), ["opened"]);

    let (_, stripe_incidents) = app
        .get("/ops/incidents?status=open&fingerprint=check:stripe:auth")
        .await;
    let stripe_incident = &stripe_incidents["items"][0];
    assert_eq!(stripe_incident["category"], "API");
    assert_eq!(
        stripe_incident["severity"], "CRITICAL",
        "a required check's failure is critical"
    );
    assert_eq!(stripe_incident["detailsJson"]["check"], "stripe");
    let (_, openai_incidents) = app
        .get("/ops/incidents?status=open&fingerprint=check:openai:quota_exhausted")
        .await;
    let openai_id = openai_incidents["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        openai_incidents["items"][0]["severity"], "WARN",
        "an optional check's failure starts as a warning"
    );

    let (_, bundle) = app.get("/ops/doctor").await;
    let recommended: Vec<&str> = bundle["recommendedActions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["check"].as_str().unwrap())
        .collect();
    assert_eq!(
        recommended,
        ["stripe", "openai"],
        "required failures first: {bundle}"
    );
    assert!(bundle["recommendedActions"][0]["action"]
        .as_str()
        .unwrap()
        .contains("STRIPE_SECRET_KEY"));
    assert_eq!(bundle["openIncidents"].as_array().unwrap().len(), 2);

    let second = run(&app).await;
    assert_eq!(actions(&second, "openai"), ["extended"]);
    let third = run(&app).await;
    assert_eq!(
        actions(&third, "openai"),
        ["extended", "escalated"],
        "{third}"
    );
    assert_eq!(actions(&third, "stripe"), ["extended", "escalated"]);
    let fourth = run(&app).await;
    assert_eq!(
        actions(&fourth, "openai"),
        ["extended"],
        "escalated once only"
    );

    let (_, escalated) = app.get(&format!("/ops/incidents/{openai_id}")).await;
    assert_eq!(
        escalated["severity"], "CRITICAL",
        "persisting failures are escalated"
    );
    let types: Vec<&str> = escalated["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["eventType"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["DETECTED", "DETECTED", "DETECTED", "ESCALATED", "DETECTED"]
    );

    stack.stripe.set(StripeMode::Ok { livemode: false });
    stack.openai.set(OpenAiMode::Ok);
    // Recovered after two passes in a row (CHECK_RECOVER_AFTER): the first changes nothing.
    let recovering = run(&app).await;
    assert_eq!(recovering["status"], "pass", "the observations pass");
    assert!(actions(&recovering, "openai").is_empty(), "{recovering}");
    assert!(actions(&recovering, "stripe").is_empty(), "{recovering}");
    let openai_decision = recovering["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["check"] == "openai")
        .unwrap();
    assert_eq!(openai_decision["state"], "failing", "{openai_decision}");
    assert_eq!(openai_decision["passingStreak"], 1);
    let recovered = run(&app).await;
    assert_eq!(recovered["status"], "pass");
    assert_eq!(actions(&recovered, "openai"), ["resolved"]);
    assert_eq!(actions(&recovered, "stripe"), ["resolved"]);
    let (_, resolved) = app.get(&format!("/ops/incidents/{openai_id}")).await;
    assert_eq!(resolved["status"], "resolved");
    assert!(resolved["resolutionNotes"]
        .as_str()
        .unwrap()
        .contains("passed again"));
    let last_two: Vec<&str> = resolved["events"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .take(2)
        .map(|e| e["eventType"].as_str().unwrap())
        .collect();
    assert_eq!(last_two, ["RESOLVED", "RECOVERY_SUCCESS"]);

    let (status, bundle) = app.get("/ops/doctor").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bundle["latestRun"]["status"], "pass");
    assert!(bundle["latestRun"]["ageSeconds"].as_f64().unwrap() < 30.0);
    assert_eq!(bundle["openIncidents"], json!([]));
    assert_eq!(bundle["recommendedActions"], json!([]));
    let recovery: Vec<&str> = bundle["recentRecoveryEvents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["eventType"].as_str().unwrap())
        .collect();
    assert!(
        recovery.contains(&"RECOVERY_SUCCESS") && recovery.contains(&"RESOLVED"),
        "{recovery:?}"
    );
    let config = &bundle["configuration"];
    assert_eq!(config["stripe"]["configured"], true);
    assert_eq!(config["stripe"]["secretKey"], "sk_test_…f3Qx");
    assert_eq!(config["stripe"]["webhookSecret"]["configured"], true);
    assert_eq!(config["openai"]["apiKey"], "sk-proj-…cdef");
    assert_eq!(config["tunnel"]["hostname"], "127.0.0.1");
    assert_eq!(config["database"]["configured"], true);
    assert_eq!(bundle["database"]["ready"], true);
    assert_eq!(bundle["requiredChecks"], json!(["database", "stripe"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_runs_share_one_and_new_runs_are_rate_limited() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let stack = Stack::healthy().await;
    stack
        .openai
        .set(OpenAiMode::Slow(Duration::from_millis(700)));
    let env = stack.env();
    let app = InProcessApp::spawn_with(
        &db,
        &with(&env, &[("DOCTOR_MIN_INTERVAL_MS", "60000")]),
        &[],
    )
    .await;
    let calls = (0..5).map(|_| app.post("/ops/doctor/run", json!({})));
    let results = futures::future::join_all(calls).await;
    let ids: std::collections::HashSet<&str> = results
        .iter()
        .map(|(s, b)| {
            assert_eq!(*s, StatusCode::OK, "{b}");
            b["id"].as_str().unwrap()
        })
        .collect();
    assert_eq!(ids.len(), 1, "one run shared by every caller");
    assert_eq!(
        results.iter().filter(|(_, b)| b["shared"] == false).count(),
        1
    );
    assert_eq!(stack.openai.hits(), 1, "the external API was called once");

    let resp = app
        .request(reqwest::Method::POST, "/ops/doctor/run")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let (_, body) = decode(resp).await;
    assert_eq!(body["error"]["code"], "rate_limited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_check_ends_the_run_at_its_own_timeout() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let stack = Stack::healthy().await;
    stack.openai.set(OpenAiMode::Slow(Duration::from_secs(30)));
    stack
        .stripe
        .set(StripeMode::Slow(Duration::from_millis(300)));
    let env = stack.env();
    let app =
        InProcessApp::spawn_with(&db, &with(&env, &[("CHECK_TIMEOUT_MS_OPENAI", "800")]), &[])
            .await;
    let started = Instant::now();
    let body = run(&app).await;
    let wall = started.elapsed();
    assert_eq!(result(&body, "openai")["reason"], "timeout");
    assert_eq!(result(&body, "stripe")["status"], "pass");
    let openai_ms = result(&body, "openai")["latency_ms"].as_u64().unwrap();
    assert!((800..1500).contains(&openai_ms), "{openai_ms}");
    assert!(
        wall < Duration::from_millis(2500),
        "the run ends at the hanging check's timeout: {wall:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_status_db_and_readiness_follow_required_checks() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let stack = Stack::healthy().await;
    stack.stripe.set(StripeMode::InvalidKey);
    let env = stack.env();
    let app = InProcessApp::spawn_with(
        &db,
        &with(&env, &[("REQUIRED_CHECKS", "database,stripe")]),
        &[],
    )
    .await;

    let (status, body) = app.get("/health/db").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["ready"], true);
    assert!(body["latencyMs"].as_f64().is_some());

    let (status, ready) = app.get("/health/ready").await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "a required check fails: {ready}"
    );
    assert_eq!(ready["checks"]["stripe"]["reason"], "auth");
    assert_eq!(ready["checks"]["database"]["status"], "pass");

    run(&app).await;
    let url = format!("{}/health/status", app.base);
    let public = app.client.get(&url).send().await.unwrap();
    assert_eq!(public.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(public.headers()["content-type"], "application/health+json");
    let (_, body) = decode(public).await;
    assert_eq!(
        body,
        json!({"status": "fail"}),
        "no details without the token"
    );

    let (status, admin) = app.get("/health/status").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let stripe = &admin["checks"]["stripe:responseTime"][0];
    assert_eq!(stripe["status"], "fail");
    assert_eq!(stripe["componentType"], "component");
    assert_eq!(stripe["observedUnit"], "ms");
    assert!(stripe["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        admin["checks"]["database:responseTime"][0]["componentType"],
        "datastore"
    );

    stack.stripe.set(StripeMode::Ok { livemode: false });
    run(&app).await;
    let (status, admin) = app.get("/health/status").await;
    assert_eq!(status, StatusCode::OK, "{admin}");
    assert_eq!(admin["status"], "pass");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_monitor_keeps_results_fresh() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let stack = Stack::healthy().await;
    let env = stack.env();
    let app =
        InProcessApp::spawn_with(&db, &with(&env, &[("DOCTOR_INTERVAL_MS", "300")]), &[]).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, bundle) = app.get("/ops/doctor").await;
        if bundle["latestRun"]["trigger"] == "monitor" {
            break;
        }
        assert!(Instant::now() < deadline, "no monitor run: {bundle}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        stack.stripe.hits() >= 2,
        "the monitor keeps running: {}",
        stack.stripe.hits()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_command_exit_codes() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let (exit, _, _) = run_cli(Some(&db), &[], &["migrate", "up"]);
    assert!(exit.success());
    let stack = Stack::healthy().await;
    let env = stack.env();

    let (exit, stdout, stderr) = run_cli(Some(&db), &with(&env, &[]), &["doctor"]);
    assert_eq!(exit.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("CHECK") && stdout.contains("stripe") && stdout.contains("PASS"),
        "{stdout}"
    );
    assert!(!stdout.contains('\x1b'), "no colour when not on a terminal");

    stack.openai.set(OpenAiMode::InvalidKey);
    let (exit, stdout, _) = run_cli(Some(&db), &with(&env, &[]), &["doctor"]);
    assert_eq!(
        exit.code(),
        Some(2),
        "only an optional check fails: {stdout}"
    );
    assert!(
        stdout.contains("auth") && stdout.contains("OPENAI_API_KEY"),
        "reason and hint: {stdout}"
    );

    let (exit, stdout, _) = run_cli(
        Some(&db),
        &with(&env, &[("REQUIRED_CHECKS", "database,openai")]),
        &["doctor", "--json"],
    );
    assert_eq!(exit.code(), Some(1), "a required check fails");
    let parsed: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(parsed["status"], "fail");
    assert_eq!(parsed["results"][2]["reason"], "auth");

    let (exit, stdout, _) = run_cli(
        Some(&db),
        &with(&env, &[]),
        &["doctor", "--json", "--only", "database,stripe"],
    );
    assert_eq!(exit.code(), Some(0));
    let parsed: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(parsed["results"].as_array().unwrap().len(), 2);
    let (exit, _, stderr) = run_cli(Some(&db), &[], &["doctor", "--only", "redis"]);
    assert_eq!(exit.code(), Some(2));
    assert!(stderr.contains("redis"));
}
