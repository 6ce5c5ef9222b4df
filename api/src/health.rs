//! `/health/*`, `/health`, `/ready` and `/version`: what load balancers and Kubernetes probe.
//!
//! Readiness runs the required checks through the one registry, each served from a result no
//! older than its TTL, so a storm of probes costs one database check per `READY_CACHE_TTL_MS`.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use checks::{database, CheckResult, Registry, Status};
use chrono::{DateTime, Utc};
use serde_json::json;
use tokio::sync::Mutex;

use crate::config::Config;
use crate::state::{AppState, Lifecycle};
use crate::suite::{LatestResults, Observed};

/// Liveness: a constant answer, so it needs no middleware at all.
pub fn liveness_router() -> Router<AppState> {
    Router::new()
        .route("/health/live", get(live))
        .route("/health", get(live))
}

/// Readiness, the database and the version.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health/ready", get(ready))
        .route("/health/db", get(db))
        .route("/ready", get(ready))
        .route("/version", get(version))
}

/// Process up; no I/O, no allocation.
async fn live() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        r#"{"status":"pass"}"#,
    )
        .into_response()
}

async fn ready(State(state): State<AppState>) -> Response {
    let required = state.readiness.required();
    let results = state.readiness.results(&required).await;
    let shutting_down = state.lifecycle.is_shutting_down();
    let (status, body) = state
        .readiness
        .answer(&results, required.len(), shutting_down);
    (
        status,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
        .into_response()
}

fn render_ready(
    results: &[Arc<Observed>],
    expected: usize,
    shutting_down: bool,
) -> (StatusCode, Bytes) {
    let failing = results.iter().any(|o| o.result.status == Status::Fail);
    let ok = !failing && !shutting_down && results.len() == expected;
    let checks: serde_json::Map<String, serde_json::Value> = results
        .iter()
        .map(|o| {
            let r = &o.result;
            let entry = json!({
                "status": r.status,
                "reason": r.reason,
                "message": r.message,
                "hint": r.hint,
                "latencyMs": r.latency_ms,
                "checkedAt": o.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            });
            (r.name.clone(), entry)
        })
        .collect();
    let body = json!({
        "status": if ok { "ready" } else { "not_ready" },
        "shuttingDown": shutting_down,
        "checks": checks,
    });
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Bytes::from(body.to_string()))
}

/// `GET /health/db`: whether the database is ready, and how fast it answers.
async fn db(State(state): State<AppState>) -> Response {
    let observed = state.readiness.database().await;
    let r = &observed.result;
    let ready = r.is_pass();
    let body = json!({
        "ready": ready,
        "latencyMs": r.observed.get("latency_baseline_ms").cloned().unwrap_or(json!(r.latency_ms)),
        "reason": r.reason,
        "ageMs": u64::try_from(observed.age().as_millis()).unwrap_or(u64::MAX),
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    no_store((status, Json(body)).into_response())
}

async fn version() -> Json<serde_json::Value> {
    Json(json!({
        "name": "opsdoctor",
        "version": env!("CARGO_PKG_VERSION"),
        "gitCommit": env!("OPSDOCTOR_GIT_COMMIT"),
    }))
}

fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Readiness: the required checks (the database always among them), each served from a result
/// younger than its TTL; stale ones are re-run together, once, however many probes arrive.
pub struct Readiness {
    registry: Registry,
    latest: Arc<LatestResults>,
    db_ttl: Duration,
    external_ttl: Duration,
    lifecycle: Lifecycle,
    /// Held while stale checks re-run, so concurrent probes wait for that one run (single flight).
    refresh: Mutex<()>,
    checks_run: AtomicU64,
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
    pub fn new(
        registry: Registry,
        latest: Arc<LatestResults>,
        config: &Config,
        lifecycle: Lifecycle,
    ) -> Self {
        Self {
            registry,
            latest,
            db_ttl: config.ready_cache_ttl,
            external_ttl: config.ready_external_cache_ttl.max(config.ready_cache_ttl),
            lifecycle,
            refresh: Mutex::new(()),
            checks_run: AtomicU64::new(0),
            last_db_failure: std::sync::Mutex::new(None),
            rendered: std::sync::Mutex::new(None),
        }
    }

    /// The checks readiness depends on: the database and every required check.
    pub fn required(&self) -> BTreeSet<String> {
        let mut names = self.registry.policy().required.clone();
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

    fn stale(&self, names: &BTreeSet<String>) -> BTreeSet<String> {
        names
            .iter()
            .filter(|n| self.latest.get(n).is_none_or(|o| o.age() >= self.ttl(n)))
            .cloned()
            .collect()
    }

    /// Fresh-enough results for `names`, in registry order, re-running the stale ones.
    pub async fn results(&self, names: &BTreeSet<String>) -> Vec<Arc<Observed>> {
        if !self.stale(names).is_empty() {
            let _running = self.refresh.lock().await;
            let stale = self.stale(names);
            if !stale.is_empty() {
                self.checks_run.fetch_add(1, Ordering::Relaxed);
                let run = self.registry.run(Some(&stale)).await;
                self.latest.record(&run.results);
                for r in &run.results {
                    if r.name == database::NAME && r.status != Status::Pass {
                        if !self.lifecycle.is_shutting_down() {
                            tracing::warn!(reason = ?r.reason, message = %r.message, "database not ready");
                        }
                        if let Ok(mut last) = self.last_db_failure.lock() {
                            *last = Some((Utc::now(), r.clone()));
                        }
                    }
                }
            }
        }
        self.registry
            .names()
            .into_iter()
            .filter(|n| names.contains(*n))
            .filter_map(|n| self.latest.get(n))
            .collect()
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

    /// How many times readiness has run checks, for measuring probe-storm protection.
    pub fn checks_run(&self) -> u64 {
        self.checks_run.load(Ordering::Relaxed)
    }
}
