//! `GET /ops/gate` (status-code and `mode=verdict` forms), `POST /ops/gate` (Flagger webhooks)
//! and `GET /ops/gate/evaluations`.

use std::collections::BTreeSet;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use checks::CheckName;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::{GateRequest, GateSource, GateVerdict, Verdict};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiQuery};
use crate::kernel::PageJson;
use crate::params::{parse_flag, parse_label, PageRequest};
use crate::state::AppState;

/// `max_age` when none is given, in seconds.
const DEFAULT_MAX_AGE_SECONDS: u64 = 30;
/// The longest `max_age` accepted, in seconds.
const MAX_MAX_AGE_SECONDS: u64 = 86_400;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ops/gate", get(gate).post(flagger))
        .route("/ops/gate/evaluations", get(list))
}

#[derive(Debug, Deserialize)]
struct GateQuery {
    env: Option<String>,
    release: Option<String>,
    require: Option<String>,
    max_age: Option<String>,
    allow_partial: Option<String>,
    mode: Option<String>,
}

fn parse_require(raw: Option<&str>) -> ApiResult<Option<BTreeSet<String>>> {
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

fn parse_max_age(raw: Option<&str>) -> ApiResult<Duration> {
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
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Answer<'a> {
    #[serde(flatten)]
    verdict: &'a GateVerdict,
    allow_partial: bool,
    proceed: bool,
}

/// The verdict as a response: 200 on pass (and on partial when allowed), else 503 with
/// `Retry-After`; `mode=verdict` answers 200 whatever the verdict, for Argo's web metric.
fn respond(
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
    let body = Answer {
        verdict,
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
async fn gate(
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
    Ok(respond(
        &verdict,
        allow_partial,
        always_ok,
        state.config.gate_retry_after.as_secs().max(1),
    ))
}

/// A Flagger webhook (`pre-rollout`, `rollout`, `confirm-promotion` …). Flagger proceeds on 2xx
/// and holds the rollout on anything else, logging the body.
#[derive(Debug, Deserialize)]
struct FlaggerPayload {
    name: String,
    namespace: String,
    phase: String,
    #[serde(default)]
    checksum: Option<String>,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
}

async fn flagger(
    State(state): State<AppState>,
    ApiJson(payload): ApiJson<FlaggerPayload>,
) -> ApiResult<Response> {
    let metadata = payload.metadata.clone().unwrap_or_default();
    let text = |key: &str| {
        metadata
            .get(key)
            .and_then(|v| v.as_str().map(str::to_owned))
    };
    let environment = text("env")
        .or_else(|| text("environment"))
        .unwrap_or_else(|| payload.namespace.clone());
    let release = text("release")
        .or_else(|| payload.checksum.clone())
        .unwrap_or_else(|| payload.name.clone());
    let request = GateRequest {
        environment: parse_label("metadata.env", Some(&environment), 100)?,
        release: parse_label("metadata.release", Some(&release), 200)?,
        require: parse_require(text("require").as_deref())?,
        max_age: parse_max_age(text("max_age").as_deref())?,
        source: GateSource::Flagger,
        context: Some(json!({ "flagger": {
            "name": payload.name, "namespace": payload.namespace, "phase": payload.phase, "checksum": payload.checksum,
            "metadata": metadata,
        }})),
        record: true,
    };
    let allow_partial = parse_flag("metadata.allow_partial", text("allow_partial").as_deref())?;
    let verdict = state.gate.evaluate(request).await;
    Ok(respond(
        &verdict,
        allow_partial,
        false,
        state.config.gate_retry_after.as_secs().max(1),
    ))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    env: Option<String>,
    release: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<PageJson<Value>>> {
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
    Ok(Json(found.into_json(evaluation_json)))
}

/// A stored evaluation as JSON.
pub fn evaluation_json(e: entity::ops_gate_evaluation::Model) -> Value {
    json!({
        "gateId": e.id,
        "createdAt": crate::kernel::timestamp(&e.created_at),
        "environment": e.environment,
        "release": e.release,
        "verdict": e.verdict,
        "summary": e.summary,
        "source": e.source,
        "deployId": e.deploy_id,
        "details": e.checks_json,
    })
}
