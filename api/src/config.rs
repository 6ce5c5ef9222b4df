//! Typed configuration from environment variables (and `.env`), with safe defaults.
//!
//! Every setting has one name, documented on its field. A bad value stops start-up with one line
//! naming the variable; a secret's value is never repeated in an error.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use checks::cloudflare::CloudflareSettings;
use checks::mask::{mask_secret, mask_url};
use checks::openai::OpenAiSettings;
use checks::stripe::StripeSettings;
use checks::tunnel::{TunnelApi, TunnelSettings};
use checks::CheckName;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

/// The database used when `DATABASE_URL` is not set: a SQLite file under `data/`, created if missing.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/opsdoctor.db?mode=rwc";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (colour when stderr is a terminal).
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// The resolved configuration of one opsdoctor process.
#[derive(Clone)]
pub struct Config {
    /// `DATABASE_URL`: `sqlite://…` or `postgres://…`; defaults to [`DEFAULT_DATABASE_URL`].
    /// Kept secret because it may carry a password.
    pub database_url: SecretString,
    /// `HOST` (or `--host`): the address to listen on; default `127.0.0.1`.
    pub host: IpAddr,
    /// `PORT` (or `--port`): default 8080; 0 picks a free port, and the bound address is logged.
    pub port: u16,
    /// `ADMIN_TOKEN`: the bearer token for `/ops/*`. Without it those endpoints refuse every call.
    pub admin_token: Option<SecretString>,
    /// `LOG_FORMAT`: `text` (default) or `json`. The level comes from `RUST_LOG` (default `info`).
    pub log_format: LogFormat,
    /// `AUTO_MIGRATE`: apply pending migrations before serving (default true; `--no-migrate` wins).
    pub auto_migrate: bool,
    /// `MAX_BODY_BYTES`: largest accepted request body (default 65536); larger ones get 413.
    pub max_body_bytes: usize,
    /// `REQUEST_TIMEOUT_MS`: a request still running after this gets 408 (default 30000).
    pub request_timeout: Duration,
    /// `DB_CONNECT_TIMEOUT_MS`: how long to wait for a new database connection (default 5000).
    pub db_connect_timeout: Duration,
    /// `DB_ACQUIRE_TIMEOUT_MS`: how long a query waits for a pooled connection (default 5000).
    pub db_acquire_timeout: Duration,
    /// `DB_MAX_CONNECTIONS`: pool size (default 10).
    pub db_max_connections: u32,
    /// `READY_CACHE_TTL_MS`: how long readiness reuses a database check result, so probe storms
    /// never become query storms (default 1000).
    pub ready_cache_ttl: Duration,
    /// `READY_EXTERNAL_CACHE_TTL_MS`: how long readiness reuses the result of a required check
    /// other than the database (an external API), default 30000.
    pub ready_external_cache_ttl: Duration,
    /// The check suite's settings: integrations, timeouts, the required list.
    pub checks: ChecksConfig,
    /// `DOCTOR_INTERVAL_MS`: the background monitor re-runs the suite this often; 0 turns it off
    /// (default 60000).
    pub doctor_interval: Duration,
    /// `DOCTOR_MIN_INTERVAL_MS`: `POST /ops/doctor/run` starts at most one new run per this
    /// interval; callers beyond it get 429 with `Retry-After` (default 2000).
    pub doctor_min_interval: Duration,
    /// `GATE_RETRY_AFTER_S`: the `Retry-After` a non-passing gate verdict carries (default 5).
    pub gate_retry_after: Duration,
    /// `DOCTOR_ESCALATE_AFTER_RUNS`: a failure seen in this many runs in a row is escalated to
    /// CRITICAL (default 3).
    pub doctor_escalate_after: u32,
    /// `SHUTDOWN_READY_DELAY_MS`: after SIGTERM, keep serving with readiness at 503 this long so
    /// load balancers stop routing before the listener closes (default 0).
    pub shutdown_ready_delay: Duration,
    /// `SHUTDOWN_DRAIN_MS`: how long in-flight requests may take to finish after the listener
    /// closes (default 10000); past it the process exits anyway.
    pub shutdown_drain: Duration,
    /// `HEADER_READ_TIMEOUT_MS`: once a request's first byte has arrived, its whole head must
    /// arrive within this long or the connection is closed, so half-sent heads cannot pile up
    /// (default 10000).
    pub header_read_timeout: Duration,
    /// `IDLE_TIMEOUT_MS`: a connection with no request in flight and no bytes moving is closed
    /// after this long (default 75000, above the 60 s idle timeout of common load balancers, so
    /// they close first and never send onto a connection this side is closing).
    pub idle_timeout: Duration,
    /// `MAX_CONNECTIONS`: connections served at once (default 4096); more wait in the listen
    /// backlog. Lowered at start-up, with a warning, to what the open-file limit allows.
    pub max_connections: usize,
}

/// Settings of the check suite. Each integration is `None` until its key setting is present.
#[derive(Clone)]
pub struct ChecksConfig {
    /// `CHECK_TIMEOUT_MS`: every check's timeout unless overridden (default 5000).
    pub default_timeout: Duration,
    /// `CHECK_TIMEOUT_MS_<NAME>` (e.g. `CHECK_TIMEOUT_MS_STRIPE`): per-check overrides; the
    /// database check defaults to 2000.
    pub timeouts: BTreeMap<CheckName, Duration>,
    /// `REQUIRED_CHECKS`: comma-separated check names whose failure fails readiness and the gate
    /// (default `database`).
    pub required: BTreeSet<String>,
    /// `OPENAI_API_KEY`, `OPENAI_BASE_URL` (default `https://api.openai.com/v1`).
    pub openai: Option<OpenAiSettings>,
    /// `STRIPE_SECRET_KEY`, `STRIPE_WEBHOOK_SECRET`, `STRIPE_API_BASE` (default `https://api.stripe.com`).
    pub stripe: Option<StripeSettings>,
    /// `CLOUDFLARE_API_TOKEN`, `CLOUDFLARE_ACCOUNT_ID`, `CLOUDFLARE_API_BASE`
    /// (default `https://api.cloudflare.com/client/v4`).
    pub cloudflare: Option<CloudflareSettings>,
    /// `CLOUDFLARED_METRICS_URL`, `BASE_URL`, and `CLOUDFLARE_TUNNEL_ID` with the Cloudflare settings.
    pub tunnel: TunnelSettings,
}

/// A configured secret and the masked form that may be shown instead of it.
#[derive(Clone)]
pub struct ConfiguredSecret {
    pub value: SecretString,
    /// E.g. `sk-proj-…3jB9` (see [`checks::mask::mask_secret`]) or `****`.
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
    /// Reads the process environment (after loading `.env` if present).
    pub fn from_env() -> Result<Self, ConfigError> {
        let _ = dotenvy::dotenv();
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Builds the configuration from any variable lookup; tests pass a map.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| {
            get(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };

        let database_url = get("DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
        validate_database_url(&database_url)?;

        let host = match get("HOST") {
            Some(v) => v.parse().map_err(|_| {
                ConfigError::new(
                    "HOST",
                    format!("`{v}` is not an IP address (e.g. 127.0.0.1 or 0.0.0.0)"),
                )
            })?,
            None => IpAddr::from([127, 0, 0, 1]),
        };
        let port = parse_num::<u16>(&get, "PORT", 8080, "a port number from 0 to 65535")?;

        let admin_token = get("ADMIN_TOKEN").map(SecretString::from);
        if let Some(token) = &admin_token {
            if token.expose_secret().len() < 16 {
                return Err(ConfigError::new(
                    "ADMIN_TOKEN",
                    "too short: use at least 16 characters (e.g. `openssl rand -hex 32`)",
                ));
            }
        }

        let log_format = match get("LOG_FORMAT")
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("text") | Some("pretty") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError::new(
                    "LOG_FORMAT",
                    format!("`{other}` is not one of text, json"),
                ))
            }
        };

        let auto_migrate = parse_bool(&get, "AUTO_MIGRATE", true)?;
        let max_body_bytes =
            parse_num::<usize>(&get, "MAX_BODY_BYTES", 65_536, "a number of bytes")?;
        if max_body_bytes < 1024 {
            return Err(ConfigError::new("MAX_BODY_BYTES", "must be at least 1024"));
        }
        let db_max_connections =
            parse_num::<u32>(&get, "DB_MAX_CONNECTIONS", 10, "a whole number")?;
        if db_max_connections == 0 {
            return Err(ConfigError::new("DB_MAX_CONNECTIONS", "must be at least 1"));
        }

        let checks = checks_config(&get)?;

        Ok(Self {
            database_url: SecretString::from(database_url),
            host,
            port,
            admin_token,
            log_format,
            auto_migrate,
            max_body_bytes,
            request_timeout: parse_timeout(&get, "REQUEST_TIMEOUT_MS", 30_000)?,
            db_connect_timeout: parse_timeout(&get, "DB_CONNECT_TIMEOUT_MS", 5_000)?,
            db_acquire_timeout: parse_timeout(&get, "DB_ACQUIRE_TIMEOUT_MS", 5_000)?,
            db_max_connections,
            ready_cache_ttl: parse_ms(&get, "READY_CACHE_TTL_MS", 1_000)?,
            ready_external_cache_ttl: parse_ms(&get, "READY_EXTERNAL_CACHE_TTL_MS", 30_000)?,
            checks,
            doctor_interval: parse_ms(&get, "DOCTOR_INTERVAL_MS", 60_000)?,
            doctor_min_interval: parse_ms(&get, "DOCTOR_MIN_INTERVAL_MS", 2_000)?,
            gate_retry_after: match parse_num::<u64>(
                &get,
                "GATE_RETRY_AFTER_S",
                5,
                "a whole number of seconds",
            )? {
                0 => return Err(ConfigError::new("GATE_RETRY_AFTER_S", "must be at least 1")),
                n => Duration::from_secs(n),
            },
            doctor_escalate_after: match parse_num::<u32>(
                &get,
                "DOCTOR_ESCALATE_AFTER_RUNS",
                3,
                "a whole number",
            )? {
                0 => {
                    return Err(ConfigError::new(
                        "DOCTOR_ESCALATE_AFTER_RUNS",
                        "must be at least 1",
                    ))
                }
                n => n,
            },
            shutdown_ready_delay: parse_ms(&get, "SHUTDOWN_READY_DELAY_MS", 0)?,
            shutdown_drain: parse_ms(&get, "SHUTDOWN_DRAIN_MS", 10_000)?,
            header_read_timeout: parse_timeout(&get, "HEADER_READ_TIMEOUT_MS", 10_000)?,
            idle_timeout: parse_timeout(&get, "IDLE_TIMEOUT_MS", 75_000)?,
            max_connections: match parse_num::<usize>(
                &get,
                "MAX_CONNECTIONS",
                4096,
                "a whole number",
            )? {
                0 => return Err(ConfigError::new("MAX_CONNECTIONS", "must be at least 1")),
                n => n,
            },
        })
    }

    /// Every configured secret value with the masked form a log line shows in its place; the log
    /// scrubber masks these whoever writes them. This is the one list of which settings are secret:
    /// a new secret setting is added here. A password in `DATABASE_URL` (userinfo or a
    /// `password=`-like query value) is listed both as written and percent-decoded; other URLs
    /// cannot carry one (refused at start-up).
    pub fn secrets(&self) -> Vec<ConfiguredSecret> {
        let mut out = Vec::new();
        let mut add = |value: &str, masked: String| {
            if !value.is_empty()
                && !out
                    .iter()
                    .any(|s: &ConfiguredSecret| s.value.expose_secret() == value)
            {
                out.push(ConfiguredSecret {
                    value: SecretString::from(value),
                    masked,
                });
            }
        };
        if let Some(token) = &self.admin_token {
            add(
                token.expose_secret(),
                mask_secret(token.expose_secret(), &[]),
            );
        }
        if let Ok(url) = url::Url::parse(self.database_url.expose_secret()) {
            let query = url.query_pairs().filter(|(k, _)| {
                matches!(
                    k.to_ascii_lowercase().as_str(),
                    "password" | "pass" | "pwd" | "sslpassword"
                )
            });
            for password in url
                .password()
                .into_iter()
                .map(str::to_owned)
                .chain(query.map(|(_, v)| v.into_owned()))
            {
                add(&password, "****".to_owned());
                add(
                    &percent_encoding::percent_decode_str(&password).decode_utf8_lossy(),
                    "****".to_owned(),
                );
            }
        }
        let integrations = &self.checks;
        if let Some(openai) = &integrations.openai {
            let key = openai.api_key.expose_secret();
            add(key, mask_secret(key, OPENAI_KEY_PREFIXES));
        }
        if let Some(stripe) = &integrations.stripe {
            for key in std::iter::once(&stripe.secret_key).chain(&stripe.webhook_secret) {
                let key = key.expose_secret();
                add(key, mask_secret(key, checks::stripe::KEY_PREFIXES));
            }
        }
        let cloudflare = integrations.cloudflare.iter().map(|c| &c.token);
        for token in cloudflare.chain(integrations.tunnel.api.iter().map(|a| &a.token)) {
            add(
                token.expose_secret(),
                mask_secret(token.expose_secret(), &[]),
            );
        }
        out
    }

    /// The database URL with its password masked, safe to show anywhere.
    pub fn database_location(&self) -> String {
        checks::mask::mask_database_url(self.database_url.expose_secret())
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

    /// The resolved configuration with every secret masked, for `opsdoctor config`.
    pub fn masked(&self) -> Value {
        json!({
            "DATABASE_URL": self.database_location(),
            "HOST": self.host.to_string(),
            "PORT": self.port,
            "ADMIN_TOKEN": { "configured": self.admin_token.is_some() },
            "LOG_FORMAT": match self.log_format { LogFormat::Text => "text", LogFormat::Json => "json" },
            "AUTO_MIGRATE": self.auto_migrate,
            "MAX_BODY_BYTES": self.max_body_bytes,
            "REQUEST_TIMEOUT_MS": ms(self.request_timeout),
            "DB_CONNECT_TIMEOUT_MS": ms(self.db_connect_timeout),
            "DB_ACQUIRE_TIMEOUT_MS": ms(self.db_acquire_timeout),
            "DB_MAX_CONNECTIONS": self.db_max_connections,
            "READY_CACHE_TTL_MS": ms(self.ready_cache_ttl),
            "READY_EXTERNAL_CACHE_TTL_MS": ms(self.ready_external_cache_ttl),
            "DOCTOR_INTERVAL_MS": ms(self.doctor_interval),
            "DOCTOR_MIN_INTERVAL_MS": ms(self.doctor_min_interval),
            "DOCTOR_ESCALATE_AFTER_RUNS": self.doctor_escalate_after,
            "GATE_RETRY_AFTER_S": self.gate_retry_after.as_secs(),
            "CHECK_TIMEOUT_MS": ms(self.checks.default_timeout),
            "CHECK_TIMEOUT_MS_<NAME>": self.checks.timeouts.iter().map(|(k, v)| (k.as_str().to_ascii_uppercase(), json!(ms(*v)))).collect::<serde_json::Map<_, _>>(),
            "REQUIRED_CHECKS": self.checks.required.iter().cloned().collect::<Vec<_>>().join(","),
            "integrations": self.checks.masked(),
            "SHUTDOWN_READY_DELAY_MS": ms(self.shutdown_ready_delay),
            "SHUTDOWN_DRAIN_MS": ms(self.shutdown_drain),
            "HEADER_READ_TIMEOUT_MS": ms(self.header_read_timeout),
            "IDLE_TIMEOUT_MS": ms(self.idle_timeout),
            "MAX_CONNECTIONS": self.max_connections,
        })
    }
}

/// Never prints a secret: `{:?}` of a config shows the masked view.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Config({})", self.masked())
    }
}

impl ChecksConfig {
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

/// Prefixes that may be shown in a masked OpenAI key.
pub const OPENAI_KEY_PREFIXES: &[&str] = &["sk-proj-", "sk-svcacct-", "sk-admin-", "sk-"];

fn checks_config(get: &impl Fn(&str) -> Option<String>) -> Result<ChecksConfig, ConfigError> {
    let default_timeout = parse_timeout(get, "CHECK_TIMEOUT_MS", 5_000)?;
    let mut timeouts = BTreeMap::new();
    timeouts.insert(CheckName::Database, Duration::from_millis(2_000));
    for name in CheckName::ALL {
        let var = format!("CHECK_TIMEOUT_MS_{}", name.as_str().to_ascii_uppercase());
        if get(&var).is_some() {
            timeouts.insert(name, parse_timeout(get, var, 1)?);
        }
    }
    let required: BTreeSet<String> = get("REQUIRED_CHECKS")
        .unwrap_or_else(|| "database".to_owned())
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    if let Some(unknown) = required.iter().find_map(|r| r.parse::<CheckName>().err()) {
        return Err(ConfigError::new("REQUIRED_CHECKS", unknown.to_string()));
    }

    let openai = match get("OPENAI_API_KEY") {
        Some(key) => Some(OpenAiSettings {
            api_base: base_url(get, "OPENAI_BASE_URL", "https://api.openai.com/v1")?,
            api_key: SecretString::from(key),
        }),
        None => None,
    };
    let stripe = match get("STRIPE_SECRET_KEY") {
        Some(key) => Some(StripeSettings {
            api_base: base_url(get, "STRIPE_API_BASE", "https://api.stripe.com")?,
            secret_key: SecretString::from(key),
            webhook_secret: get("STRIPE_WEBHOOK_SECRET").map(SecretString::from),
        }),
        None => None,
    };
    let cloudflare_base = base_url(
        get,
        "CLOUDFLARE_API_BASE",
        "https://api.cloudflare.com/client/v4",
    )?;
    let account_id = get("CLOUDFLARE_ACCOUNT_ID");
    let cloudflare = get("CLOUDFLARE_API_TOKEN").map(|token| CloudflareSettings {
        api_base: cloudflare_base.clone(),
        token: SecretString::from(token),
        account_id: account_id.clone(),
    });
    let api = match (&cloudflare, &account_id, get("CLOUDFLARE_TUNNEL_ID")) {
        (Some(cf), Some(account), Some(tunnel)) => Some(TunnelApi {
            api_base: cloudflare_base,
            account_id: account.clone(),
            tunnel_id: tunnel,
            token: cf.token.clone(),
        }),
        (_, _, Some(_)) => {
            return Err(ConfigError::new(
                "CLOUDFLARE_TUNNEL_ID",
                "needs CLOUDFLARE_ACCOUNT_ID and CLOUDFLARE_API_TOKEN too, to ask Cloudflare for the tunnel's status",
            ))
        }
        _ => None,
    };
    let tunnel = TunnelSettings {
        metrics_url: optional_url(get, "CLOUDFLARED_METRICS_URL")?,
        public_url: optional_url(get, "BASE_URL")?,
        api,
    };
    Ok(ChecksConfig {
        default_timeout,
        timeouts,
        required,
        openai,
        stripe,
        cloudflare,
        tunnel,
    })
}

fn base_url(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: &str,
) -> Result<String, ConfigError> {
    Ok(optional_url(get, var)?.unwrap_or_else(|| default.to_owned()))
}

fn optional_url(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
) -> Result<Option<String>, ConfigError> {
    let Some(raw) = get(var) else { return Ok(None) };
    // Userinfo would be sent upstream as Basic auth and shown by HTTP libraries' logs; errors
    // show the URL masked, never its password.
    match url::Url::parse(&raw) {
        Ok(u) if !u.username().is_empty() || u.password().is_some() => Err(ConfigError::new(
            var,
            "carries credentials (`user:password@`): remove them; base URLs must not hold secrets",
        )),
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
            Ok(Some(raw.trim_end_matches('/').to_owned()))
        }
        Ok(_) => Err(ConfigError::new(
            var,
            format!("`{}` is not an http(s) URL", mask_url(&raw)),
        )),
        Err(_) => Err(ConfigError::new(
            var,
            "not an http(s) URL (e.g. https://api.example.com/v1)",
        )),
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn validate_database_url(url: &str) -> Result<(), ConfigError> {
    const VAR: &str = "DATABASE_URL";
    let scheme = url.split_once(':').map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("sqlite") => Ok(()),
        Some("postgres") | Some("postgresql") => {
            let parsed = url::Url::parse(url).map_err(|e| {
                ConfigError::new(
                    VAR,
                    format!(
                        "not a valid URL ({e}); expected postgres://user:password@host:5432/db"
                    ),
                )
            })?;
            if parsed.host_str().is_none_or(str::is_empty) {
                return Err(ConfigError::new(VAR, "the PostgreSQL URL has no host"));
            }
            Ok(())
        }
        Some(other)
            if !other.is_empty()
                && other.chars().all(|c| c.is_ascii_alphanumeric() || c == '+') =>
        {
            Err(ConfigError::new(
                VAR,
                format!("unsupported scheme `{other}`; use sqlite:// or postgres://"),
            ))
        }
        _ => Err(ConfigError::new(
            VAR,
            "not a URL; expected sqlite://path/to/file.db or postgres://user:password@host/db",
        )),
    }
}

fn parse_num<T: std::str::FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    var: impl Into<Cow<'static, str>>,
    default: T,
    what: &str,
) -> Result<T, ConfigError> {
    let var = var.into();
    match get(&var) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| ConfigError::new(var, format!("`{v}` is not {what}"))),
    }
}

/// A timeout: like [`parse_ms`], but zero is refused (it would fail everything at once).
fn parse_timeout(
    get: &impl Fn(&str) -> Option<String>,
    var: impl Into<Cow<'static, str>>,
    default_ms: u64,
) -> Result<Duration, ConfigError> {
    let var = var.into();
    let d = parse_ms(get, var.clone(), default_ms)?;
    if d.is_zero() {
        return Err(ConfigError::new(var, "must be greater than 0"));
    }
    Ok(d)
}

fn parse_ms(
    get: &impl Fn(&str) -> Option<String>,
    var: impl Into<Cow<'static, str>>,
    default_ms: u64,
) -> Result<Duration, ConfigError> {
    parse_num::<u64>(get, var, default_ms, "a whole number of milliseconds")
        .map(Duration::from_millis)
}

fn parse_bool(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: bool,
) -> Result<bool, ConfigError> {
    match get(var).as_deref().map(str::to_ascii_lowercase).as_deref() {
        None => Ok(default),
        Some("1" | "true" | "yes" | "on") => Ok(true),
        Some("0" | "false" | "no" | "off") => Ok(false),
        Some(other) => Err(ConfigError::new(
            var,
            format!("`{other}` is not a boolean (true/false)"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_are_safe_and_local() {
        let c = config(&[]).unwrap();
        assert_eq!(c.database_url.expose_secret(), DEFAULT_DATABASE_URL);
        assert_eq!(c.host.to_string(), "127.0.0.1");
        assert_eq!(c.port, 8080);
        assert!(c.admin_token.is_none());
        assert_eq!(c.sqlite_dir(), Some(PathBuf::from("data")));
    }

    #[test]
    fn bad_values_name_their_variable() {
        let err = config(&[("PORT", "abc")]).unwrap_err();
        assert_eq!(err.var, "PORT");
        assert_eq!(
            err.to_string(),
            "invalid configuration: PORT: `abc` is not a port number from 0 to 65535"
        );
        assert_eq!(
            config(&[("DATABASE_URL", "mongodb://x/y")])
                .unwrap_err()
                .var,
            "DATABASE_URL"
        );
        assert_eq!(
            config(&[("DATABASE_URL", "not a url")]).unwrap_err().var,
            "DATABASE_URL"
        );
        assert_eq!(
            config(&[("DATABASE_URL", "postgres://")]).unwrap_err().var,
            "DATABASE_URL"
        );
        assert_eq!(
            config(&[("REQUEST_TIMEOUT_MS", "soon")]).unwrap_err().var,
            "REQUEST_TIMEOUT_MS"
        );
        assert_eq!(config(&[("HOST", "localhost:80")]).unwrap_err().var, "HOST");
    }

    #[test]
    fn checks_settings_are_validated() {
        assert_eq!(
            config(&[("REQUIRED_CHECKS", "database,redis")])
                .unwrap_err()
                .var,
            "REQUIRED_CHECKS"
        );
        assert_eq!(
            config(&[("OPENAI_API_KEY", "sk-x"), ("OPENAI_BASE_URL", "ftp://x")])
                .unwrap_err()
                .var,
            "OPENAI_BASE_URL"
        );
        assert_eq!(
            config(&[("CLOUDFLARE_TUNNEL_ID", "t")]).unwrap_err().var,
            "CLOUDFLARE_TUNNEL_ID"
        );
        assert_eq!(
            config(&[("CHECK_TIMEOUT_MS_STRIPE", "fast")])
                .unwrap_err()
                .var,
            "CHECK_TIMEOUT_MS_STRIPE"
        );
        let c = config(&[
            ("REQUIRED_CHECKS", " Database , stripe "),
            ("CHECK_TIMEOUT_MS_STRIPE", "750"),
        ])
        .unwrap();
        assert_eq!(
            c.checks
                .required
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
            ["database", "stripe"]
        );
        assert_eq!(
            c.checks.timeouts[&CheckName::Stripe],
            Duration::from_millis(750)
        );
        assert!(c.checks.openai.is_none() && c.checks.stripe.is_none());
    }

    #[test]
    fn secrets_never_appear_in_errors_or_debug() {
        let err = config(&[("ADMIN_TOKEN", "tiny-secret")]).unwrap_err();
        assert!(!err.to_string().contains("tiny-secret"));
        let c = config(&[
            ("ADMIN_TOKEN", "admintoken-PLANTED-0123456789"),
            ("DATABASE_URL", "postgres://u:dbpass-PLANTED@h:5432/d"),
            ("OPENAI_API_KEY", "sk-proj-PLANTED0123456789abcdef"),
            ("STRIPE_SECRET_KEY", "sk_live_PLANTED0123456789abcdef"),
            ("STRIPE_WEBHOOK_SECRET", "whsec_PLANTED0123456789abcdef"),
            (
                "CLOUDFLARE_API_TOKEN",
                "cfPLANTED0123456789abcdefghijklmnop",
            ),
        ])
        .unwrap();
        let shown = format!("{c:?} {}", c.masked());
        assert!(!shown.contains("PLANTED"), "{shown}");
    }

    #[test]
    fn base_urls_with_credentials_are_refused_without_echoing_them() {
        for (var, key) in [
            ("OPENAI_BASE_URL", Some(("OPENAI_API_KEY", "sk-x"))),
            ("STRIPE_API_BASE", Some(("STRIPE_SECRET_KEY", "sk_test_x"))),
            ("CLOUDFLARE_API_BASE", None),
            ("CLOUDFLARED_METRICS_URL", None),
            ("BASE_URL", None),
        ] {
            for url in [
                "http://user:pw-PLANTED@127.0.0.1:9/v1",
                "https://tok-PLANTED@api.example.com",
                "ftp://u:pw-PLANTED@example.com",
            ] {
                let mut vars = vec![(var, url)];
                vars.extend(key);
                let err = config(&vars).unwrap_err();
                assert_eq!(err.var, var, "{url}");
                assert!(!err.to_string().contains("PLANTED"), "{err}");
            }
        }
        let err = config(&[("BASE_URL", "https://u:pw@example.com")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid configuration: BASE_URL: carries credentials (`user:password@`): remove them; base URLs must not hold secrets"
        );
        assert_eq!(
            config(&[("BASE_URL", "ftp://example.com/x?token=PLANTED")])
                .unwrap_err()
                .to_string(),
            "invalid configuration: BASE_URL: `ftp://example.com/x?token=****` is not an http(s) URL"
        );
    }

    #[test]
    fn secrets_lists_every_configured_secret_once() {
        let c = config(&[
            ("ADMIN_TOKEN", "admintoken-PLANTED-0123456789"),
            (
                "DATABASE_URL",
                "postgres://u:db%40pass@h:5432/d?sslpassword=keypass",
            ),
            ("OPENAI_API_KEY", "sk-proj-PLANTED0123456789abcdef"),
            ("STRIPE_SECRET_KEY", "sk_live_PLANTED0123456789abcdef"),
            ("STRIPE_WEBHOOK_SECRET", "whsec_PLANTED0123456789abcdef"),
            (
                "CLOUDFLARE_API_TOKEN",
                "cfPLANTED0123456789abcdefghijklmnop",
            ),
            ("CLOUDFLARE_ACCOUNT_ID", "acct"),
            ("CLOUDFLARE_TUNNEL_ID", "tunnel"),
        ])
        .unwrap();
        let listed: Vec<(String, String)> = c
            .secrets()
            .iter()
            .map(|s| (s.value.expose_secret().to_owned(), s.masked.clone()))
            .collect();
        let expected = [
            ("admintoken-PLANTED-0123456789", "…6789"),
            ("db%40pass", "****"),
            ("db@pass", "****"),
            ("keypass", "****"),
            ("sk-proj-PLANTED0123456789abcdef", "sk-proj-…cdef"),
            ("sk_live_PLANTED0123456789abcdef", "sk_live_…cdef"),
            ("whsec_PLANTED0123456789abcdef", "whsec_…cdef"),
            ("cfPLANTED0123456789abcdefghijklmnop", "…mnop"),
        ];
        assert_eq!(listed, expected.map(|(v, m)| (v.to_owned(), m.to_owned())));
        assert!(config(&[]).unwrap().secrets().is_empty());
    }
}
