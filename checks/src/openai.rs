//! The `openai` check: lists models through async-openai and tells an invalid key from an
//! exhausted quota, a rate limit and an outage.

use async_openai::config::Config;
use async_openai::error::OpenAIError;
use std::sync::{Arc, Mutex, PoisonError};

use async_openai::middleware::HttpRequestFactory;
use futures::future::BoxFuture;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::http::{status_failure, status_reason, transport_failure};
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
        // A bare service, without async-openai's retry layer (which would hide the very 429 or
        // 5xx a health check exists to report), that notes the HTTP status: async-openai drops it
        // when a 4xx body is not OpenAI's JSON.
        let seen = Arc::new(Mutex::new(None));
        let (http, noted) = (self.http.clone(), Arc::clone(&seen));
        let service = tower::service_fn(move |factory: HttpRequestFactory| {
            let (http, noted) = (http.clone(), Arc::clone(&noted));
            async move {
                let request = factory.build().await?;
                let response = http.execute(request).await.map_err(OpenAIError::Reqwest)?;
                *noted.lock().unwrap_or_else(PoisonError::into_inner) = Some(response.status());
                Ok::<_, OpenAIError>(response)
            }
        });
        let client =
            async_openai::Client::build(self.http.clone(), config).with_http_service(service);
        // Only the count is read: a model entry with fields no library knows is still a model.
        let listed: Result<ModelList, _> = client.models().list_byot().await;
        let status = *seen.lock().unwrap_or_else(PoisonError::into_inner);
        match listed {
            Ok(list) => CheckResult::pass(
                NAME,
                format!("the API key works ({} models visible)", list.data.len()),
            )
            .observe("model_count", list.data.len()),
            Err(err) => classify(&err, status),
        }
    }
}

/// The part of `GET /models` the check reads.
#[derive(Deserialize)]
struct ModelList {
    data: Vec<serde::de::IgnoredAny>,
}

const NOT_OPENAI: &str = "check OPENAI_BASE_URL points at the OpenAI API (including /v1) and no proxy answers in its place";

/// Classifies by HTTP status first (`status`: what the transport saw, for answers async-openai
/// could not read), then by OpenAI's `code` and `type`.
fn classify(err: &OpenAIError, status: Option<StatusCode>) -> CheckResult {
    let what = "the OpenAI API";
    match err {
        OpenAIError::ApiError(response) => {
            let code = response.api_error.code.as_deref().unwrap_or_default();
            let kind = response.api_error.r#type.as_deref().unwrap_or_default();
            let result = by_status(response.status_code, code, kind);
            if code.is_empty() {
                result
            } else {
                result.observe("error_code", code)
            }
        }
        OpenAIError::JSONDeserialize(..) => match status {
            Some(s) if !s.is_success() => {
                let mut result = by_status(s, "", "");
                result.message = format!(
                    "OpenAI answered HTTP {} with a body that is not OpenAI's JSON",
                    s.as_u16()
                );
                result.observe("body", "not_openai_json")
            }
            _ => CheckResult::fail(
                NAME,
                Reason::BadResponse,
                "OpenAI answered something that is not a model list",
                NOT_OPENAI,
            )
            .observe("http_status", status.map_or(200, |s| s.as_u16())),
        },
        OpenAIError::Reqwest(e) => transport_failure(NAME, what, e),
        _ => CheckResult::fail(
            NAME,
            Reason::BadResponse,
            "OpenAI answered something that is not a model list",
            NOT_OPENAI,
        ),
    }
}

/// The result an HTTP error status stands for, refined by OpenAI's `code` and `type`.
fn by_status(status: StatusCode, code: &str, kind: &str) -> CheckResult {
    let result = match status {
        StatusCode::UNAUTHORIZED => CheckResult::fail(
            NAME,
            Reason::Auth,
            "OpenAI rejected the API key",
            "create a new key at platform.openai.com/api-keys and set OPENAI_API_KEY (check it was not revoked or mistyped)",
        ),
        StatusCode::TOO_MANY_REQUESTS
            if code == "insufficient_quota" || kind == "insufficient_quota" =>
        {
            CheckResult::fail(
                NAME,
                Reason::QuotaExhausted,
                "the OpenAI account has exhausted its quota",
                "add credit or raise the usage limit in the OpenAI billing settings; retrying will not help",
            )
        }
        StatusCode::TOO_MANY_REQUESTS => CheckResult::warn(
            NAME,
            Reason::RateLimited,
            "OpenAI is rate limiting this key",
            "requests will succeed again shortly; if it persists, lower the request rate or raise the rate limit tier",
        ),
        StatusCode::FORBIDDEN => CheckResult::fail(
            NAME,
            Reason::Forbidden,
            "OpenAI refused this key access (HTTP 403)",
            "check the key's project permissions and that the organisation is allowed in this region",
        ),
        s if s.is_server_error() => status_failure(
            NAME,
            "the OpenAI API",
            s,
            "OpenAI is having an outage: check status.openai.com; features that call OpenAI will fail until it recovers",
        ),
        s => CheckResult::fail(
            NAME,
            status_reason(s),
            format!("OpenAI answered HTTP {}", s.as_u16()),
            NOT_OPENAI,
        ),
    };
    result.observe("http_status", status.as_u16())
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
