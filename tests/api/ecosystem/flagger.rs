//! Flagger's dialect: pass is exactly 200; the rollback hook answers 200 only when opsdoctor wants
//! a rollback (the gate fails, or a confirm hook held the canary past its deadline).

use reqwest::StatusCode;
use serde_json::{json, Value};
use testkit::stripe::StripeMode;

use crate::helpers::{Backend, InProcessApp, Stack, TestDb};
use crate::on_both_backends;

on_both_backends!(flagger_pass_hold_confirm_deadline_and_rollback);

fn payload(checksum: &str, required: &str) -> Value {
    json!({
        "name": "checkout", "namespace": "prod", "phase": "Progressing", "checksum": checksum,
        "metadata": { "release": checksum, "max_age": "0", "require": required },
    })
}

async fn post(app: &InProcessApp, path: &str, body: Value) -> (StatusCode, Value) {
    app.post(path, body).await
}

async fn flagger_pass_hold_confirm_deadline_and_rollback(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let stack = Stack::healthy().await;
    let app = stack
        .serve(
            &db,
            &[
                ("FLAGGER_CONFIRM_DEADLINE_S", "1"),
                ("REQUIRED_CHECKS", "database"),
                // Flagger's dialect is under test here, not the flap thresholds: one
                // observation decides (the thresholds are tested in `decisions`).
                ("CHECK_FAIL_AFTER", "1"),
                ("CHECK_RECOVER_AFTER", "1"),
            ],
        )
        .await;

    // Healthy: the rollout hook passes with exactly 200 (Flagger fails 204), the rollback hook
    // says no with a status Flagger takes as "keep going".
    let (status, body) = post(&app, "/ops/gate", payload("abc1", "database")).await;
    assert_eq!(status.as_u16(), 200, "{body}");
    assert_eq!(body["verdict"], "pass");
    let (status, body) = post(
        &app,
        "/ops/gate/flagger/rollback",
        payload("abc1", "database"),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["rollback"], false);

    // A non-required check fails: partial. The confirm hook holds (503); before the deadline the
    // rollback hook still says no, because partial is not a failure.
    stack.stripe.set(StripeMode::InvalidKey);
    let (status, body) = post(
        &app,
        "/ops/gate/flagger/confirm",
        payload("abc2", "database"),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["verdict"], "partial");
    let (status, body) = post(
        &app,
        "/ops/gate/flagger/rollback",
        payload("abc2", "database"),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // Past FLAGGER_CONFIRM_DEADLINE_S the rollback hook answers 200: roll back.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let (status, _) = post(
        &app,
        "/ops/gate/flagger/confirm",
        payload("abc2", "database"),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (status, body) = post(
        &app,
        "/ops/gate/flagger/rollback",
        payload("abc2", "database"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["rollback"], true);
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .contains("FLAGGER_CONFIRM_DEADLINE_S"),
        "{body}"
    );
    assert!(body["heldSeconds"].as_u64().unwrap() >= 1);
    // Another revision of the same canary has its own clock.
    let (status, _) = post(
        &app,
        "/ops/gate/flagger/rollback",
        payload("abc3", "database"),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // A required check fails: the rollback hook answers 200 at once, the rollout hook 503.
    let (status, body) = post(&app, "/ops/gate", payload("abc4", "database,stripe")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let (status, body) = post(
        &app,
        "/ops/gate/flagger/rollback",
        payload("abc4", "database,stripe"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .starts_with("the gate fails"),
        "{body}"
    );

    // Healed: the confirm hook passes (200) and clears the hold, so no rollback any more.
    stack.stripe.set(StripeMode::Ok { livemode: false });
    let (status, body) = post(
        &app,
        "/ops/gate/flagger/confirm",
        payload("abc2", "database"),
    )
    .await;
    assert_eq!(status.as_u16(), 200, "{body}");
    let (status, body) = post(
        &app,
        "/ops/gate/flagger/rollback",
        payload("abc2", "database"),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
}
