//! Our own path extractor, so a path parameter that cannot be read (invalid UTF-8 once
//! percent-decoded, wrong type) gets our JSON 400 naming the parameter, not axum's plain text,
//! and a NUL character (which PostgreSQL cannot store or compare) is refused before any query.

use axum::extract::path::ErrorKind;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path, RawPathParams};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Path parameters, deserialised like axum's `Path<T>`.
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // Undecodable values fall through to `Path` below, which names the parameter.
        if let Ok(raw) = RawPathParams::from_request_parts(parts, state).await {
            if let Some((name, _)) = raw.iter().find(|(_, value)| value.contains('\0')) {
                return Err(ApiError::bad_request(
                    Some(name.to_owned()),
                    format!("{name}: contains a NUL character (%00)"),
                ));
            }
        }
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(ApiPath(value)),
            Err(PathRejection::FailedToDeserializePathParams(err)) => {
                let field = match err.kind() {
                    ErrorKind::InvalidUtf8InPathParam { key }
                    | ErrorKind::ParseErrorAtKey { key, .. }
                    | ErrorKind::DeserializeError { key, .. } => Some(key.clone()),
                    _ => None,
                };
                let message = match &field {
                    Some(key) => format!("path parameter `{key}`: {}", err.kind()),
                    None => format!("bad path parameter: {}", err.kind()),
                };
                Err(ApiError::bad_request(field, message))
            }
            Err(other) => Err(ApiError::bad_request(
                None,
                format!("bad path: {}", other.body_text()),
            )),
        }
    }
}
