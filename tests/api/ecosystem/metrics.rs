//! `GET /metrics` after real traffic: the names dashboards expect, with the values the traffic
//! implies; behind the token on the main port, open on `METRICS_ADDR`; and `promtool check
//! metrics` finds nothing to complain about.

use std::process::Stdio;

use reqwest::StatusCode;
use serde_json::json;
use testkit::stripe::StripeMode;
use tokio::io::AsyncWriteExt;

use super::tool;
use crate::helpers::{Backend, Stack, TestDb, ADMIN_TOKEN};
use crate::on_both_backends;

on_both_backends!(a_scrape_after_real_traffic_passes_promtool);

/// The value of the sample whose line starts with `series` (name and labels as rendered).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

async fn a_scrape_after_real_traffic_passes_promtool(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let stack = Stack::healthy().await;
    stack.stripe.set(StripeMode::InvalidKey);
    let app = stack
        .serve(
            &db,
            &[
                ("METRICS_ADDR", "127.0.0.1:0"),
                ("REQUIRED_CHECKS", "database"),
            ],
        )
        .await;

    // Real traffic: a doctor run with a failing check (an incident opens), gate calls, an incident
    // opened and resolved by hand, a deploy started and finished, a probe and a 404.
    let (status, run) = app.post("/ops/doctor/run", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{run}");
    for _ in 0..3 {
        let (status, _) = app
            .get("/ops/gate?env=prod&release=v1&allow_partial=1")
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, created) = app
        .post(
            "/ops/incidents",
            json!({"severity": "INFO", "category": "DB", "summary": "slow queries"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["incident"]["id"].as_str().unwrap().to_owned();
    let (status, _) = app
        .post(&format!("/ops/incidents/{id}/resolve"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, deploy) = app
        .post(
            "/ops/deploys",
            json!({"environment": "prod", "version": "v2"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{deploy}");
    let deploy_id = deploy["id"].as_str().unwrap().to_owned();
    let (status, _) = app
        .post(
            &format!("/ops/deploys/{deploy_id}/finish"),
            json!({"status": "succeeded"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.get("/health/live").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.get("/no/such/thing/123").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Behind the token on the main port.
    let anonymous = reqwest::get(format!("{}/metrics", app.base)).await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let resp = app
        .client
        .get(format!("{}/metrics", app.base))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = resp.text().await.unwrap();

    // Open on the separate listener.
    let metrics_addr = app.metrics_addr.expect("METRICS_ADDR listener");
    let open = reqwest::get(format!("http://{metrics_addr}/metrics"))
        .await
        .unwrap();
    assert_eq!(open.status(), StatusCode::OK);
    let open_text = open.text().await.unwrap();
    assert!(
        open_text.contains("opsdoctor_check_up{check=\"stripe\"} 0"),
        "{open_text}"
    );

    for (series, expected) in [
        ("opsdoctor_check_up{check=\"database\"}", 1.0),
        ("opsdoctor_check_up{check=\"stripe\"}", 0.0),
        ("opsdoctor_incidents_open{category=\"API\",severity=\"WARN\"}", 1.0),
        ("opsdoctor_incidents_open{category=\"DB\",severity=\"INFO\"}", 0.0),
        ("opsdoctor_incidents_opened_total", 2.0),
        ("opsdoctor_incidents_resolved_total", 1.0),
        (
            "opsdoctor_gate_verdicts_total{verdict=\"partial\",environment=\"prod\",source=\"api\"}",
            3.0,
        ),
        (
            "opsdoctor_deploys_finished_total{environment=\"prod\",status=\"succeeded\"}",
            1.0,
        ),
        (
            "opsdoctor_http_requests_total{method=\"GET\",route=\"/ops/gate\",status=\"200\"}",
            3.0,
        ),
        (
            "opsdoctor_http_requests_total{method=\"POST\",route=\"/ops/incidents/{id}/resolve\",status=\"200\"}",
            1.0,
        ),
        (
            "opsdoctor_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"}",
            1.0,
        ),
        (
            "opsdoctor_http_request_duration_seconds_count{method=\"GET\",route=\"/health/live\"}",
            1.0,
        ),
    ] {
        assert_eq!(sample(&text, series), Some(expected), "{series} in:\n{text}");
    }
    let duration = sample(&text, "opsdoctor_check_duration_seconds{check=\"stripe\"}");
    assert!(duration.is_some_and(|d| d >= 0.0), "{text}");
    assert!(sample(&text, "opsdoctor_incident_mean_time_to_resolve_seconds").is_some());
    assert!(
        text.contains("opsdoctor_http_request_duration_seconds_bucket{"),
        "{text}"
    );
    assert!(text.contains("# HELP opsdoctor_check_up "), "{text}");
    // No raw path (an id) ever becomes a label, and no secret appears.
    assert!(!text.contains(&id) && !text.contains(&deploy_id), "{text}");
    let secrets = stack
        .env()
        .into_iter()
        .filter(|(k, _)| k.ends_with("KEY") || k.ends_with("TOKEN"));
    for (name, secret) in secrets.chain([("ADMIN_TOKEN".to_owned(), ADMIN_TOKEN.to_owned())]) {
        assert!(!text.contains(&secret), "{name} appears in the scrape");
    }

    let Some(promtool) = tool("promtool", ".ci/install/50-promtool.sh") else {
        return;
    };
    let mut child = tokio::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start promtool");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(text.as_bytes()).await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("promtool finished")
        .expect("promtool ran");
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
