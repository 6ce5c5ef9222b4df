//! `/ops/deploys`: start and finish deploy records, list them, show one with its gate verdicts.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiQuery};
use crate::gate::routes::evaluation_json;
use crate::kernel::PageJson;
use crate::params::{parse_label, required_text, PageRequest};
use crate::path::ApiPath;
use crate::state::AppState;
use crate::store::deploys::{FinishStatus, NewDeploy};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ops/deploys", post(start).get(list))
        .route("/ops/deploys/{id}", get(show))
        .route("/ops/deploys/{id}/finish", post(finish))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StartDeploy {
    environment: String,
    version: String,
    #[serde(default)]
    git_sha: Option<String>,
    #[serde(default)]
    strategy: Option<String>,
    #[serde(default)]
    started_by: Option<String>,
    #[serde(default)]
    external_ids: Option<Map<String, Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FinishDeploy {
    status: FinishStatus,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    report_json: Option<Value>,
}

/// A deploy record as JSON.
pub fn deploy_json(d: entity::ops_deploy::Model) -> Value {
    json!({
        "id": d.id,
        "startedAt": crate::kernel::timestamp(&d.created_at),
        "environment": d.environment,
        "version": d.version,
        "gitSha": d.git_sha,
        "strategy": d.strategy,
        "startedBy": d.started_by,
        "externalIds": d.external_ids_json,
        "status": d.status,
        "finishedAt": d.finished_at.as_ref().map(crate::kernel::timestamp),
        "reason": d.reason,
        "reportJson": d.report_json,
        "incidentId": d.incident_id,
    })
}

fn optional(field: &str, value: Option<String>, max: usize) -> ApiResult<Option<String>> {
    value.map(|v| required_text(field, v, max)).transpose()
}

async fn start(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<StartDeploy>,
) -> ApiResult<Response> {
    let new = NewDeploy {
        environment: parse_label("environment", Some(&body.environment), 100)?,
        version: parse_label("version", Some(&body.version), 200)?,
        git_sha: body
            .git_sha
            .map(|s| parse_label("gitSha", Some(&s), 100))
            .transpose()?,
        strategy: optional("strategy", body.strategy, 100)?,
        started_by: optional("startedBy", body.started_by, 200)?,
        external_ids: body.external_ids.unwrap_or_default(),
    };
    let created = state.deploys.start(new).await?;
    let location = format!("/ops/deploys/{}", created.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(deploy_json(created)),
    )
        .into_response())
}

async fn finish(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<FinishDeploy>,
) -> ApiResult<Json<Value>> {
    let reason = optional("reason", body.reason, 10_000)?;
    if body.report_json.as_ref().is_some_and(|r| !r.is_object()) {
        return Err(ApiError::invalid(
            "reportJson",
            "reportJson: must be an object",
        ));
    }
    let finished = state
        .deploys
        .finish(&id, body.status, reason, body.report_json)
        .await;
    let finished = finished?;
    Ok(Json(deploy_json(finished)))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    env: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<PageJson<Value>>> {
    let page = PageRequest::parse(q.limit.as_deref(), q.cursor.as_deref())?;
    let found = state
        .deploys
        .list(
            q.env.as_deref().filter(|e| !e.is_empty()),
            page.limit,
            page.cursor.as_ref(),
        )
        .await?;
    Ok(Json(found.into_json(deploy_json)))
}

async fn show(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let found = state
        .deploys
        .get(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("deploy `{id}` does not exist")))?;
    let gates: Vec<Value> = state
        .evaluations
        .for_deploy(&id)
        .await?
        .into_iter()
        .map(evaluation_json)
        .collect();
    let mut body = deploy_json(found);
    body["gateEvaluations"] = Value::Array(gates);
    Ok(Json(body))
}
