//! The tunnel restart coordinator: the one way anything restarts cloudflared — `opsdoctor tunnel
//! restart` (and so an external monitor script), recovery, a deploy — so that they cooperate
//! instead of duelling.
//!
//! A restart takes the restart lock ([`lock`]: a file lock on this host, on PostgreSQL an
//! advisory lock across hosts) without waiting, checks the central rate limit ([`limit`]) against
//! the shared record of restarts ([`history`]), records the attempt on the `TUNNEL` incident ([`record`]), runs
//! `TUNNEL_RESTART_COMMAND`, and holds the lock until the tunnel check sees edge connections again
//! or `TUNNEL_RESTART_WAIT` passes ([`edge`]), so two hosts never take every replica down at once.
//! A second restart meanwhile is refused at once, told who holds the lock.

pub mod cli;
pub mod edge;
pub mod history;
pub mod limit;
pub mod lock;
pub mod record;
pub mod types;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sea_orm::DatabaseConnection;
use serde_json::json;

pub use types::{
    CrossHost, Recorded, RestartHolder, RestartOutcome, RestartRecord, RestartRefused,
    RestartResult, RestartStatus,
};

use crate::command::{CommandSpec, Runner, Vars};
use crate::config::Config;
use crate::resilience::Resilience;
use crate::telemetry::scrub::Scrubber;
use history::HostHistory;
use limit::RateLimit;
use lock::RestartLock;
use record::Journal;

/// How long the coordinator waits for the database to answer a ping before it works without it.
const PING: Duration = Duration::from_secs(2);

/// The coordinator; one per process, shared through the state (`state.tunnel_restarts`).
pub struct TunnelRestarter {
    command: Option<CommandSpec>,
    wait: Duration,
    limit: RateLimit,
    dir: PathBuf,
    db: DatabaseConnection,
    resilience: Arc<Resilience>,
    registry: checks::Registry,
    runner: Runner,
}

impl TunnelRestarter {
    /// From the configuration, the database, the spool (through which restarts are recorded) and
    /// the check registry (whose `tunnel` check says whether the edge connections are back).
    pub fn new(
        config: &Config,
        db: DatabaseConnection,
        resilience: Arc<Resilience>,
        registry: checks::Registry,
    ) -> Self {
        let t = &config.tunnel;
        Self {
            command: t.command.clone(),
            wait: t.wait,
            limit: RateLimit {
                min_interval: t.min_interval,
                per_hour: t.per_hour,
            },
            dir: config.tunnel_restart_dir(),
            db,
            resilience,
            registry,
            runner: Runner::new(Arc::new(Scrubber::new(&config.secrets())), false),
        }
    }

    /// Restarts the tunnel with `TUNNEL_RESTART_COMMAND`, asked by `trigger` (`cli`, `recovery`,
    /// `deploy`, `monitor`), and waits for the edge connections; or says why it did not.
    ///
    /// Dropping the future kills the command and releases the lock: a caller that may go away
    /// (an HTTP request) should run it in a task of its own.
    pub async fn restart(&self, trigger: &str) -> Result<RestartOutcome, RestartRefused> {
        let Some(spec) = &self.command else {
            return Err(RestartRefused::NotConfigured);
        };
        self.restart_with(trigger, &self.runner, spec, &Vars::new(), self.wait)
            .await
    }

    /// [`Self::restart`] with another command and wait (a deploy plan's `tunnel.restart`, run by
    /// the deploy's runner so its output is streamed), under the same lock and rate limit.
    pub async fn restart_with(
        &self,
        trigger: &str,
        runner: &Runner,
        spec: &CommandSpec,
        vars: &Vars,
        wait: Duration,
    ) -> Result<RestartOutcome, RestartRefused> {
        let usable = self.database_usable().await;
        let lock = RestartLock::try_take(&self.dir, &self.db, usable, trigger).await?;
        let (past, _) = self.history(usable, Duration::from_secs(3600)).await;
        let times: Vec<_> = past.iter().map(|r| r.at).collect();
        if let Some((next_allowed, why)) = self.limit.next_allowed(&times, Utc::now()) {
            lock.release().await;
            return Err(RestartRefused::RateLimited { next_allowed, why });
        }
        let holder = lock.holder.clone();
        let mut restart = RestartRecord {
            id: crate::kernel::new_id(),
            at: holder.since,
            host: holder.host.clone(),
            pid: holder.pid,
            trigger: holder.trigger.clone(),
            result: None,
        };
        let host_history = HostHistory::new(&self.dir);
        if let Err(err) = host_history.put(&restart) {
            tracing::warn!(error = %err, "this host's record of tunnel restarts cannot be written");
        }
        let before = edge::look(&self.registry).await;
        let required = self.registry.is_required(checks::tunnel::NAME);
        // The attempt names the program; the command line (masked) is in the outcome.
        let shown = runner.mask(&spec.program());
        let journal = Journal::begin(
            self.resilience.clone(),
            usable,
            &restart,
            &before,
            required,
            &shown,
        )
        .await;
        tracing::info!(trigger = %restart.trigger, id = %restart.id, "restarting the tunnel");
        let command = runner.run("tunnel.restart", spec, vars).await;
        let (result, tunnel, waited) = if !command.ok() {
            (RestartResult::CommandFailed, before, Duration::ZERO)
        } else if !edge::watchable(&before) {
            (RestartResult::Unverified, before, Duration::ZERO)
        } else {
            let (tunnel, waited) = edge::wait_for(&self.registry, wait).await;
            let result = if edge::connected(&tunnel) {
                RestartResult::Connected
            } else {
                RestartResult::StillDown
            };
            (result, tunnel, waited)
        };
        let wait_ms = u64::try_from(waited.as_millis()).unwrap_or(u64::MAX);
        let edge_connections = edge::connections(&tunnel);
        let (message, metadata) = ending(result, &command, &tunnel, wait, wait_ms);
        let recorded = journal.finish(&restart, result, message, metadata).await;
        restart.result = Some(result);
        if let Err(err) = host_history.put(&restart) {
            tracing::warn!(error = %err, "this host's record of tunnel restarts cannot be written");
        }
        let cross_host_lock = lock.cross_host.clone();
        lock.release().await;
        tracing::info!(id = %restart.id, result = result.as_str(), wait_ms, "tunnel restart done");
        Ok(RestartOutcome {
            id: restart.id,
            holder,
            result,
            command,
            wait_ms,
            edge_connections,
            tunnel,
            cross_host_lock,
            recorded,
        })
    }

    /// The holder if any, the restarts of the last day, when the next is allowed, and the edge
    /// connections now.
    pub async fn status(&self) -> RestartStatus {
        let usable = self.database_usable().await;
        let holder = lock::current_holder(&self.dir, &self.db, usable).await;
        let (recent, shared) = self.history(usable, history::KEPT).await;
        let times: Vec<_> = recent.iter().map(|r| r.at).collect();
        let next_allowed = self.limit.next_allowed(&times, Utc::now()).map(|(t, _)| t);
        let tunnel = edge::look(&self.registry).await;
        RestartStatus {
            configured: self.command.is_some(),
            holder,
            recent,
            next_allowed,
            history: if shared { "shared" } else { "this_host" }.to_owned(),
            min_interval_s: self.limit.min_interval.as_secs(),
            per_hour: self.limit.per_hour,
            edge_connections: edge::connections(&tunnel),
            tunnel,
        }
    }

    /// Whether the database answers now: the breaker is closed and a ping returns in time.
    async fn database_usable(&self) -> bool {
        self.resilience.database_usable()
            && tokio::time::timeout(PING, self.db.ping())
                .await
                .is_ok_and(|pinged| pinged.is_ok())
    }

    /// The restarts of the last `span`, newest first: the shared record (every host's) joined
    /// with this host's; `false` when the database's could not be read.
    async fn history(&self, usable: bool, span: Duration) -> (Vec<RestartRecord>, bool) {
        let local = HostHistory::new(&self.dir).read();
        let since = Utc::now() - chrono::Duration::from_std(span).unwrap_or_default();
        let shared = if usable {
            let read = history::shared_history(&self.resilience, since);
            match tokio::time::timeout(self.resilience.op_timeout(), read).await {
                Ok(Ok(records)) => Some(records),
                Ok(Err(err)) => {
                    tracing::warn!(error = %err, "the shared record of tunnel restarts cannot be read");
                    None
                }
                Err(_) => None,
            }
        } else {
            None
        };
        let read_shared = shared.is_some();
        let local = local.into_iter().filter(|r| r.at >= since).collect();
        (
            history::merge(shared.unwrap_or_default(), local),
            read_shared,
        )
    }
}

/// The event that ends a restart on its incident: a line for people and the figures.
fn ending(
    result: RestartResult,
    command: &crate::command::CommandRun,
    tunnel: &checks::CheckResult,
    wait: Duration,
    wait_ms: u64,
) -> (String, serde_json::Map<String, serde_json::Value>) {
    let edge_connections = edge::connections(tunnel);
    let message = match result {
        RestartResult::Connected => format!(
            "tunnel restarted: {} edge connection(s) after {} ms",
            edge_connections.map_or("its".to_owned(), |n| n.to_string()),
            command.duration_ms + wait_ms
        ),
        RestartResult::StillDown => format!(
            "tunnel restarted, but no edge connection came back within {}: {}",
            humantime::format_duration(wait),
            tunnel.message
        ),
        RestartResult::CommandFailed => format!("the tunnel restart failed: {}", command.failure()),
        RestartResult::Unverified => "the tunnel restart command succeeded; no tunnel check is configured, so its edge connections were not verified".to_owned(),
    };
    let metadata = json!({
        "exitCode": command.exit_code,
        "timedOut": command.timed_out,
        "commandMs": command.duration_ms,
        "waitMs": wait_ms,
        "edgeConnections": edge_connections,
        "outputTail": command.output_tail.iter().rev().take(5).rev().collect::<Vec<_>>(),
    });
    (message, metadata.as_object().cloned().unwrap_or_default())
}
