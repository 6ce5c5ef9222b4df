//! The settings of the rotated JSON log files, declared here and listed in
//! [`super::settings::SETTINGS`] as one block.

use std::path::PathBuf;

use serde_json::json;

use super::parse::Lookup;
use super::settings::{plain, Setting};
use super::ConfigError;

pub static LOG_DIR: Setting = plain("LOG_DIR", Some("logs"), "besides stderr, JSON lines go to files here, one a day (`opsdoctor.YYYY-MM-DD.log`, then `.1`, `.2` … past the size cap); `off`: no files", |c| json!(c.log_files.dir.as_ref().map(|d| d.display().to_string())));
pub static LOG_MAX_FILE_BYTES: Setting = plain(
    "LOG_MAX_FILE_BYTES",
    Some("52428800"),
    "a log file that would pass this size is closed and the next one opened; a line is never split",
    |c| json!(c.log_files.max_bytes),
);
pub static LOG_KEEP_DAYS: Setting = plain(
    "LOG_KEEP_DAYS",
    Some("7"),
    "log files older than this many days are deleted",
    |c| json!(c.log_files.keep_days),
);

/// Where and how the log files are written.
#[derive(Debug, Clone)]
pub struct LogFilesConfig {
    /// [`LOG_DIR`]; `None` when `off`.
    pub dir: Option<PathBuf>,
    /// [`LOG_MAX_FILE_BYTES`].
    pub max_bytes: u64,
    /// [`LOG_KEEP_DAYS`].
    pub keep_days: u32,
}

impl LogFilesConfig {
    pub(super) fn from_lookup(
        env: &Lookup<impl Fn(&str) -> Option<String>>,
    ) -> Result<Self, ConfigError> {
        let dir = env
            .value(&LOG_DIR)
            .filter(|d| !d.eq_ignore_ascii_case("off"))
            .map(PathBuf::from);
        let max_bytes: u64 = env.positive(&LOG_MAX_FILE_BYTES, "a number of bytes")?;
        if max_bytes < 1024 {
            return Err(ConfigError::new(
                LOG_MAX_FILE_BYTES.name,
                "must be at least 1024",
            ));
        }
        Ok(Self {
            dir,
            max_bytes,
            keep_days: env.positive(&LOG_KEEP_DAYS, "a whole number of days")?,
        })
    }
}
