//! Liveness, readiness (including `--no-migrate` and shutdown), aliases and version.

use std::time::Duration;

use reqwest::StatusCode;

use crate::helpers::{run_cli, Backend, InProcessApp, TestApp, TestDb};
use crate::on_both_backends;

on_both_backends!(
    live_ready_and_aliases,
    no_migrate_is_not_ready_until_migrated,
    sigterm_turns_readiness_off_then_exits_zero
);

async fn live_ready_and_aliases(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let app = InProcessApp::spawn(&db).await;
    for path in ["/health/live", "/health"] {
        let (status, body) = app.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(body["status"], "pass");
    }
    for path in ["/health/ready", "/ready"] {
        let (status, body) = app.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert_eq!(body["status"], "ready");
        assert_eq!(body["checks"]["database"]["status"], "pass");
    }
    let (status, body) = app.get("/version").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["name"], "opsdoctor");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert!(
        body["gitCommit"].as_str().is_some_and(|c| !c.is_empty()),
        "{body}"
    );
}

async fn no_migrate_is_not_ready_until_migrated(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let app = InProcessApp::spawn_with(
        &db,
        &[("READY_CACHE_TTL_MS", "100")],
        &["serve", "--no-migrate"],
    )
    .await;
    let (status, _) = app.get("/health/live").await;
    assert_eq!(status, StatusCode::OK, "liveness does no I/O");
    let (status, body) = app.get("/health/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(
        body["checks"]["database"]["reason"], "migrations_pending",
        "{body}"
    );

    let (exit, stdout, stderr) = run_cli(Some(&db), &[], &["migrate", "up"]);
    assert!(exit.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("applied m20261122_000001_ops_incident"),
        "{stdout}"
    );

    // Recovered after two passing observations in a row (CHECK_RECOVER_AFTER).
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (status, body) = app.get("/health/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["checks"]["database"]["status"], "pass", "{body}");
    assert_eq!(body["checks"]["database"]["decided"], "failing", "{body}");
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (status, body) = app.get("/health/ready").await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn sigterm_turns_readiness_off_then_exits_zero(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let mut app = TestApp::spawn_with(&db, &[("SHUTDOWN_READY_DELAY_MS", "1500")], &[]);
    let client = app.client.clone();
    let ready_url = format!("{}/health/ready", app.base);
    assert_eq!(
        client.get(&ready_url).send().await.unwrap().status(),
        StatusCode::OK
    );

    let pid = app.pid();
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let resp = client
        .get(&ready_url)
        .send()
        .await
        .expect("still serving during the ready delay");
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["shuttingDown"], true);
    let live = client
        .get(format!("{}/health/live", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        live.status(),
        StatusCode::OK,
        "liveness stays up while draining"
    );

    let status = app
        .terminate(Duration::from_secs(10))
        .expect("exits after the delay and drain");
    assert!(status.success(), "exit status {status:?}");
    assert!(app.logs().contains("opsdoctor stopped"), "{}", app.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_storm_costs_one_database_check_per_ttl() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let app = InProcessApp::spawn_with(&db, &[("READY_CACHE_TTL_MS", "60000")], &[]).await;
    let probes = (0..200).map(|_| app.client.get(format!("{}/health/ready", app.base)).send());
    for resp in futures::future::join_all(probes).await {
        assert_eq!(resp.unwrap().status(), StatusCode::OK);
    }
    let (_, bundle) = app.get("/ops/doctor").await;
    assert_eq!(
        bundle["readiness"]["checksRun"], 1,
        "200 concurrent probes, one check: {bundle}"
    );
}
