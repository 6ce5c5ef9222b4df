//! The settings of the database circuit breaker and the spool of queued writes, declared here and
//! listed in [`super::settings::SETTINGS`] as one block.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

use super::parse::Lookup;
use super::settings::{plain, Setting};
use super::{Config, ConfigError};

fn ms(d: Duration) -> Value {
    json!(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub static SPOOL_DIR: Setting = plain("SPOOL_DIR", None, "where writes acknowledged while the database is down are kept until replayed; unset: `spool/` beside the SQLite file, else `data/spool`", |c| json!(c.resilience.spool_dir.as_ref().map(|d| d.display().to_string())));
pub static SPOOL_MAX_BYTES: Setting = plain("SPOOL_MAX_BYTES", Some("104857600"), "the spool's size cap; at the cap a write the database cannot take is refused with 507, never dropped", |c| json!(c.resilience.spool_max_bytes));
pub static DB_BREAKER_FAILURES: Setting = plain(
    "DB_BREAKER_FAILURES",
    Some("3"),
    "consecutive database failures or timeouts that open the circuit breaker",
    |c| json!(c.resilience.breaker_failures),
);
pub static DB_BREAKER_TIMEOUT_MS: Setting = plain("DB_BREAKER_TIMEOUT_MS", Some("5000"), "a database write taking longer counts as a failure, and the write goes to the spool (probes give up after at most 1 s); lower it where writes never queue behind one another for long", |c| ms(c.resilience.op_timeout));
pub static DB_BREAKER_MIN_BACKOFF_MS: Setting = plain(
    "DB_BREAKER_MIN_BACKOFF_MS",
    Some("250"),
    "an open breaker probes the database after this long, doubling after each failed probe",
    |c| ms(c.resilience.min_backoff),
);
pub static DB_BREAKER_MAX_BACKOFF_MS: Setting = plain(
    "DB_BREAKER_MAX_BACKOFF_MS",
    Some("1000"),
    "the longest wait between two probes of an open breaker",
    |c| ms(c.resilience.max_backoff),
);
pub static DB_OUTAGE_EXIT_AFTER_MS: Setting = plain("DB_OUTAGE_EXIT_AFTER_MS", Some("0"), "opt-in safe shutdown: once the breaker has stayed open this long, a CRITICAL incident is spooled, the service shuts down gracefully and exits 1 for its supervisor to restart it; `0` never", |c| ms(c.resilience.exit_after));
pub static DB_PROBE_INTERVAL_MS: Setting = plain(
    "DB_PROBE_INTERVAL_MS",
    Some("500"),
    "while the breaker is closed, the database is probed (a write-lock probe) this often",
    |c| ms(c.resilience.probe_interval),
);

/// The breaker's and the spool's settings.
#[derive(Debug, Clone)]
pub struct ResilienceConfig {
    /// [`SPOOL_DIR`]; `None`: decided by [`Config::spool_dir`].
    pub spool_dir: Option<PathBuf>,
    /// [`SPOOL_MAX_BYTES`].
    pub spool_max_bytes: u64,
    /// [`DB_BREAKER_FAILURES`].
    pub breaker_failures: u32,
    /// [`DB_BREAKER_TIMEOUT_MS`].
    pub op_timeout: Duration,
    /// [`DB_BREAKER_MIN_BACKOFF_MS`].
    pub min_backoff: Duration,
    /// [`DB_BREAKER_MAX_BACKOFF_MS`].
    pub max_backoff: Duration,
    /// [`DB_PROBE_INTERVAL_MS`].
    pub probe_interval: Duration,
    /// [`DB_OUTAGE_EXIT_AFTER_MS`]; zero: never.
    pub exit_after: Duration,
}

impl ResilienceConfig {
    pub(super) fn from_lookup(
        env: &Lookup<impl Fn(&str) -> Option<String>>,
    ) -> Result<Self, ConfigError> {
        let min_backoff = env.timeout(&DB_BREAKER_MIN_BACKOFF_MS)?;
        let max_backoff = env.timeout(&DB_BREAKER_MAX_BACKOFF_MS)?;
        if max_backoff < min_backoff {
            return Err(ConfigError::new(
                DB_BREAKER_MAX_BACKOFF_MS.name,
                "must not be less than DB_BREAKER_MIN_BACKOFF_MS",
            ));
        }
        Ok(Self {
            spool_dir: env.value(&SPOOL_DIR).map(PathBuf::from),
            spool_max_bytes: env.positive(&SPOOL_MAX_BYTES, "a number of bytes")?,
            breaker_failures: env.positive(&DB_BREAKER_FAILURES, "a whole number")?,
            op_timeout: env.timeout(&DB_BREAKER_TIMEOUT_MS)?,
            min_backoff,
            max_backoff,
            probe_interval: env.timeout(&DB_PROBE_INTERVAL_MS)?,
            exit_after: env.ms(&DB_OUTAGE_EXIT_AFTER_MS)?,
        })
    }
}

impl Config {
    /// Where the spool lives: [`SPOOL_DIR`], else `spool/` beside the SQLite file, else
    /// `data/spool` (an in-memory SQLite database gets a directory of its own under the system's
    /// temporary directory, since nothing of it survives the process anyway).
    pub fn spool_dir(&self) -> PathBuf {
        if let Some(dir) = &self.resilience.spool_dir {
            return dir.clone();
        }
        if let Some(dir) = self.sqlite_dir() {
            return dir.join("spool");
        }
        let url = secrecy::ExposeSecret::expose_secret(&self.database_url);
        let memory = url.contains(":memory:") || url.contains("mode=memory");
        if url.starts_with("sqlite:") && !memory {
            return PathBuf::from("spool");
        }
        if url.starts_with("sqlite:") {
            static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return std::env::temp_dir()
                .join(format!("opsdoctor-spool-{}-{n}", std::process::id()));
        }
        PathBuf::from("data/spool")
    }
}
