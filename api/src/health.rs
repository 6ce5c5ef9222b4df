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
use crate::suite::Observed;

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
    let mut required = state.readiness.required();
    // While the breaker is open the database's answer is known: fail, at once.
    let open = state.resilience.open_database_result();
    if open.is_some() {
        required.remove(checks::database::NAME);
    }
    let mut results = state.readiness.results(&required).await;
    let mut expected = required.len();
    if let Some(db) = open {
        results.insert(0, std::sync::Arc::new(Observed::now(db)));
        expected += 1;
    }
    let shutting_down = state.lifecycle.is_shutting_down();
    let (status, body) = state.readiness.answer(&results, expected, shutting_down);
    let body = with_resilience(body, &state);
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

/// The readiness body with the breaker and the spool spliced in before its closing brace: a
/// probe storm pays for a small serialisation, not a parse of the cached body.
fn with_resilience(body: axum::body::Bytes, state: &AppState) -> axum::body::Bytes {
    let view = state.resilience.view();
    let extra = json!({ "breaker": view.breaker, "spool": view.spool }).to_string();
    match (body.strip_suffix(b"}"), extra.strip_prefix('{')) {
        (Some(head), Some(tail)) => {
            let mut out = Vec::with_capacity(body.len() + extra.len());
            out.extend_from_slice(head);
            out.push(b',');
            out.extend_from_slice(tail.as_bytes());
            out.into()
        }
        _ => body,
    }
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
    let observed = match state.resilience.open_database_result() {
        Some(open) => std::sync::Arc::new(Observed::now(open)),
        None => state.readiness.database().await,
    };
    let view = state.resilience.view();
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
        message: r.message.clone(),
        breaker: json!(view.breaker),
        spool: json!(view.spool),
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
    /// What the check found.
    pub message: String,
    /// The database circuit breaker: state, since when, the last error (masked).
    #[schema(value_type = Object)]
    pub breaker: serde_json::Value,
    /// The spool of writes queued while the database was unavailable: depth and size.
    #[schema(value_type = Object)]
    pub spool: serde_json::Value,
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
