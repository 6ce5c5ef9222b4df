//! The `cloudflare` check: verifies the API token (user-owned or account-owned) and its expiry.

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::http::{failure_for, join, status_reason, transport_reason};
use crate::registry::{on_settings, Check};
use crate::{CheckName, CheckResult, Reason};

pub const NAME: &str = CheckName::Cloudflare.as_str();

/// A token expiring sooner than this is reported as a warning.
const EXPIRY_WARNING_DAYS: i64 = 14;

#[derive(Clone)]
pub struct CloudflareSettings {
    /// `CLOUDFLARE_API_BASE`, default `https://api.cloudflare.com/client/v4`.
    pub api_base: String,
    /// `CLOUDFLARE_API_TOKEN`.
    pub token: SecretString,
    /// `CLOUDFLARE_ACCOUNT_ID`: lets account-owned tokens be verified on the account path.
    pub account_id: Option<String>,
}

pub struct CloudflareCheck {
    settings: Option<CloudflareSettings>,
    client: reqwest::Client,
}

#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(default)]
    success: bool,
    #[serde(default)]
    errors: Vec<ApiMessage>,
    result: Option<TokenResult>,
}

#[derive(Debug, Deserialize)]
struct ApiMessage {
    #[serde(default)]
    code: i64,
}

#[derive(Debug, Deserialize)]
struct TokenResult {
    id: Option<String>,
    status: String,
    expires_on: Option<String>,
}

enum Verify {
    Answer(StatusCode, Option<Envelope>),
    Transport(Reason),
}

impl CloudflareCheck {
    pub fn new(settings: Option<CloudflareSettings>, client: reqwest::Client) -> Self {
        Self { settings, client }
    }

    async fn verify(&self, s: &CloudflareSettings, path: &str) -> Verify {
        let url = join(&s.api_base, path);
        match self
            .client
            .get(url)
            .bearer_auth(s.token.expose_secret())
            .send()
            .await
        {
            Ok(resp) => {
                let status = resp.status();
                let body = resp
                    .text()
                    .await
                    .ok()
                    .and_then(|t| serde_json::from_str(&t).ok());
                Verify::Answer(status, body)
            }
            Err(err) => Verify::Transport(transport_reason(&err)),
        }
    }

    async fn check(&self, s: &CloudflareSettings) -> CheckResult {
        let mut kind = "user";
        let mut answer = self.verify(s, "/user/tokens/verify").await;
        // Account-owned tokens are "Invalid API Token" (code 1000) on the user path.
        if let (Verify::Answer(status, body), Some(account)) = (&answer, &s.account_id) {
            let invalid_on_user_path = !status.is_success()
                && body
                    .as_ref()
                    .is_some_and(|b| b.errors.iter().any(|e| e.code == 1000));
            if invalid_on_user_path {
                kind = "account";
                answer = self
                    .verify(s, &format!("/accounts/{account}/tokens/verify"))
                    .await;
            }
        }
        let (status, body) = match answer {
            Verify::Transport(reason) => return failure_for(NAME, "the Cloudflare API", reason),
            Verify::Answer(status, body) => (status, body),
        };
        let codes: Vec<i64> = body
            .as_ref()
            .map(|b| b.errors.iter().map(|e| e.code).collect())
            .unwrap_or_default();
        let with_status = |r: CheckResult| {
            r.observe("http_status", status.as_u16())
                .observe("error_codes", codes.clone())
        };

        // The HTTP status first; Cloudflare's error codes refine it (971 is its rate limit,
        // 6003/6111 a malformed header, 1000 an invalid token).
        match body {
            Some(Envelope { success: true, result: Some(token), .. }) if status.is_success() => token_result(token, kind),
            _ if status == StatusCode::TOO_MANY_REQUESTS || codes.contains(&971) => with_status(CheckResult::warn(
                NAME,
                Reason::RateLimited,
                "the Cloudflare API is rate limiting this token",
                "wait a few minutes; look for other jobs using the same token",
            )),
            _ if status == StatusCode::UNAUTHORIZED => with_status(CheckResult::fail(
                NAME,
                Reason::Auth,
                "Cloudflare says the API token is invalid",
                "create a new token in the Cloudflare dashboard and set CLOUDFLARE_API_TOKEN (set CLOUDFLARE_ACCOUNT_ID for account-owned tokens)",
            )),
            _ if status == StatusCode::FORBIDDEN => with_status(CheckResult::fail(
                NAME,
                Reason::Forbidden,
                "the Cloudflare API token lacks permission to verify itself",
                "create a token with at least one permission, or check CLOUDFLARE_ACCOUNT_ID for an account-owned token",
            )),
            _ if status.is_server_error() => with_status(CheckResult::fail(
                NAME,
                Reason::UpstreamError,
                format!("the Cloudflare API answered HTTP {}", status.as_u16()),
                "Cloudflare's API is having trouble: check cloudflarestatus.com and retry",
            )),
            _ if codes.contains(&6003) || codes.contains(&6111) => with_status(CheckResult::fail(
                NAME,
                Reason::Misconfigured,
                "Cloudflare rejected the Authorization header's format",
                "CLOUDFLARE_API_TOKEN must be an API token (not a Global API Key); check for stray quotes or whitespace",
            )),
            _ if status.is_client_error() && codes.contains(&1000) => with_status(CheckResult::fail(
                NAME,
                Reason::Auth,
                "Cloudflare says the API token is invalid",
                "create a new token in the Cloudflare dashboard and set CLOUDFLARE_API_TOKEN (set CLOUDFLARE_ACCOUNT_ID for account-owned tokens)",
            )),
            Some(_) => with_status(CheckResult::fail(
                NAME,
                status_reason(status),
                format!("the Cloudflare API answered HTTP {} without a token status", status.as_u16()),
                "check CLOUDFLARE_API_BASE points at the Cloudflare API",
            )),
            None => with_status(CheckResult::fail(
                NAME,
                status_reason(status),
                format!("the Cloudflare API answered HTTP {} with a body that is not Cloudflare's JSON", status.as_u16()),
                "check CLOUDFLARE_API_BASE points at the Cloudflare API and no proxy answers in its place",
            ))
            .observe("body", "not_cloudflare_json"),
        }
    }
}

fn token_result(token: TokenResult, kind: &str) -> CheckResult {
    let expires = token
        .expires_on
        .as_deref()
        .and_then(|e| DateTime::parse_from_rfc3339(e).ok())
        .map(|t| t.with_timezone(&Utc));
    let observe = |r: CheckResult| {
        r.observe("token_status", token.status.clone())
            .observe("token_kind", kind)
            .observe("token_id", token.id.clone().unwrap_or_default())
            .observe("expires_on", token.expires_on.clone())
    };
    match token.status.as_str() {
        // Cloudflare's `status` is the authority on whether the token works; `expires_on` only
        // warns ahead of time. A past `expires_on` on an active token means this host's clock
        // and Cloudflare's disagree, or the expiry is about to be applied: a warning, naming both.
        "active" => match expires {
            Some(at) if at <= Utc::now() => observe(CheckResult::warn(
                NAME,
                Reason::TokenExpiring,
                format!(
                    "Cloudflare reports the API token active, but its expires_on ({}) is past by this host's clock",
                    token.expires_on.clone().unwrap_or_default()
                ),
                "roll the token now and update CLOUDFLARE_API_TOKEN; check this host's clock (NTP) too",
            ))
            .observe("decided_by", "expires_on"),
            Some(at) if at - Utc::now() < chrono::Duration::days(EXPIRY_WARNING_DAYS) => {
                let days = (at - Utc::now()).num_days();
                observe(CheckResult::warn(
                    NAME,
                    Reason::TokenExpiring,
                    format!("the Cloudflare API token is active and its expires_on is in {days} day(s)"),
                    "roll the token before it expires and update CLOUDFLARE_API_TOKEN",
                ))
                .observe("expires_in_days", days)
                .observe("decided_by", "expires_on")
            }
            _ => observe(CheckResult::pass(
                NAME,
                format!("Cloudflare reports the {kind} API token active"),
            ))
            .observe("decided_by", "status"),
        },
        "disabled" => observe(CheckResult::fail(
            NAME,
            Reason::TokenDisabled,
            "Cloudflare reports the API token's status as disabled",
            "re-enable the token in the Cloudflare dashboard or create a new one",
        ))
        .observe("decided_by", "status"),
        "expired" => observe(CheckResult::fail(
            NAME,
            Reason::TokenExpired,
            "Cloudflare reports the API token's status as expired",
            "roll the token in the Cloudflare dashboard and update CLOUDFLARE_API_TOKEN",
        ))
        .observe("decided_by", "status"),
        other => observe(CheckResult::fail(
            NAME,
            Reason::BadResponse,
            format!("the Cloudflare API reported an unknown token status `{other}`"),
            "check CLOUDFLARE_API_BASE",
        )),
    }
}

impl Check for CloudflareCheck {
    fn name(&self) -> CheckName {
        CheckName::Cloudflare
    }

    fn configured(&self) -> bool {
        self.settings.is_some()
    }

    fn settings(&self) -> &'static str {
        "CLOUDFLARE_API_TOKEN (and CLOUDFLARE_ACCOUNT_ID for account-owned tokens)"
    }

    fn run(&self) -> BoxFuture<'_, CheckResult> {
        on_settings(self, self.settings.as_ref(), |s| Box::pin(self.check(s)))
    }
}
