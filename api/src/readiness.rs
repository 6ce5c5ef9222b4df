//! Readiness: the required checks (the database always among them), each served from a result no
//! older than its TTL through the one freshness policy, so a storm of probes costs one database
//! check per `READY_CACHE_TTL_MS`; and the answer, rendered once per change of results.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::StatusCode;
use checks::{database, CheckResult, Status};
use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::freshness::Freshness;
use crate::lifecycle::Lifecycle;
use crate::suite::Observed;

/// Readiness: the required checks (the database always among them), each served from a result
/// younger than its TTL; stale ones are re-run together, once, however many probes arrive.
pub struct Readiness {
    fresh: Arc<Freshness>,
    db_ttl: Duration,
    external_ttl: Duration,
    lifecycle: Lifecycle,
    last_db_failure: std::sync::Mutex<Option<(DateTime<Utc>, CheckResult)>>,
    /// The last answer and the results it was rendered from: a probe storm between two refreshes
    /// is served these bytes.
    rendered: std::sync::Mutex<Option<Rendered>>,
}

struct Rendered {
    from: Vec<Arc<Observed>>,
    shutting_down: bool,
    status: StatusCode,
    body: Bytes,
}

impl Readiness {
    pub fn new(fresh: Arc<Freshness>, config: &Config, lifecycle: Lifecycle) -> Self {
        Self {
            fresh,
            db_ttl: config.ready_cache_ttl,
            external_ttl: config.ready_external_cache_ttl.max(config.ready_cache_ttl),
            lifecycle,
            last_db_failure: std::sync::Mutex::new(None),
            rendered: std::sync::Mutex::new(None),
        }
    }

    /// The checks readiness depends on: the database and every required check.
    pub fn required(&self) -> BTreeSet<String> {
        let mut names = self.fresh.registry().policy().required.clone();
        names.insert(database::NAME.to_owned());
        names
    }

    fn ttl(&self, name: &str) -> Duration {
        if name == database::NAME {
            self.db_ttl
        } else {
            self.external_ttl
        }
    }

    /// Fresh-enough results for `names`, in registry order, re-running the stale ones.
    pub async fn results(&self, names: &BTreeSet<String>) -> Vec<Arc<Observed>> {
        let results = self.fresh.results(names, |n| self.ttl(n)).await;
        if let Some(db) = results.iter().find(|o| o.result.name == database::NAME) {
            self.note_database(db);
        }
        results
    }

    /// Logs a failing database result once, and keeps it for the doctor's bundle.
    fn note_database(&self, db: &Observed) {
        if db.result.status == Status::Pass {
            return;
        }
        let Ok(mut last) = self.last_db_failure.lock() else {
            return;
        };
        if last.as_ref().is_some_and(|(at, _)| *at == db.at) {
            return;
        }
        if !self.lifecycle.is_shutting_down() {
            tracing::warn!(reason = ?db.result.reason, message = %db.result.message, "database not ready");
        }
        *last = Some((db.at, db.result.clone()));
    }

    /// The database check, from a result no older than `READY_CACHE_TTL_MS`.
    pub async fn database(&self) -> Arc<Observed> {
        let names = BTreeSet::from([database::NAME.to_owned()]);
        self.results(&names)
            .await
            .into_iter()
            .next()
            .unwrap_or_else(|| {
                // Not expected: the registry always holds the database check.
                Arc::new(Observed::now(CheckResult::fail(
                    database::NAME,
                    checks::Reason::Unreachable,
                    "no database check is registered",
                    "report this as a bug",
                )))
            })
    }

    /// The most recent failing database result, for the doctor's bundle.
    pub fn last_database_failure(&self) -> Option<(DateTime<Utc>, CheckResult)> {
        self.last_db_failure.lock().ok()?.clone()
    }

    /// The readiness answer for these results, rendered once per change of results.
    pub fn answer(
        &self,
        results: &[Arc<Observed>],
        expected: usize,
        shutting_down: bool,
    ) -> (StatusCode, Bytes) {
        let Ok(mut cache) = self.rendered.lock() else {
            return render_ready(results, expected, shutting_down);
        };
        if let Some(r) = cache.as_ref() {
            let same = r.shutting_down == shutting_down
                && r.from.len() == results.len()
                && r.from.iter().zip(results).all(|(a, b)| Arc::ptr_eq(a, b));
            if same {
                return (r.status, r.body.clone());
            }
        }
        let (status, body) = render_ready(results, expected, shutting_down);
        *cache = Some(Rendered {
            from: results.to_vec(),
            shutting_down,
            status,
            body: body.clone(),
        });
        (status, body)
    }

    /// How many check runs readiness and the gate have made, for measuring probe-storm
    /// protection.
    pub fn checks_run(&self) -> u64 {
        self.fresh.runs()
    }
}

fn render_ready(
    results: &[Arc<Observed>],
    expected: usize,
    shutting_down: bool,
) -> (StatusCode, Bytes) {
    // Failing by the thresholds (see `decisions`), not by one observation.
    let failing = results.iter().any(|o| o.decision.is_failing());
    let ok = !failing && !shutting_down && results.len() == expected;
    let checks = results
        .iter()
        .map(|o| {
            let r = &o.result;
            let entry = ReadyCheck {
                status: r.status,
                reason: r.reason,
                message: r.message.clone(),
                hint: r.hint.clone(),
                latency_ms: r.latency_ms,
                decided: o.decision.state,
                checked_at: o.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            };
            (r.name.clone(), entry)
        })
        .collect();
    let body = ReadyBody {
        status: if ok { "ready" } else { "not_ready" },
        shutting_down,
        checks,
    };
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let text = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
    (status, Bytes::from(text))
}

/// The readiness answer: `GET /health/ready` and `GET /ready`.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReadyBody {
    /// `ready` or `not_ready`.
    #[schema(value_type = String, pattern = "^(ready|not_ready)$")]
    pub status: &'static str,
    /// True from the first SIGTERM: the pod is draining.
    pub shutting_down: bool,
    /// Each required check's latest result, by name.
    pub checks: std::collections::BTreeMap<String, ReadyCheck>,
}

/// One required check as readiness saw it.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReadyCheck {
    /// `pass`, `warn`, `fail` or `skipped`.
    #[schema(value_type = String)]
    pub status: Status,
    #[schema(value_type = Option<String>)]
    pub reason: Option<checks::Reason>,
    pub message: String,
    pub hint: Option<String>,
    pub latency_ms: u64,
    /// `passing` or `failing` by the check's thresholds (see docs/doctor.md).
    #[schema(value_type = String)]
    pub decided: crate::decisions::Decided,
    pub checked_at: String,
}
