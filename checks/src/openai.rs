//! The `openai` check: lists models through async-openai and tells an invalid key from an
//! exhausted quota, a rate limit and an outage.

use async_openai::config::Config;
use async_openai::error::OpenAIError;
use async_openai::middleware::ReqwestService;
use futures::future::BoxFuture;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};

use crate::http::{status_failure, transport_failure};
use crate::registry::{on_settings, Check};
use crate::{CheckName, CheckResult, Reason};

pub const NAME: &str = CheckName::Openai.as_str();

#[derive(Clone)]
pub struct OpenAiSettings {
    /// `OPENAI_BASE_URL`, including `/v1` (default `https://api.openai.com/v1`).
    pub api_base: String,
    /// `OPENAI_API_KEY`.
    pub api_key: SecretString,
}

/// async-openai's `OpenAIConfig::new()` reads the environment (including an org and project id
/// that would be sent as headers); this configuration holds only what we were given.
struct ExplicitConfig {
    api_base: String,
    api_key: SecretString,
}

impl Config for ExplicitConfig {
    fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Ok(mut value) =
            HeaderValue::from_str(&format!("Bearer {}", self.api_key.expose_secret()))
        {
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        headers
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.api_base.trim_end_matches('/'), path)
    }

    fn query(&self) -> Vec<(&str, &str)> {
        Vec::new()
    }

    fn api_base(&self) -> &str {
        &self.api_base
    }

    fn api_key(&self) -> &SecretString {
        &self.api_key
    }
}

pub struct OpenAiCheck {
    settings: Option<OpenAiSettings>,
    http: reqwest::Client,
}

impl OpenAiCheck {
    pub fn new(settings: Option<OpenAiSettings>, http: reqwest::Client) -> Self {
        Self { settings, http }
    }

    async fn check(&self, s: &OpenAiSettings) -> CheckResult {
        let config = ExplicitConfig {
            api_base: s.api_base.clone(),
            api_key: s.api_key.clone(),
        };
        // A bare ReqwestService: async-openai retries 429 and 5xx by default, which would hide
        // the very failure a health check exists to report.
        let client = async_openai::Client::build(self.http.clone(), config)
            .with_http_service(ReqwestService::new(self.http.clone()));
        match client.models().list().await {
            Ok(list) => CheckResult::pass(
                NAME,
                format!("the API key works ({} models visible)", list.data.len()),
            )
            .observe("model_count", list.data.len()),
            Err(err) => classify(&err),
        }
    }
}

fn classify(err: &OpenAIError) -> CheckResult {
    let what = "the OpenAI API";
    match err {
        OpenAIError::ApiError(response) => {
            let status = response.status_code;
            let code = response.api_error.code.as_deref().unwrap_or_default();
            let kind = response.api_error.r#type.as_deref().unwrap_or_default();
            let observe = |r: CheckResult| {
                let r = r.observe("http_status", status.as_u16());
                if code.is_empty() {
                    r
                } else {
                    r.observe("error_code", code)
                }
            };
            match status {
                StatusCode::UNAUTHORIZED => observe(CheckResult::fail(
                    NAME,
                    Reason::Auth,
                    "OpenAI rejected the API key",
                    "create a new key at platform.openai.com/api-keys and set OPENAI_API_KEY (check it was not revoked or mistyped)",
                )),
                StatusCode::TOO_MANY_REQUESTS if code == "insufficient_quota" || kind == "insufficient_quota" => {
                    observe(CheckResult::fail(
                        NAME,
                        Reason::QuotaExhausted,
                        "the OpenAI account has exhausted its quota",
                        "add credit or raise the usage limit in the OpenAI billing settings; retrying will not help",
                    ))
                }
                StatusCode::TOO_MANY_REQUESTS => observe(CheckResult::warn(
                    NAME,
                    Reason::RateLimited,
                    "OpenAI is rate limiting this key",
                    "requests will succeed again shortly; if it persists, lower the request rate or raise the rate limit tier",
                )),
                StatusCode::FORBIDDEN => observe(CheckResult::fail(
                    NAME,
                    Reason::Forbidden,
                    "OpenAI refused this key access (HTTP 403)",
                    "check the key's project permissions and that the organisation is allowed in this region",
                )),
                s if s.is_server_error() => status_failure(
                    NAME,
                    what,
                    s,
                    "OpenAI is having an outage: check status.openai.com; features that call OpenAI will fail until it recovers",
                ),
                s => observe(CheckResult::fail(
                    NAME,
                    Reason::BadResponse,
                    format!("OpenAI answered HTTP {}", s.as_u16()),
                    "check OPENAI_BASE_URL points at the OpenAI API (including /v1)",
                )),
            }
        }
        OpenAIError::Reqwest(e) => transport_failure(NAME, what, e),
        _ => CheckResult::fail(
            NAME,
            Reason::BadResponse,
            "OpenAI answered something that is not a model list",
            "check OPENAI_BASE_URL points at the OpenAI API (including /v1)",
        ),
    }
}

impl Check for OpenAiCheck {
    fn name(&self) -> CheckName {
        CheckName::Openai
    }

    fn configured(&self) -> bool {
        self.settings.is_some()
    }

    fn settings(&self) -> &'static str {
        "OPENAI_API_KEY (and OPENAI_BASE_URL for a non-default endpoint)"
    }

    fn run(&self) -> BoxFuture<'_, CheckResult> {
        on_settings(self, self.settings.as_ref(), |s| Box::pin(self.check(s)))
    }
}
