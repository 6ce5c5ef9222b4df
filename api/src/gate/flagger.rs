//! Flagger's webhooks, each answered in Flagger's own dialect:
//! - `POST /ops/gate` (`pre-rollout`, `rollout`): exactly 200 to pass (Flagger fails anything
//!   above 202, so never 204), 503 with the verdict otherwise;
//! - `POST /ops/gate/flagger/confirm` (`confirm-rollout`, `confirm-traffic-increase`,
//!   `confirm-promotion`): the same answer, and the time a canary has been held back, because
//!   Flagger itself waits on a confirm hook for ever;
//! - `POST /ops/gate/flagger/rollback` (`rollback`): Flagger rolls back on 2xx, so this answers
//!   200 only when opsdoctor wants the rollout rolled back: the gate fails, or a confirm hook has
//!   held the canary longer than `FLAGGER_CONFIRM_DEADLINE_S`. Pointing `rollback` at the gate
//!   itself would roll back on every pass.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

use super::routes::{parse_max_age, parse_require, respond};
use super::{GateRequest, GateSource, GateVerdict, Verdict};
use crate::error::ApiResult;
use crate::extract::ApiJson;
use crate::params::{parse_flag, parse_label};
use crate::state::AppState;

/// Canaries remembered at once; beyond it the longest-held is forgotten (its clock restarts).
const MAX_HOLDS: usize = 10_000;

/// A Flagger webhook's body. `metadata` may carry `env`, `release`, `require`, `max_age` and
/// `allow_partial`, read like the query parameters of `GET /ops/gate`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct FlaggerPayload {
    /// The canary's name.
    #[schema(pattern = "^\\s*[!-~]+\\s*$")]
    pub name: String,
    #[schema(pattern = "^\\s*[!-~]+\\s*$")]
    pub namespace: String,
    /// The canary's phase (`Progressing`, `Waiting`, `WaitingPromotion`, …).
    pub phase: String,
    /// The canary's revision; the release when `metadata.release` is not given.
    #[serde(default)]
    pub checksum: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
}

/// The answer to the rollback hook.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollbackAnswer {
    /// True: roll back now (status 200). False: keep going (status 409).
    pub rollback: bool,
    /// Why, in one line.
    pub reason: String,
    /// How long a confirm hook has held this canary back, if it has.
    pub held_seconds: Option<u64>,
    pub verdict: GateVerdict,
}

/// When each canary revision was first held back by a confirm hook.
#[derive(Default)]
pub struct ConfirmHolds {
    held_since: Mutex<HashMap<String, Instant>>,
}

impl ConfirmHolds {
    fn key(p: &FlaggerPayload) -> String {
        format!(
            "{}/{}@{}",
            p.namespace,
            p.name,
            p.checksum.as_deref().unwrap_or_default()
        )
    }

    /// Records a confirm answer: a pass clears the hold; a hold starts the clock if it is not
    /// running. Returns how long the canary has been held.
    fn record(&self, key: String, passed: bool) -> Option<Duration> {
        let mut held = self.held_since.lock().ok()?;
        if passed {
            held.remove(&key);
            return None;
        }
        if held.len() >= MAX_HOLDS && !held.contains_key(&key) {
            if let Some(oldest) = held.iter().min_by_key(|(_, t)| **t).map(|(k, _)| k.clone()) {
                held.remove(&oldest);
            }
        }
        Some(held.entry(key).or_insert_with(Instant::now).elapsed())
    }

    fn held_for(&self, key: &str) -> Option<Duration> {
        Some(self.held_since.lock().ok()?.get(key)?.elapsed())
    }
}

/// Reads the payload into a gate request and evaluates it.
async fn evaluate(state: &AppState, payload: &FlaggerPayload) -> ApiResult<(GateVerdict, bool)> {
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
        .or_else(|| payload.checksum.clone().filter(|c| !c.trim().is_empty()))
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
    state.metrics.gate_verdict(&verdict, "flagger");
    Ok((verdict, allow_partial))
}

fn retry_after(state: &AppState) -> u64 {
    state.config.gate_retry_after.as_secs().max(1)
}

/// Flagger's `pre-rollout` and `rollout` hooks: exactly 200 to pass, 503 with the verdict to hold.
#[utoipa::path(
    post,
    path = "/ops/gate",
    tag = "gate",
    operation_id = "flaggerGate",
    security(("admin" = [])),
    request_body = FlaggerPayload,
    responses(
        (status = 200, description = "pass (or partial with `metadata.allow_partial`): Flagger proceeds", body = GateAnswer),
        (status = 503, description = "hold: Flagger counts a failed check", body = GateAnswer, headers(("Retry-After" = u64))),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 422, response = crate::openapi::Invalid),
    )
)]
pub(crate) async fn flagger(
    State(state): State<AppState>,
    ApiJson(payload): ApiJson<FlaggerPayload>,
) -> ApiResult<Response> {
    let (verdict, allow_partial) = evaluate(&state, &payload).await?;
    Ok(respond(&verdict, allow_partial, false, retry_after(&state)))
}

/// Flagger's `confirm-*` hooks: the gate's answer, with the time the canary has been held back.
#[utoipa::path(
    post,
    path = "/ops/gate/flagger/confirm",
    tag = "gate",
    operation_id = "flaggerConfirm",
    security(("admin" = [])),
    request_body = FlaggerPayload,
    responses(
        (status = 200, description = "pass: Flagger goes on", body = GateAnswer),
        (status = 503, description = "hold; past `FLAGGER_CONFIRM_DEADLINE_S` the rollback hook answers 200", body = GateAnswer, headers(("Retry-After" = u64), ("X-Held-Seconds" = u64))),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 422, response = crate::openapi::Invalid),
    )
)]
pub(crate) async fn confirm(
    State(state): State<AppState>,
    ApiJson(payload): ApiJson<FlaggerPayload>,
) -> ApiResult<Response> {
    let (verdict, allow_partial) = evaluate(&state, &payload).await?;
    let mut response = respond(&verdict, allow_partial, false, retry_after(&state));
    let passed = response.status() == StatusCode::OK;
    if let Some(held) = state.gate.holds.record(ConfirmHolds::key(&payload), passed) {
        response
            .headers_mut()
            .insert("x-held-seconds", HeaderValue::from(held.as_secs()));
    }
    Ok(response)
}

/// Flagger's `rollback` hook: 200 means "roll back now".
#[utoipa::path(
    post,
    path = "/ops/gate/flagger/rollback",
    tag = "gate",
    operation_id = "flaggerRollback",
    security(("admin" = [])),
    request_body = FlaggerPayload,
    responses(
        (status = 200, description = "roll back: the gate fails, or a confirm hook held the canary past the deadline", body = RollbackAnswer),
        (status = 409, description = "no rollback wanted (any status above 202 tells Flagger to keep going)", body = RollbackAnswer),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 422, response = crate::openapi::Invalid),
    )
)]
pub(crate) async fn rollback(
    State(state): State<AppState>,
    ApiJson(payload): ApiJson<FlaggerPayload>,
) -> ApiResult<Response> {
    let (verdict, _) = evaluate(&state, &payload).await?;
    let held = state.gate.holds.held_for(&ConfirmHolds::key(&payload));
    let deadline = state.config.flagger_confirm_deadline;
    let (rollback, why, reason) = if verdict.verdict == Verdict::Fail {
        (
            true,
            "gate_fail",
            format!("the gate fails: {}", verdict.summary),
        )
    } else if let Some(held) = held.filter(|h| *h >= deadline) {
        (
            true,
            "confirm_deadline",
            format!(
                "a confirm hook has held this canary for {} s, past FLAGGER_CONFIRM_DEADLINE_S ({} s)",
                held.as_secs(),
                deadline.as_secs()
            ),
        )
    } else {
        (
            false,
            "healthy",
            format!("no rollback: the gate says {}", verdict.verdict.as_str()),
        )
    };
    state.metrics.flagger_rollback_answer(rollback, why);
    let status = if rollback {
        StatusCode::OK
    } else {
        StatusCode::CONFLICT
    };
    let body = RollbackAnswer {
        rollback,
        reason,
        held_seconds: held.map(|h| h.as_secs()),
        verdict,
    };
    let mut response = (status, Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

pub use super::routes::GateAnswer;
