//! The HTTP error type: every failure becomes a JSON body naming the problem, never a panic.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Everything a handler can fail with. Each variant's doc names its status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request could not be read (malformed JSON, bad query value, bad cursor).
    #[error("{message}")]
    BadRequest {
        field: Option<String>,
        message: String,
    },
    /// 422: the request was read but a value is not acceptable (unknown enum value, wrong type, …).
    #[error("{message}")]
    Invalid {
        field: Option<String>,
        message: String,
    },
    /// 401: no or wrong bearer token.
    #[error("a valid `Authorization: Bearer <ADMIN_TOKEN>` header is required")]
    Unauthorized,
    /// 403: the admin endpoints are disabled because no token is configured.
    #[error("ADMIN_TOKEN is not configured on this server, so /ops endpoints are disabled; set ADMIN_TOKEN and restart")]
    AdminDisabled,
    /// 404: the addressed thing does not exist.
    #[error("{0}")]
    NotFound(String),
    /// 409: the request conflicts with the current state (e.g. resolving twice).
    #[error("{0}")]
    Conflict(String),
    /// 413: the body is larger than MAX_BODY_BYTES.
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// 408: the request ran longer than REQUEST_TIMEOUT_MS.
    #[error("the request took longer than the limit of {limit_ms} ms")]
    RequestTimeout { limit_ms: u64 },
    /// 414: the request target is longer than the service accepts.
    #[error("the request URI is longer than the limit of {limit} bytes")]
    UriTooLong { limit: usize },
    /// 431: the request's headers together are larger than the service accepts.
    #[error("the request headers are larger than the limit of {limit} bytes")]
    HeadersTooLarge { limit: usize },
    /// 405: the route exists but not with this method.
    #[error("this endpoint does not accept that method")]
    MethodNotAllowed,
    /// 429: too many requests of this kind; `Retry-After` says when to come back.
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after: std::time::Duration,
    },
    /// 500: the service's own fault (a panic, a task that died); the cause is logged here, and
    /// the client is told only to look at the log.
    #[error("internal error; see the server log")]
    Internal(String),
    /// 415: the body is not JSON.
    #[error("expected `Content-Type: application/json`")]
    UnsupportedMediaType,
    /// 503: the database is unavailable; the cause is logged, not shown.
    #[error("the database is unavailable; try again shortly")]
    Database(#[from] sea_orm::DbErr),
    /// 503: the database circuit breaker is open, so this read is refused at once instead of
    /// waiting for the database; `Retry-After` says when the next probe is due.
    #[error("{message}")]
    DatabaseOpen {
        message: String,
        retry_after: std::time::Duration,
    },
    /// 507: the database is down and the spool of queued writes is full; the write was not
    /// accepted.
    #[error("{0}")]
    SpoolFull(String),
}

impl ApiError {
    pub fn bad_request(field: impl Into<Option<String>>, message: impl Into<String>) -> Self {
        Self::BadRequest {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: Some(field.to_owned()),
            message: message.into(),
        }
    }

    /// The JSON body every error answer carries: `{"error": {"code", "message", "field"}}`.
    pub fn envelope(&self) -> serde_json::Value {
        let field = match self {
            Self::BadRequest { field, .. } | Self::Invalid { field, .. } => field.clone(),
            _ => None,
        };
        let envelope = crate::openapi::ErrorEnvelope {
            error: crate::openapi::ErrorBody {
                code: self.code().to_owned(),
                message: self.to_string(),
                field,
            },
        };
        serde_json::to_value(envelope).unwrap_or_else(|_| json!({}))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::AdminDisabled => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::UriTooLong { .. } => StatusCode::URI_TOO_LONG,
            Self::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Database(_) | Self::DatabaseOpen { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::SpoolFull(_) => StatusCode::INSUFFICIENT_STORAGE,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { .. } => "bad_request",
            Self::Invalid { .. } => "invalid_value",
            Self::Unauthorized => "unauthorized",
            Self::AdminDisabled => "admin_token_not_configured",
            Self::NotFound(_) => "not_found",
            Self::Conflict(_) => "conflict",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::RequestTimeout { .. } => "request_timeout",
            Self::UriTooLong { .. } => "uri_too_long",
            Self::HeadersTooLarge { .. } => "headers_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::RateLimited { .. } => "rate_limited",
            Self::Internal(_) => "internal",
            Self::Database(_) | Self::DatabaseOpen { .. } => "database_unavailable",
            Self::SpoolFull(_) => "spool_full",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            Self::Database(err) => {
                tracing::error!(error = %err, "database error while serving a request")
            }
            Self::Internal(cause) => {
                tracing::error!(%cause, "internal error while serving a request")
            }
            _ => {}
        }
        let mut response = (self.status(), axum::Json(self.envelope())).into_response();
        match self {
            Self::Unauthorized => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::Database(_) => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            Self::RateLimited { retry_after, .. } | Self::DatabaseOpen { retry_after, .. } => {
                let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            }
            _ => {}
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
