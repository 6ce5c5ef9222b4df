//! One root cause, one incident: a doctor run while the database is down attaches each other
//! failing check to the outage incident instead of opening incidents of their own.

use std::time::{Duration, Instant};

use entity::ops_incident as incident;
use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, EntityTrait};
use serde_json::json;
use testkit::openai::OpenAiMode;

use super::{drained, lock_holder};
use crate::helpers::{Backend, Stack, TestDb};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_during_an_outage_are_attached_to_the_outage_incident() {
    let db = TestDb::new(Backend::Sqlite).await.expect("SQLite");
    let stack = Stack::healthy().await;
    stack.openai.set(OpenAiMode::QuotaExhausted);
    let app = stack
        .serve(
            &db,
            &[
                ("CHECK_FAIL_AFTER", "1"),
                ("DB_BREAKER_FAILURES", "1"),
                ("DB_BREAKER_TIMEOUT_MS", "1000"),
            ],
        )
        .await;
    let holder = lock_holder(&db).await;
    holder
        .execute_unprepared("BEGIN EXCLUSIVE")
        .await
        .expect("take the exclusive lock");
    let deadline = Instant::now() + Duration::from_secs(5);
    while app.get("/health/ready").await.0 != StatusCode::SERVICE_UNAVAILABLE {
        assert!(Instant::now() < deadline, "readiness never turned 503");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, run) = app.post("/ops/doctor/run", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(
        run["incidents"],
        json!([]),
        "no incident opened one by one: {run}"
    );
    holder
        .execute_unprepared("ROLLBACK")
        .await
        .expect("release");
    holder.close().await.ok();
    drained(&app, Duration::from_secs(15)).await;

    let conn = db.connect().await;
    let incidents = incident::Entity::find()
        .all(&conn)
        .await
        .expect("incidents");
    assert_eq!(
        incidents.len(),
        1,
        "one root cause, one incident: {incidents:?}"
    );
    assert_eq!(incidents[0].details_json["fingerprint"], "database:outage");
    let (_, outage) = app
        .get(&format!("/ops/incidents/{}", incidents[0].id))
        .await;
    let attached: Vec<&str> = outage["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["eventType"] == "DETECTED")
        .filter_map(|e| e["message"].as_str())
        .filter(|m| m.starts_with("openai check failing (quota_exhausted)"))
        .collect();
    assert_eq!(
        attached.len(),
        1,
        "the openai failure is on the outage: {outage}"
    );
}
