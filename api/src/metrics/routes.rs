//! `GET /metrics`: behind the admin token on the main listener, and open on `METRICS_ADDR` when
//! that separate listener is configured (for a Prometheus that scrapes without credentials).

use std::net::SocketAddr;

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::state::AppState;

/// The content type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The admin route on the main listener (mounted behind the bearer-token layer).
pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

/// Prometheus text of every metric.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "metrics",
    security(("admin" = [])),
    responses(
        (status = 200, description = "Prometheus text format 0.0.4", body = String, content_type = "text/plain"),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::AdminDisabled),
    )
)]
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    let text = super::scrape::render(&state).await;
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        text,
    )
        .into_response()
}

/// Binds the separate metrics listener; bound before serving so that a port of 0 can be read back.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves `GET /metrics` without a token on `listener` until `stop` resolves.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .fallback(|| async {
            crate::error::ApiError::NotFound("only /metrics is served here".to_owned())
        })
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
}
