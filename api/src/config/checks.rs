//! The check suite's settings: timeouts, the required list and each integration, which is
//! configured once its key setting is present.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use checks::cloudflare::CloudflareSettings;
use checks::mask::{mask_secret, mask_url};
use checks::openai::OpenAiSettings;
use checks::stripe::StripeSettings;
use checks::tunnel::{TunnelApi, TunnelSettings};
use checks::CheckName;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

use super::parse::Lookup;
use super::settings::{self as s, check_timeout_var, OPENAI_KEY_PREFIXES};
use super::ConfigError;

/// Settings of the check suite. Each integration is `None` until its key setting is present.
#[derive(Clone)]
pub struct ChecksConfig {
    /// [`s::CHECK_TIMEOUT_MS`]: every check's timeout unless overridden.
    pub default_timeout: Duration,
    /// [`s::CHECK_TIMEOUT_MS_NAME`]: per-check overrides; the database check has its own default.
    pub timeouts: BTreeMap<CheckName, Duration>,
    /// [`s::REQUIRED_CHECKS`]: lowercase names, each a [`CheckName`], kept as the strings every
    /// consumer reports them as, in alphabetical order.
    pub required: BTreeSet<String>,
    pub openai: Option<OpenAiSettings>,
    pub stripe: Option<StripeSettings>,
    pub cloudflare: Option<CloudflareSettings>,
    pub tunnel: TunnelSettings,
}

impl ChecksConfig {
    pub(super) fn from_lookup(
        env: &Lookup<impl Fn(&str) -> Option<String>>,
    ) -> Result<Self, ConfigError> {
        let default_timeout = env.timeout(&s::CHECK_TIMEOUT_MS)?;
        let mut timeouts = BTreeMap::from([(
            CheckName::Database,
            Duration::from_millis(s::DATABASE_CHECK_TIMEOUT_MS),
        )]);
        for name in CheckName::ALL {
            if let Some(timeout) = env.timeout_named(check_timeout_var(name))? {
                timeouts.insert(name, timeout);
            }
        }
        let required: BTreeSet<String> = env
            .value(&s::REQUIRED_CHECKS)
            .unwrap_or_default()
            .split(',')
            .map(|name| name.trim().to_ascii_lowercase())
            .filter(|name| !name.is_empty())
            .collect();
        if let Some(unknown) = required.iter().find_map(|r| r.parse::<CheckName>().err()) {
            return Err(ConfigError::new(
                s::REQUIRED_CHECKS.name,
                unknown.to_string(),
            ));
        }

        let openai = match env.raw(s::OPENAI_API_KEY.name) {
            Some(key) => Some(OpenAiSettings {
                api_base: env.url(&s::OPENAI_BASE_URL)?.unwrap_or_default(),
                api_key: SecretString::from(key),
            }),
            None => None,
        };
        let stripe = match env.raw(s::STRIPE_SECRET_KEY.name) {
            Some(key) => Some(StripeSettings {
                api_base: env.url(&s::STRIPE_API_BASE)?.unwrap_or_default(),
                secret_key: SecretString::from(key),
                webhook_secret: env
                    .raw(s::STRIPE_WEBHOOK_SECRET.name)
                    .map(SecretString::from),
            }),
            None => None,
        };
        let cloudflare_base = env.url(&s::CLOUDFLARE_API_BASE)?.unwrap_or_default();
        let account_id = env.raw(s::CLOUDFLARE_ACCOUNT_ID.name);
        let cloudflare = env
            .raw(s::CLOUDFLARE_API_TOKEN.name)
            .map(|token| CloudflareSettings {
                api_base: cloudflare_base.clone(),
                token: SecretString::from(token),
                account_id: account_id.clone(),
            });
        let tunnel_id = env.raw(s::CLOUDFLARE_TUNNEL_ID.name);
        let api = match (&cloudflare, &account_id, tunnel_id) {
            (Some(cf), Some(account), Some(tunnel)) => Some(TunnelApi {
                api_base: cloudflare_base,
                account_id: account.clone(),
                tunnel_id: tunnel,
                token: cf.token.clone(),
            }),
            (_, _, Some(_)) => {
                return Err(ConfigError::new(
                    s::CLOUDFLARE_TUNNEL_ID.name,
                    "needs CLOUDFLARE_ACCOUNT_ID and CLOUDFLARE_API_TOKEN too, to ask Cloudflare for the tunnel's status",
                ))
            }
            _ => None,
        };
        let tunnel = TunnelSettings {
            metrics_url: env.url(&s::CLOUDFLARED_METRICS_URL)?,
            public_url: env.url(&s::BASE_URL)?,
            api,
        };
        Ok(Self {
            default_timeout,
            timeouts,
            required,
            openai,
            stripe,
            cloudflare,
            tunnel,
        })
    }

    /// Which integrations are configured, with masked ids only.
    pub fn masked(&self) -> Value {
        let openai = self.openai.as_ref();
        let stripe = self.stripe.as_ref();
        let cloudflare = self.cloudflare.as_ref();
        let tunnel = &self.tunnel;
        json!({
            "openai": {
                "configured": openai.is_some(),
                "apiKey": openai.map(|o| mask_secret(o.api_key.expose_secret(), OPENAI_KEY_PREFIXES)),
                "baseUrl": openai.map(|o| mask_url(&o.api_base)),
            },
            "stripe": {
                "configured": stripe.is_some(),
                "secretKey": stripe.map(|s| mask_secret(s.secret_key.expose_secret(), checks::stripe::KEY_PREFIXES)),
                "webhookSecret": {
                    "configured": stripe.is_some_and(|s| s.webhook_secret.is_some()),
                    "masked": stripe.and_then(|s| s.webhook_secret.as_ref()).map(|w| mask_secret(w.expose_secret(), checks::stripe::KEY_PREFIXES)),
                },
                "apiBase": stripe.map(|s| mask_url(&s.api_base)),
            },
            "cloudflare": {
                "configured": cloudflare.is_some(),
                "apiToken": cloudflare.map(|c| mask_secret(c.token.expose_secret(), &[])),
                "accountId": cloudflare.and_then(|c| c.account_id.as_deref()).map(|a| mask_secret(a, &[])),
                "apiBase": cloudflare.map(|c| mask_url(&c.api_base)),
            },
            "tunnel": {
                "configured": tunnel.metrics_url.is_some() || tunnel.public_url.is_some() || tunnel.api.is_some(),
                "hostname": tunnel.public_url.as_deref().and_then(|u| url::Url::parse(u).ok()).and_then(|u| u.host_str().map(str::to_owned)),
                "publicUrl": tunnel.public_url.as_deref().map(mask_url),
                "metricsUrl": tunnel.metrics_url.as_deref().map(mask_url),
                "tunnelId": tunnel.api.as_ref().map(|a| mask_secret(&a.tunnel_id, &[])),
                "cloudflareStatusApi": tunnel.api.is_some(),
            },
        })
    }
}
