//! `opsdoctor tunnel restart` and `status` as real child processes: two restarts racing (one
//! runs, the other is told who holds the lock), on PostgreSQL two "hosts" racing through the
//! advisory lock, the rate limit, the wait for edge connections (cloudflared's stand-in is
//! switched back to connected when the restart command has run) and its deadline, and every
//! restart on the `TUNNEL` incident, through the spool when the database is down.

mod race;
mod record;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use api::tunnel_restart::{RestartOutcome, RestartRefused, RestartStatus};
use entity::{ops_incident as incident, ops_incident_event as event, Category};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use tempfile::TempDir;
use testkit::cloudflared::MetricsMode;
use testkit::Fake;

use crate::helpers::{finish, opsdoctor, run_cli, TestDb, ADMIN_TOKEN};

/// Exit statuses `opsdoctor tunnel restart --help` documents.
const EXIT_OK: i32 = 0;
const EXIT_FAILED: i32 = 1;
const EXIT_REFUSED: i32 = 3;

/// A database, cloudflared's stand-in, and a restart command that sleeps `RESTART_SLEEP` seconds,
/// prints the admin token (which must come out masked) and appends a line to `restarts.log`.
pub struct Scene {
    pub db: TestDb,
    pub cloudflared: Fake<MetricsMode>,
    pub dir: TempDir,
    pub env: Vec<(String, String)>,
}

impl Scene {
    pub async fn new(db: TestDb, connected: bool) -> Self {
        let mode = if connected {
            MetricsMode::Ready { connections: 4 }
        } else {
            MetricsMode::NoConnections
        };
        let cloudflared = testkit::cloudflared::start(mode).await;
        let dir = tempfile::tempdir().expect("temp dir");
        let script = dir.path().join("restart-cloudflared");
        let log = dir.path().join("restarts.log");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nsleep \"${{RESTART_SLEEP:-0}}\"\necho \"restarting with $ADMIN_TOKEN\"\necho \"$$\" >> '{}'\n",
                log.display()
            ),
        )
        .expect("script");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let env = [
            ("DATABASE_URL", db.url.as_str()),
            ("ADMIN_TOKEN", ADMIN_TOKEN),
            ("CLOUDFLARED_METRICS_URL", &cloudflared.base()),
            ("CHECK_TIMEOUT_MS", "2000"),
            ("TUNNEL_RESTART_COMMAND", &script.display().to_string()),
            ("TUNNEL_RESTART_WAIT", "20s"),
            ("TUNNEL_RESTART_MIN_INTERVAL", "0s"),
            ("TUNNEL_RESTARTS_PER_HOUR", "10"),
            (
                "TUNNEL_RESTART_DIR",
                &dir.path().join("host-a").display().to_string(),
            ),
            ("SPOOL_DIR", &dir.path().join("spool").display().to_string()),
            ("RESTART_SLEEP", "0"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .to_vec();
        let scene = Self {
            db,
            cloudflared,
            dir,
            env,
        };
        let env = scene.env_with(&[]);
        let (status, _, err) = run_cli(Some(&scene.db), &env, &["migrate", "up"]);
        assert!(status.success(), "migrate up: {err}");
        scene
    }

    /// The scene's environment with `extra` settings on top.
    pub fn env_with<'a>(&'a self, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut env: Vec<(&str, &str)> = self
            .env
            .iter()
            .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        env.extend_from_slice(extra);
        env
    }

    pub fn command(&self, args: &[&str], extra: &[(&str, &str)]) -> tokio::process::Command {
        let mut env = self.env_with(extra);
        env.push(("DOCTOR_INTERVAL_MS", "0"));
        opsdoctor(self.dir.path(), env, args)
    }

    /// Runs `opsdoctor <args>` to the end: (exit code, stdout, stderr).
    pub async fn run(&self, args: &[&str], extra: &[(&str, &str)]) -> (i32, String, String) {
        finish(self.command(args, extra), Duration::from_secs(90)).await
    }

    pub async fn restart(
        &self,
        extra: &[(&str, &str)],
    ) -> (i32, Result<RestartOutcome, RestartRefused>) {
        let (code, out, err) = self.run(&["tunnel", "restart", "--json"], extra).await;
        assert!(
            !out.contains(ADMIN_TOKEN) && !err.contains(ADMIN_TOKEN),
            "a secret in the output"
        );
        let answer = serde_json::from_str::<RestartOutcome>(&out)
            .map(Ok)
            .or_else(|_| serde_json::from_str::<RestartRefused>(&out).map(Err))
            .unwrap_or_else(|e| panic!("not a restart's JSON ({e}): {out}\nstderr: {err}"));
        (code, answer)
    }

    pub async fn status(&self, extra: &[(&str, &str)]) -> (i32, RestartStatus) {
        let (code, out, err) = self.run(&["tunnel", "status", "--json"], extra).await;
        let status = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("not a status ({e}): {out}\nstderr: {err}"));
        (code, status)
    }

    /// How many times the restart command ran.
    pub fn restarts_run(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("restarts.log"))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }

    pub fn host_dir(&self, host: &str) -> PathBuf {
        self.dir.path().join(host)
    }

    /// Plays cloudflared coming back: once the restart command has run, the stand-in reports
    /// edge connections again. Gives whether it ran within `within`.
    pub async fn reconnect_after_restart(&self, within: Duration) -> bool {
        let started = Instant::now();
        while started.elapsed() < within {
            if self.restarts_run() > 0 {
                self.cloudflared.set(MetricsMode::Ready { connections: 4 });
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// The holder written in a host's lock file, once a restart holds it.
    pub async fn wait_for_holder(&self, host: &str) {
        let path = self.host_dir(host).join("tunnel-restart.lock");
        let started = Instant::now();
        while !std::fs::read_to_string(&path)
            .unwrap_or_default()
            .contains("\"pid\"")
        {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no restart took the lock"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The `TUNNEL` incidents with their events, oldest first.
    pub async fn tunnel_incidents(&self) -> Vec<(incident::Model, Vec<event::Model>)> {
        let db = self.db.connect().await;
        let incidents = incident::Entity::find()
            .filter(incident::Column::Category.eq(Category::Tunnel))
            .order_by_asc(incident::Column::CreatedAt)
            .all(&db)
            .await
            .expect("incidents");
        let mut out = Vec::new();
        for i in incidents {
            let events = event::Entity::find()
                .filter(event::Column::IncidentId.eq(i.id.clone()))
                .order_by_asc(event::Column::CreatedAt)
                .order_by_asc(event::Column::Id)
                .all(&db)
                .await
                .expect("events");
            out.push((i, events));
        }
        db.close().await.ok();
        out
    }
}

/// The event types of a timeline, in order.
pub fn kinds(events: &[event::Model]) -> Vec<&'static str> {
    events
        .iter()
        .map(|e| match e.event_type {
            entity::EventType::Detected => "DETECTED",
            entity::EventType::RecoveryAttempted => "RECOVERY_ATTEMPTED",
            entity::EventType::RecoverySuccess => "RECOVERY_SUCCESS",
            entity::EventType::RecoveryFailed => "RECOVERY_FAILED",
            entity::EventType::Escalated => "ESCALATED",
            entity::EventType::Resolved => "RESOLVED",
        })
        .collect()
}
