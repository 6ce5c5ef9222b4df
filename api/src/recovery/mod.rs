//! Recovery: what is done for the components failing now (probe the database afresh, restart
//! the tunnel through the restart coordinator, re-run the checks), under one rate limit for
//! people (`POST /health/recover`) and the background monitor alike; every attempt recorded on
//! the component's open incident (`RECOVERY_ATTEMPTED`, then `RECOVERY_SUCCESS` or
//! `RECOVERY_FAILED`) and in the journal `GET /health/recovery-stats` reads.

mod actions;
pub mod monitor;
pub mod routes;
pub mod stats;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use checks::{CheckResult, Status};
use serde::Serialize;
use utoipa::ToSchema;

pub use stats::{ActionKind, Attempt, Journal, Outcome, Stats, Trigger};

use crate::doctor::Doctor;
use crate::resilience::Resilience;
use crate::suite::LatestResults;
use crate::tunnel_restart::TunnelRestarter;

/// What a recovery found and did.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub trigger: Trigger,
    pub started_at: String,
    pub duration_ms: u64,
    /// The components whose checks failed when the recovery began.
    pub failing_before: Vec<String>,
    /// One attempt per failing component, in the order they were tried.
    pub attempts: Vec<Attempt>,
    /// Components that failed before and pass after.
    pub recovered: Vec<String>,
    /// Components that still fail.
    pub still_failing: Vec<String>,
    /// In words: what was done, or that nothing was failing.
    pub message: String,
}

/// Why a recovery did not start.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("a recovery started {ago_ms} ms ago; recoveries are limited to one per {limit_ms} ms")]
    RateLimited {
        retry_after: Duration,
        ago_ms: u64,
        limit_ms: u64,
    },
}

/// One per process: the rate limit, the journal and the handles the actions use.
pub struct Recovery {
    doctor: Arc<Doctor>,
    latest: Arc<LatestResults>,
    resilience: Arc<Resilience>,
    tunnel: Arc<TunnelRestarter>,
    metrics: crate::metrics::Metrics,
    min_interval: Duration,
    escalate_after: u32,
    last_started: Mutex<Option<Instant>>,
    /// Failed recoveries in a row, per component, for escalation.
    failed_in_a_row: Mutex<HashMap<String, u32>>,
    pub journal: Journal,
}

impl Recovery {
    pub fn new(
        doctor: Arc<Doctor>,
        latest: Arc<LatestResults>,
        resilience: Arc<Resilience>,
        tunnel: Arc<TunnelRestarter>,
        metrics: crate::metrics::Metrics,
        config: &crate::config::recovery::RecoveryConfig,
    ) -> Self {
        Self {
            doctor,
            latest,
            resilience,
            tunnel,
            metrics,
            min_interval: config.min_interval,
            escalate_after: config.escalate_after,
            last_started: Mutex::new(None),
            failed_in_a_row: Mutex::new(HashMap::new()),
            journal: Journal::default(),
        }
    }

    /// When the next recovery may start, while the rate limit holds one back.
    pub fn next_allowed_at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        let last = (*self.last_started.lock().unwrap_or_else(|e| e.into_inner()))?;
        let wait = self.min_interval.checked_sub(last.elapsed())?;
        Some(chrono::Utc::now() + chrono::Duration::from_std(wait).ok()?)
    }

    /// Takes the rate limit's one slot, or says how long to wait for it.
    fn take_slot(&self) -> Result<(), Refused> {
        let mut last = self.last_started.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(started) = *last {
            let ago = started.elapsed();
            if ago < self.min_interval {
                return Err(Refused::RateLimited {
                    retry_after: self.min_interval - ago,
                    ago_ms: ago.as_millis() as u64,
                    limit_ms: self.min_interval.as_millis() as u64,
                });
            }
        }
        *last = Some(Instant::now());
        Ok(())
    }

    /// Runs the checks, and the recovery actions for those failing (only those in `only`, when
    /// given); then the checks of the components acted on once more, to see what changed.
    pub async fn recover(
        &self,
        trigger: Trigger,
        only: Option<&BTreeSet<String>>,
    ) -> Result<Report, Refused> {
        self.take_slot()?;
        let started = Instant::now();
        let started_at = crate::kernel::timestamp(&chrono::Utc::now().naive_utc());
        let names: BTreeSet<String> = match only {
            Some(only) => only.clone(),
            None => self
                .doctor
                .registry()
                .names()
                .into_iter()
                .map(str::to_owned)
                .collect(),
        };
        let before = self.observe(&names).await;
        let failing: Vec<CheckResult> = before
            .into_iter()
            .filter(|r| r.status == Status::Fail)
            .collect();
        let mut attempts = Vec::new();
        for result in &failing {
            let attempt = self.attempt(trigger, result).await;
            self.after_attempt(&attempt).await;
            attempts.push(attempt);
        }
        let recovered: Vec<String> = attempts
            .iter()
            .filter(|a| a.outcome == Outcome::Succeeded)
            .map(|a| a.component.clone())
            .collect();
        let still_failing: Vec<String> = attempts
            .iter()
            .filter(|a| a.outcome != Outcome::Succeeded)
            .map(|a| a.component.clone())
            .collect();
        let message = if failing.is_empty() {
            "nothing is failing: no recovery action was needed".to_owned()
        } else {
            format!(
                "tried {} component(s): {} recovered, {} still failing",
                attempts.len(),
                recovered.len(),
                still_failing.len()
            )
        };
        tracing::info!(trigger = ?trigger, recovered = ?recovered, still_failing = ?still_failing, "recovery finished");
        Ok(Report {
            trigger,
            started_at,
            duration_ms: started.elapsed().as_millis() as u64,
            failing_before: failing.iter().map(|r| r.name.clone()).collect(),
            attempts,
            recovered,
            still_failing,
            message,
        })
    }

    /// Runs the named checks now and records them as observations; while the breaker is open,
    /// the database's result is the breaker's.
    async fn observe(&self, names: &BTreeSet<String>) -> Vec<CheckResult> {
        let run = self.doctor.registry().run(Some(names)).await;
        self.latest.record(&run.results);
        run.results
            .into_iter()
            .map(|result| match self.resilience.open_database_result() {
                Some(open) if result.name == checks::database::NAME => open,
                _ => result,
            })
            .collect()
    }

    /// Journals an attempt, counts failures in a row, and escalates the component's incident
    /// once its recovery has failed [`RecoveryConfig::escalate_after`] times in a row.
    ///
    /// [`RecoveryConfig::escalate_after`]: crate::config::recovery::RecoveryConfig::escalate_after
    async fn after_attempt(&self, attempt: &Attempt) {
        self.journal.push(attempt.clone());
        let streak = {
            let mut streaks = self
                .failed_in_a_row
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let streak = streaks.entry(attempt.component.clone()).or_default();
            *streak = match attempt.outcome {
                Outcome::Succeeded => 0,
                _ => streak.saturating_add(1),
            };
            *streak
        };
        if streak >= self.escalate_after {
            actions::escalate(self, attempt, streak).await;
        }
    }
}
