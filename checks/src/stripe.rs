//! The `stripe` check: retrieves the balance through async-stripe, cross-checks the key's mode
//! with `livemode`, and validates the key and webhook secret forms.

use futures::future::BoxFuture;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use stripe::{ErrorCode, StripeError};

use crate::http::{failure_for, join, status_failure, transport_reason};
use crate::mask::mask_secret;
use crate::registry::{on_settings, Check};
use crate::{CheckName, CheckResult, Reason};

pub const NAME: &str = CheckName::Stripe.as_str();

/// Prefixes that may be shown in a masked Stripe key.
pub const KEY_PREFIXES: &[&str] = &[
    "sk_test_", "sk_live_", "rk_test_", "rk_live_", "pk_test_", "pk_live_", "whsec_",
];

#[derive(Clone)]
pub struct StripeSettings {
    /// `STRIPE_API_BASE` (default `https://api.stripe.com`); a path is kept, for a gateway that
    /// serves the API under a prefix.
    pub api_base: String,
    /// `STRIPE_SECRET_KEY`.
    pub secret_key: SecretString,
    /// `STRIPE_WEBHOOK_SECRET`.
    pub webhook_secret: Option<SecretString>,
}

pub struct StripeCheck {
    settings: Option<StripeSettings>,
    /// For the one follow-up request described in [`StripeCheck::status_lost`].
    probe: reqwest::Client,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Test,
    Live,
}

impl StripeCheck {
    pub fn new(settings: Option<StripeSettings>, probe: reqwest::Client) -> Self {
        Self { settings, probe }
    }

    async fn check(&self, s: &StripeSettings) -> CheckResult {
        let key = s.secret_key.expose_secret();
        let masked = mask_secret(key, KEY_PREFIXES);
        let mode = if key.starts_with("pk_") {
            return CheckResult::fail(
                NAME,
                Reason::Misconfigured,
                "STRIPE_SECRET_KEY holds a publishable key (pk_…)",
                "use the secret key (sk_…) or a restricted key (rk_…) from the Stripe dashboard; publishable keys are for browsers",
            )
            .observe("key", masked);
        } else if key.starts_with("sk_test_") || key.starts_with("rk_test_") {
            Mode::Test
        } else if key.starts_with("sk_live_") || key.starts_with("rk_live_") {
            Mode::Live
        } else {
            return CheckResult::fail(
                NAME,
                Reason::Misconfigured,
                "STRIPE_SECRET_KEY is not a Stripe secret or restricted key",
                "Stripe secret keys start with sk_test_, sk_live_, rk_test_ or rk_live_",
            )
            .observe("key", masked);
        };
        if url::Url::parse(&s.api_base).is_err() {
            return CheckResult::fail(
                NAME,
                Reason::Misconfigured,
                "STRIPE_API_BASE is not a URL",
                "set STRIPE_API_BASE to https://api.stripe.com or unset it",
            );
        }
        let observe = |r: CheckResult| {
            r.observe("key", masked.clone())
                .observe("mode", if mode == Mode::Live { "live" } else { "test" })
                .observe("webhook_secret_configured", s.webhook_secret.is_some())
        };

        let client = stripe::Client::from_url(s.api_base.as_str(), key);
        let balance = match client
            .get::<stripe::Balance>(&balance_path(&s.api_base))
            .await
        {
            Ok(balance) => balance,
            Err(err) => return observe(self.classify(s, err).await),
        };
        let observe = |r: CheckResult| observe(r).observe("livemode", balance.livemode);
        if balance.livemode != (mode == Mode::Live) {
            let (key_mode, actual) = if mode == Mode::Live {
                ("live", "test")
            } else {
                ("test", "live")
            };
            return observe(CheckResult::fail(
                NAME,
                Reason::Misconfigured,
                format!("the key's prefix says {key_mode} mode but Stripe answered in {actual} mode"),
                "the key or STRIPE_API_BASE is not what it seems: use the key from the intended mode in the Stripe dashboard",
            ));
        }
        match &s.webhook_secret {
            None => observe(CheckResult::warn(
                NAME,
                Reason::Misconfigured,
                "the balance was retrieved, but STRIPE_WEBHOOK_SECRET is not set",
                "set STRIPE_WEBHOOK_SECRET (whsec_…) from the webhook endpoint's settings, or webhooks cannot be verified",
            )),
            Some(w) if !w.expose_secret().starts_with("whsec_") => observe(CheckResult::fail(
                NAME,
                Reason::Misconfigured,
                "STRIPE_WEBHOOK_SECRET is not of the whsec_ form",
                "copy the endpoint's signing secret (whsec_…) from Stripe's webhook settings, not an API key",
            )),
            Some(_) => observe(CheckResult::pass(
                NAME,
                format!("the balance was retrieved in {} mode", if mode == Mode::Live { "live" } else { "test" }),
            )),
        }
    }

    async fn classify(&self, s: &StripeSettings, err: StripeError) -> CheckResult {
        let what = "the Stripe API";
        match err {
            StripeError::Stripe(e) => {
                let status = StatusCode::from_u16(e.http_status)
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let with_status = |r: CheckResult| r.observe("http_status", e.http_status);
                match status {
                    StatusCode::UNAUTHORIZED if e.code == Some(ErrorCode::ApiKeyExpired) => with_status(
                        CheckResult::fail(NAME, Reason::Auth, "the Stripe API key has expired", "roll the key in the Stripe dashboard and update STRIPE_SECRET_KEY")
                            .observe("key_status", "expired"),
                    ),
                    StatusCode::UNAUTHORIZED => with_status(
                        CheckResult::fail(NAME, Reason::Auth, "Stripe rejected the API key", "copy the current secret key from the Stripe dashboard into STRIPE_SECRET_KEY")
                            .observe("key_status", "invalid"),
                    ),
                    StatusCode::FORBIDDEN => with_status(CheckResult::fail(
                        NAME,
                        Reason::Forbidden,
                        "the restricted key may not read the balance",
                        "give the restricted key the \"Balance: Read\" permission (rak_balance_read)",
                    )),
                    StatusCode::TOO_MANY_REQUESTS => with_status(CheckResult::warn(
                        NAME,
                        Reason::RateLimited,
                        "Stripe is rate limiting this key",
                        "requests will succeed again shortly; look for a job hammering the API",
                    )),
                    s if s.is_server_error() => status_failure(NAME, what, s, "Stripe is having trouble: check status.stripe.com; payments may fail until it recovers"),
                    s => with_status(CheckResult::fail(
                        NAME,
                        Reason::BadResponse,
                        format!("Stripe answered HTTP {}", s.as_u16()),
                        "check STRIPE_API_BASE points at the Stripe API",
                    )),
                }
            }
            StripeError::ClientError(text) => failure_for(NAME, what, reason_from_text(&text)),
            StripeError::Timeout => failure_for(NAME, what, Reason::Timeout),
            _ => self.status_lost(s).await,
        }
    }

    /// async-stripe returns a deserialisation error, without the HTTP status, when an error
    /// answer is not Stripe's JSON (a 5xx HTML page from a proxy or an outage). Only then, one
    /// plain request to the same endpoint recovers the status, so the report says "HTTP 503"
    /// rather than "bad response".
    async fn status_lost(&self, s: &StripeSettings) -> CheckResult {
        let what = "the Stripe API";
        let url = join(&s.api_base, "/v1/balance");
        match self.probe.get(url).bearer_auth(s.secret_key.expose_secret()).send().await {
            Ok(resp) if resp.status().is_server_error() => status_failure(
                NAME,
                what,
                resp.status(),
                "Stripe is having trouble: check status.stripe.com; payments may fail until it recovers",
            ),
            Ok(resp) => CheckResult::fail(
                NAME,
                Reason::BadResponse,
                format!("Stripe answered HTTP {} with a body that is not Stripe's", resp.status().as_u16()),
                "check STRIPE_API_BASE points at the Stripe API and no proxy rewrites its answers",
            )
            .observe("http_status", resp.status().as_u16()),
            Err(err) => failure_for(NAME, what, transport_reason(&err)),
        }
    }
}

/// The balance's path for async-stripe, which puts every request at `/v1/…` of the base URL's
/// host and would drop a path the base URL has (a gateway's prefix, say). A path that first
/// climbs out of `v1` keeps it: the URL parser resolves `v1/../gw/v1/balance` to
/// `/gw/v1/balance`.
fn balance_path(api_base: &str) -> String {
    let prefix = url::Url::parse(api_base)
        .map(|u| u.path().trim_matches('/').to_owned())
        .unwrap_or_default();
    if prefix.is_empty() {
        "balance".to_owned()
    } else {
        format!("../{prefix}/v1/balance")
    }
}

/// async-stripe reports transport failures as text; the cause is in it.
fn reason_from_text(text: &str) -> Reason {
    let t = text.to_ascii_lowercase();
    if t.contains("refused") {
        Reason::ConnectionRefused
    } else if t.contains("dns") || t.contains("lookup") || t.contains("name or service not known") {
        Reason::Dns
    } else if t.contains("timed out") || t.contains("timeout") {
        Reason::Timeout
    } else if t.contains("tls")
        || t.contains("certificate")
        || t.contains("invalidcontenttype")
        || t.contains("corrupt message")
        || t.contains("handshake")
    {
        Reason::Tls
    } else {
        Reason::Unreachable
    }
}

impl Check for StripeCheck {
    fn name(&self) -> CheckName {
        CheckName::Stripe
    }

    fn configured(&self) -> bool {
        self.settings.is_some()
    }

    fn settings(&self) -> &'static str {
        "STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET (STRIPE_API_BASE for a non-default endpoint)"
    }

    fn run(&self) -> BoxFuture<'_, CheckResult> {
        on_settings(self, self.settings.as_ref(), |s| Box::pin(self.check(s)))
    }
}
