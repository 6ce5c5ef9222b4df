//! The documented examples (bash, GitHub Actions, Argo Rollouts, Kubernetes probes), run as
//! written against the service.

use std::path::Path;

use reqwest::StatusCode;
use serde_json::{json, Value};
use testkit::stripe::StripeMode;

use crate::helpers::{with, Backend, InProcessApp, Stack, TestDb, ADMIN_TOKEN};

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
    // Stripe failed just above: it has recovered after two passing observations in a row.
    stack.stripe.set(StripeMode::Ok { livemode: false });
    app.post("/ops/doctor/run", json!({})).await;
    app.get("/ops/gate?env=prod&release=probes&require=stripe&max_age=0")
        .await;
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
