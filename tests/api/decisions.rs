//! Decisions end to end, with the default thresholds: a blip the immediate re-try absorbs is a
//! pass; a transient failure opens its incident, fails readiness and fails the gate at the second
//! failing run, not the first; recovery takes two passing runs; the raw observations stay in the
//! run.

use reqwest::StatusCode;
use serde_json::{json, Value};
use testkit::stripe::StripeMode;
use testkit::{Fault, Noise};

use crate::helpers::{ApiClient, Backend, Stack, TestDb};
use crate::on_both_backends;

on_both_backends!(a_transient_failure_counts_after_two_runs_and_a_blip_not_at_all);

async fn run(app: &ApiClient) -> Value {
    let (status, body) = app.post("/ops/doctor/run", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn named<'a>(list: &'a Value, key: &str, name: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|r| r[key] == name)
        .unwrap_or_else(|| panic!("no {name} in {list}"))
}

fn stripe_actions(run: &Value) -> Vec<String> {
    run["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["check"] == "stripe")
        .map(|a| a["action"].as_str().unwrap().to_owned())
        .collect()
}

/// The gate's view of stripe: (verdict, stripe's status, its latest observation's status).
async fn gate(app: &ApiClient) -> (String, Value, Value) {
    let (_, body) = app
        .get("/ops/gate?env=prod&release=v1&mode=verdict&max_age=60")
        .await;
    let stripe = named(&body["checks"], "name", "stripe");
    (
        body["verdict"].as_str().unwrap().to_owned(),
        stripe["status"].clone(),
        stripe["observedStatus"].clone(),
    )
}

async fn a_transient_failure_counts_after_two_runs_and_a_blip_not_at_all(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let stack = Stack::healthy().await;
    let app = stack
        .serve(&db, &[("REQUIRED_CHECKS", "database,stripe")])
        .await;
    assert_eq!(run(&app).await["status"], "pass");

    // One dropped connection: the re-try answers, the observation is a pass, the blip is kept.
    stack.stripe.set_noise(Some(Noise {
        per_million: 1_000_000,
        seed: 7,
        faults: vec![Fault::Reset],
        limit: Some(1),
    }));
    let blip = run(&app).await;
    let stripe = named(&blip["results"], "name", "stripe");
    assert_eq!(stripe["status"], "pass", "{blip}");
    assert_eq!(
        stripe["observed"]["first_attempt"]["reason"], "unreachable",
        "{blip}"
    );
    assert_eq!(stack.stripe.faults(), 1);
    assert!(stripe_actions(&blip).is_empty(), "{blip}");

    // Stripe down for real (an HTML 503 on every call): the first failing run is an observation,
    // not yet a failure.
    stack.stripe.set(StripeMode::ServerErrorHtml(503));
    let first = run(&app).await;
    assert_eq!(
        named(&first["results"], "name", "stripe")["reason"],
        "upstream_error"
    );
    let decision = named(&first["decisions"], "check", "stripe");
    assert_eq!(
        (
            &decision["state"],
            &decision["failingStreak"],
            &decision["threshold"]
        ),
        (&json!("passing"), &json!(1), &json!(2)),
        "{first}"
    );
    assert!(stripe_actions(&first).is_empty(), "{first}");
    let (status, ready) = app.get("/health/ready").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "not failing by the thresholds yet: {ready}"
    );
    assert_eq!(
        gate(&app).await,
        ("partial".to_owned(), json!("warn"), json!("fail"))
    );

    // The second in a row: failing; the incident opens, readiness and the gate fail.
    let second = run(&app).await;
    assert_eq!(stripe_actions(&second), ["opened"], "{second}");
    assert_eq!(
        named(&second["decisions"], "check", "stripe")["changed"],
        true
    );
    let (status, ready) = app.get("/health/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{ready}");
    assert_eq!(ready["checks"]["stripe"]["decided"], "failing");
    assert_eq!(
        gate(&app).await,
        ("fail".to_owned(), json!("fail"), Value::Null)
    );

    // Repaired: one pass is not yet a recovery, the second is.
    stack.stripe.set(StripeMode::Ok { livemode: false });
    let once = run(&app).await;
    assert!(stripe_actions(&once).is_empty(), "{once}");
    assert_eq!(
        gate(&app).await,
        ("fail".to_owned(), json!("fail"), json!("pass"))
    );
    let (status, _) = app.get("/health/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let twice = run(&app).await;
    assert_eq!(stripe_actions(&twice), ["resolved"], "{twice}");
    let (status, ready) = app.get("/health/ready").await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    assert_eq!(
        gate(&app).await,
        ("pass".to_owned(), json!("pass"), Value::Null)
    );

    // A reason waiting cannot fix fails at the first observation.
    stack.stripe.set(StripeMode::InvalidKey);
    assert_eq!(stripe_actions(&run(&app).await), ["opened"]);
}
