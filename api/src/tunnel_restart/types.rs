//! What the coordinator answers: who holds the restart lock, a restart as recorded, what a
//! restart did, why one was refused, and the status; one shape each, for the CLI's JSON, the
//! service and the tests.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::command::CommandRun;

/// Who holds (or held) the restart lock.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RestartHolder {
    pub host: String,
    pub pid: u32,
    /// Who asked: `cli`, `recovery`, `deploy`, `monitor`, …
    pub trigger: String,
    pub since: DateTime<Utc>,
    /// A holder seen through the database's advisory lock: its address as the server sees it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_addr: Option<String>,
}

/// Longest trigger kept; longer ones are cut.
const TRIGGER_CHARS: usize = 16;
/// The prefix of the PostgreSQL `application_name` a holder sets (at most 63 bytes in all).
const LABEL_PREFIX: &str = "odtr";

/// A trigger as it is recorded: lower-case letters, digits, `-` and `_`, at most 16 characters.
pub fn clean_trigger(trigger: &str) -> String {
    let cleaned: String = trigger
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(TRIGGER_CHARS)
        .collect();
    if cleaned.is_empty() {
        "unknown".to_owned()
    } else {
        cleaned
    }
}

impl RestartHolder {
    /// This process, asked by `trigger`, from now.
    pub fn me(trigger: &str) -> Self {
        Self {
            host: crate::locks::this_host(),
            pid: std::process::id(),
            trigger: clean_trigger(trigger),
            since: crate::kernel::now().and_utc(),
            client_addr: None,
        }
    }

    /// `pid 4242 on web-1 (trigger cli) since 2026-03-01T10:00:00.000Z`.
    pub fn describe(&self) -> String {
        let addr = self
            .client_addr
            .as_deref()
            .map(|a| format!(", from {a}"))
            .unwrap_or_default();
        format!(
            "pid {} on {} (trigger {}{addr}) since {}",
            self.pid,
            self.host,
            self.trigger,
            self.since.to_rfc3339_opts(SecondsFormat::Millis, true)
        )
    }

    /// The session label on PostgreSQL: `odtr:<pid>:<trigger>:<host>`, cut to 63 bytes.
    pub fn label(&self) -> String {
        let mut label = format!("{LABEL_PREFIX}:{}:{}:{}", self.pid, self.trigger, self.host);
        while label.len() > 63 {
            label.pop();
        }
        label
    }

    /// A holder from a session's label and when its transaction began; `None` for a session
    /// that is not a restart's.
    pub fn from_label(
        label: &str,
        since: Option<DateTime<Utc>>,
        client_addr: Option<String>,
    ) -> Option<Self> {
        let mut parts = label.splitn(4, ':');
        if parts.next()? != LABEL_PREFIX {
            return None;
        }
        let pid = parts.next()?.parse().ok()?;
        let trigger = parts.next()?.to_owned();
        let host = parts.next()?.to_owned();
        Some(Self {
            host,
            pid,
            trigger,
            since: since.unwrap_or_else(Utc::now),
            client_addr,
        })
    }
}

/// How a restart ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartResult {
    /// The command succeeded and the tunnel check saw edge connections before the deadline.
    Connected,
    /// The command succeeded but no edge connection came back before the deadline.
    StillDown,
    /// The command failed, timed out or could not be started.
    CommandFailed,
    /// The command succeeded; no tunnel check is configured, so nothing saw the connections.
    Unverified,
}

impl RestartResult {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connected => "connected",
            Self::StillDown => "still_down",
            Self::CommandFailed => "command_failed",
            Self::Unverified => "unverified",
        }
    }
}

/// One restart in the shared record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RestartRecord {
    pub id: String,
    pub at: DateTime<Utc>,
    pub host: String,
    pub pid: u32,
    pub trigger: String,
    /// `None` while it runs, or when its end was never recorded (its process died).
    #[serde(default)]
    pub result: Option<RestartResult>,
}

/// Where a restart was recorded on the `TUNNEL` incident.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(
    tag = "written",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum Recorded {
    /// In the database, on this incident (`opened`: by this restart).
    Stored { incident_id: String, opened: bool },
    /// In the spool (the database is unavailable); replayed when it returns.
    Spooled,
    /// Neither; the restart is in this host's record only.
    Failed { error: String },
}

/// The cross-host part of the lock.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum CrossHost {
    /// The PostgreSQL advisory lock was held throughout.
    Held,
    /// SQLite: one host only, the file lock is enough.
    NotNeeded,
    /// The database did not answer; only this host's file lock was held.
    Unavailable { error: String },
}

/// What a restart did.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestartOutcome {
    pub id: String,
    /// This restart, as the lock's holder.
    pub holder: RestartHolder,
    pub result: RestartResult,
    /// The command: exit status, duration, the last lines of its output (masked).
    pub command: CommandRun,
    /// From the command's end until the tunnel check saw edge connections (or the deadline).
    pub wait_ms: u64,
    /// Edge connections cloudflared reported last.
    pub edge_connections: Option<u64>,
    /// The tunnel check's last result.
    pub tunnel: checks::CheckResult,
    pub cross_host_lock: CrossHost,
    pub recorded: Recorded,
}

impl RestartOutcome {
    /// Restarted, and the edge connections are back.
    pub fn succeeded(&self) -> bool {
        self.result == RestartResult::Connected
    }
}

/// Why a restart did not run. Nothing was run and nothing recorded.
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
#[serde(
    tag = "refused",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum RestartRefused {
    #[error("no restart command is configured: set TUNNEL_RESTART_COMMAND")]
    NotConfigured,
    #[error("another tunnel restart holds the lock: {}", holder.as_ref().map_or_else(|| "its holder is not written yet".to_owned(), RestartHolder::describe))]
    Held { holder: Option<RestartHolder> },
    #[error("rate-limited: {why}; the next restart is allowed at {}", next_allowed.to_rfc3339_opts(SecondsFormat::Secs, true))]
    RateLimited {
        next_allowed: DateTime<Utc>,
        why: String,
    },
    #[error("the restart lock cannot be taken: {error}")]
    Lock { error: String },
}

impl RestartRefused {
    /// How long to wait before asking again, when waiting helps (for `Retry-After`).
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Self::RateLimited { next_allowed, .. } => {
                Some((*next_allowed - Utc::now()).to_std().unwrap_or_default())
            }
            Self::Held { .. } => Some(std::time::Duration::from_secs(5)),
            Self::NotConfigured | Self::Lock { .. } => None,
        }
    }
}

/// The coordinator now.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestartStatus {
    /// Whether `TUNNEL_RESTART_COMMAND` is set.
    pub configured: bool,
    /// The restart running now, on this host or (PostgreSQL) any.
    pub holder: Option<RestartHolder>,
    /// Restarts of the last 24 hours, newest first.
    pub recent: Vec<RestartRecord>,
    /// `None`: a restart is allowed now.
    pub next_allowed: Option<DateTime<Utc>>,
    /// `shared` (the database's record, every host's) or `this_host` (the database did not
    /// answer, so only this host's record was read).
    pub history: String,
    pub min_interval_s: u64,
    pub per_hour: u32,
    pub edge_connections: Option<u64>,
    pub tunnel: checks::CheckResult,
}
