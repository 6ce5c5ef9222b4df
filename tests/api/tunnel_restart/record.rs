//! Every restart on the `TUNNEL` incident (opened by the restart, or the one already open), the
//! central rate limit over that record, and a restart while the database is down: it still runs,
//! and its record is spooled and stored once the service replays the spool.

use std::time::Duration;

use api::tunnel_restart::{CrossHost, Recorded, RestartOutcome, RestartRefused, RestartResult};
use entity::Severity;

use super::{kinds, Scene, EXIT_FAILED, EXIT_OK, EXIT_REFUSED};
use crate::helpers::{Backend, TestApp, TestDb};
use crate::on_both_backends;

on_both_backends!(
    a_restart_opens_the_tunnel_incident_records_itself_and_resolves_what_it_fixed,
    a_failed_restart_is_recorded_on_the_open_incident_and_escalates_it,
    the_rate_limit_counts_the_shared_record_and_says_when_the_next_is_allowed,
);

async fn a_restart_opens_the_tunnel_incident_records_itself_and_resolves_what_it_fixed(
    backend: Backend,
) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let scene = Scene::new(db, false).await;
    let (reconnected, (code, answer)) = tokio::join!(
        scene.reconnect_after_restart(Duration::from_secs(30)),
        scene.restart(&[("RESTART_SLEEP", "1")])
    );
    assert!(reconnected);
    let outcome = answer.expect("restarted");
    assert_eq!(code, EXIT_OK);
    let Recorded::Stored {
        incident_id,
        opened,
    } = &outcome.recorded
    else {
        panic!("not stored: {:?}", outcome.recorded);
    };
    assert!(
        opened,
        "no tunnel incident was open, so the restart opened one"
    );
    let incidents = scene.tunnel_incidents().await;
    assert_eq!(incidents.len(), 1);
    let (incident, events) = &incidents[0];
    assert_eq!(&incident.id, incident_id);
    assert_eq!(
        incident.details_json["fingerprint"], "check:tunnel:not_connected",
        "the tunnel check's own incident, so the doctor's reports extend it"
    );
    assert_eq!(
        incident.severity,
        Severity::Warn,
        "the tunnel check is not required here"
    );
    assert_fixed_by(incident, events, &outcome);
    let attempted = &events[1].metadata_json;
    assert_eq!(attempted["action"], "tunnel_restart");
    assert_eq!(attempted["restartId"], outcome.id.as_str());
    assert_eq!(attempted["trigger"], "cli");
    assert_eq!(attempted["pid"], outcome.holder.pid);
    assert_eq!(events[2].metadata_json["edgeConnections"], 4);
}

async fn a_failed_restart_is_recorded_on_the_open_incident_and_escalates_it(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let scene = Scene::new(db, false).await;
    // A tunnel incident is open already (another component's); the restart goes on it.
    let store = api::store::IncidentStore::new(scene.db.connect().await, Default::default());
    let open = store
        .open(api::store::incidents::NewIncident {
            severity: Severity::Warn,
            category: entity::Category::Tunnel,
            summary: "the public hostname answers 530".into(),
            details: Default::default(),
            fingerprint: Some("someone:tunnel".into()),
            event_metadata: Default::default(),
        })
        .await
        .expect("open incident");
    let (code, answer) = scene
        .restart(&[("TUNNEL_RESTART_COMMAND", "sh -c 'echo no unit; exit 5'")])
        .await;
    let outcome = answer.expect("ran");
    assert_eq!(code, EXIT_FAILED);
    assert_eq!(outcome.result, RestartResult::CommandFailed);
    assert_eq!(outcome.command.exit_code, Some(5));
    assert_eq!(
        outcome.recorded,
        Recorded::Stored {
            incident_id: open.incident.id.clone(),
            opened: false
        }
    );
    let incidents = scene.tunnel_incidents().await;
    assert_eq!(incidents.len(), 1, "no second incident");
    let (incident, events) = &incidents[0];
    assert_eq!(
        kinds(events),
        [
            "DETECTED",
            "RECOVERY_ATTEMPTED",
            "RECOVERY_FAILED",
            "ESCALATED"
        ]
    );
    assert_eq!(
        incident.severity,
        Severity::Critical,
        "a failed restart needs a person"
    );
    assert!(incident.resolved_at.is_none(), "left open for its owner");
    assert_eq!(events[2].metadata_json["exitCode"], 5);
    assert!(
        events[2].message.contains("exited with status 5"),
        "{}",
        events[2].message
    );
}

async fn the_rate_limit_counts_the_shared_record_and_says_when_the_next_is_allowed(
    backend: Backend,
) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let scene = Scene::new(db, true).await;
    let hourly = [("TUNNEL_RESTARTS_PER_HOUR", "2")];
    for n in 1..=2 {
        let (code, answer) = scene.restart(&hourly).await;
        assert_eq!(code, EXIT_OK, "restart {n}: {answer:?}");
    }
    let (code, answer) = scene.restart(&hourly).await;
    assert_eq!(code, EXIT_REFUSED);
    let Err(RestartRefused::RateLimited { next_allowed, why }) = answer else {
        panic!("not rate-limited: {answer:?}");
    };
    assert!(why.contains("2 restarts in the last hour"), "{why}");
    let (_, status) = scene.status(&hourly).await;
    let first = status.recent.last().expect("two restarts").at;
    assert_eq!(next_allowed, first + chrono::Duration::hours(1));
    assert_eq!(status.next_allowed, Some(next_allowed));
    assert_eq!(status.recent.len(), 2);

    // Another host's process (its own lock directory and host record) counts the same restarts:
    // the record is the database's. The minimum interval holds too.
    let host_b = scene.host_dir("host-b").display().to_string();
    let spaced = [
        ("TUNNEL_RESTART_MIN_INTERVAL", "10m"),
        ("TUNNEL_RESTART_DIR", host_b.as_str()),
    ];
    let (code, answer) = scene.restart(&spaced).await;
    assert_eq!(code, EXIT_REFUSED, "{answer:?}");
    let Err(RestartRefused::RateLimited { next_allowed, why }) = answer else {
        panic!("not rate-limited: {answer:?}");
    };
    let last = status.recent[0].at;
    assert_eq!(next_allowed, last + chrono::Duration::minutes(10), "{why}");
    assert_eq!(scene.restarts_run(), 2, "a refused restart runs nothing");
}

/// The database is down: the restart still runs under this host's lock and rate limit, says its
/// record was spooled, and the service replays it onto the incident when it starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_database_down_a_restart_still_runs_and_its_record_is_spooled() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let scene = Scene::new(db, true).await;
    let down = testkit::refused_url().replace("http://", "postgres://postgres@") + "/gone";
    let offline = [
        ("DATABASE_URL", down.as_str()),
        ("DB_CONNECT_TIMEOUT_MS", "500"),
    ];
    let (code, answer) = scene.restart(&offline).await;
    let outcome = answer.expect("restarted without the database");
    assert_eq!(code, EXIT_OK);
    assert_eq!(outcome.recorded, Recorded::Spooled);
    assert!(
        matches!(outcome.cross_host_lock, CrossHost::Unavailable { .. }),
        "{:?}",
        outcome.cross_host_lock
    );
    let (code, answer) = scene
        .restart(&[
            offline[0],
            offline[1],
            ("TUNNEL_RESTART_MIN_INTERVAL", "10m"),
        ])
        .await;
    assert_eq!(
        code, EXIT_REFUSED,
        "this host's record keeps the limit: {answer:?}"
    );
    assert!(
        scene.tunnel_incidents().await.is_empty(),
        "nothing stored yet"
    );

    let env = scene.env_with(&[]);
    let app = TestApp::spawn_with(&scene.db, &env, &[]);
    let mut stored = Vec::new();
    for _ in 0..100 {
        stored = scene.tunnel_incidents().await;
        if stored.first().is_some_and(|(i, _)| i.resolved_at.is_some()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(app);
    assert_eq!(stored.len(), 1, "replayed as one incident");
    let (incident, events) = &stored[0];
    assert_fixed_by(incident, events, &outcome);
}

/// The incident was opened by this restart, which recorded itself on it and resolved it.
fn assert_fixed_by(
    incident: &entity::ops_incident::Model,
    events: &[entity::ops_incident_event::Model],
    outcome: &RestartOutcome,
) {
    assert_eq!(
        kinds(events),
        [
            "DETECTED",
            "RECOVERY_ATTEMPTED",
            "RECOVERY_SUCCESS",
            "RESOLVED"
        ]
    );
    assert_eq!(events[1].metadata_json["restartId"], outcome.id.as_str());
    assert!(
        incident.resolved_at.is_some(),
        "the restart fixed what it opened"
    );
}
