//! `/health/*`, `/health`, `/ready` and `/version`: what load balancers and Kubernetes probe.
//!
//! Readiness reuses the `database` check of the check suite, served from a result no older than
//! `READY_CACHE_TTL_MS`, so a storm of probes costs one database check per TTL.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use checks::{database, with_timeout, CheckResult, Status};
use sea_orm::DatabaseConnection;
use serde_json::json;
use tokio::sync::Mutex;

use crate::config::Config;
use crate::state::{AppState, Lifecycle};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health/live", get(live))
        .route("/health", get(live))
        .route("/health/ready", get(ready))
        .route("/ready", get(ready))
        .route("/version", get(version))
}

/// Process up; no I/O at all.
async fn live() -> Response {
    no_store(Json(json!({ "status": "pass" })).into_response())
}

async fn ready(State(state): State<AppState>) -> Response {
    let (check, age) = state.readiness.database().await;
    let shutting_down = state.lifecycle.is_shutting_down();
    let ok = check.is_pass() && !shutting_down;
    let body = json!({
        "status": if ok { "ready" } else { "not_ready" },
        "shuttingDown": shutting_down,
        "checks": {
            "database": {
                "status": check.status,
                "reason": check.reason,
                "message": check.message,
                "hint": check.hint,
                "latencyMs": check.latency_ms,
                "ageMs": u64::try_from(age.as_millis()).unwrap_or(u64::MAX),
            }
        }
    });
    let status = if ok {
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

/// The cached database check behind readiness.
pub struct Readiness {
    db: DatabaseConnection,
    location: String,
    ttl: Duration,
    timeout: Duration,
    lifecycle: Lifecycle,
    /// Held while a check runs, so concurrent probes wait for that one check (single flight).
    latest: Mutex<Option<(Instant, CheckResult)>>,
    checks_run: AtomicU64,
}

impl Readiness {
    pub fn new(db: DatabaseConnection, config: &Config, lifecycle: Lifecycle) -> Self {
        Self {
            db,
            location: config.database_location(),
            ttl: config.ready_cache_ttl,
            timeout: config.db_check_timeout,
            lifecycle,
            latest: Mutex::new(None),
            checks_run: AtomicU64::new(0),
        }
    }

    /// The latest database check and its age, running a new one if the cached one is stale.
    pub async fn database(&self) -> (CheckResult, Duration) {
        let mut latest = self.latest.lock().await;
        if let Some((at, result)) = latest.as_ref() {
            if at.elapsed() < self.ttl {
                return (result.clone(), at.elapsed());
            }
        }
        let result = self.run().await;
        *latest = Some((Instant::now(), result.clone()));
        (result, Duration::ZERO)
    }

    /// Forgets the cached result (after migrations are applied, say).
    pub async fn invalidate(&self) {
        *self.latest.lock().await = None;
    }

    async fn run(&self) -> CheckResult {
        self.checks_run.fetch_add(1, Ordering::Relaxed);
        let result = with_timeout(
            database::NAME,
            self.timeout,
            database::check(&self.db, &self.location),
        )
        .await;
        if result.status != Status::Pass && !self.lifecycle.is_shutting_down() {
            tracing::warn!(reason = ?result.reason, message = %result.message, "database not ready");
        }
        result
    }

    /// How many database checks readiness has run, for measuring probe-storm protection.
    pub fn checks_run(&self) -> u64 {
        self.checks_run.load(Ordering::Relaxed)
    }
}
