//! `POST /health/recover` and `GET /health/recovery-stats` (both admin).

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};

use super::{Refused, Report, Stats, Trigger};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiQuery;
use crate::state::AppState;

/// Admin routes (mounted behind the bearer-token layer).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health/recover", post(recover))
        .route("/health/recovery-stats", get(recovery_stats))
}

/// Which configured components `?components=` names; every check failing now when absent.
fn components(
    state: &AppState,
    query: &BTreeMap<String, String>,
) -> ApiResult<Option<BTreeSet<String>>> {
    if let Some(unknown) = query.keys().find(|k| k.as_str() != "components") {
        return Err(ApiError::bad_request(
            Some(unknown.clone()),
            format!("unknown query parameter `{unknown}`; the only one is `components`"),
        ));
    }
    let Some(raw) = query.get("components") else {
        return Ok(None);
    };
    let known = state.doctor.registry().names();
    let mut chosen = BTreeSet::new();
    for name in raw.split(',').map(str::trim) {
        if !known.contains(&name) {
            return Err(ApiError::bad_request(
                Some("components".to_owned()),
                format!(
                    "`{name}` is not a configured component; the configured ones are {}",
                    known.join(", ")
                ),
            ));
        }
        chosen.insert(name.to_owned());
    }
    Ok(Some(chosen))
}

/// Runs the recovery actions for what is failing now: the database probed afresh (a breaker
/// that is open closes when it answers), the tunnel restarted through the restart coordinator,
/// every failing check run again; each attempt recorded on the component's open incident.
/// At most once per `RECOVERY_MIN_INTERVAL_MS`, for people and the monitor together.
#[utoipa::path(
    post,
    path = "/health/recover",
    tag = "probes",
    operation_id = "recover",
    security(("admin" = [])),
    params(
        ("components" = Option<String>, Query, description = "only these components, comma-separated (database, tunnel, openai, stripe, cloudflare); default: every failing one"),
    ),
    responses(
        (status = 200, description = "what was failing, what was tried for each, and what changed", body = Report),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 429, response = crate::openapi::RateLimited),
    )
)]
pub(crate) async fn recover(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<BTreeMap<String, String>>,
) -> ApiResult<Json<Report>> {
    let only = components(&state, &query)?;
    // Its own task: a caller that disconnects does not stop a restart half-way.
    let recovery = state.recovery.clone();
    let task = tokio::spawn(async move { recovery.recover(Trigger::Api, only.as_ref()).await });
    match task.await {
        Ok(Ok(report)) => Ok(Json(report)),
        Ok(Err(err @ Refused::RateLimited { retry_after, .. })) => Err(ApiError::RateLimited {
            message: format!("{err}; GET /health/recovery-stats shows the last attempts"),
            retry_after,
        }),
        Err(err) => Err(ApiError::Internal(format!("the recovery failed: {err}"))),
    }
}

/// The last 50 recovery attempts (newest first) with trigger, component, action, outcome and
/// duration; counts and success rate in all and per component, since the process started.
#[utoipa::path(
    get,
    path = "/health/recovery-stats",
    tag = "probes",
    operation_id = "recoveryStats",
    security(("admin" = [])),
    responses(
        (status = 200, description = "the last attempts and the counts", body = Stats),
    )
)]
pub(crate) async fn recovery_stats(State(state): State<AppState>) -> Json<Stats> {
    let next = state
        .recovery
        .next_allowed_at()
        .map(|t| crate::kernel::timestamp(&t.naive_utc()));
    Json(state.recovery.journal.stats(next))
}
