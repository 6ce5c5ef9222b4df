//! A fake of the Cloudflare API v4: token verification (user and account-owned tokens) and the
//! Cloudflare Tunnel status the tunnel check reads.
//!
//! Clients use `format!("{}/client/v4", fake.base())` as their API base. The token mode decides
//! the answer on every route (a malformed header, missing permission, rate limit or server error
//! is answered before routing, as Cloudflare does); the tunnel status decides the tunnel routes.

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use crate::reply;
use crate::{serve, Call, Fake};

/// What the presented API token is, or how the API fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenMode {
    /// A user token, valid; `expires_on` (RFC 3339) is omitted from the answer when `None`.
    Active { expires_on: Option<String> },
    /// A user token that was disabled: verify answers 200 with `status: disabled`.
    Disabled,
    /// A user token past its expiry: verify answers 200 with `status: expired`.
    Expired,
    /// An account-owned token: code 1000 on the user verify path, active only on
    /// `/accounts/{account_id}/tokens/verify` for this id.
    AccountOwned { account_id: String },
    /// 400, code 6003 with 6111 "Invalid format for Authorization header" in its chain.
    MalformedHeader,
    /// 403, code 10000 "Authentication error".
    Forbidden,
    /// 429, code 971.
    RateLimited,
    /// This status with Cloudflare's error envelope carrying this code (one no check knows, say).
    ApiError { status: u16, code: i64 },
    /// This status with an HTML body.
    ServerError(u16),
    /// Sleeps this long on every route, then answers like `Active { expires_on: None }`.
    Slow(Duration),
}

/// `result.status` of a Cloudflare Tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelStatus {
    /// Four edge connections.
    Healthy,
    /// One edge connection.
    Degraded,
    /// Never connected.
    Inactive,
    /// Was connected, has no connection now.
    Down,
}

/// How the fake answers: the token's state and the tunnel's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudflareMode {
    pub token: TokenMode,
    pub tunnel: TunnelStatus,
}

impl Default for CloudflareMode {
    /// An active user token without expiry and a healthy tunnel.
    fn default() -> Self {
        Self {
            token: TokenMode::Active { expires_on: None },
            tunnel: TunnelStatus::Healthy,
        }
    }
}

/// Starts a fake Cloudflare API on 127.0.0.1.
pub async fn start(mode: CloudflareMode) -> Fake<CloudflareMode> {
    serve(mode, answer).await
}

const TOKEN_ID: &str = "ed17574386854bf78a67040be0a770b0";
const CONNECTOR_ID: &str = "1bedc7d0-2e3f-4a5b-9c6d-7e8f9a0b1c2d";
const EXPIRED_ON: &str = "2024-03-09T23:59:59Z";
const MALFORMED_HEADER: &str = r#"{"success":false,"errors":[{"code":6003,"message":"Invalid request headers","error_chain":[{"code":6111,"message":"Invalid format for Authorization header"}]}],"messages":[],"result":null}"#;
const AUTHENTICATION_ERROR: &str =
    r#"{"success":false,"errors":[{"code":10000,"message":"Authentication error"}]}"#;
const RATE_LIMITED: &str = r#"{"success":false,"errors":[{"code":971,"message":"Please wait and consider throttling your request speed"}],"messages":[],"result":null}"#;
const INVALID_TOKEN: &str = r#"{"success":false,"errors":[{"code":1000,"message":"Invalid API Token"}],"messages":[],"result":null}"#;

async fn answer(mode: CloudflareMode, call: Call) -> Response {
    let token = match mode.token {
        TokenMode::Slow(delay) => {
            tokio::time::sleep(delay).await;
            TokenMode::Active { expires_on: None }
        }
        other => other,
    };
    match token {
        TokenMode::MalformedHeader => reply::json(StatusCode::BAD_REQUEST, MALFORMED_HEADER),
        TokenMode::Forbidden => reply::json(StatusCode::FORBIDDEN, AUTHENTICATION_ERROR),
        TokenMode::RateLimited => reply::header(
            reply::json(StatusCode::TOO_MANY_REQUESTS, RATE_LIMITED),
            "retry-after",
            "1",
        ),
        TokenMode::ApiError { status, code } => reply::json(
            reply::status(status),
            format!(
                r#"{{"success":false,"errors":[{{"code":{code},"message":"Something this check has never seen"}}],"messages":[],"result":null}}"#
            ),
        ),
        TokenMode::ServerError(code) => {
            let status = reply::status(code);
            reply::html(status, reply::proxy_error_page(status))
        }
        usable => route(&usable, mode.tunnel, &call),
    }
}

/// Answers for a token that reaches routing (active, disabled, expired or account-owned).
fn route(token: &TokenMode, tunnel: TunnelStatus, call: &Call) -> Response {
    let Some(rest) = call.path.strip_prefix("/client/v4") else {
        return not_found(&call.path);
    };
    let segments: Vec<&str> = rest.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["user", "tokens", "verify"] => match token {
            TokenMode::Disabled => verified("disabled", None),
            TokenMode::Expired => verified("expired", Some(EXPIRED_ON)),
            TokenMode::AccountOwned { .. } => invalid_token(),
            _ => verified("active", active_expiry(token)),
        },
        ["accounts", account, "tokens", "verify"] => match token {
            TokenMode::AccountOwned { account_id } if account_id == account => {
                verified("active", None)
            }
            TokenMode::AccountOwned { .. } => not_found(rest),
            // A user token is not an account token.
            _ => invalid_token(),
        },
        ["accounts", account, "cfd_tunnel", tunnel_id] => {
            denied(token, account, rest).unwrap_or_else(|| tunnel_view(account, tunnel_id, tunnel))
        }
        ["accounts", account, "cfd_tunnel", _, "connections"] => {
            denied(token, account, rest).unwrap_or_else(|| connections_view(tunnel))
        }
        _ => not_found(rest),
    }
}

fn active_expiry(token: &TokenMode) -> Option<&str> {
    match token {
        TokenMode::Active { expires_on } => expires_on.as_deref(),
        _ => None,
    }
}

/// Why a token may not read this account's resources, if it may not.
fn denied(token: &TokenMode, account: &str, rest: &str) -> Option<Response> {
    match token {
        TokenMode::AccountOwned { account_id } if account_id != account => Some(not_found(rest)),
        TokenMode::Disabled | TokenMode::Expired => {
            Some(reply::json(StatusCode::FORBIDDEN, AUTHENTICATION_ERROR))
        }
        _ => None,
    }
}

fn verified(status: &str, expires_on: Option<&str>) -> Response {
    let expires_on = expires_on
        .map(|at| format!(r#","expires_on":{}"#, reply::quoted(at)))
        .unwrap_or_default();
    let messages = if status == "active" {
        r#"[{"code":10000,"message":"This API Token is valid and active","type":null}]"#
    } else {
        "[]"
    };
    reply::json(
        StatusCode::OK,
        format!(
            r#"{{"result":{{"id":"{TOKEN_ID}","status":"{status}"{expires_on}}},"success":true,"errors":[],"messages":{messages}}}"#
        ),
    )
}

fn invalid_token() -> Response {
    reply::json(StatusCode::UNAUTHORIZED, INVALID_TOKEN)
}

/// Cloudflare's answer for a path it cannot route, e.g. an account id the token cannot see.
fn not_found(path: &str) -> Response {
    let message = format!("Could not route to {path}, perhaps your object identifier is invalid?");
    reply::json(
        StatusCode::NOT_FOUND,
        format!(
            r#"{{"success":false,"errors":[{{"code":7003,"message":{}}},{{"code":7000,"message":"No route for that URI"}}],"messages":[],"result":null}}"#,
            reply::quoted(&message)
        ),
    )
}

fn envelope(result: Value) -> Response {
    let body = json!({"success": true, "errors": [], "messages": [], "result": result});
    reply::json(StatusCode::OK, body.to_string())
}

fn status_name(tunnel: TunnelStatus) -> &'static str {
    match tunnel {
        TunnelStatus::Healthy => "healthy",
        TunnelStatus::Degraded => "degraded",
        TunnelStatus::Inactive => "inactive",
        TunnelStatus::Down => "down",
    }
}

/// The edge connections a tunnel in this state has.
fn edge_connections(tunnel: TunnelStatus) -> Vec<Value> {
    let count = match tunnel {
        TunnelStatus::Healthy => 4,
        TunnelStatus::Degraded => 1,
        TunnelStatus::Inactive | TunnelStatus::Down => 0,
    };
    let colos = ["dfw01", "dfw06", "iad03", "iad08"];
    colos
        .iter()
        .take(count)
        .enumerate()
        .map(|(i, colo)| {
            json!({
                "colo_name": colo,
                "id": format!("c0ffee00-0000-4000-8000-00000000000{i}"),
                "is_pending_reconnect": false,
                "origin_ip": "198.51.100.7",
                "opened_at": "2024-06-01T12:00:00.000000Z",
                "client_id": CONNECTOR_ID,
                "client_version": "2024.8.2",
                "uuid": format!("c0ffee00-0000-4000-8000-00000000000{i}"),
            })
        })
        .collect()
}

fn tunnel_view(account: &str, tunnel_id: &str, tunnel: TunnelStatus) -> Response {
    let (active_at, inactive_at) = match tunnel {
        TunnelStatus::Healthy | TunnelStatus::Degraded => {
            (json!("2024-06-01T12:00:00.000000Z"), Value::Null)
        }
        TunnelStatus::Inactive => (Value::Null, Value::Null),
        TunnelStatus::Down => (Value::Null, json!("2024-06-02T08:30:00.000000Z")),
    };
    envelope(json!({
        "id": tunnel_id,
        "account_tag": account,
        "created_at": "2024-01-15T10:00:00.000000Z",
        "deleted_at": null,
        "name": "prod",
        "connections": edge_connections(tunnel),
        "conns_active_at": active_at,
        "conns_inactive_at": inactive_at,
        "tun_type": "cfd_tunnel",
        "metadata": {},
        "status": status_name(tunnel),
        "remote_config": true,
    }))
}

fn connections_view(tunnel: TunnelStatus) -> Response {
    let conns = edge_connections(tunnel);
    let clients = if conns.is_empty() {
        Vec::new()
    } else {
        vec![json!({
            "id": CONNECTOR_ID,
            "features": ["ha-origin", "serialized_headers"],
            "version": "2024.8.2",
            "arch": "linux_amd64",
            "config_version": 1,
            "run_at": "2024-06-01T11:59:58.000000Z",
            "conns": conns,
        })]
    };
    envelope(Value::Array(clients))
}
