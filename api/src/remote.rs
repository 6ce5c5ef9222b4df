//! A client for a running opsdoctor, used by `opsdoctor gate` and `opsdoctor deploys`.
//!
//! The admin token comes from `OPSDOCTOR_TOKEN` (or `ADMIN_TOKEN`), never from an argument that
//! `ps` would show.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

/// Exit status for "could not evaluate": unreachable, bad arguments, bad token.
pub const EXIT_UNUSABLE: u8 = 3;

pub struct Remote {
    base: String,
    token: Option<SecretString>,
    http: reqwest::Client,
}

/// What came back: a status and a JSON body (or the text, if not JSON), and `Retry-After`.
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    pub retry_after: Option<Duration>,
}

impl Remote {
    /// `url` is the service's base URL; the token is read from the environment.
    pub fn new(url: &str, request_timeout: Duration) -> Result<Self, String> {
        let parsed = url::Url::parse(url)
            .map_err(|_| format!("--url `{url}` is not a URL (e.g. http://127.0.0.1:8080)"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("--url `{url}` must be http:// or https://"));
        }
        let token = std::env::var("OPSDOCTOR_TOKEN")
            .ok()
            .or_else(|| std::env::var("ADMIN_TOKEN").ok())
            .filter(|t| !t.trim().is_empty())
            .map(|t| SecretString::from(t.trim().to_owned()));
        let http = reqwest::Client::builder()
            .timeout(request_timeout)
            .connect_timeout(request_timeout)
            .user_agent(concat!("opsdoctor-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        Ok(Self {
            base: url.trim_end_matches('/').to_owned(),
            token,
            http,
        })
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> Result<Answer, String> {
        let mut req = self
            .http
            .request(method, format!("{}{path_and_query}", self.base));
        if let Some(token) = &self.token {
            req = req.bearer_auth(token.expose_secret());
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.map_err(|e| describe(&e))?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = resp.text().await.map_err(|e| describe(&e))?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Answer {
            status,
            body,
            retry_after,
        })
    }
}

/// A transport error in a few words, without URLs' query strings.
fn describe(err: &reqwest::Error) -> String {
    let reason = checks::http::transport_reason(err);
    format!(
        "service unreachable ({})",
        reason.as_str().replace('_', " ")
    )
}

/// The error message of an opsdoctor error body, or the status.
pub fn error_message(answer: &Answer) -> String {
    answer.body["error"]["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("HTTP {}", answer.status.as_u16()))
}
