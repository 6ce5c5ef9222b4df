//! The database circuit breaker: closed → open after N consecutive failures or timeouts →
//! half-open probes with backoff → closed. While it is open, work that needs the database is
//! answered at once (reads 503, writes to the spool) instead of waiting for a pool timeout.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::watch;

/// The breaker's three states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// The database answers; work goes to it.
    Closed,
    /// The database failed N times in a row; nothing waits on it until a probe succeeds.
    Open,
    /// A probe is in flight to see whether the database is back.
    HalfOpen,
}

/// What the breaker shows readiness, `/health/db`, the bundle and `/health/status`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BreakerView {
    pub state: BreakerState,
    /// When the breaker entered its current state.
    pub since: String,
    pub consecutive_failures: u32,
    /// The last database error seen, masked (a code and meaning, never a value or a password).
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    /// When the database outage began (the first failure of the run that opened the breaker).
    pub outage_since: Option<String>,
}

/// Tuning of the breaker.
#[derive(Debug, Clone, Copy)]
pub struct BreakerPolicy {
    /// Consecutive failures that open it.
    pub failures: u32,
    /// The first wait before a half-open probe; doubled after each failed probe.
    pub min_backoff: Duration,
    /// The longest wait between probes.
    pub max_backoff: Duration,
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    since: DateTime<Utc>,
    consecutive: u32,
    first_failure_at: Option<DateTime<Utc>>,
    last_error: Option<(DateTime<Utc>, String)>,
    backoff: Duration,
    next_probe: Instant,
}

/// One breaker per process, around its database. Cheap to clone.
#[derive(Clone)]
pub struct Breaker {
    inner: Arc<Mutex<Inner>>,
    policy: BreakerPolicy,
    /// Sends every change of state, so the replay and the probe loop wake at once.
    changes: watch::Sender<BreakerState>,
}

/// A transition a call caused, for the caller to act on (open the outage incident, replay).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    None,
    /// Just opened; the outage began at this time.
    Opened(DateTime<Utc>),
    /// Just closed after an outage.
    Closed,
}

impl Breaker {
    pub fn new(policy: BreakerPolicy) -> Self {
        let (changes, _) = watch::channel(BreakerState::Closed);
        Self {
            inner: Arc::new(Mutex::new(Inner {
                state: BreakerState::Closed,
                since: Utc::now(),
                consecutive: 0,
                first_failure_at: None,
                last_error: None,
                backoff: policy.min_backoff,
                next_probe: Instant::now(),
            })),
            policy,
            changes,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn state(&self) -> BreakerState {
        self.lock().state
    }

    /// Whether work may go to the database now (closed). Open and half-open both say no: the
    /// one probe of a half-open breaker is the probe loop's.
    pub fn is_closed(&self) -> bool {
        self.state() == BreakerState::Closed
    }

    /// Subscribes to changes of state.
    pub fn subscribe(&self) -> watch::Receiver<BreakerState> {
        self.changes.subscribe()
    }

    /// How long a caller refused by an open breaker should wait before retrying.
    pub fn retry_after(&self) -> Duration {
        let inner = self.lock();
        inner
            .next_probe
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(1))
    }

    /// A call to the database succeeded.
    pub fn success(&self) -> Transition {
        let mut inner = self.lock();
        inner.consecutive = 0;
        inner.first_failure_at = None;
        inner.backoff = self.policy.min_backoff;
        if inner.state == BreakerState::Closed {
            return Transition::None;
        }
        inner.state = BreakerState::Closed;
        inner.since = Utc::now();
        drop(inner);
        tracing::info!("database circuit breaker closed: the database answers again");
        self.changes.send_replace(BreakerState::Closed);
        Transition::Closed
    }

    /// A call to the database failed for the database's sake (unreachable, timed out, locked,
    /// refusing writes); `error` is already masked.
    pub fn failure(&self, error: &str) -> Transition {
        self.failure_since(error, Utc::now())
    }

    /// [`Self::failure`] of an operation that began at `began`: the outage is dated from the
    /// start of its first failed operation, not from when a timeout gave up on it.
    pub fn failure_since(&self, error: &str, began: DateTime<Utc>) -> Transition {
        let now = Utc::now();
        let mut inner = self.lock();
        inner.consecutive = inner.consecutive.saturating_add(1);
        inner.last_error = Some((now, error.to_owned()));
        // The outage is dated from the earliest start among its failures, whichever is recorded
        // first (a write that timed out may be recorded after a probe that began later).
        let began = began.min(now);
        let first = inner.first_failure_at.map_or(began, |f| f.min(began));
        inner.first_failure_at = Some(first);
        match inner.state {
            BreakerState::Closed if inner.consecutive >= self.policy.failures => {
                inner.state = BreakerState::Open;
                inner.since = now;
                inner.backoff = self.policy.min_backoff;
                inner.next_probe = Instant::now() + inner.backoff;
                drop(inner);
                tracing::error!(error, "database circuit breaker opened");
                self.changes.send_replace(BreakerState::Open);
                Transition::Opened(first)
            }
            BreakerState::Closed | BreakerState::Open => Transition::None,
            BreakerState::HalfOpen => {
                inner.state = BreakerState::Open;
                inner.backoff = (inner.backoff * 2).min(self.policy.max_backoff);
                inner.next_probe = Instant::now() + inner.backoff;
                drop(inner);
                self.changes.send_replace(BreakerState::Open);
                Transition::None
            }
        }
    }

    /// For the probe loop: when the breaker is open and its backoff has passed, turns it
    /// half-open and says so (the caller probes); otherwise how long to wait.
    pub fn try_half_open(&self) -> Result<(), Duration> {
        let mut inner = self.lock();
        if inner.state != BreakerState::Open {
            return Err(self.policy.min_backoff);
        }
        let now = Instant::now();
        if now < inner.next_probe {
            return Err(inner.next_probe - now);
        }
        inner.state = BreakerState::HalfOpen;
        drop(inner);
        self.changes.send_replace(BreakerState::HalfOpen);
        Ok(())
    }

    /// For a recovery: forgets the backoff, so that an open breaker may probe at once.
    pub fn expedite(&self) {
        let mut inner = self.lock();
        inner.backoff = self.policy.min_backoff;
        inner.next_probe = Instant::now();
    }

    pub fn view(&self) -> BreakerView {
        let inner = self.lock();
        let ts = |t: &DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        BreakerView {
            state: inner.state,
            since: ts(&inner.since),
            consecutive_failures: inner.consecutive,
            last_error: inner.last_error.as_ref().map(|(_, e)| e.clone()),
            last_error_at: inner.last_error.as_ref().map(|(at, _)| ts(at)),
            outage_since: (inner.state != BreakerState::Closed)
                .then(|| inner.first_failure_at.as_ref().map(ts))
                .flatten(),
        }
    }

    /// Since when the breaker has been open (or half-open), if it is.
    pub fn open_since(&self) -> Option<DateTime<Utc>> {
        let inner = self.lock();
        (inner.state != BreakerState::Closed).then_some(inner.since)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(BreakerPolicy {
            failures: 3,
            min_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(50),
        })
    }

    #[test]
    fn opens_after_n_failures_in_a_row_only() {
        let b = breaker();
        assert_eq!(b.failure("refused"), Transition::None);
        assert_eq!(b.failure("refused"), Transition::None);
        b.success();
        assert_eq!(b.failure("refused"), Transition::None);
        assert_eq!(b.failure("refused"), Transition::None);
        assert!(b.is_closed());
        assert!(matches!(b.failure("timeout"), Transition::Opened(_)));
        assert_eq!(b.state(), BreakerState::Open);
        let view = b.view();
        assert_eq!(view.last_error.as_deref(), Some("timeout"));
        assert!(view.outage_since.is_some());
        // Still open: more failures change nothing.
        assert_eq!(b.failure("timeout"), Transition::None);
    }

    #[test]
    fn half_open_after_backoff_then_closes_or_reopens_with_longer_backoff() {
        let b = breaker();
        for _ in 0..3 {
            b.failure("refused");
        }
        let wait = b.try_half_open().expect_err("backoff not yet passed");
        assert!(wait <= Duration::from_millis(20));
        std::thread::sleep(Duration::from_millis(25));
        b.try_half_open().expect("half-open after the backoff");
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(!b.is_closed(), "half-open lets no ordinary work through");
        assert_eq!(b.failure("refused"), Transition::None);
        assert_eq!(b.state(), BreakerState::Open);
        let wait = b.try_half_open().expect_err("doubled backoff");
        assert!(wait > Duration::from_millis(20) && wait <= Duration::from_millis(40));
        std::thread::sleep(Duration::from_millis(45));
        b.try_half_open().expect("half-open again");
        assert_eq!(b.success(), Transition::Closed);
        assert!(b.is_closed());
        assert!(b.view().outage_since.is_none());
    }
}
