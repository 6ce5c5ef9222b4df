//! `/ops/deploys`: start and finish deploy records, list them, show one with its gate verdicts.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiQuery};
use crate::gate::routes::EvaluationJson;
use crate::kernel::{new_id, now, timestamp, PageJson};
use crate::params::{parse_label, required_text, PageRequest};
use crate::path::ApiPath;
use crate::resilience::{self, Applied, Entry, Written};
use crate::state::AppState;
use crate::store::deploys::{FinishStatus, NewDeploy};
use crate::store::incidents::Stamp;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ops/deploys", post(start).get(list))
        .route("/ops/deploys/{id}", get(show))
        .route("/ops/deploys/{id}/finish", post(finish))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct StartDeploy {
    /// At most 100 printable ASCII characters without spaces (surrounding spaces are trimmed).
    #[schema(min_length = 1, pattern = "^\\s*[!-~]+\\s*$")]
    environment: String,
    /// At most 200 printable ASCII characters without spaces (surrounding spaces are trimmed).
    #[schema(min_length = 1, pattern = "^\\s*[!-~]+\\s*$")]
    version: String,
    #[serde(default)]
    /// At most 100 printable ASCII characters without spaces (surrounding spaces are trimmed).
    #[schema(min_length = 1, pattern = "^\\s*[!-~]+\\s*$")]
    git_sha: Option<String>,
    #[serde(default)]
    #[schema(min_length = 1, pattern = "\\S")]
    strategy: Option<String>,
    #[serde(default)]
    #[schema(min_length = 1, pattern = "\\S")]
    started_by: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    external_ids: Option<Map<String, Value>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct FinishDeploy {
    status: FinishStatus,
    #[serde(default)]
    #[schema(min_length = 1, pattern = "\\S")]
    reason: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    report_json: Option<Value>,
}

/// A deploy record as JSON.
/// A deploy record as the API shows it, and as `opsdoctor deploys` reads it back.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeployJson {
    pub id: String,
    pub started_at: String,
    pub environment: String,
    pub version: String,
    pub git_sha: Option<String>,
    pub strategy: Option<String>,
    pub started_by: Option<String>,
    #[schema(value_type = Object)]
    pub external_ids: Value,
    /// `running`, or how it finished.
    pub status: String,
    pub finished_at: Option<String>,
    pub reason: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub report_json: Option<Value>,
    pub incident_id: Option<String>,
}

impl From<entity::ops_deploy::Model> for DeployJson {
    fn from(d: entity::ops_deploy::Model) -> Self {
        Self {
            id: d.id,
            started_at: timestamp(&d.created_at),
            environment: d.environment,
            version: d.version,
            git_sha: d.git_sha,
            strategy: d.strategy,
            started_by: d.started_by,
            external_ids: d.external_ids_json,
            status: d.status,
            finished_at: d.finished_at.as_ref().map(timestamp),
            reason: d.reason,
            report_json: d.report_json,
            incident_id: d.incident_id,
        }
    }
}

fn optional(field: &str, value: Option<String>, max: usize) -> ApiResult<Option<String>> {
    value.map(|v| required_text(field, v, max)).transpose()
}

/// Records the start of a deploy.
#[utoipa::path(
    post,
    path = "/ops/deploys",
    tag = "deploys",
    operation_id = "startDeploy",
    security(("admin" = [])),
    request_body = StartDeploy,
    responses(
        (status = 201, description = "recorded", body = DeployJson, headers(("Location" = String))),
        (status = 202, response = crate::openapi::Queued),
        (status = 507, response = crate::openapi::SpoolFull),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 422, response = crate::openapi::Invalid),
    )
)]
pub(crate) async fn start(
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
    let (id, at) = (new_id(), now());
    let entry = Entry::DeployStart {
        id: id.clone(),
        at,
        deploy: new,
    };
    let created = match state.resilience.submit(entry).await? {
        Written::Stored(Applied::Deploy(created)) => created,
        Written::Queued { depth } => {
            let body = json!({ "id": id, "startedAt": timestamp(&at), "status": "running" });
            return Ok(resilience::routes::queued(body, depth));
        }
        Written::Stored(other) => {
            return Err(ApiError::Internal(format!(
                "a deploy start was stored as {other:?}"
            )))
        }
    };
    let location = format!("/ops/deploys/{}", created.id);
    let mut body = serde_json::to_value(DeployJson::from(created)).unwrap_or_default();
    body["queued"] = json!(false);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(body),
    )
        .into_response())
}

/// Records how a deploy ended; a failed or rolled-back deploy opens a `DEPLOY` incident.
#[utoipa::path(
    post,
    path = "/ops/deploys/{id}/finish",
    tag = "deploys",
    operation_id = "finishDeploy",
    security(("admin" = [])),
    params(("id" = String, Path, description = "the deploy's id")),
    request_body = FinishDeploy,
    responses(
        (status = 200, description = "finished", body = DeployJson),
        (status = 202, response = crate::openapi::Queued),
        (status = 507, response = crate::openapi::SpoolFull),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 404, response = crate::openapi::NotFound),
        (status = 409, response = crate::openapi::Conflict),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 422, response = crate::openapi::Invalid),
    )
)]
pub(crate) async fn finish(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<FinishDeploy>,
) -> ApiResult<Response> {
    let reason = optional("reason", body.reason, 10_000)?;
    if body.report_json.as_ref().is_some_and(|r| !r.is_object()) {
        return Err(ApiError::invalid(
            "reportJson",
            "reportJson: must be an object",
        ));
    }
    let stamp = Stamp::now();
    let entry = Entry::DeployFinish {
        id: id.clone(),
        status: body.status,
        reason,
        report: body.report_json,
        stamp: stamp.clone(),
    };
    match state.resilience.submit(entry).await? {
        Written::Stored(Applied::Deploy(finished)) => {
            state
                .metrics
                .deploy_finished(&finished.environment, &finished.status);
            let mut body = serde_json::to_value(DeployJson::from(finished)).unwrap_or_default();
            body["queued"] = json!(false);
            Ok(Json(body).into_response())
        }
        Written::Queued { depth } => Ok(resilience::routes::queued(
            json!({ "id": id, "status": body.status.as_str(), "finishedAt": timestamp(&stamp.at) }),
            depth,
        )),
        Written::Stored(other) => Err(ApiError::Internal(format!(
            "a deploy finish was stored as {other:?}"
        ))),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    env: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// Deploys, newest first.
#[utoipa::path(
    get,
    path = "/ops/deploys",
    tag = "deploys",
    operation_id = "listDeploys",
    security(("admin" = [])),
    params(
        ("env" = Option<String>, Query),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "page size (default 50)"),
        ("cursor" = Option<String>, Query, description = "`nextCursor` of the previous page, passed back as is"),
    ),
    responses(
        (status = 200, description = "one page of deploys", body = PageJson<DeployJson>),
        (status = 400, response = crate::openapi::BadRequest),
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<PageJson<DeployJson>>> {
    let page = PageRequest::parse(q.limit.as_deref(), q.cursor.as_deref())?;
    let found = state
        .deploys
        .list(
            q.env.as_deref().filter(|e| !e.is_empty()),
            page.limit,
            page.cursor.as_ref(),
        )
        .await?;
    Ok(Json(found.into_json(DeployJson::from)))
}

/// A deploy with the gate verdicts given for its release.
#[utoipa::path(
    get,
    path = "/ops/deploys/{id}",
    tag = "deploys",
    operation_id = "showDeploy",
    security(("admin" = [])),
    params(("id" = String, Path, description = "the deploy's id")),
    responses(
        (status = 200, description = "the deploy and the gate verdicts given for it", body = DeployWithGates),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 404, response = crate::openapi::NotFound),
    )
)]
pub(crate) async fn show(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<DeployWithGates>> {
    let found = state
        .deploys
        .get(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("deploy `{id}` does not exist")))?;
    let gate_evaluations = state
        .evaluations
        .for_deploy(&id)
        .await?
        .into_iter()
        .map(EvaluationJson::from)
        .collect();
    Ok(Json(DeployWithGates {
        deploy: DeployJson::from(found),
        gate_evaluations,
    }))
}

/// `GET /ops/deploys/{id}`: the deploy with the gate verdicts linked to it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeployWithGates {
    #[serde(flatten)]
    pub deploy: DeployJson,
    pub gate_evaluations: Vec<EvaluationJson>,
}
