//! `/health/*`, `/health`, `/ready` and `/version`: what load balancers and Kubernetes probe. The
//! readiness decision itself is [`crate::readiness`].

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::state::AppState;

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
