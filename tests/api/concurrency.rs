//! Concurrent reports of one fingerprint end with exactly one open incident, within one process
//! and across two processes sharing a database.

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::task::JoinSet;

use crate::helpers::{decode, ApiClient, Backend, InProcessApp, TestApp, TestDb, ADMIN_TOKEN};
use crate::on_both_backends;

on_both_backends!(
    many_reports_at_once_one_process,
    many_reports_at_once_two_processes
);

/// Bounded: this many reports, all in flight together.
const REPORTS: usize = 40;

async fn fire(bases: Vec<String>, fingerprint: &str) -> Vec<(StatusCode, Value)> {
    let client = reqwest::Client::new();
    let mut tasks = JoinSet::new();
    for i in 0..REPORTS {
        let client = client.clone();
        let url = format!("{}/ops/incidents", bases[i % bases.len()]);
        let body = json!({"severity": "CRITICAL", "category": "API", "summary": format!("stripe 5xx #{i}"), "fingerprint": fingerprint});
        tasks.spawn(async move {
            decode(
                client
                    .post(url)
                    .bearer_auth(ADMIN_TOKEN)
                    .json(&body)
                    .send()
                    .await
                    .expect("POST"),
            )
            .await
        });
    }
    let mut out = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        out.push(joined.expect("task"));
    }
    out
}

async fn assert_exactly_one(app: &ApiClient, results: &[(StatusCode, Value)], fingerprint: &str) {
    let created = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .count();
    let extended = results
        .iter()
        .filter(|(s, b)| *s == StatusCode::OK && b["deduplicated"] == true)
        .count();
    assert_eq!((created, extended), (1, REPORTS - 1), "{results:?}");
    let ids: std::collections::HashSet<&str> = results
        .iter()
        .map(|(_, b)| b["incident"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 1, "every report landed on the same incident");

    let (_, open) = app
        .get(&format!(
            "/ops/incidents?status=open&fingerprint={fingerprint}"
        ))
        .await;
    let items = open["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{open}");
    let id = items[0]["id"].as_str().unwrap();
    let (_, shown) = app.get(&format!("/ops/incidents/{id}?limit=500")).await;
    let detected = shown["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["eventType"] == "DETECTED")
        .count();
    assert_eq!(detected, REPORTS, "one DETECTED event per report");
}

async fn many_reports_at_once_one_process(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let app = InProcessApp::spawn(&db).await;
    let results = fire(vec![app.base.clone()], "stripe:upstream_error").await;
    assert_exactly_one(&app, &results, "stripe:upstream_error").await;
}

async fn many_reports_at_once_two_processes(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let first = TestApp::spawn(&db);
    let second = TestApp::spawn(&db);
    let results = fire(
        vec![first.base.clone(), second.base.clone()],
        "openai:rate_limited",
    )
    .await;
    assert_exactly_one(&first, &results, "openai:rate_limited").await;
}
