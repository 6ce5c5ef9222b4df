//! The HTTP face of the breaker and the spool: reads refused at once while the breaker is open,
//! a queued write's `202 {"queued": true}`, and the errors of a write that could not be kept.

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;

use super::{Resilience, WriteError};
use crate::error::ApiError;
use crate::state::AppState;

/// Reads that need the database get 503 with `Retry-After` at once while the breaker is open,
/// instead of waiting for a pool timeout. Writes pass (they go to the spool), and so do the gate
/// and the doctor's bundle, which answer from what they have.
pub async fn refuse_reads_while_open(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let read = matches!(*request.method(), Method::GET | Method::HEAD);
    let answers_without_db = matches!(
        request.uri().path(),
        "/ops/gate" | "/ops/doctor" | "/health/recovery-stats" | "/metrics"
    );
    if read && !answers_without_db && !state.resilience.database_usable() {
        return open_error(&state.resilience).into_response();
    }
    next.run(request).await
}

/// The 503 a read gets while the breaker is open, naming the database and its last error.
pub fn open_error(resilience: &Resilience) -> ApiError {
    let view = resilience.breaker.view();
    let since = view.outage_since.unwrap_or(view.since);
    let cause = view
        .last_error
        .map(|e| format!(": {e}"))
        .unwrap_or_default();
    ApiError::DatabaseOpen {
        message: format!(
            "the database is unavailable (circuit breaker open since {since}{cause}); writes are queued, reads resume when it answers"
        ),
        retry_after: resilience.breaker.retry_after(),
    }
}

impl From<WriteError> for ApiError {
    fn from(err: WriteError) -> Self {
        match err {
            WriteError::Store(store) => store.into(),
            full @ WriteError::SpoolFull { .. } => ApiError::SpoolFull(full.to_string()),
            WriteError::SpoolBroken(io) => ApiError::DatabaseOpen {
                message: format!(
                    "the database is unavailable and the spool cannot be written ({}); the write was not accepted",
                    io.kind()
                ),
                retry_after: std::time::Duration::from_secs(5),
            },
        }
    }
}

/// `202 Accepted` for a write kept in the spool: `queued: true`, the ids it will be stored
/// under, and the spool's depth.
pub fn queued(mut body: Value, depth: usize) -> Response {
    if let Some(map) = body.as_object_mut() {
        map.insert("queued".into(), true.into());
        map.insert("spoolDepth".into(), depth.into());
    }
    (StatusCode::ACCEPTED, Json(body)).into_response()
}
