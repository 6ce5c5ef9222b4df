//! The `stripe` check: retrieves the balance through async-stripe, cross-checks the key's mode
//! with `livemode` (the one field it reads), and validates the key and webhook secret forms.

use futures::future::BoxFuture;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use stripe::StripeError;
use stripe_client_core::{RequestBuilder, StripeMethod};

use crate::http::{failure_for, join, status_failure, status_reason, transport_reason};
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

        let livemode = match self.balance(s, key).await {
            Ok(Some(livemode)) => livemode,
            Ok(None) => return observe(CheckResult::fail(
                NAME,
                Reason::BadResponse,
                "Stripe answered the balance request without `livemode`",
                "check STRIPE_API_BASE points at the Stripe API and no proxy rewrites its answers",
            )),
            Err(err) => return observe(self.classify(s, err).await),
        };
        let balance = Livemode { livemode };
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

    /// `GET /v1/balance` through async-stripe, reading only `livemode` from the answer: a
    /// balance in a currency, or with a field, that no client library knows yet is still a
    /// healthy answer. `Ok(None)`: a JSON answer without `livemode`.
    async fn balance(&self, s: &StripeSettings, key: &str) -> Result<Option<bool>, StripeError> {
        // async-stripe's TLS asks rustls for the process's provider, which rustls cannot pick
        // when more than one is compiled in (reqwest and sqlx bring their own): name it once.
        // An `Err` means one is installed already, which is all this needs.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let client = stripe::ClientBuilder::new(key)
            .url(client_base(&s.api_base))
            .build()?;
        let answer: miniserde::json::Value = RequestBuilder::new(StripeMethod::Get, "/balance")
            .customize()
            .send(&client)
            .await?;
        Ok(match answer {
            miniserde::json::Value::Object(fields) => match fields.get("livemode") {
                Some(miniserde::json::Value::Bool(live)) => Some(*live),
                _ => None,
            },
            _ => None,
        })
    }

    async fn classify(&self, s: &StripeSettings, err: StripeError) -> CheckResult {
        let what = "the Stripe API";
        match err {
            StripeError::Stripe(e, status) => stripe_error(status, e.code.as_ref().map(|c| c.to_string())),
            StripeError::ClientError(text) => match reason_from_text(&text) {
                Reason::Unreachable => self.transport_cause(s).await,
                reason => failure_for(NAME, what, reason),
            },
            StripeError::Timeout => failure_for(NAME, what, Reason::Timeout),
            StripeError::JSONDeserialize(text) if text.contains("Stripe error") => {
                self.status_lost(s).await
            }
            StripeError::JSONDeserialize(_) => CheckResult::fail(
                NAME,
                Reason::BadResponse,
                "Stripe answered the balance request with a success status but a body that is not JSON",
                "check STRIPE_API_BASE points at the Stripe API and no proxy or captive portal rewrites its answers",
            ),
            StripeError::ConfigError(_) => CheckResult::fail(
                NAME,
                Reason::Misconfigured,
                "STRIPE_API_BASE or STRIPE_SECRET_KEY cannot be used in a request",
                "set STRIPE_API_BASE to https://api.stripe.com (or unset it) and check the key has no stray whitespace or quotes",
            ),
        }
    }

    /// async-stripe words a failed connection as "client error (Connect)", without its cause.
    /// Only then, one plain request to the same endpoint tells refused, DNS and TLS apart.
    async fn transport_cause(&self, s: &StripeSettings) -> CheckResult {
        let url = join(&s.api_base, "/v1/balance");
        let request = self
            .probe
            .get(url)
            .bearer_auth(s.secret_key.expose_secret());
        let reason = match request.send().await {
            Err(err) => transport_reason(&err),
            // It answered this time; the first attempt's connection still failed.
            Ok(_) => Reason::Unreachable,
        };
        failure_for(NAME, "the Stripe API", reason)
    }

    /// async-stripe returns a deserialisation error without the HTTP status when an error answer
    /// is not Stripe's JSON (an HTML 5xx page from a proxy or an outage). Only then, one plain
    /// request to the same endpoint recovers the status, so the report says "HTTP 503" rather
    /// than "bad response". An error in Stripe's own envelope, whatever its code, never gets here.
    async fn status_lost(&self, s: &StripeSettings) -> CheckResult {
        let what = "the Stripe API";
        let url = join(&s.api_base, "/v1/balance");
        let result = match self
            .probe
            .get(url)
            .bearer_auth(s.secret_key.expose_secret())
            .send()
            .await
        {
            Ok(resp) => {
                let status = resp.status();
                let result = status_failure(NAME, what, status, hint_for(status));
                if status.is_success() || status_reason(status) == Reason::BadResponse {
                    CheckResult {
                        message: format!(
                            "Stripe answered HTTP {} with a body that is not Stripe's JSON",
                            status.as_u16()
                        ),
                        ..result
                    }
                    .with_status(crate::Status::Fail)
                } else {
                    result
                }
            }
            Err(err) => failure_for(NAME, what, transport_reason(&err)),
        };
        result.observe("body", "not_stripe_json")
    }
}

/// An error in Stripe's envelope: the HTTP status decides the reason, the `code` refines it (an
/// expired key), and a code no library knows is kept as it came in `observed.error_code`.
fn stripe_error(status: u16, code: Option<String>) -> CheckResult {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let code_text = code
        .as_deref()
        .map(|c| format!(" ({c})"))
        .unwrap_or_default();
    let result = match status {
        StatusCode::UNAUTHORIZED if code.as_deref() == Some("api_key_expired") => {
            CheckResult::fail(
                NAME,
                Reason::Auth,
                "the Stripe API key has expired",
                "roll the key in the Stripe dashboard and update STRIPE_SECRET_KEY",
            )
            .observe("key_status", "expired")
        }
        StatusCode::UNAUTHORIZED => CheckResult::fail(
            NAME,
            Reason::Auth,
            format!("Stripe rejected the API key{code_text}"),
            "copy the current secret key from the Stripe dashboard into STRIPE_SECRET_KEY",
        )
        .observe("key_status", "invalid"),
        StatusCode::FORBIDDEN => CheckResult::fail(
            NAME,
            Reason::Forbidden,
            format!("the key may not read the balance{code_text}"),
            "give the restricted key the \"Balance: Read\" permission (rak_balance_read)",
        ),
        StatusCode::TOO_MANY_REQUESTS => CheckResult::warn(
            NAME,
            Reason::RateLimited,
            format!("Stripe is rate limiting this key{code_text}"),
            "requests will succeed again shortly; look for a job hammering the API",
        ),
        s => {
            let mut r = status_failure(NAME, "the Stripe API", s, hint_for(s));
            r.message.push_str(&code_text);
            r
        }
    };
    let result = result.observe("http_status", status.as_u16());
    match code {
        Some(code) => result.observe("error_code", code),
        None => result,
    }
}

fn hint_for(status: StatusCode) -> &'static str {
    if status.is_server_error() {
        "Stripe is having trouble: check status.stripe.com; payments may fail until it recovers"
    } else {
        "check STRIPE_API_BASE points at the Stripe API (https://api.stripe.com) and no proxy rewrites its answers"
    }
}

/// The base URL as async-stripe wants it: it appends `v1/…` to the base as written, so the base
/// ends with a slash, and a gateway's path prefix is kept.
fn client_base(api_base: &str) -> String {
    format!("{}/", api_base.trim_end_matches('/'))
}

/// The mode Stripe answered in.
struct Livemode {
    livemode: bool,
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
