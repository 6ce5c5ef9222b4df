//! One freshness policy for readiness and the gate: a storm of callers that find a check stale
//! costs one run of it, so a paid, rate-limited API sees one call, not one per caller.

use std::time::Duration;

use reqwest::StatusCode;
use testkit::openai::OpenAiMode;

use crate::helpers::{Backend, InProcessApp, TestDb};
use crate::on_both_backends;

on_both_backends!(concurrent_gate_calls_and_probes_share_one_run_per_stale_check);

async fn concurrent_gate_calls_and_probes_share_one_run_per_stale_check(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    // Slow enough that every caller below arrives while the first run is in flight.
    let openai = testkit::openai::start(OpenAiMode::Slow(Duration::from_millis(400))).await;
    let base = format!("{}/v1", openai.base());
    let app = InProcessApp::spawn_with(
        &db,
        &[
            ("OPENAI_API_KEY", "sk-proj-freshness0123456789abcdef"),
            ("OPENAI_BASE_URL", base.as_str()),
            ("REQUIRED_CHECKS", "database,openai"),
            ("DOCTOR_INTERVAL_MS", "0"),
        ],
        &[],
    )
    .await;

    let gates = (0..20).map(|n| {
        let request = app.request(
            reqwest::Method::GET,
            &format!("/ops/gate?env=prod&release=v{n}"),
        );
        async move { crate::helpers::decode(request.send().await.expect("answered")).await }
    });
    let probes = (0..10).map(|_| {
        let request = app.request(reqwest::Method::GET, "/health/ready");
        async move { crate::helpers::decode(request.send().await.expect("answered")).await }
    });
    let (gates, probes) = tokio::join!(
        futures::future::join_all(gates),
        futures::future::join_all(probes)
    );
    for (status, body) in gates.into_iter().chain(probes) {
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert_eq!(
        openai.hits(),
        1,
        "20 gate calls and 10 probes with a stale result make one call to the API"
    );
}
