//! Typed configuration from environment variables (and `.env`), with safe defaults.
//!
//! Every setting has one name, documented on its field. A bad value stops start-up with one line
//! naming the variable; a secret's value is never repeated in an error.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

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
    /// `READY_CACHE_TTL_MS`: how long a readiness result is reused, so probe storms never become
    /// query storms (default 1000).
    pub ready_cache_ttl: Duration,
    /// `DB_CHECK_TIMEOUT_MS`: the database check's own timeout (default 2000).
    pub db_check_timeout: Duration,
    /// `SHUTDOWN_READY_DELAY_MS`: after SIGTERM, keep serving with readiness at 503 this long so
    /// load balancers stop routing before the listener closes (default 0).
    pub shutdown_ready_delay: Duration,
    /// `SHUTDOWN_DRAIN_MS`: how long in-flight requests may take to finish after the listener
    /// closes (default 10000); past it the process exits anyway.
    pub shutdown_drain: Duration,
}

/// A configuration value that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {var}: {problem}")]
pub struct ConfigError {
    pub var: &'static str,
    pub problem: String,
}

impl ConfigError {
    fn new(var: &'static str, problem: impl Into<String>) -> Self {
        Self {
            var,
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

        Ok(Self {
            database_url: SecretString::from(database_url),
            host,
            port,
            admin_token,
            log_format,
            auto_migrate,
            max_body_bytes,
            request_timeout: parse_ms(&get, "REQUEST_TIMEOUT_MS", 30_000)?,
            db_connect_timeout: parse_ms(&get, "DB_CONNECT_TIMEOUT_MS", 5_000)?,
            db_acquire_timeout: parse_ms(&get, "DB_ACQUIRE_TIMEOUT_MS", 5_000)?,
            db_max_connections,
            ready_cache_ttl: parse_ms(&get, "READY_CACHE_TTL_MS", 1_000)?,
            db_check_timeout: parse_ms(&get, "DB_CHECK_TIMEOUT_MS", 2_000)?,
            shutdown_ready_delay: parse_ms(&get, "SHUTDOWN_READY_DELAY_MS", 0)?,
            shutdown_drain: parse_ms(&get, "SHUTDOWN_DRAIN_MS", 10_000)?,
        })
    }

    /// The database URL with its password masked, safe to show anywhere.
    pub fn database_location(&self) -> String {
        checks::mask::mask_database_url(self.database_url.expose_secret())
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
            "DB_CHECK_TIMEOUT_MS": ms(self.db_check_timeout),
            "SHUTDOWN_READY_DELAY_MS": ms(self.shutdown_ready_delay),
            "SHUTDOWN_DRAIN_MS": ms(self.shutdown_drain),
        })
    }
}

/// Never prints a secret: `{:?}` of a config shows the masked view.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Config({})", self.masked())
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
    var: &'static str,
    default: T,
    what: &str,
) -> Result<T, ConfigError> {
    match get(var) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| ConfigError::new(var, format!("`{v}` is not {what}"))),
    }
}

fn parse_ms(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
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
    fn secrets_never_appear_in_errors_or_debug() {
        let err = config(&[("ADMIN_TOKEN", "tiny-secret")]).unwrap_err();
        assert!(!err.to_string().contains("tiny-secret"));
        let c = config(&[
            ("ADMIN_TOKEN", "admintoken-PLANTED-0123456789"),
            ("DATABASE_URL", "postgres://u:dbpass-PLANTED@h:5432/d"),
        ])
        .unwrap();
        let shown = format!("{c:?} {}", c.masked());
        assert!(!shown.contains("PLANTED"), "{shown}");
    }
}
