//! `GET /status`: the status page for people, with a public view (component states and incident
//! summaries) and a full view for operators; `POST /status/login` and `POST /status/logout`.
//!
//! A browser gets the full view by signing in with the admin token through a form: the token
//! travels in a POST body, never in a URL that a proxy or an access log would keep, and the
//! browser keeps only a session cookie (`HttpOnly`, `SameSite=Strict`, 12 hours) that is an HMAC
//! under the token, so changing the token ends every session. `Authorization: Bearer` works too.

mod data;
mod view;

use axum::body::Bytes;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, Extension, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use hmac::{Hmac, Mac};
use maud::Markup;
use secrecy::ExposeSecret;
use sha2::Sha256;
use tower_http::catch_panic::CatchPanicLayer;

use crate::auth::{bearer_token, token_matches};
use crate::error::ApiError;
use crate::state::AppState;
use crate::telemetry::scrub::Scrubber;

const COOKIE: &str = "opsdoctor_status";
/// The public view is rendered at most once per this long, however many people reload it: a
/// public page must not turn a reload storm into a query storm.
const PUBLIC_TTL: Duration = Duration::from_secs(2);
const SESSION_SECS: i64 = 12 * 3600;

/// The status page's routes, with their own body limit and panic guard.
pub fn router(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/status", get(status))
        .route("/status/login", post(login))
        .route("/status/logout", post(logout))
        .layer(Extension(PublicView::default()))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::Internal("a handler panicked".to_owned()).into_response()
        }))
}

/// The last rendering of the public view, shared by the requests of one router; the lock is held
/// while rendering, so concurrent requests wait for one rendering instead of each making one.
#[derive(Clone, Default)]
pub(crate) struct PublicView(Arc<tokio::sync::Mutex<Option<(Instant, Markup)>>>);

/// `<expiry>.<hex HMAC-SHA256(token, "opsdoctor-status:<expiry>")>`.
fn session_value(token: &str, expiry: i64) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(token.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(format!("opsdoctor-status:{expiry}").as_bytes());
    format!("{expiry}.{}", hex::encode(mac.finalize().into_bytes()))
}

fn valid_session(token: &str, value: &str) -> bool {
    let Some((expiry, _)) = value.split_once('.') else {
        return false;
    };
    let Ok(expiry) = expiry.parse::<i64>() else {
        return false;
    };
    expiry > chrono::Utc::now().timestamp() && token_matches(value, &session_value(token, expiry))
}

/// Whether the request carries the admin token (bearer) or a valid session cookie.
fn is_operator(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(token) = &state.config.admin_token else {
        return false;
    };
    let token = token.expose_secret();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    if bearer.is_some_and(|b| token_matches(b, token)) {
        return true;
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .any(|(name, value)| name == COOKIE && valid_session(token, value))
}

/// An HTML answer that no cache keeps and no frame shows, with configured secrets masked.
fn html(state: &AppState, status: StatusCode, markup: Markup) -> Response {
    let scrubbed = Scrubber::new(&state.config.secrets()).scrub(markup.into_string().as_bytes());
    let mut response = (status, scrubbed).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    response
}

/// The status page for people (HTML): the public view, or the full one with the admin token as a
/// bearer or a session cookie from `/status/login`.
#[utoipa::path(
    get,
    path = "/status",
    tag = "status",
    operation_id = "statusPage",
    responses(
        (status = 200, description = "the page (or, with `STATUS_PAGE_PUBLIC=false` and no token, the sign-in form)", content_type = "text/html", body = String),
    )
)]
pub(crate) async fn status(
    State(state): State<AppState>,
    Extension(public): Extension<PublicView>,
    headers: HeaderMap,
) -> Response {
    let full = is_operator(&state, &headers);
    if !full && !state.config.notify.status_public {
        return html(&state, StatusCode::OK, view::sign_in(None));
    }
    let refresh = state.config.notify.status_refresh.as_secs();
    if full {
        let data = data::gather(&state, true).await;
        return html(&state, StatusCode::OK, view::status(&data, refresh));
    }
    let mut cached = public.0.lock().await;
    match &*cached {
        Some((at, page)) if at.elapsed() < PUBLIC_TTL => html(&state, StatusCode::OK, page.clone()),
        _ => {
            let data = data::gather(&state, false).await;
            let page = view::status(&data, refresh);
            *cached = Some((Instant::now(), page.clone()));
            html(&state, StatusCode::OK, page)
        }
    }
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"))
}

/// Whether the cookie may be marked `Secure`: the page is reached over HTTPS.
fn over_https(state: &AppState, headers: &HeaderMap) -> bool {
    let forwarded = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"));
    forwarded
        || state
            .config
            .notify
            .status_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"))
}

fn redirect_to_status(cookie: String) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let h = response.headers_mut();
    h.insert(header::LOCATION, HeaderValue::from_static("/status"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        h.insert(header::SET_COOKIE, v);
    }
    response
}

/// The sign-in form's fields.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // a schema for the document; the handler reads the form itself
pub(crate) struct SignIn {
    /// The admin token.
    token: String,
}

/// Sign in with the admin token (a form POST, so the token never appears in an address); sets
/// an HttpOnly session cookie that is an HMAC under the token, never the token itself.
#[utoipa::path(
    post,
    path = "/status/login",
    tag = "status",
    operation_id = "statusLogin",
    request_body(content = SignIn, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "signed in: the session cookie is set, and the browser is sent to `/status`"),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::AdminDisabled),
    )
)]
pub(crate) async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let refuse = |status: StatusCode, error: ApiError, text: &str| {
        if wants_html(&headers) {
            html(&state, status, view::sign_in(Some(text)))
        } else {
            error.into_response()
        }
    };
    let Some(expected) = &state.config.admin_token else {
        return refuse(
            StatusCode::FORBIDDEN,
            ApiError::AdminDisabled,
            "Sign-in is off: ADMIN_TOKEN is not configured on this server.",
        );
    };
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let Some(token) = fields
        .iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
    else {
        return refuse(
            StatusCode::BAD_REQUEST,
            ApiError::bad_request(
                Some("token".to_owned()),
                "the form field `token` is required",
            ),
            "Enter the admin token.",
        );
    };
    if !token_matches(token, expected.expose_secret()) {
        tracing::warn!("status page: sign-in with a wrong token");
        return refuse(
            StatusCode::UNAUTHORIZED,
            ApiError::Unauthorized,
            "That is not the admin token.",
        );
    }
    let expiry = chrono::Utc::now().timestamp() + SESSION_SECS;
    let secure = if over_https(&state, &headers) {
        "; Secure"
    } else {
        ""
    };
    redirect_to_status(format!(
        "{COOKIE}={}; Path=/status; Max-Age={SESSION_SECS}; HttpOnly; SameSite=Strict{secure}",
        session_value(expected.expose_secret(), expiry)
    ))
}

/// Sign out: the session cookie is cleared.
#[utoipa::path(
    post,
    path = "/status/logout",
    tag = "status",
    operation_id = "statusLogout",
    responses((status = 303, description = "signed out: the cookie is cleared, and the browser is sent to `/status`"))
)]
pub(crate) async fn logout() -> Response {
    redirect_to_status(format!(
        "{COOKIE}=; Path=/status; Max-Age=0; HttpOnly; SameSite=Strict"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_valid_only_for_its_token_and_until_it_expires() {
        let later = chrono::Utc::now().timestamp() + 60;
        let value = session_value("token-one-0123456789", later);
        assert!(valid_session("token-one-0123456789", &value));
        assert!(!valid_session("token-two-0123456789", &value));
        let earlier = chrono::Utc::now().timestamp() - 1;
        let expired = session_value("token-one-0123456789", earlier);
        assert!(!valid_session("token-one-0123456789", &expired));
        let forged = format!("{}.{}", later + 3600, value.split_once('.').unwrap().1);
        assert!(!valid_session("token-one-0123456789", &forged));
        assert!(!valid_session("token-one-0123456789", "garbage"));
    }
}
