//! The data a check produces, and the timeout wrapper every check runs under.

use std::future::Future;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pass,
    Warn,
    Fail,
    /// Not configured, and not required.
    Skipped,
}

/// Machine-readable cause of a result that is not `pass`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The credentials were refused (HTTP 401, invalid or expired key).
    Auth,
    /// The credentials are valid but lack a permission (HTTP 403).
    Forbidden,
    /// Too many requests; waiting helps.
    RateLimited,
    /// The account is out of quota or credit; waiting does not help.
    QuotaExhausted,
    Timeout,
    Dns,
    ConnectionRefused,
    Tls,
    /// The upstream answered 5xx (its status is in `observed.http_status`).
    UpstreamError,
    /// The upstream answered something that is not what its API promises.
    BadResponse,
    /// Required, but no setting for it was given.
    NotConfigured,
    /// Configured wrongly (wrong key kind, mode mismatch, malformed secret …).
    Misconfigured,
    MigrationsPending,
    MissingTables,
    /// The database answers reads but its storage refused a write (disk full, I/O error, …).
    WriteFailed,
    /// The local process (cloudflared) is not running: its port refuses connections.
    ProcessDown,
    /// The process runs but holds no connection to its upstream (tunnel edge).
    NoConnections,
    /// The public hostname is not routed to a connected tunnel (Cloudflare 530 / error 1033).
    NotRouting,
    /// The tunnel is up but cannot reach the origin (HTTP 502 at the public hostname).
    OriginUnreachable,
    /// The API token is disabled.
    TokenDisabled,
    /// The API token has expired.
    TokenExpired,
    /// The API token expires soon (a warning).
    TokenExpiring,
    /// Any other transport failure.
    Unreachable,
}

impl Status {
    /// The name used in JSON, logs and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
            Status::Skipped => "skipped",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Reason {
    /// The name used in JSON, logs, fingerprints and summaries.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Auth => "auth",
            Reason::Forbidden => "forbidden",
            Reason::RateLimited => "rate_limited",
            Reason::QuotaExhausted => "quota_exhausted",
            Reason::Timeout => "timeout",
            Reason::Dns => "dns",
            Reason::ConnectionRefused => "connection_refused",
            Reason::Tls => "tls",
            Reason::UpstreamError => "upstream_error",
            Reason::BadResponse => "bad_response",
            Reason::NotConfigured => "not_configured",
            Reason::Misconfigured => "misconfigured",
            Reason::MigrationsPending => "migrations_pending",
            Reason::MissingTables => "missing_tables",
            Reason::WriteFailed => "write_failed",
            Reason::ProcessDown => "process_down",
            Reason::NoConnections => "no_connections",
            Reason::NotRouting => "not_routing",
            Reason::OriginUnreachable => "origin_unreachable",
            Reason::TokenDisabled => "token_disabled",
            Reason::TokenExpired => "token_expired",
            Reason::TokenExpiring => "token_expiring",
            Reason::Unreachable => "unreachable",
        }
    }

    /// Whether waiting can plausibly fix it; a deploy gate stops waiting on the others.
    pub fn is_transient(self) -> bool {
        !matches!(
            self,
            Reason::Auth
                | Reason::Forbidden
                | Reason::QuotaExhausted
                | Reason::NotConfigured
                | Reason::Misconfigured
                | Reason::TokenDisabled
                | Reason::TokenExpired
        )
    }
}

/// What one check found: data, in a fixed shape, for humans and machines alike.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckResult {
    pub name: String,
    pub status: Status,
    pub latency_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    /// One line saying what was found.
    pub message: String,
    /// The recommended action, for a tired human; absent when nothing needs doing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// Observed values (latency baseline, backend, masked location …).
    #[serde(default)]
    pub observed: Map<String, Value>,
}

impl CheckResult {
    pub fn pass(name: &str, message: impl Into<String>) -> Self {
        Self {
            name: name.to_owned(),
            status: Status::Pass,
            latency_ms: 0,
            reason: None,
            message: message.into(),
            hint: None,
            observed: Map::new(),
        }
    }

    pub fn fail(
        name: &str,
        reason: Reason,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Self {
            name: name.to_owned(),
            status: Status::Fail,
            latency_ms: 0,
            reason: Some(reason),
            message: message.into(),
            hint: Some(hint.into()),
            observed: Map::new(),
        }
    }

    /// Adds an observed value.
    pub fn observe(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.observed.insert(key.to_owned(), value.into());
        self
    }

    pub fn is_pass(&self) -> bool {
        self.status == Status::Pass
    }

    /// A `warn` result: working, but something deserves attention.
    pub fn warn(
        name: &str,
        reason: Reason,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Self {
            status: Status::Warn,
            ..Self::fail(name, reason, message, hint)
        }
    }

    /// The result for a check that has no configuration: `skipped`, or a `not_configured`
    /// failure when the check is required.
    pub fn not_configured(name: &str, required: bool, settings: &str) -> Self {
        let hint = format!("set {settings}");
        if required {
            Self::fail(
                name,
                Reason::NotConfigured,
                format!("{name} is required but not configured"),
                hint,
            )
        } else {
            Self {
                status: Status::Skipped,
                ..Self::fail(
                    name,
                    Reason::NotConfigured,
                    format!("{name} is not configured"),
                    hint,
                )
            }
        }
    }

    /// Lowers a failure to a warning (for optional degradations).
    pub fn with_status(mut self, status: Status) -> Self {
        self.status = status;
        self
    }
}

/// Runs a check under its own timeout; a check that overruns becomes a `timeout` failure.
pub async fn with_timeout<F>(name: &str, limit: Duration, check: F) -> CheckResult
where
    F: Future<Output = CheckResult>,
{
    let started = Instant::now();
    match tokio::time::timeout(limit, check).await {
        Ok(mut result) => {
            result.latency_ms = elapsed_ms(started);
            result
        }
        Err(_) => {
            let mut result = CheckResult::fail(
                name,
                Reason::Timeout,
                format!("no answer within {} ms", limit.as_millis()),
                "the dependency is hanging or overloaded: check its own health and logs, or raise the timeout if it is merely slow",
            );
            result.latency_ms = elapsed_ms(started);
            result.observe("timeout_ms", limit.as_millis() as u64)
        }
    }
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_json_names() {
        for status in [Status::Pass, Status::Warn, Status::Fail, Status::Skipped] {
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
        for reason in [
            Reason::Auth,
            Reason::Forbidden,
            Reason::RateLimited,
            Reason::QuotaExhausted,
            Reason::Timeout,
            Reason::Dns,
            Reason::ConnectionRefused,
            Reason::Tls,
            Reason::UpstreamError,
            Reason::BadResponse,
            Reason::NotConfigured,
            Reason::Misconfigured,
            Reason::MigrationsPending,
            Reason::MissingTables,
            Reason::WriteFailed,
            Reason::ProcessDown,
            Reason::NoConnections,
            Reason::NotRouting,
            Reason::OriginUnreachable,
            Reason::TokenDisabled,
            Reason::TokenExpired,
            Reason::TokenExpiring,
            Reason::Unreachable,
        ] {
            assert_eq!(serde_json::to_value(reason).unwrap(), reason.as_str());
        }
    }

    #[tokio::test]
    async fn a_hanging_check_becomes_a_timeout_failure_at_its_limit() {
        let result = with_timeout("slow", Duration::from_millis(50), async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            CheckResult::pass("slow", "never")
        })
        .await;
        assert_eq!(result.status, Status::Fail);
        assert_eq!(result.reason, Some(Reason::Timeout));
        assert!(
            result.latency_ms >= 50 && result.latency_ms < 1000,
            "{}",
            result.latency_ms
        );
    }

    #[tokio::test]
    async fn a_quick_check_keeps_its_own_result() {
        let result = with_timeout("quick", Duration::from_secs(1), async {
            CheckResult::pass("quick", "ok")
        })
        .await;
        assert!(result.is_pass());
        assert_eq!(result.reason, None);
    }
}
