//! Answering, and losing nothing, while the database is down: the circuit breaker around the
//! database ([`breaker`]), the durable spool of acknowledged writes ([`spool`]), what a write is
//! and how it is applied ([`entry`]), and the loops that probe the database and replay the spool
//! in order when it returns ([`replay`]).
//!
//! Every acknowledged write goes through [`Resilience::submit`]: to the database when the breaker
//! is closed and nothing waits in the spool (so writes stay in order), else to the spool, flushed
//! to disk before the answer. The database outage itself is a CRITICAL `DB` incident written
//! through the spool with the time the outage began, resolved once the spool has drained.

pub mod breaker;
pub mod entry;
pub mod outage;
mod replay;
pub mod routes;
pub mod spool;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sea_orm::DatabaseConnection;
use serde::Serialize;
use tokio::sync::Notify;

pub use breaker::{Breaker, BreakerPolicy, BreakerState, BreakerView};
pub use entry::{Applied, Entry, Stores, Target};
pub use outage::{outage_cause, OUTAGE_FINGERPRINT};
pub use spool::{Spool, SpoolError, SpoolView};

use crate::store::incidents::StoreError;

/// What became of a write. Made once per write and taken apart by its handler at once, so the
/// size of the stored variant costs nothing worth a box.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Written {
    /// Committed to the database.
    Stored(Applied),
    /// Kept in the spool, flushed to disk; replayed when the database returns.
    Queued { depth: usize },
}

/// Why a write was neither stored nor queued.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The database refused it for what it holds, or it conflicts (a 4xx).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The database is down and the spool is at its cap (507).
    #[error("the database is unavailable and the spool is full ({bytes} of {cap} bytes): the write was not accepted; retry once the database is back")]
    SpoolFull { bytes: u64, cap: u64 },
    /// The database is down and the spool cannot be written (503).
    #[error(
        "the database is unavailable and the spool cannot be written; the write was not accepted"
    )]
    SpoolBroken(#[source] std::io::Error),
}

impl From<SpoolError> for WriteError {
    fn from(err: SpoolError) -> Self {
        match err {
            SpoolError::Full { bytes, cap } => WriteError::SpoolFull { bytes, cap },
            SpoolError::Io(io) => WriteError::SpoolBroken(io),
        }
    }
}

/// Settings of the breaker and the spool.
#[derive(Debug, Clone)]
pub struct ResilienceSettings {
    pub breaker: BreakerPolicy,
    /// How long one database operation of a write (or a probe) may take before it counts as a
    /// failure and the write goes to the spool.
    pub op_timeout: Duration,
    /// How often the database is probed while the breaker is closed.
    pub probe_interval: Duration,
}

/// Replay counts since start, for readiness and the bundle.
#[derive(Debug, Default)]
struct Counts {
    replayed: AtomicU64,
    rejected: AtomicU64,
    queued: AtomicU64,
}

/// The breaker, the spool, and the stores writes are applied to. One per process.
pub struct Resilience {
    pub breaker: Breaker,
    pub spool: Spool,
    pub stores: Stores,
    db: DatabaseConnection,
    settings: ResilienceSettings,
    kick: Arc<Notify>,
    /// Set while an outage incident waits to be resolved once the spool has drained.
    outage_open: AtomicBool,
    /// While above zero, the outage incident stays open although the spool has drained (see
    /// [`Resilience::hold_resolution`]).
    resolution_holds: AtomicUsize,
    /// When each write now waiting on the database began, by a sequence number.
    in_flight: Mutex<BTreeMap<u64, chrono::DateTime<chrono::Utc>>>,
    counts: Counts,
}

/// A write waiting on the database, until dropped.
struct InFlight<'a> {
    writes: &'a Mutex<BTreeMap<u64, chrono::DateTime<chrono::Utc>>>,
    n: u64,
}

impl<'a> InFlight<'a> {
    fn start(
        writes: &'a Mutex<BTreeMap<u64, chrono::DateTime<chrono::Utc>>>,
        began: chrono::DateTime<chrono::Utc>,
    ) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        writes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(n, began);
        Self { writes, n }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.writes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.n);
    }
}

/// Keeps the outage incident open while it lives; dropping it lets the replay resolve it.
pub struct ResolutionHold(Arc<Resilience>);

impl Drop for ResolutionHold {
    fn drop(&mut self) {
        self.0.resolution_holds.fetch_sub(1, Ordering::SeqCst);
        self.0.kick.notify_one();
    }
}

/// What readiness, `/health/db` and the bundle show of the breaker and the spool.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResilienceView {
    pub breaker: BreakerView,
    pub spool: SpoolView,
    pub spool_dir: String,
    pub queued_total: u64,
    pub replayed_total: u64,
    pub rejected_total: u64,
}

impl Resilience {
    /// Builds it; [`Self::spawn_loops`] starts it.
    pub fn new(
        db: DatabaseConnection,
        stores: Stores,
        spool: Spool,
        settings: ResilienceSettings,
    ) -> Self {
        Self {
            breaker: Breaker::new(settings.breaker),
            spool,
            stores,
            db,
            settings,
            kick: Arc::new(Notify::new()),
            outage_open: AtomicBool::new(false),
            resolution_holds: AtomicUsize::new(0),
            in_flight: Mutex::new(BTreeMap::new()),
            counts: Counts::default(),
        }
    }

    /// Starts the probe and replay loops, which end when the last handle is dropped; a spool
    /// left by an earlier run is replayed as soon as the database answers.
    pub fn spawn_loops(this: &Arc<Self>) {
        tokio::spawn(replay::probe_loop(Arc::downgrade(this)));
        tokio::spawn(replay::replay_loop(Arc::downgrade(this)));
    }

    /// When the oldest write still waiting on the database began.
    fn oldest_in_flight(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .min()
            .copied()
    }

    /// Keeps the outage incident open until the hold is dropped, even once the database is back
    /// and the spool has drained: a recovery that ends the outage records its outcome on the
    /// incident before it is resolved.
    pub fn hold_resolution(this: &Arc<Self>) -> ResolutionHold {
        this.resolution_holds.fetch_add(1, Ordering::SeqCst);
        ResolutionHold(this.clone())
    }

    /// Probes the database now, for a recovery, and says whether it takes writes (else the
    /// masked cause). Closes the breaker and starts the replay when it does.
    pub async fn probe_now(&self) -> Result<(), String> {
        replay::probe_now(self).await
    }

    /// How long one database operation may take before it counts as a failure.
    pub fn op_timeout(&self) -> Duration {
        self.settings.op_timeout
    }

    /// Whether work that needs the database should go to it now.
    pub fn database_usable(&self) -> bool {
        self.breaker.is_closed()
    }

    /// Stores a write, or spools it when the database cannot take it (see the module docs).
    pub async fn submit(&self, entry: Entry) -> Result<Written, WriteError> {
        if self.breaker.is_closed() && self.spool.is_empty() {
            let began = chrono::Utc::now();
            let in_flight = InFlight::start(&self.in_flight, began);
            let live = tokio::time::timeout(
                self.settings.op_timeout,
                self.stores.apply(entry.clone(), false),
            )
            .await;
            drop(in_flight);
            match live {
                Ok(Ok(applied)) => {
                    self.breaker.success();
                    return Ok(Written::Stored(applied));
                }
                Ok(Err(err)) => match outage_cause(&err) {
                    Some(cause) => self.failed_since(&cause, began),
                    None => return Err(WriteError::Store(err)),
                },
                Err(_) => self.failed_since(&self.timeout_cause(), began),
            }
        }
        self.queue(&entry)
    }

    /// Spools a write without trying the database.
    pub fn queue(&self, entry: &Entry) -> Result<Written, WriteError> {
        let depth = self.spool.append(entry)?;
        self.counts.queued.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            kind = entry.kind(),
            depth,
            "the database cannot take a write now; it is spooled"
        );
        self.kick.notify_one();
        Ok(Written::Queued { depth })
    }

    /// Records a gate verdict: through the batching writer while the database is usable, else
    /// straight to the spool before the verdict is answered.
    pub async fn record_evaluation(&self, row: entity::ops_gate_evaluation::Model) {
        if self.breaker.is_closed() && self.spool.is_empty() {
            self.stores.evaluations.record(row.into()).await;
            return;
        }
        let entry = Entry::Evaluations {
            rows: vec![row.into()],
        };
        if let Err(err) = self.queue(&entry) {
            tracing::error!(error = %err, "a gate verdict could not be stored or spooled; it is lost");
        }
    }

    /// The sink for verdict batches the writer lost to the database: they go to the spool.
    pub fn evaluation_sink(weak: std::sync::Weak<Self>) -> crate::store::evaluations::LostSink {
        Arc::new(move |rows, err| {
            let Some(this) = weak.upgrade() else {
                tracing::error!(count = rows.len(), "gate verdicts lost at shutdown");
                return;
            };
            if let Some(cause) = outage::db_err_cause(err) {
                this.failed(&cause);
            }
            let entry = Entry::Evaluations {
                rows: rows.into_iter().map(Into::into).collect(),
            };
            if let Err(err) = this.queue(&entry) {
                tracing::error!(error = %err, "gate verdicts could not be spooled; they are lost");
            }
        })
    }

    fn timeout_cause(&self) -> String {
        format!(
            "a database operation took longer than {} ms",
            self.settings.op_timeout.as_millis()
        )
    }

    /// A failure for the database's sake: counts towards the breaker, and when it opens, the
    /// outage incident is spooled with the time the outage began.
    pub fn failed(&self, cause: &str) {
        self.failed_since(cause, chrono::Utc::now());
    }

    /// [`Self::failed`] for an operation that began at `began`.
    pub fn failed_since(&self, cause: &str, began: chrono::DateTime<chrono::Utc>) {
        if let breaker::Transition::Opened(since) = self.breaker.failure_since(cause, began) {
            // A write still unanswered began before the failures that opened the breaker: the
            // outage is dated from the oldest of them.
            let since = self
                .oldest_in_flight()
                .map_or(since, |oldest| oldest.min(since));
            self.outage_open.store(true, Ordering::SeqCst);
            let entry = outage::incident(since, cause);
            if let Err(err) = self.queue(&entry) {
                tracing::error!(error = %err, "the database outage incident could not be spooled");
            }
        }
    }

    /// The database check's result while the breaker is not closed: a failure naming the
    /// breaker, since when and the last error, which overrides any cached pass (readiness, the
    /// gate, `/health/db`). `None` while it is closed.
    pub fn open_database_result(&self) -> Option<checks::CheckResult> {
        if self.breaker.is_closed() {
            return None;
        }
        let view = self.breaker.view();
        let state = match view.state {
            BreakerState::HalfOpen => "half-open",
            _ => "open",
        };
        let reason = view
            .last_error
            .as_deref()
            .map_or(checks::Reason::Unreachable, outage::reason_of);
        let result = checks::CheckResult::fail(
            checks::database::NAME,
            reason,
            format!(
                "the database circuit breaker is {state} since {}: {}",
                view.outage_since.as_deref().unwrap_or(&view.since),
                view.last_error.as_deref().unwrap_or("the database does not answer")
            ),
            "restore the database; writes are queued in the spool meanwhile and replayed when it answers",
        );
        Some(result.observe("breaker", state))
    }

    /// Resolves once the breaker has stayed open for `after` without a successful probe, having
    /// spooled a CRITICAL incident saying the service restarts; never when `after` is zero.
    pub async fn persistent_outage(&self, after: Duration) {
        if after.is_zero() {
            return std::future::pending().await;
        }
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let Some(since) = self.breaker.open_since() else {
                continue;
            };
            let open_for = (chrono::Utc::now() - since).to_std().unwrap_or_default();
            if open_for >= after {
                let entry = outage::persistent(open_for, self.breaker.view().last_error);
                if let Err(err) = self.queue(&entry) {
                    tracing::error!(error = %err, "the persistent outage incident could not be spooled");
                }
                return;
            }
        }
    }

    pub fn view(&self) -> ResilienceView {
        ResilienceView {
            breaker: self.breaker.view(),
            spool: self.spool.view(),
            spool_dir: self.spool.dir().display().to_string(),
            queued_total: self.counts.queued.load(Ordering::Relaxed),
            replayed_total: self.counts.replayed.load(Ordering::Relaxed),
            rejected_total: self.counts.rejected.load(Ordering::Relaxed),
        }
    }
}
