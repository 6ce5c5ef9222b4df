//! The Kubernetes probes in `docs/integrations.md` against the service's real semantics: a pod
//! whose database is not migrated yet must not be restarted (startup and liveness pass) but must
//! not get traffic (readiness fails), and readiness fails from the first SIGTERM.

use reqwest::StatusCode;

use crate::helpers::{Backend, InProcessApp, TestDb};

/// The `httpGet.path` of each probe in the document's example.
fn documented_probe(kind: &str) -> String {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/integrations.md"))
        .expect("docs/integrations.md");
    let mut lines = doc.lines().skip_while(|l| l.trim() != format!("{kind}:"));
    lines
        .next()
        .unwrap_or_else(|| panic!("{kind} not in docs/integrations.md"));
    let get = lines.next().expect("httpGet line");
    get.split("path:")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .map(|p| p.trim().to_owned())
        .unwrap_or_else(|| panic!("no path in `{get}`"))
}

#[tokio::test]
async fn documented_probes_keep_a_waiting_pod_alive_and_out_of_rotation() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let (startup, liveness, readiness) = (
        documented_probe("startupProbe"),
        documented_probe("livenessProbe"),
        documented_probe("readinessProbe"),
    );
    // Not migrated: the state of a pod whose database is not ready yet.
    let waiting = InProcessApp::spawn_with(&db, &[], &["--no-migrate"]).await;
    for path in [&startup, &liveness] {
        let (status, body) = waiting.get(path).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{path} would restart a waiting pod: {body}"
        );
    }
    let (status, body) = waiting.get(&readiness).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{readiness}: {body}"
    );
    waiting.stop().await;

    // Migrated: every probe passes; from the first SIGTERM readiness fails while liveness holds.
    let db = db.sibling().await;
    let app = InProcessApp::spawn_with(&db, &[("SHUTDOWN_READY_DELAY_MS", "3000")], &[]).await;
    for path in [&startup, &liveness, &readiness] {
        let (status, body) = app.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    let base = app.base.clone();
    let stopping = tokio::spawn(app.stop());
    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let mut ready = StatusCode::OK;
    while std::time::Instant::now() < deadline {
        ready = client
            .get(format!("{base}{readiness}"))
            .send()
            .await
            .unwrap()
            .status();
        if ready == StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        ready,
        StatusCode::SERVICE_UNAVAILABLE,
        "readiness after SIGTERM"
    );
    let live = client
        .get(format!("{base}{liveness}"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(live, StatusCode::OK, "liveness during the drain");
    stopping.await.unwrap();
}
