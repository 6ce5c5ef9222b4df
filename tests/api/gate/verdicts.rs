//! Verdicts and their status codes, Argo's verdict mode, Flagger's webhook, HEAD, and a second
//! instance serving the gate from the stored run.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use sea_orm::EntityTrait;
use serde_json::json;
use testkit::openai::OpenAiMode;
use testkit::stripe::StripeMode;

use super::{gate, listed_ids, sources};
use crate::helpers::{with, Backend, InProcessApp, Stack, TestDb};
use crate::on_both_backends;

on_both_backends!(
    verdicts_status_codes_and_records,
    head_answers_like_get_and_stores_nothing,
);

async fn verdicts_status_codes_and_records(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let stack = Stack::healthy().await;
    let app = stack
        .serve(
            &db,
            &[
                ("REQUIRED_CHECKS", "database,stripe"),
                ("GATE_RETRY_AFTER_S", "7"),
            ],
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
    // Recovered after two passing observations in a row: the first still holds the rollout,
    // saying waiting will fix it.
    let (status, held) = app.post("/ops/gate", fresh.clone()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{held}");
    let stripe = held["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "stripe")
        .unwrap();
    assert_eq!(
        (
            &stripe["status"],
            &stripe["observedStatus"],
            &stripe["transient"]
        ),
        (&json!("fail"), &json!("pass"), &json!(true)),
        "{held}"
    );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_instance_serves_the_gate_from_the_stored_run() {
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
