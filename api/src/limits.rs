//! Limits on a request's size and duration, answered in our JSON error format before any handler
//! runs: URI length and header size (below hyper's own parser limits, whose answers carry no body),
//! a declared `Content-Length` over `MAX_BODY_BYTES`, and `REQUEST_TIMEOUT_MS`.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::AppState;

/// Longest accepted request target (path and query), in bytes. hyper refuses only heads over its
/// read buffer (about 400 KiB), with an empty body; this limit answers well before that.
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// Largest accepted total of header names and values, in bytes (same reasoning as the URI).
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// The error for a request head over [`MAX_URI_BYTES`] or [`MAX_HEADER_BYTES`], if it is.
/// Checked on every request, liveness included, so it is a few additions and no allocation.
pub fn oversized_head<B>(req: &axum::http::Request<B>) -> Option<ApiError> {
    let uri = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if uri > MAX_URI_BYTES {
        return Some(ApiError::UriTooLong {
            limit: MAX_URI_BYTES,
        });
    }
    let headers: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    (headers > MAX_HEADER_BYTES).then_some(ApiError::HeadersTooLarge {
        limit: MAX_HEADER_BYTES,
    })
}

/// Refuses a body declared larger than `MAX_BODY_BYTES` at once, before waiting for it, and closes
/// the connection since the body will not be read.
pub async fn refuse_declared_oversize(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let limit = state.config.max_body_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        let mut response = ApiError::PayloadTooLarge { limit }.into_response();
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return response;
    }
    next.run(req).await
}

/// Answers 408 with our JSON body when a request runs longer than `REQUEST_TIMEOUT_MS`.
pub async fn request_timeout(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let limit = state.config.request_timeout;
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::RequestTimeout {
            limit_ms: u64::try_from(limit.as_millis()).unwrap_or(u64::MAX),
        }
        .into_response(),
    }
}
