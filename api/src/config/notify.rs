//! The status page's and the notifications' settings (`STATUS_PAGE_*`, `NOTIFY_*`): each target
//! is configured once its secret is present; a secret's value is never repeated in an error.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::parse::Lookup;
use super::settings as s;
use super::ConfigError;

/// A Slack incoming webhook; the URL is the secret.
#[derive(Clone)]
pub struct SlackTarget {
    pub url: SecretString,
}

/// A generic JSON webhook and the key its requests are signed with.
#[derive(Clone)]
pub struct WebhookTarget {
    pub url: SecretString,
    pub secret: SecretString,
}

/// A PagerDuty Events API v2 integration.
#[derive(Clone)]
pub struct PagerDutyTarget {
    pub routing_key: SecretString,
    /// [`s::NOTIFY_PAGERDUTY_URL`], without a trailing slash.
    pub base: String,
}

/// Settings of the status page and of outgoing notifications.
#[derive(Clone)]
pub struct NotifyConfig {
    /// [`s::STATUS_PAGE_PUBLIC`].
    pub status_public: bool,
    /// [`s::STATUS_PAGE_REFRESH_S`].
    pub status_refresh: Duration,
    /// [`s::STATUS_PAGE_URL`].
    pub status_url: Option<String>,
    pub slack: Option<SlackTarget>,
    pub webhook: Option<WebhookTarget>,
    pub pagerduty: Option<PagerDutyTarget>,
    /// [`s::NOTIFY_PAGERDUTY_URL`], shown whether or not PagerDuty is configured.
    pub pagerduty_url: String,
    /// [`s::NOTIFY_DIR`].
    pub dir: PathBuf,
    /// [`s::NOTIFY_POLL_MS`].
    pub poll: Duration,
    /// [`s::NOTIFY_MIN_INTERVAL_MS`].
    pub min_interval: Duration,
    /// [`s::NOTIFY_RETRY_BASE_MS`].
    pub retry_base: Duration,
    /// [`s::NOTIFY_RETRY_MAX_MS`].
    pub retry_max: Duration,
    /// [`s::NOTIFY_GIVE_UP_AFTER_MS`].
    pub give_up_after: Duration,
    /// [`s::NOTIFY_TIMEOUT_MS`].
    pub timeout: Duration,
}

impl NotifyConfig {
    /// True when at least one target is configured (the notifier runs only then).
    pub fn any_target(&self) -> bool {
        self.slack.is_some() || self.webhook.is_some() || self.pagerduty.is_some()
    }

    pub(super) fn from_lookup(
        env: &Lookup<impl Fn(&str) -> Option<String>>,
    ) -> Result<Self, ConfigError> {
        let refresh =
            env.positive::<u64>(&s::STATUS_PAGE_REFRESH_S, "a whole number of seconds")?;
        let slack = secret_url(env, &s::NOTIFY_SLACK_WEBHOOK_URL)?.map(|url| SlackTarget { url });
        let webhook_secret = env
            .raw(s::NOTIFY_WEBHOOK_SECRET.name)
            .map(SecretString::from);
        let webhook =
            match (secret_url(env, &s::NOTIFY_WEBHOOK_URL)?, webhook_secret) {
                (Some(url), Some(secret)) if secret.expose_secret().len() >= 16 => {
                    Some(WebhookTarget { url, secret })
                }
                (Some(_), Some(_)) => {
                    return Err(ConfigError::new(
                        s::NOTIFY_WEBHOOK_SECRET.name,
                        "too short: use at least 16 characters (e.g. `openssl rand -hex 32`)",
                    ))
                }
                (Some(_), None) => return Err(ConfigError::new(
                    s::NOTIFY_WEBHOOK_SECRET.name,
                    "is required with NOTIFY_WEBHOOK_URL: receivers verify the signature with it",
                )),
                (None, _) => None,
            };
        let pagerduty_url = env.url(&s::NOTIFY_PAGERDUTY_URL)?.unwrap_or_default();
        let pagerduty = env
            .raw(s::NOTIFY_PAGERDUTY_ROUTING_KEY.name)
            .map(|key| PagerDutyTarget {
                routing_key: SecretString::from(key),
                base: pagerduty_url.clone(),
            });
        Ok(Self {
            status_public: env.bool(&s::STATUS_PAGE_PUBLIC)?,
            status_refresh: Duration::from_secs(refresh),
            status_url: env.url(&s::STATUS_PAGE_URL)?,
            slack,
            webhook,
            pagerduty,
            pagerduty_url,
            dir: PathBuf::from(env.value(&s::NOTIFY_DIR).unwrap_or_default()),
            poll: env.timeout(&s::NOTIFY_POLL_MS)?,
            min_interval: env.ms(&s::NOTIFY_MIN_INTERVAL_MS)?,
            retry_base: env.timeout(&s::NOTIFY_RETRY_BASE_MS)?,
            retry_max: env.timeout(&s::NOTIFY_RETRY_MAX_MS)?,
            give_up_after: env.timeout(&s::NOTIFY_GIVE_UP_AFTER_MS)?,
            timeout: env.timeout(&s::NOTIFY_TIMEOUT_MS)?,
        })
    }
}

/// A webhook URL that is itself a secret: checked to be http(s), never echoed in an error.
fn secret_url(
    env: &Lookup<impl Fn(&str) -> Option<String>>,
    setting: &s::Setting,
) -> Result<Option<SecretString>, ConfigError> {
    let Some(raw) = env.raw(setting.name) else {
        return Ok(None);
    };
    match url::Url::parse(&raw) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
            Ok(Some(SecretString::from(raw)))
        }
        _ => Err(ConfigError::new(
            setting.name,
            "not an http(s) URL (the value is a secret and is not shown)",
        )),
    }
}
