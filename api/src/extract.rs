//! Our own JSON and query extractors, so malformed input gets our error format naming the field.

use axum::body::Bytes;
use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// The largest accepted body, as configured; part of the state so the extractors can say it.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// A JSON body. Rejects a missing or non-JSON content type (415), an oversized body (413),
/// malformed JSON (400), and a body of the wrong shape (422, naming the field at fault).
pub struct ApiJson<T>(pub T);

/// Like [`ApiJson`], but an empty body is `None` (for endpoints whose body is optional).
pub struct MaybeJson<T>(pub Option<T>);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    BodyLimit: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match read_body(req, state).await? {
            Some(bytes) => parse_json(&bytes).map(ApiJson),
            None => Err(ApiError::bad_request(None, "a JSON body is required")),
        }
    }
}

impl<S, T> FromRequest<S> for MaybeJson<T>
where
    T: DeserializeOwned,
    BodyLimit: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match read_body(req, state).await? {
            Some(bytes) => parse_json(&bytes).map(|v| MaybeJson(Some(v))),
            None => Ok(MaybeJson(None)),
        }
    }
}

/// Reads the whole body under the limit; `None` when it is empty, an error when it is not JSON.
async fn read_body<S>(req: Request, state: &S) -> Result<Option<Bytes>, ApiError>
where
    BodyLimit: FromRef<S>,
    S: Send + Sync,
{
    let limit = BodyLimit::from_ref(state).0;
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|mime| mime.trim().to_ascii_lowercase());
    let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge { limit }
        } else {
            ApiError::bad_request(
                None,
                format!("could not read the request body: {rejection}"),
            )
        }
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let is_json = content_type
        .map(|mime| {
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
        .unwrap_or(false);
    if !is_json {
        return Err(ApiError::UnsupportedMediaType);
    }
    Ok(Some(bytes))
}

/// Parses a JSON document, telling syntax errors (400) from shape errors (422 with the field path).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed: Result<T, _> = serde_path_to_error::deserialize(&mut de);
    match parsed {
        Ok(value) => {
            de.end()
                .map_err(|e| ApiError::bad_request(None, format!("malformed JSON: {e}")))?;
            Ok(value)
        }
        Err(err) => {
            let path = err.path().to_string();
            let inner = err.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                return Err(ApiError::bad_request(
                    None,
                    format!("malformed JSON: {inner}"),
                ));
            }
            let field = if path == "." { None } else { Some(path) };
            let message = match &field {
                Some(f) => format!("{f}: {}", strip_position(&inner.to_string())),
                None => strip_position(&inner.to_string()),
            };
            Err(ApiError::Invalid {
                field: field.or_else(|| missing_field(&inner.to_string())),
                message,
            })
        }
    }
}

/// serde names a missing field only in its message (`missing field `summary``).
fn missing_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    Some(rest.split('`').next()?.to_owned())
}

fn strip_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// Query parameters as plain strings; handlers validate each value and name the parameter at fault.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        serde_urlencoded::from_str(query)
            .map(ApiQuery)
            .map_err(|e| ApiError::bad_request(None, format!("bad query string: {e}")))
    }
}
