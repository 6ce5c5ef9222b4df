//! A fake of the Stripe API's `GET /v1/balance`, the call the Stripe check makes.
//!
//! Clients use `fake.base()` as their API base (`STRIPE_API_BASE`). Every answer carries a
//! `Request-Id` header, as Stripe's do.

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::Response;

use crate::reply;
use crate::{serve, Call, Fake};

/// How the fake answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StripeMode {
    /// 200 with the balance; `livemode` lets tests catch a test key used in production.
    Ok { livemode: bool },
    /// 200 with a balance as newer API versions and real accounts answer it: currencies outside
    /// any client library's fixed list (`xcg`, `usdc`, `ves`, `sle`, `stn`, `mru`; the
    /// specification allows any string) and fields added since (`instant_available`,
    /// `refund_and_dispute_prefunding`).
    OkNewerApi { livemode: bool },
    /// This status with Stripe's error envelope and this `code` (an open set: `lock_timeout` on
    /// a 429, or a code added after any library was written).
    ErrorCode { status: u16, code: &'static str },
    /// 401; the message echoes the full presented key.
    InvalidKey,
    /// 401 `api_key_expired`; the message echoes the full presented key.
    ExpiredKey,
    /// 403: a restricted key without `rak_balance_read`; the message echoes the full key.
    MissingPermission,
    /// 429 `rate_limit`.
    RateLimited,
    /// This status with an HTML body and `text/html`.
    ServerErrorHtml(u16),
    /// Sleeps this long, then answers like `Ok { livemode: false }`.
    Slow(Duration),
    /// Like `Ok { livemode: false }`, but the API is served under this path prefix (a gateway):
    /// `/v1/balance` without it is 404.
    Under(&'static str),
}

/// Starts a fake Stripe API on 127.0.0.1.
pub async fn start(mode: StripeMode) -> Fake<StripeMode> {
    serve(mode, answer).await
}

/// The account named in permission errors.
const ACCOUNT: &str = "acct_1OpsdoctorFake00";

async fn answer(mode: StripeMode, call: Call) -> Response {
    let key = call.token();
    let response = match mode {
        StripeMode::Ok { livemode } => route(&call, "", livemode),
        StripeMode::Under(prefix) => route(&call, prefix, false),
        StripeMode::OkNewerApi { livemode } => match call.path.as_str() {
            "/v1/balance" => reply::json(StatusCode::OK, newer_balance(livemode)),
            _ => route(&call, "", livemode),
        },
        StripeMode::ErrorCode { status, code } => reply::json(
            reply::status(status),
            format!(
                r#"{{"error":{{"code":{},"doc_url":{},"message":"This object cannot be accessed right now because another API request or Stripe process is currently accessing it. If you see this error intermittently, retry the request.","request_log_url":"https://dashboard.stripe.com/test/logs/req_fake?t=1700000000","type":"invalid_request_error"}}}}"#,
                reply::quoted(code),
                reply::quoted(&format!("https://stripe.com/docs/error-codes/{}", code.replace('_', "-"))),
            ),
        ),
        StripeMode::Slow(delay) => {
            tokio::time::sleep(delay).await;
            route(&call, "", false)
        }
        StripeMode::InvalidKey => reply::header(
            reply::json(
                StatusCode::UNAUTHORIZED,
                format!(
                    r#"{{"error":{{"message":{},"type":"invalid_request_error"}}}}"#,
                    reply::quoted(&format!("Invalid API Key provided: {key}"))
                ),
            ),
            "www-authenticate",
            r#"Basic realm="Stripe""#,
        ),
        StripeMode::ExpiredKey => reply::json(
            StatusCode::UNAUTHORIZED,
            format!(
                r#"{{"error":{{"code":"api_key_expired","doc_url":"https://stripe.com/docs/error-codes/api-key-expired","message":{},"type":"invalid_request_error"}}}}"#,
                reply::quoted(&format!("Expired API Key provided: {key}"))
            ),
        ),
        StripeMode::MissingPermission => reply::json(
            StatusCode::FORBIDDEN,
            format!(
                r#"{{"error":{{"message":{},"type":"invalid_request_error"}}}}"#,
                reply::quoted(&format!(
                    "The provided key '{key}' does not have the required permissions for this endpoint on account '{ACCOUNT}'. Having the 'rak_balance_read' permission would allow this request to continue."
                ))
            ),
        ),
        StripeMode::RateLimited => reply::json(
            StatusCode::TOO_MANY_REQUESTS,
            r#"{"error":{"message":"Request rate limit exceeded","type":"invalid_request_error","code":"rate_limit"}}"#,
        ),
        StripeMode::ServerErrorHtml(code) => {
            let status = reply::status(code);
            reply::html(status, reply::proxy_error_page(status))
        }
    };
    reply::header(response, "request-id", &format!("req_fake{:012}", call.hit))
}

/// A balance with currencies and fields that the published specification allows and that fixed
/// client-side lists do not know.
fn newer_balance(livemode: bool) -> String {
    let funds = |amount: i64| {
        ["usd", "xcg", "usdc", "ves", "sle", "stn", "mru"]
            .iter()
            .map(|c| {
                format!(
                    r#"{{"amount":{amount},"currency":"{c}","source_types":{{"card":{amount}}}}}"#
                )
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    format!(
        r#"{{"object":"balance","available":[{}],"connect_reserved":[{{"amount":0,"currency":"xcg"}}],"instant_available":[{{"amount":120,"currency":"usdc","net_available":[{{"amount":118,"destination":"ba_fake","source_types":{{"card":118}}}}],"source_types":{{"card":120}}}}],"issuing":{{"available":[{{"amount":0,"currency":"sle"}}]}},"livemode":{livemode},"pending":[{}],"refund_and_dispute_prefunding":{{"available":[{{"amount":0,"currency":"mru"}}],"pending":[{{"amount":0,"currency":"stn"}}]}}}}"#,
        funds(1500),
        funds(0)
    )
}

fn route(call: &Call, prefix: &str, livemode: bool) -> Response {
    match call.path.strip_prefix(prefix) {
        Some("/v1/balance") => reply::json(
            StatusCode::OK,
            format!(
                r#"{{"object":"balance","livemode":{livemode},"available":[{{"amount":0,"currency":"usd","source_types":{{"card":0}}}}],"pending":[{{"amount":0,"currency":"usd","source_types":{{"card":0}}}}],"connect_reserved":[{{"amount":0,"currency":"usd"}}]}}"#
            ),
        ),
        _ => reply::json(
            StatusCode::NOT_FOUND,
            format!(
                r#"{{"error":{{"message":{},"type":"invalid_request_error"}}}}"#,
                reply::quoted(&format!(
                    "Unrecognized request URL ({}: {}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/.",
                    call.method, call.path
                ))
            ),
        ),
    }
}
