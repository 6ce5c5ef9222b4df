//! Recovery end to end: `POST /health/recover` acts on what is failing now and records each
//! attempt on the component's open incident, under one rate limit (429 with `Retry-After`);
//! repeated failures escalate; `GET /health/recovery-stats`, the bundle and `/metrics` show the
//! attempts; a database probe closes an open breaker at once; the monitor starts recoveries of
//! its own after K failing runs.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use sea_orm::ConnectionTrait;
use serde_json::{json, Value};
use testkit::openai::OpenAiMode;

use crate::helpers::{ApiClient, Backend, InProcessApp, Stack, TestDb};
use crate::on_both_backends;

on_both_backends!(attempts_are_recorded_rate_limited_and_escalated);

async fn recover(app: &ApiClient, query: &str) -> (StatusCode, Value) {
    app.post(&format!("/health/recover{query}"), json!({}))
        .await
}

/// Waits out the rate limit the last recovery set.
async fn until_allowed(app: &ApiClient) {
    let (_, stats) = app.get("/health/recovery-stats").await;
    if let Some(next) = stats["nextAllowedAt"].as_str() {
        let next = chrono::DateTime::parse_from_rfc3339(next).expect("nextAllowedAt");
        let wait = (next.with_timezone(&chrono::Utc) - chrono::Utc::now())
            .to_std()
            .unwrap_or_default();
        tokio::time::sleep(wait + Duration::from_millis(50)).await;
    }
}

fn event_types(incident: &Value) -> Vec<String> {
    incident["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["eventType"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn attempts_are_recorded_rate_limited_and_escalated(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let stack = Stack::healthy().await;
    let app = stack
        .serve(
            &db,
            &[
                ("CHECK_FAIL_AFTER", "1"),
                ("RECOVERY_MIN_INTERVAL_MS", "1500"),
                ("RECOVERY_ESCALATE_AFTER", "2"),
                ("RECOVERY_AFTER_RUNS", "0"),
            ],
        )
        .await;

    // Admin only, and a clear 400 for an unknown component.
    let anonymous = app
        .client
        .post(format!("{}/health/recover", app.base))
        .send()
        .await
        .expect("POST");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let (status, body) = recover(&app, "?components=openai,redis").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], "components");

    // Nothing failing: nothing done.
    let (status, healthy) = recover(&app, "").await;
    assert_eq!(status, StatusCode::OK, "{healthy}");
    assert_eq!(healthy["failingBefore"], json!([]));
    assert_eq!(healthy["attempts"], json!([]));

    // OpenAI's quota runs out: the doctor opens its incident.
    stack.openai.set(OpenAiMode::QuotaExhausted);
    let (status, run) = app.post("/ops/doctor/run", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{run}");
    let opened = run["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["check"] == "openai")
        .unwrap_or_else(|| panic!("an openai incident: {run}"))["incidentId"]
        .as_str()
        .unwrap()
        .to_owned();

    until_allowed(&app).await;
    let (status, first) = recover(&app, "").await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["failingBefore"], json!(["openai"]), "{first}");
    let attempt = &first["attempts"][0];
    assert_eq!(attempt["component"], "openai");
    assert_eq!(attempt["action"], "rerun_check");
    assert_eq!(attempt["outcome"], "failed");
    assert_eq!(attempt["trigger"], "api");
    assert_eq!(attempt["before"]["reason"], "quota_exhausted");
    assert_eq!(attempt["after"]["status"], "fail");
    assert_eq!(attempt["recorded"], "stored");
    assert_eq!(attempt["incidentId"], opened.as_str());
    assert_eq!(first["stillFailing"], json!(["openai"]));

    // A second recovery at once is refused, saying when to come back.
    let refused = app
        .request(reqwest::Method::POST, "/health/recover")
        .send()
        .await
        .expect("POST");
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in seconds");
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    let (_, body) = crate::helpers::decode(refused).await;
    assert_eq!(body["error"]["code"], "rate_limited");

    // The second failed recovery in a row escalates the WARN incident to CRITICAL.
    let (_, incident) = app.get(&format!("/ops/incidents/{opened}")).await;
    assert_eq!(incident["severity"], "WARN", "{incident}");
    until_allowed(&app).await;
    let (status, second) = recover(&app, "?components=openai").await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(second["attempts"][0]["outcome"], "failed");
    let (_, incident) = app.get(&format!("/ops/incidents/{opened}")).await;
    assert_eq!(incident["severity"], "CRITICAL", "{incident}");
    let types = event_types(&incident);
    let recovery: Vec<&str> = types
        .iter()
        .map(String::as_str)
        .filter(|t| t.starts_with("RECOVERY") || *t == "ESCALATED")
        .collect();
    assert_eq!(
        recovery,
        [
            "RECOVERY_ATTEMPTED",
            "RECOVERY_FAILED",
            "RECOVERY_ATTEMPTED",
            "RECOVERY_FAILED",
            "ESCALATED"
        ],
        "{incident}"
    );

    // The journal, the bundle and the metrics agree.
    let (status, stats) = app.get("/health/recovery-stats").await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    assert_eq!(stats["attempts"].as_array().unwrap().len(), 2, "{stats}");
    assert_eq!(stats["total"]["attempts"], 2);
    assert_eq!(stats["total"]["failed"], 2);
    assert_eq!(stats["byComponent"]["openai"]["attempts"], 2);
    assert_eq!(stats["byComponent"]["openai"]["successRate"], 0.0);
    assert!(stats["attempts"][0]["durationMs"].is_u64());
    let (_, bundle) = app.get("/ops/doctor").await;
    assert_eq!(
        bundle["recoveryAttempts"].as_array().map(Vec::len),
        Some(2),
        "{bundle}"
    );
    let metrics = app
        .request(reqwest::Method::GET, "/metrics")
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .unwrap();
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("opsdoctor_recovery_attempts_total{")
                && l.contains(r#"component="openai""#)
                && l.contains(r#"outcome="failed""#)
        })
        .unwrap_or_else(|| panic!("no recovery counter in {metrics}"));
    assert!(line.ends_with(" 2"), "{line}");
}

/// While the breaker is open (and would wait a minute before its next probe), a recovery probes
/// the database at once: locked, the attempt fails and is queued on the outage incident;
/// released, the next one closes the breaker and readiness turns 200 straight away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_recovery_probes_at_once_and_is_recorded_on_the_outage() {
    let db = TestDb::new(Backend::Sqlite).await.expect("SQLite");
    let app = InProcessApp::spawn_with(
        &db,
        &[
            ("DB_BREAKER_FAILURES", "1"),
            ("DB_BREAKER_TIMEOUT_MS", "1000"),
            ("DB_BREAKER_MIN_BACKOFF_MS", "60000"),
            ("DB_BREAKER_MAX_BACKOFF_MS", "60000"),
            ("DB_PROBE_INTERVAL_MS", "100"),
            ("RECOVERY_MIN_INTERVAL_MS", "300"),
            ("RECOVERY_AFTER_RUNS", "0"),
        ],
        &[],
    )
    .await;
    let mut options = sea_orm::ConnectOptions::new(db.url.clone());
    options.max_connections(1).sqlx_logging(false);
    let holder = sea_orm::Database::connect(options).await.expect("connect");
    holder
        .execute_unprepared("BEGIN EXCLUSIVE")
        .await
        .expect("take the exclusive lock");
    let deadline = Instant::now() + Duration::from_secs(5);
    while app.get("/health/ready").await.0 != StatusCode::SERVICE_UNAVAILABLE {
        assert!(Instant::now() < deadline, "readiness never turned 503");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (status, locked) = recover(&app, "?components=database").await;
    assert_eq!(status, StatusCode::OK, "{locked}");
    let attempt = &locked["attempts"][0];
    assert_eq!(attempt["action"], "probe_database", "{locked}");
    assert_eq!(attempt["outcome"], "failed", "{locked}");
    assert_eq!(attempt["recorded"], "queued", "{locked}");
    assert!(
        attempt["detail"]
            .as_str()
            .unwrap()
            .starts_with("the database still does not take writes: "),
        "{locked}"
    );
    // The journal and the metrics answer while the database does not, and show the breaker
    // and the spool.
    let (status, _) = app.get("/health/recovery-stats").await;
    assert_eq!(status, StatusCode::OK);
    let scrape = app
        .request(reqwest::Method::GET, "/metrics")
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(scrape.status(), StatusCode::OK);
    let text = scrape.text().await.unwrap();
    let figure = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    };
    assert_eq!(figure(r#"opsdoctor_db_breaker_state{state="open"}"#), 1.0);
    assert_eq!(figure(r#"opsdoctor_db_breaker_state{state="closed"}"#), 0.0);
    assert!(
        figure("opsdoctor_spool_depth") >= 2.0,
        "the outage and the attempt"
    );
    assert!(figure("opsdoctor_spool_queued_total") >= 2.0);

    holder
        .execute_unprepared("ROLLBACK")
        .await
        .expect("release");
    holder.close().await.ok();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        app.get("/health/ready").await.0,
        StatusCode::SERVICE_UNAVAILABLE,
        "the breaker waits out its minute-long backoff on its own"
    );
    let (status, released) = recover(&app, "?components=database").await;
    assert_eq!(status, StatusCode::OK, "{released}");
    assert_eq!(
        released["attempts"][0]["outcome"], "succeeded",
        "{released}"
    );
    assert_eq!(released["recovered"], json!(["database"]));
    assert_eq!(app.get("/health/ready").await.0, StatusCode::OK);

    // Once the spool has drained, the outage incident holds both attempts, in order.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, list) = app.get("/ops/incidents?fingerprint=database:outage").await;
        if let Some(id) = list["items"][0]["id"].as_str() {
            let (_, incident) = app.get(&format!("/ops/incidents/{id}")).await;
            let types = event_types(&incident);
            let recovery: Vec<&str> = types
                .iter()
                .map(String::as_str)
                .filter(|t| t.starts_with("RECOVERY"))
                .collect();
            if recovery.len() == 4 {
                assert_eq!(
                    recovery,
                    [
                        "RECOVERY_ATTEMPTED",
                        "RECOVERY_FAILED",
                        "RECOVERY_ATTEMPTED",
                        "RECOVERY_SUCCESS"
                    ],
                    "{incident}"
                );
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the outage incident does not hold the attempts: {list}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The monitor starts a recovery of its own once a check has failed in K runs in a row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monitor_recovers_a_component_after_k_failing_runs() {
    let db = TestDb::new(Backend::Sqlite).await.expect("SQLite");
    let stack = Stack::healthy().await;
    stack.openai.set(OpenAiMode::QuotaExhausted);
    let app = stack
        .serve(
            &db,
            &[
                ("DOCTOR_INTERVAL_MS", "300"),
                ("RECOVERY_AFTER_RUNS", "3"),
                ("RECOVERY_MIN_INTERVAL_MS", "0"),
            ],
        )
        .await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, stats) = app.get("/health/recovery-stats").await;
        let by_monitor: Vec<&Value> = stats["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["trigger"] == "monitor")
            .collect();
        if let Some(attempt) = by_monitor.first() {
            assert_eq!(attempt["component"], "openai", "{stats}");
            assert_eq!(attempt["outcome"], "failed", "{stats}");
            assert!(
                by_monitor.iter().all(|a| a["component"] == "openai"),
                "only the failing component: {stats}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the monitor started no recovery: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The tunnel's recovery goes through the restart coordinator: the restart runs once, is recorded
/// once on the `TUNNEL` incident (by the coordinator, not twice), and the tunnel passes after it;
/// a second recovery while restarts are rate-limited is `refused`, saying when the next may run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tunnel_is_recovered_through_the_restart_coordinator() {
    use crate::tunnel_restart::{kinds, Scene};
    let db = TestDb::new(Backend::Sqlite).await.expect("SQLite");
    let scene = Scene::new(db, false).await;
    let env = scene.env_with(&[
        ("CHECK_FAIL_AFTER", "1"),
        ("RECOVERY_MIN_INTERVAL_MS", "0"),
        ("RECOVERY_AFTER_RUNS", "0"),
        ("TUNNEL_RESTART_MIN_INTERVAL", "10m"),
    ]);
    let app = InProcessApp::spawn_with(&scene.db, &env, &[]).await;
    let (status, run) = app.post("/ops/doctor/run", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{run}");

    let (recovered, reconnected) = tokio::join!(
        recover(&app, "?components=tunnel"),
        scene.reconnect_after_restart(Duration::from_secs(20))
    );
    assert!(reconnected, "the restart command never ran");
    let (status, body) = recovered;
    assert_eq!(status, StatusCode::OK, "{body}");
    let attempt = &body["attempts"][0];
    assert_eq!(attempt["action"], "restart_tunnel", "{body}");
    assert_eq!(attempt["outcome"], "succeeded", "{body}");
    assert_eq!(attempt["recorded"], "stored", "{body}");
    assert!(
        attempt["detail"].as_str().unwrap().contains("connected"),
        "{body}"
    );
    assert_eq!(scene.restarts_run(), 1);
    let incidents = scene.tunnel_incidents().await;
    assert_eq!(incidents.len(), 1, "one TUNNEL incident");
    let (incident, events) = &incidents[0];
    assert_eq!(attempt["incidentId"], incident.id.as_str());
    let recovery: Vec<&str> = kinds(events)
        .into_iter()
        .filter(|k| k.starts_with("RECOVERY"))
        .collect();
    assert_eq!(
        recovery,
        ["RECOVERY_ATTEMPTED", "RECOVERY_SUCCESS"],
        "recorded once"
    );

    // The tunnel drops again; restarts are limited to one per 10 minutes.
    scene
        .cloudflared
        .set(testkit::cloudflared::MetricsMode::NoConnections);
    let (status, body) = recover(&app, "?components=tunnel").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let attempt = &body["attempts"][0];
    assert_eq!(attempt["outcome"], "refused", "{body}");
    assert!(
        attempt["detail"].as_str().unwrap().contains("rate-limited"),
        "{body}"
    );
    assert_eq!(scene.restarts_run(), 1, "no second restart");
}
