//! `POST /ops/doctor/run`, `GET /ops/doctor` (the diagnostic bundle) and `GET /health/status`
//! (the latest results in the IETF health-check format).

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use checks::{overall, CheckResult, Status};
use chrono::{DateTime, Utc};
use entity::EventType;
use secrecy::ExposeSecret;
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::{DoctorError, Trigger};
use crate::error::{ApiError, ApiResult};
use crate::incidents::dto::{EventJson, IncidentJson};
use crate::state::AppState;
use crate::store::incidents::{IncidentFilter, OpenState};

/// Admin routes (mounted behind the bearer-token layer).
pub fn admin_router() -> Router<AppState> {
    Router::new()
        .route("/ops/doctor/run", post(run))
        .route("/ops/doctor", get(bundle))
}

/// Public routes: status for anyone, details for an admin.
pub fn public_router() -> Router<AppState> {
    Router::new().route("/health/status", get(status))
}

/// Runs every check now (or joins the run in flight) and records what it did to incidents.
#[utoipa::path(
    post,
    path = "/ops/doctor/run",
    tag = "doctor",
    operation_id = "runDoctor",
    security(("admin" = [])),
    responses(
        (status = 200, description = "the finished run: results, incidents opened, extended and resolved, warnings", body = Object),
        (status = 429, response = crate::openapi::RateLimited),
    )
)]
pub(crate) async fn run(State(state): State<AppState>) -> Result<Response, ApiError> {
    match state.doctor.run(Trigger::Api, true).await {
        Ok((record, shared)) => {
            let mut body = serde_json::to_value(record.as_ref()).unwrap_or_default();
            body["shared"] = json!(shared);
            Ok(Json(body).into_response())
        }
        Err(DoctorError::Failed(cause)) => {
            Err(ApiError::Internal(format!("doctor run failed: {cause}")))
        }
        Err(err @ DoctorError::RateLimited { retry_after, .. }) => Err(ApiError::RateLimited {
            message: format!("{err}; GET /ops/doctor shows the latest results"),
            retry_after,
        }),
    }
}

/// The latest run's results with their time, from the database or, if it is down, this process.
async fn latest_results(
    state: &AppState,
) -> Option<(
    Option<String>,
    String,
    DateTime<Utc>,
    DateTime<Utc>,
    u64,
    Vec<CheckResult>,
)> {
    match state.doctor.latest_run().await {
        Ok(Some(row)) => {
            let results: Vec<CheckResult> =
                serde_json::from_value(row.results_json).unwrap_or_default();
            Some((
                Some(row.id),
                row.trigger,
                row.created_at.at().and_utc(),
                row.finished_at.at().and_utc(),
                u64::try_from(row.duration_ms).unwrap_or(0),
                results,
            ))
        }
        Ok(None) => None,
        Err(err) => {
            tracing::warn!(error = %err, "reading the latest doctor run failed; using this process's");
            let record = state.doctor.latest_in_process().await?;
            let trigger = serde_json::to_value(record.trigger)
                .ok()?
                .as_str()?
                .to_owned();
            Some((
                record.id.clone(),
                trigger,
                record.run.started_at,
                record.run.finished_at,
                record.run.duration_ms,
                record.run.results.clone(),
            ))
        }
    }
}

/// The diagnostic bundle: latest run, masked configuration, database, open incidents, actions.
#[utoipa::path(
    get,
    path = "/ops/doctor",
    tag = "doctor",
    operation_id = "doctorBundle",
    security(("admin" = [])),
    responses((status = 200, description = "the bundle; a part that could not be read is null and named in `errors`", body = Object))
)]
pub(crate) async fn bundle(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let now = Utc::now();
    let mut errors: Vec<String> = Vec::new();
    let latest = latest_results(&state).await;
    let registry = state.doctor.registry();

    let database = database_result(&state).await;
    let last_db_failure = state.readiness.last_database_failure();
    let usable = state.resilience.database_usable();
    let filter = IncidentFilter {
        state: Some(OpenState::Open),
        ..Default::default()
    };
    let open = match usable {
        true => state.incidents.list(&filter, 50, None).await,
        false => Err(crate::store::StoreError::Db(sea_orm::DbErr::Custom(
            "the database circuit breaker is open".to_owned(),
        ))),
    };
    let open = match open {
        Ok(page) => Some(
            page.items
                .into_iter()
                .map(IncidentJson::from)
                .collect::<Vec<_>>(),
        ),
        Err(err) => {
            tracing::warn!(error = %err, "listing open incidents failed");
            errors.push("open incidents could not be read: the database is unavailable".to_owned());
            None
        }
    };
    let recovery_types = [
        EventType::RecoveryAttempted,
        EventType::RecoverySuccess,
        EventType::RecoveryFailed,
        EventType::Resolved,
    ];
    let recent = match usable {
        true => state.incidents.recent_events(&recovery_types, 20).await,
        false => Err(crate::store::StoreError::Db(sea_orm::DbErr::Custom(
            "the database circuit breaker is open".to_owned(),
        ))),
    };
    let recovery = match recent {
        Ok(events) => Some(events.into_iter().map(EventJson::from).collect::<Vec<_>>()),
        Err(err) => {
            tracing::warn!(error = %err, "listing recovery events failed");
            errors.push(
                "recent recovery events could not be read: the database is unavailable".to_owned(),
            );
            None
        }
    };

    let mut actions: Vec<Value> = Vec::new();
    let latest_json = latest
        .as_ref()
        .map(|(id, trigger, started, finished, duration, results)| {
            for r in results
                .iter()
                .filter(|r| matches!(r.status, Status::Fail | Status::Warn))
            {
                actions.push(json!({
                    "check": r.name,
                    "status": r.status,
                    "reason": r.reason,
                    "required": registry.is_required(&r.name),
                    "action": r.hint,
                }));
            }
            json!({
                "id": id,
                "trigger": trigger,
                "startedAt": started.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "finishedAt": finished.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "ageSeconds": (now - *finished).num_milliseconds() as f64 / 1000.0,
                "status": overall(results, &registry.policy().required).as_str(),
                "durationMs": duration,
                "results": results,
            })
        });
    if latest.is_none() {
        actions.push(json!({ "check": null, "status": "warn", "reason": null, "required": false,
            "action": "no doctor run yet: POST /ops/doctor/run, or set DOCTOR_INTERVAL_MS for the background monitor" }));
    }
    // Required failures first, then other failures, then warnings.
    actions.sort_by_key(|a| (a["status"] != "fail", a["required"] != true));

    let db = &database.result;
    let mut configuration = state.config.checks.masked();
    configuration["database"] = json!({
        "configured": true,
        "backend": db.observed.get("backend"),
        "location": state.config.database_location(),
    });
    configuration["adminToken"] = json!({ "configured": state.config.admin_token.is_some() });
    Ok(Json(json!({
        "generatedAt": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "version": env!("CARGO_PKG_VERSION"),
        "requiredChecks": registry.policy().required,
        "latestRun": latest_json,
        "configuration": configuration,
        "database": {
            "ready": db.is_pass(),
            "status": db.status,
            "reason": db.reason,
            "latencyMs": db.observed.get("latency_baseline_ms").cloned().unwrap_or(json!(db.latency_ms)),
            "checkedAt": database.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "lastError": last_db_failure.map(|(at, r)| json!({
                "at": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "reason": r.reason,
                "message": r.message,
                "hint": r.hint,
            })),
        },
        "openIncidents": open,
        "recentRecoveryEvents": recovery,
        "recoveryAttempts": state.recovery.journal.recent(20),
        "recommendedActions": actions,
        "readiness": { "checksRun": state.readiness.checks_run() },
        "resilience": state.resilience.view(),
        "errors": errors,
    })))
}

fn is_admin(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(expected) = &state.config.admin_token else {
        return false;
    };
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::auth::bearer_token)
        .is_some_and(|t| crate::auth::token_matches(t, expected.expose_secret()))
}

fn component_type(name: &str) -> &'static str {
    match name {
        "database" => "datastore",
        "tunnel" => "system",
        _ => "component",
    }
}

/// The IETF health-check format (draft-inadarei-api-health-check): 200 for pass and warn, 503 for
/// fail; anyone gets the status, an admin gets every check.
#[utoipa::path(
    get,
    path = "/health/status",
    tag = "probes",
    operation_id = "healthStatus",
    security((), ("admin" = [])),
    responses(
        (status = 200, description = "pass or warn; with the admin token, every check", content_type = "application/health+json", body = HealthStatus),
        (status = 503, description = "fail", content_type = "application/health+json", body = HealthStatus),
    )
)]
pub(crate) async fn status(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let database = database_result(&state).await;
    let (mut results, measured_at) = match latest_results(&state).await {
        Some((_, _, _, finished, _, results)) => (results, Some(finished)),
        None => (Vec::new(), None),
    };
    results.retain(|r| r.name != database.result.name);
    let required = &state.doctor.registry().policy().required;
    let mut all = vec![(database.result.clone(), database.at)];
    all.extend(
        results
            .into_iter()
            .map(|r| (r, measured_at.unwrap_or(database.at))),
    );
    let plain: Vec<CheckResult> = all.iter().map(|(r, _)| r.clone()).collect();
    let status = overall(&plain, required);
    let mut body = HealthStatus {
        status: status.as_str(),
        version: None,
        release_id: None,
        service_id: None,
        description: None,
        checks: None,
    };
    if is_admin(&state, &headers) {
        let checks = all
            .iter()
            .filter(|(r, _)| r.status != Status::Skipped)
            .map(|(r, at)| {
                let entry = HealthCheck {
                    component_id: r.name.clone(),
                    component_type: component_type(&r.name),
                    observed_value: r.latency_ms,
                    observed_unit: "ms",
                    status: r.status.as_str(),
                    time: at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    output: (r.status != Status::Pass).then(|| r.message.clone()),
                };
                (format!("{}:responseTime", r.name), vec![entry])
            })
            .collect();
        body.version = Some("1");
        body.release_id = Some(env!("CARGO_PKG_VERSION"));
        body.service_id = Some("opsdoctor");
        body.description = Some("health of the stack opsdoctor watches");
        body.checks = Some(checks);
    }
    let code = if status == Status::Fail {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let mut response = (code, Json(body)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/health+json"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `GET /health/status`, in the IETF health-check format; the fields after `status` only for an
/// admin.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthStatus {
    /// `pass`, `warn` or `fail`.
    #[schema(value_type = String, pattern = "^(pass|warn|fail)$")]
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub version: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub release_id: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub service_id: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub description: Option<&'static str>,
    /// `"<check>:responseTime"` → the check's latest result.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checks: Option<std::collections::BTreeMap<String, Vec<HealthCheck>>>,
}

/// One check in the IETF format.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    pub component_id: String,
    #[schema(value_type = String)]
    pub component_type: &'static str,
    /// The check's latency.
    pub observed_value: u64,
    #[schema(value_type = String)]
    pub observed_unit: &'static str,
    #[schema(value_type = String)]
    pub status: &'static str,
    pub time: String,
    /// What was found, when the check did not pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
}

/// The database's result: the breaker's while it is open (whatever is cached), else readiness's.
async fn database_result(state: &AppState) -> std::sync::Arc<crate::suite::Observed> {
    match state.resilience.open_database_result() {
        Some(open) => std::sync::Arc::new(crate::suite::Observed::now(open)),
        None => state.readiness.database().await,
    }
}
