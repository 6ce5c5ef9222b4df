//! Evaluating a gate: reuse results younger than the maximum age, run the rest, decide, record.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use checks::write_health::WriteHealth;
use checks::{CheckResult, Registry, Status};
use chrono::Utc;
use entity::{ops_deploy as deploy, ops_gate_evaluation as evaluation};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, DatabaseConnection, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use serde::Serialize;
use serde_json::{json, Value};

use super::recorder::Recorder;
use crate::doctor::Doctor;
use crate::incidents::cursor::Cursor;
use crate::incidents::store::{before_cond, new_id, now, paginate, Page};
use crate::suite::LatestResults;

/// The answer to "may this release go live?".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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

/// What is asked.
#[derive(Debug, Clone)]
pub struct GateRequest {
    pub environment: String,
    pub release: String,
    /// Required checks; `None` means the configured `REQUIRED_CHECKS`.
    pub require: Option<BTreeSet<String>>,
    /// Results younger than this are reused; older ones are run again.
    pub max_age: Duration,
    /// `api`, `flagger` or `cli`.
    pub source: &'static str,
    /// Extra facts to store with the evaluation (e.g. Flagger's payload).
    pub context: Option<Value>,
    /// Whether the verdict is stored; `false` for `HEAD`, which must have no side effect.
    pub record: bool,
}

/// One check as the gate saw it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GateCheck {
    pub name: String,
    pub required: bool,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<checks::Reason>,
    /// Whether waiting can fix this failure; `opsdoctor gate` stops waiting when it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transient: Option<bool>,
    pub message: String,
    pub latency_ms: u64,
    /// How old the result was when the verdict was given.
    pub age_ms: u64,
    /// `cached` (this process), `stored` (the latest stored run) or `fresh` (run for this gate).
    pub source: &'static str,
}

/// A recorded verdict.
#[derive(Debug, Clone, Serialize)]
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
    registry: Registry,
    latest: Arc<LatestResults>,
    doctor: Arc<Doctor>,
    db: DatabaseConnection,
    recorder: Recorder,
    /// `(environment, release)` → running deploy, for [`DEPLOY_CACHE_TTL`]: probe-style callers
    /// ask many times a second, and a deploy starts or ends rarely.
    deploys: std::sync::Mutex<DeployCache>,
}

/// Running-deploy lookups by `(environment, release)`, with when they were made.
type DeployCache = HashMap<(String, String), (Instant, Option<String>)>;

/// How long a running-deploy lookup is reused (deploys started or finished here clear it).
const DEPLOY_CACHE_TTL: Duration = Duration::from_secs(1);

impl Gate {
    pub fn new(
        registry: Registry,
        latest: Arc<LatestResults>,
        doctor: Arc<Doctor>,
        db: DatabaseConnection,
        writes: WriteHealth,
    ) -> Self {
        let recorder = Recorder::spawn(db.clone(), writes);
        Self {
            registry,
            latest,
            doctor,
            db,
            recorder,
            deploys: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The writer that stores evaluations; readers of evaluations flush it first.
    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Evaluates a verdict and queues it for the recorder (see [`Recorder`]). Only checks
    /// without a fresh-enough result are run, so a probe answered from stored results never
    /// waits on an external API.
    #[tracing::instrument(skip_all, fields(environment = %req.environment, release = %req.release, source = req.source))]
    pub async fn evaluate(&self, req: GateRequest) -> Result<GateVerdict, DbErr> {
        let required = req
            .require
            .clone()
            .unwrap_or_else(|| self.registry.policy().required.clone());
        let max_age_ms = u64::try_from(req.max_age.as_millis()).unwrap_or(u64::MAX);
        let mut found: Vec<(CheckResult, u64, &'static str)> = Vec::new();
        let mut missing: BTreeSet<String> = BTreeSet::new();
        for name in self.registry.names() {
            match self.latest.get(name) {
                Some(o) if o.age() <= req.max_age => {
                    let age_ms = u64::try_from(o.age().as_millis()).unwrap_or(u64::MAX);
                    found.push((without_observed(&o.result), age_ms, "cached"))
                }
                _ => {
                    missing.insert(name.to_owned());
                }
            }
        }
        if !missing.is_empty() {
            if let Ok(Some(row)) = self.doctor.latest_run().await {
                let age_ms = u64::try_from(
                    (Utc::now().naive_utc() - row.finished_at)
                        .num_milliseconds()
                        .max(0),
                )
                .unwrap_or(0);
                if age_ms <= max_age_ms {
                    let stored: Vec<CheckResult> =
                        serde_json::from_value(row.results_json).unwrap_or_default();
                    for r in stored {
                        if missing.remove(&r.name) {
                            found.push((r, age_ms, "stored"));
                        }
                    }
                }
            }
        }
        if !missing.is_empty() {
            let run = self.registry.run(Some(&missing)).await;
            self.latest.record(&run.results);
            found.extend(run.results.into_iter().map(|r| (r, 0, "fresh")));
        }
        let order = self.registry.names();
        found.sort_by_key(|(r, _, _)| order.iter().position(|n| *n == r.name));

        let checks: Vec<GateCheck> = found
            .into_iter()
            .filter(|(r, _, _)| r.status != Status::Skipped || required.contains(&r.name))
            .map(|(r, age_ms, source)| {
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
                GateCheck {
                    required: required.contains(&r.name),
                    transient: r
                        .reason
                        .filter(|_| r.status != Status::Pass)
                        .map(|x| x.is_transient()),
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
        let deploy_id = match self.running_deploy(&req.environment, &req.release).await {
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
            time: crate::incidents::dto::timestamp(&at),
            max_age_seconds: req.max_age.as_secs(),
            required: required.into_iter().collect(),
            deploy_id,
            checks,
        };
        let mut stored = json!({ "required": verdict.required, "maxAgeSeconds": verdict.max_age_seconds, "checks": verdict.checks });
        if let Some(context) = req.context {
            stored["context"] = context;
        }
        let row = evaluation::ActiveModel {
            id: Set(verdict.gate_id.clone()),
            created_at: Set(at),
            environment: Set(verdict.environment.clone()),
            release: Set(verdict.release.clone()),
            verdict: Set(verdict.verdict.as_str().to_owned()),
            summary: Set(verdict.summary.clone()),
            source: Set(req.source.to_owned()),
            checks_json: Set(stored),
            deploy_id: Set(verdict.deploy_id.clone()),
        };
        if req.record {
            self.recorder.record(row).await;
        }
        tracing::info!(verdict = verdict.verdict.as_str(), gate_id = %verdict.gate_id, "gate evaluated");
        Ok(verdict)
    }

    /// Forgets cached deploy lookups (a deploy started or finished).
    pub fn forget_deploys(&self) {
        if let Ok(mut cache) = self.deploys.lock() {
            cache.clear();
        }
    }

    /// The running deploy of this release (by version or git sha) in this environment, if any.
    async fn running_deploy(
        &self,
        environment: &str,
        release: &str,
    ) -> Result<Option<String>, DbErr> {
        let key = (environment.to_owned(), release.to_owned());
        if let Some((at, id)) = self.deploys.lock().ok().and_then(|c| c.get(&key).cloned()) {
            if at.elapsed() < DEPLOY_CACHE_TTL {
                return Ok(id);
            }
        }
        let id = self.lookup_running_deploy(environment, release).await?;
        if let Ok(mut cache) = self.deploys.lock() {
            if cache.len() >= 1024 {
                cache.clear();
            }
            cache.insert(key, (Instant::now(), id.clone()));
        }
        Ok(id)
    }

    async fn lookup_running_deploy(
        &self,
        environment: &str,
        release: &str,
    ) -> Result<Option<String>, DbErr> {
        Ok(deploy::Entity::find()
            .filter(deploy::Column::Environment.eq(environment))
            .filter(deploy::Column::Status.eq("running"))
            .filter(
                Condition::any()
                    .add(deploy::Column::Version.eq(release))
                    .add(deploy::Column::GitSha.eq(release)),
            )
            .order_by_desc(deploy::Column::CreatedAt)
            .one(&self.db)
            .await?
            .map(|d| d.id))
    }

    /// Stored evaluations, newest first, optionally for one environment and release.
    pub async fn list(
        &self,
        environment: Option<&str>,
        release: Option<&str>,
        limit: u64,
        before: Option<&Cursor>,
    ) -> Result<Page<evaluation::Model>, DbErr> {
        use evaluation::Column as C;
        self.recorder.flush().await;
        let mut query = evaluation::Entity::find();
        if let Some(env) = environment {
            query = query.filter(C::Environment.eq(env));
        }
        if let Some(release) = release {
            query = query.filter(C::Release.eq(release));
        }
        if let Some(c) = before {
            query = query.filter(before_cond(C::CreatedAt, C::Id, c));
        }
        let rows = query
            .order_by_desc(C::CreatedAt)
            .order_by_desc(C::Id)
            .limit(limit + 1)
            .all(&self.db)
            .await?;
        Ok(paginate(rows, limit, |r| Cursor {
            created_at: r.created_at,
            id: r.id.clone(),
        }))
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
        let reason = c
            .reason
            .and_then(|r| serde_json::to_value(r).ok())
            .and_then(|v| v.as_str().map(str::to_owned));
        format!(
            "{}={}",
            c.name,
            reason.unwrap_or_else(|| crate::doctor::status_str(c.status).to_owned())
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
