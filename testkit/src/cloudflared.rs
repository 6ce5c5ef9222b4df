//! A fake of cloudflared's metrics server: `/ready`, `/healthcheck` and Prometheus `/metrics`.
//!
//! `/ready` answers without any Content-Type header, so a client that insists on
//! `application/json` fails here as it would against the real process.

use axum::http::StatusCode;
use axum::response::Response;

use crate::reply;
use crate::{serve, Call, Fake};

/// How many edge connections the tunnel process has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsMode {
    /// Connected; `/ready` is 200 with this count (0 is answered like `NoConnections`, as
    /// cloudflared is ready only with at least one connection).
    Ready { connections: u32 },
    /// Running without edge connections: `/ready` is 503 with `readyConnections: 0`.
    NoConnections,
}

/// Starts a fake cloudflared metrics server on 127.0.0.1.
pub async fn start(mode: MetricsMode) -> Fake<MetricsMode> {
    serve(mode, answer).await
}

/// The connector id cloudflared reports; stable so tests can compare it.
pub const CONNECTOR_ID: &str = "4f0c9a1e-8b7d-4e2a-9c3f-5d6e7f8a9b0c";

async fn answer(mode: MetricsMode, call: Call) -> Response {
    let connections = match mode {
        MetricsMode::Ready { connections } => connections,
        MetricsMode::NoConnections => 0,
    };
    match call.path.as_str() {
        "/ready" => {
            let status = if connections > 0 { 200 } else { 503 };
            reply::with(
                reply::status(status),
                None,
                format!(
                    r#"{{"status":{status},"readyConnections":{connections},"connectorId":"{CONNECTOR_ID}"}}"#
                ),
            )
        }
        "/healthcheck" => reply::with(StatusCode::OK, Some(reply::TEXT), "OK\n"),
        "/metrics" => reply::with(
            StatusCode::OK,
            Some("text/plain; version=0.0.4; charset=utf-8"),
            metrics(connections),
        ),
        _ => reply::with(
            StatusCode::NOT_FOUND,
            Some(reply::TEXT),
            "404 page not found\n",
        ),
    }
}

fn metrics(connections: u32) -> String {
    format!(
        "# HELP build_info Build and version information\n\
         # TYPE build_info gauge\n\
         build_info{{goversion=\"go1.22.5\",revision=\"2024-08-14-1200 UTC\",type=\"\",version=\"2024.8.2\"}} 1\n\
         # HELP cloudflared_tunnel_ha_connections Number of active ha connections\n\
         # TYPE cloudflared_tunnel_ha_connections gauge\n\
         cloudflared_tunnel_ha_connections {connections}\n\
         # HELP cloudflared_tunnel_request_errors Amount of requests errors\n\
         # TYPE cloudflared_tunnel_request_errors counter\n\
         cloudflared_tunnel_request_errors 0\n\
         # HELP cloudflared_tunnel_response_by_code Count of responses by HTTP status code\n\
         # TYPE cloudflared_tunnel_response_by_code counter\n\
         cloudflared_tunnel_response_by_code{{status_code=\"200\"}} 42\n"
    )
}
