//! `/health/*`, `/health`, `/ready` and `/version`: what load balancers and Kubernetes probe. The
//! readiness decision itself is [`crate::readiness`].

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

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
#[utoipa::path(
    get,
    path = "/health/live",
    tag = "probes",
    operation_id = "live",
    responses((status = 200, description = "the process is up: always `{\"status\":\"pass\"}`", body = LiveBody))
)]
pub(crate) async fn live() -> Response {
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

/// Readiness: 200 when every required check passes, 503 when one fails or shutdown has begun.
#[utoipa::path(
    get,
    path = "/health/ready",
    tag = "probes",
    operation_id = "ready",
    responses(
        (status = 200, description = "ready to serve", body = crate::readiness::ReadyBody),
        (status = 503, description = "not ready: a required check fails, or the process is shutting down", body = crate::readiness::ReadyBody),
    )
)]
pub(crate) async fn ready(State(state): State<AppState>) -> Response {
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
#[utoipa::path(
    get,
    path = "/health/db",
    tag = "probes",
    operation_id = "databaseHealth",
    responses(
        (status = 200, description = "the database answers", body = DbHealth),
        (status = 503, description = "the database does not answer", body = DbHealth),
    )
)]
pub(crate) async fn db(State(state): State<AppState>) -> Response {
    let observed = state.readiness.database().await;
    let r = &observed.result;
    let ready = r.is_pass();
    let body = DbHealth {
        ready,
        latency_ms: r
            .observed
            .get("latency_baseline_ms")
            .cloned()
            .unwrap_or(json!(r.latency_ms)),
        reason: r.reason,
        age_ms: u64::try_from(observed.age().as_millis()).unwrap_or(u64::MAX),
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    no_store((status, Json(body)).into_response())
}

/// The running build.
#[utoipa::path(
    get,
    path = "/version",
    tag = "probes",
    operation_id = "version",
    responses((status = 200, description = "the running build", body = VersionJson))
)]
pub(crate) async fn version() -> Json<VersionJson> {
    Json(VersionJson {
        name: "opsdoctor".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        git_commit: env!("OPSDOCTOR_GIT_COMMIT").to_owned(),
    })
}

/// The body of `GET /health/live`.
#[derive(Serialize, ToSchema)]
pub struct LiveBody {
    /// Always `pass`.
    pub status: String,
}

/// `GET /health/db`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DbHealth {
    pub ready: bool,
    /// The latency baseline of recent checks, or the latest check's, in milliseconds.
    #[schema(value_type = f64)]
    pub latency_ms: serde_json::Value,
    /// Why the database is not ready (`unreachable`, `timeout`, …); null when it is.
    #[schema(value_type = Option<String>)]
    pub reason: Option<checks::Reason>,
    /// How old the result is, in milliseconds.
    pub age_ms: u64,
}

/// `GET /version`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionJson {
    pub name: String,
    pub version: String,
    pub git_commit: String,
}

fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
