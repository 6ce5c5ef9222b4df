//! Evaluating a gate: reuse results younger than the maximum age, run the rest, decide, record.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use checks::{CheckResult, Registry, Status};
use chrono::Utc;
use entity::ops_gate_evaluation as evaluation;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::decisions::Decided;
use crate::freshness::Freshness;
use crate::kernel::{new_id, now, timestamp};
use crate::resilience::Resilience;
use crate::store::{DeployStore, EvaluationStore, RunStore};

/// The answer to "may this release go live?".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every required check passes.
    Pass,
    /// Required checks pass, but an optional check fails or something warns.
    Partial,
    /// A required check fails.
    Fail,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Partial => "partial",
            Verdict::Fail => "fail",
        }
    }
}

/// Who asked for a verdict; stored with it as `source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GateSource {
    /// `GET /ops/gate` (deploy scripts, CI, Argo Rollouts, `opsdoctor gate`).
    Api,
    /// Flagger's webhook, `POST /ops/gate`.
    Flagger,
}

impl GateSource {
    pub fn as_str(self) -> &'static str {
        match self {
            GateSource::Api => "api",
            GateSource::Flagger => "flagger",
        }
    }
}

/// Where a verdict took a check's result from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResultSource {
    /// This process's latest result, young enough.
    Cached,
    /// The latest run stored by any process sharing the database, young enough.
    Stored,
    /// Run (or joined while running) for this verdict.
    Fresh,
}

/// What is asked.
#[derive(Debug, Clone)]
pub struct GateRequest {
    pub environment: String,
    pub release: String,
    /// Required checks; `None` means the configured `REQUIRED_CHECKS`.
    pub require: Option<BTreeSet<String>>,
    /// Results younger than this are reused; older ones are run again.
    pub max_age: Duration,
    pub source: GateSource,
    /// Extra facts to store with the evaluation (e.g. Flagger's payload).
    pub context: Option<Value>,
    /// Whether the verdict is stored; `false` for `HEAD`, which must have no side effect.
    pub record: bool,
}

/// One check as the gate saw it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GateCheck {
    pub name: String,
    pub required: bool,
    /// `pass`, `warn`, `fail` or `skipped`.
    #[schema(value_type = String)]
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub reason: Option<checks::Reason>,
    /// Whether waiting can fix this failure; `opsdoctor gate` stops waiting when it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transient: Option<bool>,
    pub message: String,
    pub latency_ms: u64,
    /// How old the result was when the verdict was given.
    pub age_ms: u64,
    /// The latest observation's own status, when the thresholds decide otherwise: a failure not
    /// yet confirmed (`status` is then `warn`), or a pass while recovering (`status` `fail`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub observed_status: Option<Status>,
    pub source: ResultSource,
}

/// A recorded verdict: what the gate answers, and what `opsdoctor gate` reads back.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GateVerdict {
    pub gate_id: String,
    pub verdict: Verdict,
    pub summary: String,
    pub environment: String,
    pub release: String,
    pub time: String,
    pub max_age_seconds: u64,
    pub required: Vec<String>,
    pub deploy_id: Option<String>,
    pub checks: Vec<GateCheck>,
}

pub struct Gate {
    fresh: Arc<Freshness>,
    runs: RunStore,
    deploys: DeployStore,
    evaluations: EvaluationStore,
    /// Flagger canaries held back by a confirm hook, and since when.
    pub(crate) holds: super::flagger::ConfirmHolds,
    /// An open breaker overrides any cached pass of the database, and verdicts go to the spool.
    resilience: Option<Arc<Resilience>>,
}

impl Gate {
    pub fn new(
        fresh: Arc<Freshness>,
        runs: RunStore,
        deploys: DeployStore,
        evaluations: EvaluationStore,
    ) -> Self {
        Self {
            fresh,
            runs,
            deploys,
            evaluations,
            holds: Default::default(),
            resilience: None,
        }
    }

    /// Answers from the breaker while it is open, and records verdicts through the spool.
    pub fn with_resilience(mut self, resilience: Arc<Resilience>) -> Self {
        self.resilience = Some(resilience);
        self
    }

    pub fn registry(&self) -> &Registry {
        self.fresh.registry()
    }

    /// A read the verdict can do without, bounded by the breaker's operation timeout so that a
    /// database going away does not hold the verdict for a pool timeout; a read that times out
    /// counts towards opening the breaker.
    async fn bounded<T>(
        &self,
        read: impl std::future::Future<Output = Result<T, sea_orm::DbErr>>,
    ) -> Result<T, sea_orm::DbErr> {
        let Some(r) = &self.resilience else {
            return read.await;
        };
        let began = chrono::Utc::now();
        let limit = r.op_timeout().min(std::time::Duration::from_secs(1));
        match tokio::time::timeout(limit, read).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => {
                if let Some(cause) = crate::resilience::outage::db_err_cause(&err) {
                    r.failed_since(&cause, began);
                }
                Err(err)
            }
            Err(_) => {
                r.failed_since(
                    "a database read took longer than the breaker's timeout",
                    began,
                );
                Err(sea_orm::DbErr::Custom("timed out".to_owned()))
            }
        }
    }

    /// Evaluates a verdict and queues it for the recorder (see [`Recorder`]). Only checks
    /// without a fresh-enough result are run, so a probe answered from stored results never
    /// waits on an external API.
    #[tracing::instrument(skip_all, fields(environment = %req.environment, release = %req.release, source = req.source.as_str()))]
    pub async fn evaluate(&self, req: GateRequest) -> GateVerdict {
        let required = req
            .require
            .clone()
            .unwrap_or_else(|| self.registry().policy().required.clone());
        let max_age_ms = u64::try_from(req.max_age.as_millis()).unwrap_or(u64::MAX);
        let mut found: Vec<(CheckResult, u64, ResultSource)> = Vec::new();
        let mut decided: std::collections::HashMap<String, Decided> = Default::default();
        let mut missing: BTreeSet<String> = BTreeSet::new();
        let open = self
            .resilience
            .as_ref()
            .and_then(|r| r.open_database_result());
        if let Some(db) = &open {
            found.push((db.clone(), 0, ResultSource::Fresh));
        }
        for name in self.registry().names() {
            if open.is_some() && name == checks::database::NAME {
                continue;
            }
            match self.fresh.latest().get(name) {
                Some(o) if o.age() <= req.max_age => {
                    let age_ms = u64::try_from(o.age().as_millis()).unwrap_or(u64::MAX);
                    decided.insert(o.result.name.clone(), o.decision.state);
                    found.push((without_observed(&o.result), age_ms, ResultSource::Cached))
                }
                _ => {
                    missing.insert(name.to_owned());
                }
            }
        }
        if !missing.is_empty() && open.is_none() {
            if let Ok(Some(row)) = self.bounded(self.runs.latest()).await {
                let age_ms = u64::try_from(
                    (Utc::now().naive_utc() - row.finished_at.at())
                        .num_milliseconds()
                        .max(0),
                )
                .unwrap_or(0);
                if age_ms <= max_age_ms {
                    let stored: Vec<CheckResult> =
                        serde_json::from_value(row.results_json).unwrap_or_default();
                    for r in stored {
                        if missing.remove(&r.name) {
                            found.push((r, age_ms, ResultSource::Stored));
                        }
                    }
                }
            }
        }
        if !missing.is_empty() {
            // Shared with readiness and every concurrent gate call: one run per stale check.
            let fresh = self.fresh.results(&missing, |_| req.max_age).await;
            decided.extend(
                fresh
                    .iter()
                    .map(|o| (o.result.name.clone(), o.decision.state)),
            );
            found.extend(fresh.iter().map(|o| {
                let age_ms = u64::try_from(o.age().as_millis()).unwrap_or(u64::MAX);
                (without_observed(&o.result), age_ms, ResultSource::Fresh)
            }));
        }
        let order = self.registry().names();
        found.sort_by_key(|(r, _, _)| order.iter().position(|n| *n == r.name));

        let checks: Vec<GateCheck> = found
            .into_iter()
            .filter(|(r, _, _)| r.status != Status::Skipped || required.contains(&r.name))
            .map(|(r, age_ms, source)| {
                // The thresholds decide; the latest observation is shown beside them.
                let observed_status = r.status;
                let r = match decided.get(&r.name) {
                    Some(Decided::Passing) if r.status == Status::Fail => CheckResult {
                        message: format!("not failing by the thresholds yet: {}", r.message),
                        ..r.with_status(Status::Warn)
                    },
                    Some(Decided::Failing) if matches!(r.status, Status::Pass | Status::Warn) => {
                        CheckResult {
                            message: format!(
                                "recovering, not yet by the thresholds: {}",
                                r.message
                            ),
                            ..r.with_status(Status::Fail)
                        }
                    }
                    _ => r,
                };
                // Required here but not configured: the registry's own required list may differ.
                let r = if r.status == Status::Skipped {
                    let hint = r
                        .hint
                        .clone()
                        .unwrap_or_else(|| format!("configure the {} check", r.name));
                    CheckResult::fail(
                        &r.name,
                        checks::Reason::NotConfigured,
                        format!("{} is required but not configured", r.name),
                        hint,
                    )
                } else {
                    r
                };
                let observed_status = (observed_status != r.status
                    && observed_status != Status::Skipped)
                    .then_some(observed_status);
                GateCheck {
                    observed_status,
                    required: required.contains(&r.name),
                    // Recovering (passing again, not yet by the thresholds): waiting fixes it.
                    transient: r
                        .reason
                        .filter(|_| r.status != Status::Pass)
                        .map(|x| x.is_transient())
                        .or(observed_status.map(|_| true)),
                    name: r.name,
                    status: r.status,
                    reason: r.reason,
                    message: r.message,
                    latency_ms: r.latency_ms,
                    age_ms,
                    source,
                }
            })
            .collect();
        // A required check that is not in the registry's results at all cannot pass.
        let (verdict, summary) = decide(&checks, &required);

        let at = now();
        let running = match open {
            Some(_) => Ok(None),
            None => {
                self.bounded(self.deploys.running(&req.environment, &req.release))
                    .await
            }
        };
        let deploy_id = match running {
            Ok(id) => id,
            Err(err) => {
                // A verdict is still a verdict; only its link to a deploy is missing.
                tracing::warn!(error = %err, "looking up the running deploy failed");
                None
            }
        };
        let verdict = GateVerdict {
            gate_id: new_id(),
            verdict,
            summary,
            environment: req.environment,
            release: req.release,
            time: timestamp(&at),
            max_age_seconds: req.max_age.as_secs(),
            required: required.into_iter().collect(),
            deploy_id,
            checks,
        };
        let mut stored = json!({ "required": verdict.required, "maxAgeSeconds": verdict.max_age_seconds, "checks": verdict.checks });
        if let Some(context) = req.context {
            stored["context"] = context;
        }
        let row = evaluation::Model {
            id: verdict.gate_id.clone(),
            created_at: self.evaluations.stamp(at),
            environment: verdict.environment.clone(),
            release: verdict.release.clone(),
            verdict: verdict.verdict.as_str().to_owned(),
            summary: verdict.summary.clone(),
            source: req.source.as_str().to_owned(),
            checks_json: stored,
            deploy_id: verdict.deploy_id.clone(),
        };
        if req.record {
            match &self.resilience {
                Some(r) => r.record_evaluation(row).await,
                None => self.evaluations.record(row.into()).await,
            }
        }
        tracing::info!(verdict = verdict.verdict.as_str(), gate_id = %verdict.gate_id, "gate evaluated");
        verdict
    }
}

/// A copy of a result without its observed values, which a verdict does not show.
fn without_observed(r: &CheckResult) -> CheckResult {
    CheckResult {
        name: r.name.clone(),
        status: r.status,
        latency_ms: r.latency_ms,
        reason: r.reason,
        message: r.message.clone(),
        hint: r.hint.clone(),
        observed: serde_json::Map::new(),
    }
}

/// The verdict and a one-line summary, e.g. `fail: tunnel=not_routing (required)`.
fn decide(checks: &[GateCheck], required: &BTreeSet<String>) -> (Verdict, String) {
    let label = |c: &GateCheck| {
        let reason = c.reason.map(|r| r.as_str().to_owned());
        format!(
            "{}={}",
            c.name,
            reason.unwrap_or_else(|| c.status.as_str().to_owned())
        )
    };
    let missing: Vec<&String> = required
        .iter()
        .filter(|r| !checks.iter().any(|c| &c.name == *r))
        .collect();
    let failing: Vec<String> = checks
        .iter()
        .filter(|c| c.required && c.status == Status::Fail)
        .map(label)
        .collect();
    if !failing.is_empty() || !missing.is_empty() {
        let mut parts = failing;
        parts.extend(missing.iter().map(|m| format!("{m}=unknown_check")));
        return (
            Verdict::Fail,
            format!("fail: {} (required)", parts.join(" ")),
        );
    }
    let degraded: Vec<String> = checks
        .iter()
        .filter(|c| matches!(c.status, Status::Warn) || (!c.required && c.status == Status::Fail))
        .map(label)
        .collect();
    if !degraded.is_empty() {
        return (
            Verdict::Partial,
            format!("partial: required checks pass; {}", degraded.join(" ")),
        );
    }
    let n = checks.iter().filter(|c| c.required).count();
    (Verdict::Pass, format!("pass: {n} required check(s) pass"))
}
