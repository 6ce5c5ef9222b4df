//! Our own path extractor, so a bad path value gets our error format naming the parameter, and a
//! NUL character (which PostgreSQL cannot store or compare) is refused before any query.

use axum::extract::{FromRequestParts, Path, RawPathParams};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Path parameters. Rejects a value holding a NUL (400 naming the parameter) and any value axum
/// cannot decode (400 as JSON, not axum's plain-text rejection).
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let raw = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::bad_request(None, rejection.body_text()))?;
        if let Some((name, _)) = raw.iter().find(|(_, value)| value.contains('\0')) {
            return Err(ApiError::bad_request(
                Some(name.to_owned()),
                format!("{name}: contains a NUL character (%00)"),
            ));
        }
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| ApiPath(value))
            .map_err(|rejection| ApiError::bad_request(None, rejection.body_text()))
    }
}
