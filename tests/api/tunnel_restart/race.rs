//! Two restarts racing: on one host (the file lock), on PostgreSQL from two "hosts" (separate
//! lock directories, so only the advisory lock stands between them); the wait for edge
//! connections and its deadline; what is refused before anything runs.

use std::time::{Duration, Instant};

use api::tunnel_restart::{CrossHost, RestartRefused, RestartResult};

use super::{Scene, EXIT_FAILED, EXIT_OK, EXIT_REFUSED};
use crate::helpers::{Backend, TestDb, ADMIN_TOKEN};
use crate::on_both_backends;

on_both_backends!(
    two_restarts_race_one_runs_and_the_other_is_told_who_holds_the_lock,
    without_edge_connections_by_the_deadline_the_restart_fails_and_releases_the_lock,
    an_unconfigured_restart_is_refused_before_anything_runs,
);

async fn two_restarts_race_one_runs_and_the_other_is_told_who_holds_the_lock(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let scene = Scene::new(db, false).await;
    let slow = [("RESTART_SLEEP", "2")];
    let first = scene
        .command(&["tunnel", "restart", "--json"], &slow)
        .spawn()
        .expect("first restart");
    let first_pid = first.id().expect("pid");
    scene.wait_for_holder("host-a").await;

    let (code, status) = scene.status(&[]).await;
    assert_eq!(code, EXIT_FAILED, "no edge connection yet");
    let holder = status.holder.expect("status names the restart running");
    assert_eq!((holder.pid, holder.trigger.as_str()), (first_pid, "cli"));
    assert_eq!(status.edge_connections, Some(0));

    let started = Instant::now();
    let (code, answer) = scene
        .restart(&[("RESTART_SLEEP", "0"), ("TUNNEL_RESTART_COMMAND", "false")])
        .await;
    assert_eq!(code, EXIT_REFUSED);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "refused at once, never waited"
    );
    match answer {
        Err(RestartRefused::Held { holder: Some(h) }) => {
            assert_eq!(h.pid, first_pid, "names the holder's pid");
            assert_eq!(h.host, api::locks::this_host(), "and its host");
            assert_eq!(h.trigger, "cli");
        }
        other => panic!("not refused with the holder: {other:?}"),
    }

    let (reconnected, out) = tokio::join!(
        scene.reconnect_after_restart(Duration::from_secs(30)),
        first.wait_with_output()
    );
    assert!(reconnected, "the restart command ran");
    let out = out.expect("first restart");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(EXIT_OK),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !stdout.contains(ADMIN_TOKEN),
        "the command's output is masked"
    );
    let outcome: api::tunnel_restart::RestartOutcome =
        serde_json::from_str(&stdout).expect("outcome");
    assert_eq!(outcome.result, RestartResult::Connected);
    assert_eq!(outcome.edge_connections, Some(4));
    assert_eq!(outcome.command.exit_code, Some(0));
    assert!(
        outcome.command.duration_ms >= 2_000,
        "the slow command ran to its end"
    );
    assert!(outcome
        .command
        .output_tail
        .iter()
        .any(|l| l.contains("restarting with")));
    assert_eq!(scene.restarts_run(), 1, "exactly one restart ran");

    let (code, status) = scene.status(&[]).await;
    assert_eq!(code, EXIT_OK, "edge connections now");
    assert_eq!(status.holder, None, "released");
    assert_eq!(status.recent.len(), 1, "{:?}", status.recent);
    assert_eq!(status.recent[0].id, outcome.id);
    assert_eq!(status.recent[0].result, Some(RestartResult::Connected));
    assert_eq!(status.history, "shared");
}

/// PostgreSQL: two hosts (each its own lock directory) race; the advisory lock refuses the
/// second, which is told the holder from the database (host, pid, trigger, address).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_two_hosts_race_through_the_advisory_lock() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let scene = Scene::new(db, false).await;
    let host_b = scene.host_dir("host-b").display().to_string();
    let other_host = [("TUNNEL_RESTART_DIR", host_b.as_str())];
    let first = scene
        .command(
            &["tunnel", "restart", "--json", "--trigger", "recovery"],
            &[("RESTART_SLEEP", "3")],
        )
        .spawn()
        .expect("first restart");
    let first_pid = first.id().expect("pid");
    scene.wait_for_holder("host-a").await;

    let (_, status) = scene.status(&other_host).await;
    let seen = status
        .holder
        .expect("the other host sees the holder through the database");
    assert_eq!((seen.pid, seen.trigger.as_str()), (first_pid, "recovery"));
    let elsewhere = scene.db.sibling().await;
    let another_database = [other_host[0], ("DATABASE_URL", elsewhere.url.as_str())];
    let (_, status) = scene.status(&another_database).await;
    assert_eq!(
        status.holder, None,
        "advisory locks are per database: another database's restart is not this one's"
    );

    let (code, answer) = scene.restart(&other_host).await;
    assert_eq!(code, EXIT_REFUSED);
    match answer {
        Err(RestartRefused::Held { holder: Some(h) }) => {
            assert_eq!((h.pid, h.trigger.as_str()), (first_pid, "recovery"));
            assert_eq!(h.host, api::locks::this_host());
            assert!(h.client_addr.is_some(), "seen from the database: {h:?}");
        }
        other => panic!("not refused with the holder: {other:?}"),
    }
    let (reconnected, out) = tokio::join!(
        scene.reconnect_after_restart(Duration::from_secs(30)),
        first.wait_with_output()
    );
    assert!(reconnected);
    let out = out.expect("first restart");
    let outcome: api::tunnel_restart::RestartOutcome =
        serde_json::from_slice(&out.stdout).expect("outcome");
    assert_eq!(outcome.cross_host_lock, CrossHost::Held);
    assert_eq!(scene.restarts_run(), 1, "exactly one restart ran");
    // Once released, the other host may restart (the rate limit allows it here).
    let (code, answer) = scene.restart(&other_host).await;
    assert_eq!(code, EXIT_OK, "{answer:?}");
    assert_eq!(scene.restarts_run(), 2);
}

async fn without_edge_connections_by_the_deadline_the_restart_fails_and_releases_the_lock(
    backend: Backend,
) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let scene = Scene::new(db, false).await;
    let started = Instant::now();
    let (code, answer) = scene.restart(&[("TUNNEL_RESTART_WAIT", "2s")]).await;
    let outcome = answer.expect("restarted");
    assert_eq!(code, EXIT_FAILED);
    assert_eq!(outcome.result, RestartResult::StillDown);
    assert!(
        outcome.wait_ms >= 2_000,
        "waited to the deadline: {}",
        outcome.wait_ms
    );
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert_eq!(outcome.edge_connections, Some(0));
    let (_, status) = scene.status(&[]).await;
    assert_eq!(
        status.holder, None,
        "the lock is released after the deadline"
    );
    assert_eq!(status.recent[0].result, Some(RestartResult::StillDown));
}

async fn an_unconfigured_restart_is_refused_before_anything_runs(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let scene = Scene::new(db, true).await;
    let (code, answer) = scene.restart(&[("TUNNEL_RESTART_COMMAND", "")]).await;
    assert_eq!(code, EXIT_REFUSED);
    assert!(
        matches!(answer, Err(RestartRefused::NotConfigured)),
        "{answer:?}"
    );
    let (code, out, err) = scene
        .run(&["tunnel", "restart"], &[("TUNNEL_RESTART_COMMAND", "")])
        .await;
    assert_eq!(code, EXIT_REFUSED);
    assert!(
        out.is_empty() && err.contains("TUNNEL_RESTART_COMMAND"),
        "{err}"
    );
    let (code, _, err) = scene
        .run(
            &["tunnel", "restart"],
            &[("TUNNEL_RESTARTS_PER_HOUR", "none")],
        )
        .await;
    assert_eq!(code, EXIT_REFUSED, "bad configuration: could not start");
    assert!(err.contains("TUNNEL_RESTARTS_PER_HOUR"), "{err}");
    assert_eq!(scene.restarts_run(), 0);
    assert!(
        scene.tunnel_incidents().await.is_empty(),
        "nothing recorded"
    );
}
