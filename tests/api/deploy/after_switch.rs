//! After the switch: a tunnel restarted once that recovers, one that stays broken, and an
//! external check that fails and switches traffic back, with requests through nginx throughout.

use std::time::Duration;

use testkit::cloudflared::MetricsMode;
use testkit::openai::OpenAiMode;
use testkit::stripe::StripeMode;

use super::{states, Scene, Traffic};
use crate::helpers::{Backend, TestDb};
use crate::on_both_backends;

async fn scene(backend: Backend) -> Option<Scene> {
    let mut scene = Scene::new(TestDb::new(backend).await?).await?;
    let marker = scene.path("tunnel-restarted");
    scene.extra_plan = format!(
        "\n[env.test.tunnel]\nrestart = \"touch {}\"\nwait = \"3s\"\n",
        marker.display()
    );
    Some(scene)
}

on_both_backends!(
    a_broken_tunnel_is_restarted_once_and_recovers,
    a_tunnel_that_stays_broken_fails_and_switches_back,
    an_external_check_failing_after_the_switch_switches_back,
    an_optional_check_that_waiting_cannot_fix_is_partial_at_once,
);

async fn a_broken_tunnel_is_restarted_once_and_recovers(backend: Backend) {
    let Some(scene) = scene(backend).await else {
        return;
    };
    let plan = scene.plan(&Scene::migrate_ok());
    scene.stack.cloudflared.set(MetricsMode::NoConnections);
    let marker = scene.path("tunnel-restarted");
    let deploy = scene.deploy(&plan, "v1", &[]);
    let watch = async {
        for _ in 0..600 {
            if marker.exists() {
                scene
                    .stack
                    .cloudflared
                    .set(MetricsMode::Ready { connections: 4 });
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    };
    let ((code, _, err), restarted) = tokio::join!(deploy, watch);
    assert!(restarted, "the plan's restart command ran");
    assert_eq!(code, 0, "{err}");
    let report = scene.latest_report();
    let tunnel = states(&report)
        .into_iter()
        .find(|(s, _)| s == "TUNNEL_START_OR_VERIFY");
    assert_eq!(tunnel, Some(("TUNNEL_START_OR_VERIFY".into(), "ok".into())));
    let detail = report["states"].to_string();
    assert!(
        detail.contains("no edge connection") && detail.contains("restarted once and it recovered"),
        "{detail}"
    );
    let restarts = report["commands"]
        .as_array()
        .expect("commands")
        .iter()
        .filter(|c| c["purpose"] == "tunnel.restart")
        .count();
    assert_eq!(restarts, 1, "restarted exactly once");
    // Through the restart coordinator: its shared record (which a monitor's `opsdoctor tunnel
    // restart` is rate-limited by) holds the deploy's restart.
    let (code, out, err) = scene.run(&["tunnel", "status", "--json"]).await;
    assert_eq!(code, 0, "edge connections are back: {err}");
    let status: api::tunnel_restart::RestartStatus = serde_json::from_str(&out).expect("status");
    let triggers: Vec<&str> = status.recent.iter().map(|r| r.trigger.as_str()).collect();
    assert_eq!(triggers, ["deploy"]);
    assert_eq!(
        status.recent[0].result,
        Some(api::tunnel_restart::RestartResult::Connected)
    );
}

async fn a_tunnel_that_stays_broken_fails_and_switches_back(backend: Backend) {
    let Some(scene) = scene(backend).await else {
        return;
    };
    let plan = scene.plan(&Scene::migrate_ok());
    assert_eq!(scene.deploy(&plan, "v1", &[]).await.0, 0);
    scene.stack.cloudflared.set(MetricsMode::NoConnections);
    let traffic = Traffic::start(scene.nginx.entry());
    let (code, _, err) = scene.deploy(&plan, "v2", &[]).await;
    traffic.assert_no_failure().await;
    assert_eq!(code, 1, "never claims success with a broken tunnel: {err}");
    let report = scene.latest_report();
    assert_eq!(report["failure"]["state"], "TUNNEL_START_OR_VERIFY");
    assert!(report["failure"]["cause"]
        .as_str()
        .unwrap_or("")
        .contains("still broken"));
    assert!(!report["failure"]["nextStep"]
        .as_str()
        .unwrap_or("")
        .is_empty());
    assert_eq!(report["outcome"], "rolled_back");
    assert!(
        scene.serving().await.contains("release v1"),
        "switched back to the old colour"
    );
    assert_eq!(report["liveAfter"], "blue (v1)");
}

async fn an_external_check_failing_after_the_switch_switches_back(backend: Backend) {
    let Some(scene) = scene(backend).await else {
        return;
    };
    let plan = scene.plan(&Scene::migrate_ok());
    assert_eq!(scene.deploy(&plan, "v1", &[]).await.0, 0);
    scene.stack.stripe.set(StripeMode::InvalidKey);
    let traffic = Traffic::start(scene.nginx.entry());
    let (code, _, err) = scene.deploy(&plan, "v2", &[]).await;
    traffic.assert_no_failure().await;
    assert_eq!(code, 1, "{err}");
    let report = scene.latest_report();
    assert_eq!(report["failure"]["state"], "EXTERNAL_VERIFY");
    assert!(
        report["failure"]["cause"]
            .as_str()
            .unwrap_or("")
            .contains("stripe=auth"),
        "{}",
        report["failure"]
    );
    let rollback = report["states"]
        .as_array()
        .and_then(|s| s.last())
        .expect("a rollback state");
    assert_eq!(rollback["state"], "FAILURE_ROLLBACK");
    assert!(
        rollback["detail"]
            .as_str()
            .unwrap_or("")
            .contains("switched back to blue (v1) and verified"),
        "{rollback}"
    );
    assert!(scene.serving().await.contains("release v1"));
    let switches: Vec<String> = report["commands"]
        .as_array()
        .expect("commands")
        .iter()
        .filter_map(|c| {
            c["purpose"]
                .as_str()
                .filter(|p| p.starts_with("switch"))
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(switches, vec!["switch green", "switch blue"]);
    let key = scene
        .env
        .iter()
        .find(|(k, _)| k == "STRIPE_SECRET_KEY")
        .map(|(_, v)| v.clone())
        .expect("key");
    assert!(
        !err.contains(&key),
        "the Stripe key never shows in the output"
    );
    assert!(!report.to_string().contains(&key), "nor in the report");
}

async fn an_optional_check_that_waiting_cannot_fix_is_partial_at_once(backend: Backend) {
    let Some(scene) = scene(backend).await else {
        return;
    };
    let plan = scene.plan(&Scene::migrate_ok());
    scene.stack.openai.set(OpenAiMode::InvalidKey);
    let started = std::time::Instant::now();
    let (code, _, err) = scene.deploy(&plan, "v1", &[]).await;
    assert_eq!(code, 2, "deployed, but an optional check fails: {err}");
    assert!(started.elapsed() < Duration::from_secs(20));
    let report = scene.latest_report();
    assert_eq!(report["outcome"], "partial");
    assert_eq!(
        report["gateIds"].as_array().map(Vec::len),
        Some(1),
        "no second verdict: waiting cannot fix an invalid key"
    );
    assert!(scene.serving().await.contains("release v1"));
}
