//! Typed configuration from environment variables, with safe defaults.
//!
//! Every setting is declared once in [`settings`] (name, default, meaning, secrecy); this module
//! turns one lookup into a [`Config`]. A bad value stops start-up with one line naming the
//! variable; a secret's value is never repeated in an error.

mod checks;
pub mod decisions;
pub mod log_files;
mod notify;
mod parse;
pub mod recovery;
pub mod resilience;
pub mod settings;
#[cfg(test)]
mod tests;
pub mod tunnel;

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use ::checks::mask::mask_secret;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

pub use self::checks::ChecksConfig;
pub use self::notify::{NotifyConfig, PagerDutyTarget, SlackTarget, WebhookTarget};
use self::parse::{validate_database_url, Lookup};
use self::settings::{self as s, Mask, Setting, Shown};
pub use self::settings::{DEFAULT_DATABASE_URL, OPENAI_KEY_PREFIXES};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (colour when stderr is a terminal).
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// The resolved configuration of one opsdoctor process. Each field is documented by the setting it
/// comes from (see [`settings`]); a field says here only why it has the type it has.
#[derive(Clone)]
pub struct Config {
    /// [`s::DATABASE_URL`]; secret because it may carry a password.
    pub database_url: SecretString,
    /// [`s::HOST`].
    pub host: IpAddr,
    /// [`s::PORT`].
    pub port: u16,
    /// [`s::ADMIN_TOKEN`]; without it the `/ops/*` endpoints refuse every call.
    pub admin_token: Option<SecretString>,
    /// [`s::LOG_FORMAT`].
    pub log_format: LogFormat,
    /// [`s::AUTO_MIGRATE`].
    pub auto_migrate: bool,
    /// [`s::MAX_BODY_BYTES`].
    pub max_body_bytes: usize,
    /// [`s::REQUEST_TIMEOUT_MS`].
    pub request_timeout: Duration,
    /// [`s::DB_CONNECT_TIMEOUT_MS`].
    pub db_connect_timeout: Duration,
    /// [`s::DB_ACQUIRE_TIMEOUT_MS`].
    pub db_acquire_timeout: Duration,
    /// [`s::DB_MAX_CONNECTIONS`].
    pub db_max_connections: u32,
    /// [`s::READY_CACHE_TTL_MS`]: so probe storms never become query storms.
    pub ready_cache_ttl: Duration,
    /// [`s::READY_EXTERNAL_CACHE_TTL_MS`].
    pub ready_external_cache_ttl: Duration,
    /// The check suite's settings: integrations, timeouts, the required list.
    pub checks: ChecksConfig,
    /// [`s::DOCTOR_INTERVAL_MS`].
    pub doctor_interval: Duration,
    /// [`s::DOCTOR_MIN_INTERVAL_MS`].
    pub doctor_min_interval: Duration,
    /// [`s::GATE_RETRY_AFTER_S`].
    pub gate_retry_after: Duration,
    /// [`s::DOCTOR_ESCALATE_AFTER_RUNS`].
    pub doctor_escalate_after: u32,
    /// [`s::CHECK_FAIL_AFTER`] and the other decision settings.
    pub decisions: decisions::DecisionConfig,
    /// [`s::SHUTDOWN_READY_DELAY_MS`]: so load balancers stop routing before the listener closes.
    pub shutdown_ready_delay: Duration,
    /// [`s::SHUTDOWN_DRAIN_MS`]; past it the process exits anyway.
    pub shutdown_drain: Duration,
    /// [`s::HEADER_READ_TIMEOUT_MS`]: so half-sent heads cannot pile up.
    pub header_read_timeout: Duration,
    /// [`s::IDLE_TIMEOUT_MS`].
    pub idle_timeout: Duration,
    /// [`s::MAX_CONNECTIONS`]; lowered at start-up, with a warning, to what the open-file limit
    /// allows.
    pub max_connections: usize,
    /// Issue 15: [`s::METRICS_ADDR`].
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Issue 15: [`s::FLAGGER_CONFIRM_DEADLINE_S`].
    pub flagger_confirm_deadline: Duration,
    /// The status page and outgoing notifications (`STATUS_PAGE_*`, `NOTIFY_*`).
    pub notify: NotifyConfig,
    /// The database circuit breaker and the spool ([`resilience`]).
    pub resilience: resilience::ResilienceConfig,
    /// The rotated JSON log files ([`log_files`]).
    pub log_files: log_files::LogFilesConfig,
    /// The tunnel restart coordinator ([`tunnel`]).
    pub tunnel: tunnel::TunnelConfig,
    /// Recovery: its rate limit and the monitor's thresholds ([`recovery`]).
    pub recovery: recovery::RecoveryConfig,
    /// Every secret setting's value as set, with its mask (see [`Config::secrets`]).
    secrets: Vec<ConfiguredSecret>,
}

/// A configured secret and the masked form that may be shown instead of it.
#[derive(Clone)]
pub struct ConfiguredSecret {
    pub value: SecretString,
    /// E.g. `sk-proj-…3jB9` (see [`::checks::mask::mask_secret`]) or `****`.
    pub masked: String,
}

/// A configuration value that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {var}: {problem}")]
pub struct ConfigError {
    /// The variable, named exactly as it is set (`PORT`, `CHECK_TIMEOUT_MS_STRIPE`).
    pub var: Cow<'static, str>,
    pub problem: String,
}

impl ConfigError {
    fn new(var: impl Into<Cow<'static, str>>, problem: impl Into<String>) -> Self {
        Self {
            var: var.into(),
            problem: problem.into(),
        }
    }
}

impl Config {
    /// Reads the process environment; `overrides` (command-line flags) win over it. `.env` is
    /// loaded once, by the command line, before this is called.
    pub fn from_env(overrides: &[(&Setting, String)]) -> Result<Self, ConfigError> {
        Self::from_lookup(overridden(overrides, |name| std::env::var(name).ok()))
    }

    /// Builds the configuration from any variable lookup; tests pass a map.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Lookup::new(get);

        let database_url = env.value(&s::DATABASE_URL).unwrap_or_default();
        validate_database_url(s::DATABASE_URL.name, &database_url)?;

        let host = env.value(&s::HOST).unwrap_or_default();
        let host: IpAddr = host.parse().map_err(|_| {
            ConfigError::new(
                s::HOST.name,
                format!("`{host}` is not an IP address (e.g. 127.0.0.1 or 0.0.0.0)"),
            )
        })?;
        let port = env.num::<u16>(&s::PORT, "a port number from 0 to 65535")?;

        let admin_token = env.raw(s::ADMIN_TOKEN.name).map(SecretString::from);
        if let Some(token) = &admin_token {
            if token.expose_secret().len() < 16 {
                return Err(ConfigError::new(
                    s::ADMIN_TOKEN.name,
                    "too short: use at least 16 characters (e.g. `openssl rand -hex 32`)",
                ));
            }
        }

        let log_format = env.value(&s::LOG_FORMAT).unwrap_or_default();
        let log_format = match log_format.to_ascii_lowercase().as_str() {
            "text" | "pretty" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(ConfigError::new(
                    s::LOG_FORMAT.name,
                    format!("`{other}` is not one of text, json"),
                ))
            }
        };

        let auto_migrate = env.bool(&s::AUTO_MIGRATE)?;
        let max_body_bytes = env.num::<usize>(&s::MAX_BODY_BYTES, "a number of bytes")?;
        if max_body_bytes < 1024 {
            return Err(ConfigError::new(
                s::MAX_BODY_BYTES.name,
                "must be at least 1024",
            ));
        }
        let db_max_connections = env.positive::<u32>(&s::DB_MAX_CONNECTIONS, "a whole number")?;

        let checks = ChecksConfig::from_lookup(&env)?;
        let resilience = resilience::ResilienceConfig::from_lookup(&env)?;
        let log_files = log_files::LogFilesConfig::from_lookup(&env)?;
        let tunnel = tunnel::TunnelConfig::from_lookup(&env)?;
        let recovery = recovery::RecoveryConfig::from_lookup(&env)?;

        Ok(Self {
            secrets: configured_secrets(&env),
            database_url: SecretString::from(database_url),
            host,
            port,
            admin_token,
            log_format,
            auto_migrate,
            max_body_bytes,
            request_timeout: env.timeout(&s::REQUEST_TIMEOUT_MS)?,
            db_connect_timeout: env.timeout(&s::DB_CONNECT_TIMEOUT_MS)?,
            db_acquire_timeout: env.timeout(&s::DB_ACQUIRE_TIMEOUT_MS)?,
            db_max_connections,
            ready_cache_ttl: env.ms(&s::READY_CACHE_TTL_MS)?,
            ready_external_cache_ttl: env.ms(&s::READY_EXTERNAL_CACHE_TTL_MS)?,
            checks,
            doctor_interval: env.ms(&s::DOCTOR_INTERVAL_MS)?,
            doctor_min_interval: env.ms(&s::DOCTOR_MIN_INTERVAL_MS)?,
            gate_retry_after: Duration::from_secs(
                env.positive(&s::GATE_RETRY_AFTER_S, "a whole number of seconds")?,
            ),
            doctor_escalate_after: env
                .positive(&s::DOCTOR_ESCALATE_AFTER_RUNS, "a whole number")?,
            decisions: decisions::DecisionConfig::from_lookup(&env)?,
            shutdown_ready_delay: env.ms(&s::SHUTDOWN_READY_DELAY_MS)?,
            shutdown_drain: env.ms(&s::SHUTDOWN_DRAIN_MS)?,
            header_read_timeout: env.timeout(&s::HEADER_READ_TIMEOUT_MS)?,
            idle_timeout: env.timeout(&s::IDLE_TIMEOUT_MS)?,
            max_connections: env.positive(&s::MAX_CONNECTIONS, "a whole number")?,
            metrics_addr: match env.value(&s::METRICS_ADDR).filter(|v| !v.trim().is_empty()) {
                None => None,
                Some(v) => Some(v.trim().parse().map_err(|_| {
                    ConfigError::new(
                        s::METRICS_ADDR.name,
                        format!("`{v}` is not an address and port (e.g. 0.0.0.0:9464)"),
                    )
                })?),
            },
            flagger_confirm_deadline: Duration::from_secs(
                env.positive(&s::FLAGGER_CONFIRM_DEADLINE_S, "a whole number of seconds")?,
            ),
            notify: NotifyConfig::from_lookup(&env)?,
            resilience,
            log_files,
            tunnel,
            recovery,
        })
    }

    /// Every configured secret value with the masked form a log line shows in its place; the log
    /// scrubber masks these whoever writes them. The list follows the `secret` of each declared
    /// setting, so a new secret setting is declared as one and nothing else. A password in
    /// `DATABASE_URL` (userinfo or a `password=`-like query value) is listed both as written and
    /// percent-decoded; other URLs cannot carry one (refused at start-up).
    pub fn secrets(&self) -> Vec<ConfiguredSecret> {
        self.secrets.clone()
    }

    /// The database URL with its password masked, safe to show anywhere.
    pub fn database_location(&self) -> String {
        ::checks::mask::mask_database_url(self.database_url.expose_secret())
    }

    /// For a networked database, its server's `host:port`.
    pub fn database_server(&self) -> Option<String> {
        let url = url::Url::parse(self.database_url.expose_secret()).ok()?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return None;
        }
        let host = url.host()?;
        Some(format!("{host}:{}", url.port().unwrap_or(5432)))
    }

    /// For a SQLite URL, the directory its file lives in (created at start-up if missing).
    pub fn sqlite_dir(&self) -> Option<PathBuf> {
        let url = self.database_url.expose_secret();
        let rest = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))?;
        let path = rest.split('?').next().unwrap_or_default();
        if path.is_empty() || path == ":memory:" {
            return None;
        }
        let parent = PathBuf::from(path).parent()?.to_path_buf();
        (!parent.as_os_str().is_empty()).then_some(parent)
    }

    /// The resolved configuration with every secret masked, for `opsdoctor config`: each declared
    /// setting as it says it is shown, and the integrations grouped by check.
    pub fn masked(&self) -> Value {
        let mut shown = serde_json::Map::new();
        for setting in s::SETTINGS {
            if let Shown::Value(show) = setting.shown {
                shown.insert(setting.name.to_owned(), show(self));
            }
        }
        shown.insert("integrations".to_owned(), self.checks.masked());
        Value::Object(shown)
    }
}

/// A lookup in which `overrides` win over `get`.
fn overridden<'a>(
    overrides: &'a [(&Setting, String)],
    get: impl Fn(&str) -> Option<String> + 'a,
) -> impl Fn(&str) -> Option<String> + 'a {
    move |name| {
        overrides
            .iter()
            .find(|(setting, _)| setting.name == name)
            .map(|(_, value)| value.clone())
            .or_else(|| get(name))
    }
}

/// The value of every secret setting that is set, once each, with its mask.
fn configured_secrets(env: &Lookup<impl Fn(&str) -> Option<String>>) -> Vec<ConfiguredSecret> {
    let mut out: Vec<ConfiguredSecret> = Vec::new();
    let mut add = |value: &str, masked: String| {
        if !value.is_empty() && !out.iter().any(|s| s.value.expose_secret() == value) {
            out.push(ConfiguredSecret {
                value: SecretString::from(value),
                masked,
            });
        }
    };
    for setting in s::SETTINGS {
        let (Some(mask), Some(value)) = (setting.secret, env.value(setting)) else {
            continue;
        };
        match mask {
            Mask::Token(prefixes) => add(&value, mask_secret(&value, prefixes)),
            Mask::UrlPassword => {
                for password in url_passwords(&value) {
                    add(&password, "****".to_owned());
                }
            }
        }
    }
    out
}

/// `DATABASE_URL`'s password, as written and percent-decoded: the parts of a database URL that are secret.
fn url_passwords(database_url: &str) -> Vec<String> {
    let Ok(url) = url::Url::parse(database_url) else {
        return Vec::new();
    };
    let query = url.query_pairs().filter(|(k, _)| {
        matches!(
            k.to_ascii_lowercase().as_str(),
            "password" | "pass" | "pwd" | "sslpassword"
        )
    });
    let mut out = Vec::new();
    for password in url
        .password()
        .into_iter()
        .map(str::to_owned)
        .chain(query.map(|(_, v)| v.into_owned()))
    {
        let decoded = percent_encoding::percent_decode_str(&password)
            .decode_utf8_lossy()
            .into_owned();
        out.push(password);
        out.push(decoded);
    }
    out
}

/// Never prints a secret: `{:?}` of a config shows the masked view.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Config({})", self.masked())
    }
}
