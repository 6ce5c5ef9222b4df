//! Running the suite: one run in flight at a time (concurrent callers share it), a minimum
//! interval between new runs, persistence, and the background monitor.

use std::sync::Arc;
use std::time::{Duration, Instant};

use checks::{Registry, SuiteRun};
use entity::ops_doctor_run as run_row;
use sea_orm::DbErr;
use serde::Serialize;
use tokio::sync::Mutex;

use super::incidents::{apply, IncidentAction};
use crate::decisions::Decision;
use crate::resilience::{outage, Entry, Resilience, Written};
use crate::store::{IncidentStore, RunStore};
use crate::suite::LatestResults;

/// Who asked for a run; stored with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Api,
    Monitor,
    /// The re-run of a recovery, to see what its actions changed.
    Recovery,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Api => "api",
            Trigger::Monitor => "monitor",
            Trigger::Recovery => "recovery",
        }
    }
}

/// A finished run, as returned by `POST /ops/doctor/run`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    /// The stored run's id; `None` when it could not be stored (database down).
    pub id: Option<String>,
    pub trigger: Trigger,
    #[serde(flatten)]
    pub run: SuiteRun,
    /// Each result's decision by the thresholds, in the order of the results: what incidents,
    /// readiness and the gate act on (the results themselves are the raw observations).
    pub decisions: Vec<Decision>,
    /// What the run did to incidents.
    pub incidents: Vec<IncidentAction>,
    /// Problems recording the run (never a secret; the causes are logged).
    pub warnings: Vec<String>,
    #[serde(skip)]
    finished: Instant,
}

/// Why a run was not started.
#[derive(Debug, thiserror::Error)]
pub enum DoctorError {
    /// The run's task ended abnormally (a bug); the cause is logged.
    #[error("the doctor run failed: {0}")]
    Failed(String),
    #[error("a run started {elapsed_ms} ms ago; runs are limited to one per {limit_ms} ms")]
    RateLimited {
        retry_after: Duration,
        elapsed_ms: u64,
        limit_ms: u64,
    },
}

pub struct Doctor {
    registry: Registry,
    latest: Arc<LatestResults>,
    store: IncidentStore,
    runs: RunStore,
    min_interval: Duration,
    escalate_after: u32,
    /// Held for the whole of a run; the last finished run, for callers who arrived during it.
    running: Arc<Mutex<Option<Arc<RunRecord>>>>,
    last_started: std::sync::Mutex<Option<Instant>>,
    /// Runs are stored through the spool; while the database is down, failing checks are
    /// attached to the outage incident instead of opening incidents of their own.
    resilience: Option<Arc<Resilience>>,
    /// Every finished run, for whoever follows them (recovery counts failures in a row).
    finished: tokio::sync::watch::Sender<Option<Arc<RunRecord>>>,
}

impl Doctor {
    pub fn new(
        registry: Registry,
        latest: Arc<LatestResults>,
        store: IncidentStore,
        runs: RunStore,
        min_interval: Duration,
        escalate_after: u32,
    ) -> Self {
        Self {
            registry,
            latest,
            store,
            runs,
            min_interval,
            escalate_after,
            running: Arc::new(Mutex::new(None)),
            last_started: std::sync::Mutex::new(None),
            resilience: None,
            finished: tokio::sync::watch::channel(None).0,
        }
    }

    /// Follows finished runs: the receiver sees each run as it finishes (a slow follower sees
    /// the latest).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Option<Arc<RunRecord>>> {
        self.finished.subscribe()
    }

    /// Stores runs and incident updates through the breaker and the spool.
    pub fn with_resilience(mut self, resilience: Arc<Resilience>) -> Self {
        self.resilience = Some(resilience);
        self
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Runs the suite, or joins the run already in flight. With `rate_limit`, a new run within
    /// the minimum interval of the last one is refused.
    pub async fn run(
        self: &Arc<Self>,
        trigger: Trigger,
        rate_limit: bool,
    ) -> Result<(Arc<RunRecord>, bool), DoctorError> {
        let arrived = Instant::now();
        let guard = match self.running.clone().try_lock_owned() {
            Ok(guard) => guard,
            Err(_) => {
                let guard = self.running.clone().lock_owned().await;
                if let Some(last) = guard.as_ref().filter(|r| r.finished >= arrived) {
                    return Ok((last.clone(), true));
                }
                guard
            }
        };
        if rate_limit {
            if let Some(started) = *self.last_started.lock().unwrap_or_else(|e| e.into_inner()) {
                let elapsed = started.elapsed();
                if elapsed < self.min_interval {
                    return Err(DoctorError::RateLimited {
                        retry_after: self.min_interval - elapsed,
                        elapsed_ms: elapsed.as_millis() as u64,
                        limit_ms: self.min_interval.as_millis() as u64,
                    });
                }
            }
        }
        *self.last_started.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        // The run is its own task holding the lock: a caller that disconnects (or times out)
        // neither cancels it half-way through its incident updates nor lets a second run start.
        let doctor = self.clone();
        let task = tokio::spawn(async move {
            let mut guard = guard;
            let record = Arc::new(doctor.execute(trigger).await);
            *guard = Some(record.clone());
            doctor.finished.send_replace(Some(record.clone()));
            record
        });
        match task.await {
            Ok(record) => Ok((record, false)),
            Err(err) => Err(DoctorError::Failed(err.to_string())),
        }
    }

    #[tracing::instrument(skip_all, fields(trigger = trigger.as_str()))]
    async fn execute(&self, trigger: Trigger) -> RunRecord {
        let run = self.registry.run(None).await;
        let decisions = self.latest.record(&run.results);
        let mut warnings = Vec::new();
        let id = self.store_run(trigger, &run, &mut warnings).await;
        let (incidents, failed) = match &self.resilience {
            Some(r) if !r.database_usable() => {
                attach_to_outage(r, &run, &mut warnings);
                (Vec::new(), 0)
            }
            _ => {
                apply(
                    &self.store,
                    &self.registry,
                    &run.results,
                    &decisions,
                    self.escalate_after,
                )
                .await
            }
        };
        if failed > 0 {
            warnings.push(format!(
                "{failed} incident update(s) could not be stored: the database is unavailable"
            ));
        }
        tracing::info!(status = ?run.status, duration_ms = run.duration_ms, "doctor run finished");
        RunRecord {
            id,
            trigger,
            run,
            decisions,
            incidents,
            warnings,
            finished: Instant::now(),
        }
    }

    /// Stores the run, through the spool when there is one; its id, or `None` when it could not
    /// be kept (the warning says why).
    async fn store_run(
        &self,
        trigger: Trigger,
        run: &SuiteRun,
        warnings: &mut Vec<String>,
    ) -> Option<String> {
        let Some(resilience) = &self.resilience else {
            return match self.runs.insert(trigger.as_str(), run).await {
                Ok(id) => Some(id),
                Err(err) => {
                    tracing::error!(error = %err, "storing the doctor run failed");
                    warnings.push(
                        "the run could not be stored: the database is unavailable".to_owned(),
                    );
                    None
                }
            };
        };
        let row = RunStore::row(trigger.as_str(), run, self.store.backend());
        let id = row.id.clone();
        match resilience.submit(Entry::Run { row: row.into() }).await {
            Ok(Written::Stored(_)) => Some(id),
            Ok(Written::Queued { .. }) => {
                warnings.push("the database is unavailable: the run is queued in the spool and stored when it returns".to_owned());
                Some(id)
            }
            Err(err) => {
                tracing::error!(error = %err, "storing the doctor run failed");
                warnings.push(format!("the run could not be stored: {err}"));
                None
            }
        }
    }

    /// The latest stored run (from any process sharing the database).
    pub async fn latest_run(&self) -> Result<Option<run_row::Model>, DbErr> {
        if self
            .resilience
            .as_ref()
            .is_some_and(|r| !r.database_usable())
        {
            return Err(DbErr::Custom(
                "the database circuit breaker is open".to_owned(),
            ));
        }
        self.runs.latest().await
    }

    /// The latest run this process finished, for when the database cannot be read.
    pub async fn latest_in_process(&self) -> Option<Arc<RunRecord>> {
        self.running.lock().await.clone()
    }

    /// Re-runs the suite every `interval` until the process stops.
    pub fn spawn_monitor(self: &Arc<Self>, interval: Duration) {
        if interval.is_zero() {
            tracing::info!("background doctor monitor is off (DOCTOR_INTERVAL_MS=0)");
            return;
        }
        let doctor = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let Some(doctor) = doctor.upgrade() else {
                    return;
                };
                if let Ok((record, _)) = doctor.run(Trigger::Monitor, false).await {
                    tracing::debug!(status = ?record.run.status, "monitor run finished");
                }
            }
        });
    }
}

/// While the database is down, each failing check other than the database is attached to the
/// outage incident (one root cause, one incident) instead of opening an incident of its own.
fn attach_to_outage(resilience: &Resilience, run: &SuiteRun, warnings: &mut Vec<String>) {
    let failing = run
        .results
        .iter()
        .filter(|r| r.status == checks::Status::Fail && r.name != checks::database::NAME);
    for result in failing {
        let reason = result.reason.map_or("unknown", |r| r.as_str());
        let entry = outage::attach(
            &format!("{} check failing ({reason})", result.name),
            serde_json::json!({ "check": result.name, "reason": reason, "message": result.message }),
        );
        if let Err(err) = resilience.queue(&entry) {
            tracing::error!(error = %err, "a failing check could not be attached to the outage incident");
            warnings.push(format!("{} failing: {err}", result.name));
        }
    }
}
