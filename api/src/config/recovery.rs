//! The settings of recovery (`POST /health/recover` and the monitor's own recoveries), declared
//! here and listed in [`super::settings::SETTINGS`] as one block.

use std::time::Duration;

use serde_json::json;

use super::parse::Lookup;
use super::settings::{plain, Setting};
use super::ConfigError;

pub static RECOVERY_MIN_INTERVAL_MS: Setting = plain("RECOVERY_MIN_INTERVAL_MS", Some("60000"), "recoveries (asked for or the monitor's own) start at most once per this long; another is answered 429 with `Retry-After`", |c| json!(u64::try_from(c.recovery.min_interval.as_millis()).unwrap_or(u64::MAX)));
pub static RECOVERY_AFTER_RUNS: Setting = plain("RECOVERY_AFTER_RUNS", Some("3"), "the background monitor starts a recovery of a component once its check has failed in this many runs in a row; `0` never", |c| json!(c.recovery.after_runs));
pub static RECOVERY_ESCALATE_AFTER: Setting = plain("RECOVERY_ESCALATE_AFTER", Some("2"), "a component whose recovery has failed this many times in a row has its incident escalated to CRITICAL", |c| json!(c.recovery.escalate_after));

/// Recovery's settings.
#[derive(Debug, Clone)]
pub struct RecoveryConfig {
    /// [`RECOVERY_MIN_INTERVAL_MS`].
    pub min_interval: Duration,
    /// [`RECOVERY_AFTER_RUNS`]; zero: the monitor never starts one.
    pub after_runs: u32,
    /// [`RECOVERY_ESCALATE_AFTER`].
    pub escalate_after: u32,
}

impl RecoveryConfig {
    pub(super) fn from_lookup(
        env: &Lookup<impl Fn(&str) -> Option<String>>,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            min_interval: env.ms(&RECOVERY_MIN_INTERVAL_MS)?,
            after_runs: env.num(&RECOVERY_AFTER_RUNS, "a whole number")?,
            escalate_after: env.positive(&RECOVERY_ESCALATE_AFTER, "a whole number")?,
        })
    }
}
