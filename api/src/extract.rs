//! Our own JSON and query extractors, so malformed input gets our error format naming the field.

use axum::body::Bytes;
use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

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
            // `null` says "no body" as an empty body does.
            Some(bytes) if bytes.trim_ascii() == b"null" => Ok(MaybeJson(None)),
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

/// Parses a JSON document: syntax errors are 400; a NUL character anywhere (which PostgreSQL
/// cannot store in text or `jsonb`) and a value of the wrong shape are 422 naming the field's path.
///
/// The document is read into a [`Value`] first, so that every error after that is about shape:
/// serde_json's streaming parser reports a non-string where an enum is expected (`null`, a
/// number, an array) as a syntax error, though the JSON is well formed.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(None, format!("malformed JSON: {e}")))?;
    // Every body is an object; serde would otherwise read a struct from an array of its fields.
    if !value.is_object() {
        return Err(ApiError::Invalid {
            field: None,
            message: "the body must be a JSON object".to_owned(),
        });
    }
    if let Some(field) = nul_in(&value, String::new()) {
        let at = if field.is_empty() { "the body" } else { &field };
        return Err(ApiError::Invalid {
            message: format!("{at}: contains a NUL character (\\u0000), which cannot be stored"),
            field: Some(field).filter(|f| !f.is_empty()),
        });
    }
    serde_path_to_error::deserialize(&value).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let field = if path == "." { None } else { Some(path) };
        let message = match &field {
            Some(f) => format!("{f}: {inner}"),
            None => inner.to_string(),
        };
        ApiError::Invalid {
            field: field.or_else(|| missing_field(&inner.to_string())),
            message,
        }
    })
}

/// The path of the first string holding a NUL, as serde_path_to_error writes paths
/// (`detailsJson.a.b[1]`); for an object key holding one, the path of the object (or, at the top
/// level, the key itself, escaped).
fn nul_in(value: &Value, path: String) -> Option<String> {
    match value {
        Value::String(s) if s.contains('\0') => Some(path),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| nul_in(item, format!("{path}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(key, item)| {
            if key.contains('\0') {
                return Some(if path.is_empty() {
                    key.escape_default().to_string()
                } else {
                    path.clone()
                });
            }
            let inner = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            nul_in(item, inner)
        }),
        _ => None,
    }
}

/// serde names a missing field only in its message (`missing field `summary``).
fn missing_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    Some(rest.split('`').next()?.to_owned())
}

/// Query parameters as plain strings; handlers validate each value and name the parameter at fault.
/// A NUL character in any name or value is refused here (400), for every endpoint alike.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        if let Some((name, _)) = url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, v)| k.contains('\0') || v.contains('\0'))
        {
            let name = name.escape_default().to_string();
            return Err(ApiError::bad_request(
                Some(name.clone()),
                format!("{name}: contains a NUL character (%00), which cannot be stored"),
            ));
        }
        serde_urlencoded::from_str(query)
            .map(ApiQuery)
            .map_err(|e| ApiError::bad_request(None, format!("bad query string: {e}")))
    }
}
