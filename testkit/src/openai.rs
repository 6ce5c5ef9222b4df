//! A fake of the OpenAI API's `GET /v1/models`, the call the OpenAI check makes.
//!
//! Clients use `format!("{}/v1", fake.base())` as their API base.

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::Response;

use crate::reply;
use crate::{serve, Call, Fake};

/// How the fake answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenAiMode {
    /// 200 with the model list.
    Ok,
    /// 200 with model entries carrying fields beyond the specification's required four, and a
    /// list-level field, as newer API versions add them.
    OkNewerApi,
    /// 401 `invalid_api_key`; the message echoes the full presented key.
    InvalidKey,
    /// 429 `insufficient_quota`: billing, not worth retrying.
    QuotaExhausted,
    /// 429 `rate_limit_exceeded` (type `requests`): retry later.
    RateLimited,
    /// 403: a restricted key without the models read scope.
    Forbidden,
    /// This status with an HTML body, as a proxy in front of the API answers.
    ServerErrorHtml(u16),
    /// This status with an HTML page that echoes the request's `Authorization` header, as some
    /// proxy and WAF error pages do.
    ServerErrorHtmlEcho(u16),
    /// This status with OpenAI's JSON `server_error` body.
    ServerErrorJson(u16),
    /// 200 with an HTML page instead of JSON (a captive portal or misrouted base URL).
    NotJson,
    /// Sleeps this long, then answers like `Ok`.
    Slow(Duration),
}

/// Starts a fake OpenAI API on 127.0.0.1.
pub async fn start(mode: OpenAiMode) -> Fake<OpenAiMode> {
    serve(mode, answer).await
}

const MODELS: &str = r#"{"object":"list","data":[{"id":"gpt-4o-mini","object":"model","created":1721172741,"owned_by":"system"}]}"#;

const NEWER_MODELS: &str = r#"{"object":"list","data":[{"id":"gpt-4o-mini","object":"model","created":1721172741,"owned_by":"system","capabilities":{"vision":true}},{"id":"ft:gpt-4o-mini:acme::9x","object":"model","created":1730000000,"owned_by":"user-acme","permission":[]},{"id":"o-next","object":"model","created":1760000000,"owned_by":"system","lifecycle":{"stage":"preview"}}],"has_more":false,"first_id":"gpt-4o-mini"}"#;

async fn answer(mode: OpenAiMode, call: Call) -> Response {
    let response = match mode {
        OpenAiMode::Ok => route(&call),
        OpenAiMode::OkNewerApi => match call.path.trim_end_matches('/') {
            "/v1/models" => reply::json(StatusCode::OK, NEWER_MODELS),
            _ => route(&call),
        },
        OpenAiMode::Slow(delay) => {
            tokio::time::sleep(delay).await;
            route(&call)
        }
        OpenAiMode::InvalidKey => {
            let message = format!(
                "Incorrect API key provided: {}. You can find your API key at https://platform.openai.com/account/api-keys.",
                call.token()
            );
            error(StatusCode::UNAUTHORIZED, &message, "invalid_request_error", Some("invalid_api_key"))
        }
        OpenAiMode::QuotaExhausted => error(
            StatusCode::TOO_MANY_REQUESTS,
            "You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
            "insufficient_quota",
            Some("insufficient_quota"),
        ),
        OpenAiMode::RateLimited => reply::header(
            error(
                StatusCode::TOO_MANY_REQUESTS,
                "Rate limit reached for requests. Limit: 500 / min. Please try again in 120ms. Visit https://platform.openai.com/account/rate-limits to learn more.",
                "requests",
                Some("rate_limit_exceeded"),
            ),
            "retry-after",
            "1",
        ),
        OpenAiMode::Forbidden => error(
            StatusCode::FORBIDDEN,
            "You have insufficient permissions for this operation. Missing scopes: api.model.read. Check that you have the correct role in your organization (Reader, Writer, Owner) and project (Member, Owner), and if you're using a restricted API key, that it has the necessary scopes.",
            "invalid_request_error",
            None,
        ),
        OpenAiMode::ServerErrorHtml(code) => {
            let status = reply::status(code);
            reply::html(status, reply::proxy_error_page(status))
        }
        OpenAiMode::ServerErrorHtmlEcho(code) => {
            let status = reply::status(code);
            let presented = call.authorization.as_deref().unwrap_or_default();
            reply::html(
                status,
                format!(
                    "<!DOCTYPE html><html><head><title>{code} {}</title></head><body><h1>Request blocked</h1><p>Your request:</p><pre>{} {} HTTP/1.1\r\nAuthorization: {presented}\r\n</pre></body></html>",
                    status.canonical_reason().unwrap_or("Error"),
                    call.method,
                    call.path,
                ),
            )
        }
        OpenAiMode::ServerErrorJson(code) => error(
            reply::status(code),
            "The server had an error while processing your request.",
            "server_error",
            None,
        ),
        OpenAiMode::NotJson => reply::html(
            StatusCode::OK,
            "<!DOCTYPE html><html><head><title>Sign in to the network</title></head><body><p>Please sign in to continue.</p></body></html>",
        ),
    };
    reply::header(
        response,
        "x-request-id",
        &format!("req_fake{:024}", call.hit),
    )
}

fn route(call: &Call) -> Response {
    match call.path.trim_end_matches('/') {
        "/v1/models" => reply::json(StatusCode::OK, MODELS),
        other => error(
            StatusCode::NOT_FOUND,
            &format!("Invalid URL ({} {other})", call.method),
            "invalid_request_error",
            None,
        ),
    }
}

/// OpenAI's error envelope, keys in the order the API writes them.
fn error(status: StatusCode, message: &str, kind: &str, code: Option<&str>) -> Response {
    let code = code.map_or_else(|| "null".to_owned(), reply::quoted);
    reply::json(
        status,
        format!(
            r#"{{"error":{{"message":{},"type":{},"param":null,"code":{code}}}}}"#,
            reply::quoted(message),
            reply::quoted(kind),
        ),
    )
}
