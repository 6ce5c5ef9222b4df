//! `GET /ops/gate` (status-code and `mode=verdict` forms) and `GET /ops/gate/evaluations`; the
//! router also mounts Flagger's webhooks ([`super::flagger`]).

use std::collections::BTreeSet;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use checks::CheckName;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::{flagger, GateRequest, GateSource, GateVerdict, Verdict};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiQuery;
use crate::kernel::PageJson;
use crate::params::{parse_flag, parse_label, PageRequest};
use crate::state::AppState;

/// `max_age` when none is given, in seconds.
const DEFAULT_MAX_AGE_SECONDS: u64 = 30;
/// The longest `max_age` accepted, in seconds.
const MAX_MAX_AGE_SECONDS: u64 = 86_400;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ops/gate", get(gate).post(flagger::flagger))
        .route("/ops/gate/flagger/confirm", post(flagger::confirm))
        .route("/ops/gate/flagger/rollback", post(flagger::rollback))
        .route("/ops/gate/evaluations", get(list))
}

#[derive(Debug, Deserialize)]
pub(crate) struct GateQuery {
    env: Option<String>,
    release: Option<String>,
    require: Option<String>,
    max_age: Option<String>,
    allow_partial: Option<String>,
    mode: Option<String>,
}

pub(super) fn parse_require(raw: Option<&str>) -> ApiResult<Option<BTreeSet<String>>> {
    let Some(raw) = raw.filter(|r| !r.trim().is_empty()) else {
        return Ok(None);
    };
    let names: BTreeSet<String> = raw
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    if names.is_empty() {
        return Ok(None);
    }
    if let Some(unknown) = names.iter().find_map(|n| n.parse::<CheckName>().err()) {
        return Err(ApiError::bad_request(
            Some("require".into()),
            format!("require: {unknown}"),
        ));
    }
    Ok(Some(names))
}

pub(super) fn parse_max_age(raw: Option<&str>) -> ApiResult<Duration> {
    match raw.map(str::trim).filter(|r| !r.is_empty()) {
        None => Ok(Duration::from_secs(DEFAULT_MAX_AGE_SECONDS)),
        Some(v) => match v.trim_end_matches('s').parse::<u64>() {
            Ok(n) if n <= MAX_MAX_AGE_SECONDS => Ok(Duration::from_secs(n)),
            _ => Err(ApiError::bad_request(
                Some("max_age".into()),
                format!("max_age: `{v}` is not a whole number of seconds from 0 to {MAX_MAX_AGE_SECONDS}"),
            )),
        },
    }
}

/// A verdict as answered: the verdict's fields and how the caller should take it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GateAnswer {
    #[serde(flatten)]
    pub verdict: GateVerdict,
    /// Whether a `partial` verdict was allowed to proceed.
    pub allow_partial: bool,
    /// True when the caller may go on: `pass`, or `partial` when allowed.
    pub proceed: bool,
}

/// The verdict as a response: 200 on pass (and on partial when allowed), else 503 with
/// `Retry-After`; `mode=verdict` answers 200 whatever the verdict, for Argo's web metric.
pub(super) fn respond(
    verdict: &GateVerdict,
    allow_partial: bool,
    always_ok: bool,
    retry_after: u64,
) -> Response {
    let go =
        verdict.verdict == Verdict::Pass || (verdict.verdict == Verdict::Partial && allow_partial);
    let status = if go || always_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = GateAnswer {
        verdict: verdict.clone(),
        allow_partial,
        proceed: go,
    };
    let mut response = (status, Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        HeaderName::from_static("x-gate-verdict"),
        HeaderValue::from_static(verdict.verdict.as_str()),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    }
    response
}

/// `GET /ops/gate`, and `HEAD` (which axum routes here too): the same answer without a body, and
/// without storing the verdict.
#[utoipa::path(
    get,
    path = "/ops/gate",
    tag = "gate",
    operation_id = "gate",
    security(("admin" = [])),
    params(
        ("env" = String, Query, min_length = 1, pattern = "^\\s*[!-~]+\\s*$", description = "the environment: at most 100 printable ASCII characters, no spaces"),
        ("release" = String, Query, min_length = 1, pattern = "^\\s*[!-~]+\\s*$", description = "the release being gated: at most 200 printable ASCII characters, no spaces"),
        ("require" = Option<String>, Query, description = "comma-separated checks that must pass (default: REQUIRED_CHECKS)"),
        ("max_age" = Option<u32>, Query, minimum = 0, maximum = 86400, description = "reuse results up to this many seconds old (default 30)"),
        ("allow_partial" = Option<bool>, Query, description = "let `partial` (a non-required check failing) proceed"),
        ("mode" = Option<String>, Query, description = "`status` (default): 503 unless the caller may proceed; `verdict`: always 200, for Argo Rollouts"),
    ),
    responses(
        (status = 200, description = "proceed, or any verdict with `mode=verdict`", body = GateAnswer, headers(("X-Gate-Verdict" = String))),
        (status = 503, description = "do not proceed", body = GateAnswer, headers(("Retry-After" = u64), ("X-Gate-Verdict" = String))),
        (status = 400, response = crate::openapi::BadRequest),
    )
)]
pub(crate) async fn gate(
    State(state): State<AppState>,
    method: Method,
    ApiQuery(q): ApiQuery<GateQuery>,
) -> ApiResult<Response> {
    let always_ok = match q.mode.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("") | Some("status") => false,
        Some("verdict") => true,
        Some(other) => {
            return Err(ApiError::bad_request(
                Some("mode".into()),
                format!("mode: unknown value `{other}`; expected status or verdict"),
            ))
        }
    };
    let request = GateRequest {
        environment: parse_label("env", q.env.as_deref(), 100)?,
        release: parse_label("release", q.release.as_deref(), 200)?,
        require: parse_require(q.require.as_deref())?,
        max_age: parse_max_age(q.max_age.as_deref())?,
        source: GateSource::Api,
        context: None,
        record: method != Method::HEAD,
    };
    let allow_partial = parse_flag("allow_partial", q.allow_partial.as_deref())?;
    let verdict = state.gate.evaluate(request).await;
    state.metrics.gate_verdict(&verdict, "api");
    Ok(respond(
        &verdict,
        allow_partial,
        always_ok,
        state.config.gate_retry_after.as_secs().max(1),
    ))
}

#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    env: Option<String>,
    release: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// Stored gate verdicts, newest first.
#[utoipa::path(
    get,
    path = "/ops/gate/evaluations",
    tag = "gate",
    operation_id = "listGateEvaluations",
    security(("admin" = [])),
    params(
        ("env" = Option<String>, Query),
        ("release" = Option<String>, Query),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "page size (default 50)"),
        ("cursor" = Option<String>, Query, description = "`nextCursor` of the previous page, passed back as is"),
    ),
    responses(
        (status = 200, description = "one page of verdicts", body = PageJson<EvaluationJson>),
        (status = 400, response = crate::openapi::BadRequest),
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<PageJson<EvaluationJson>>> {
    let page = PageRequest::parse(q.limit.as_deref(), q.cursor.as_deref())?;
    let found = state
        .evaluations
        .list(
            q.env.as_deref().filter(|e| !e.is_empty()),
            q.release.as_deref().filter(|r| !r.is_empty()),
            page.limit,
            page.cursor.as_ref(),
        )
        .await?;
    Ok(Json(found.into_json(EvaluationJson::from)))
}

/// A stored gate verdict as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EvaluationJson {
    pub gate_id: String,
    pub created_at: String,
    pub environment: String,
    pub release: String,
    /// `pass`, `partial` or `fail`.
    pub verdict: String,
    pub summary: String,
    /// `api` or `flagger`.
    pub source: String,
    pub deploy_id: Option<String>,
    /// The checks as evaluated, and the caller's context (a Flagger payload).
    #[schema(value_type = Object)]
    pub details: Value,
}

impl From<entity::ops_gate_evaluation::Model> for EvaluationJson {
    fn from(e: entity::ops_gate_evaluation::Model) -> Self {
        Self {
            gate_id: e.id,
            created_at: crate::kernel::timestamp(&e.created_at),
            environment: e.environment,
            release: e.release,
            verdict: e.verdict,
            summary: e.summary,
            source: e.source,
            deploy_id: e.deploy_id,
            details: e.checks_json,
        }
    }
}
