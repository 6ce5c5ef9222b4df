//! The check registry: every check by name, run concurrently under its own timeout, in fixed order.
//!
//! The doctor, readiness and the gate all run checks through one registry, so "required",
//! timeouts and the order of results mean the same everywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::future::{join_all, BoxFuture};
use serde::{Deserialize, Serialize};

use crate::{with_timeout, CheckName, CheckResult, Status};

/// One check of the suite.
pub trait Check: Send + Sync {
    fn name(&self) -> CheckName;
    /// Whether enough settings are present to run it at all.
    fn configured(&self) -> bool;
    /// The settings that configure it, named for an operator (`OPENAI_API_KEY`).
    fn settings(&self) -> &'static str;
    /// Runs the check. It must not panic; the registry adds the timeout.
    fn run(&self) -> BoxFuture<'_, CheckResult>;
}

/// A check's run on its settings. The registry never runs a check that is not configured; should
/// one be run all the same, it reports itself skipped rather than fail.
pub fn on_settings<'a, S: Sync>(
    check: &'a dyn Check,
    settings: Option<&'a S>,
    run: impl FnOnce(&'a S) -> BoxFuture<'a, CheckResult> + Send + 'a,
) -> BoxFuture<'a, CheckResult> {
    match settings {
        Some(s) => run(s),
        None => Box::pin(std::future::ready(CheckResult::not_configured(
            check.name().as_str(),
            false,
            check.settings(),
        ))),
    }
}

/// Timeouts and the required list, shared by every consumer of the registry.
#[derive(Debug, Clone)]
pub struct RegistryPolicy {
    pub default_timeout: Duration,
    /// Per-check overrides of `default_timeout`.
    pub timeouts: BTreeMap<CheckName, Duration>,
    /// Checks whose failure fails readiness and the gate; unconfigured, they fail `not_configured`.
    pub required: BTreeSet<String>,
}

impl RegistryPolicy {
    /// The timeout a check runs under: its override, else the default.
    pub fn timeout_of(&self, name: CheckName) -> Duration {
        self.timeouts
            .get(&name)
            .copied()
            .unwrap_or(self.default_timeout)
    }
}

/// All checks, by name.
#[derive(Clone)]
pub struct Registry {
    checks: Vec<Arc<dyn Check>>,
    policy: RegistryPolicy,
    /// The longest jittered pause before the one immediate re-try of a transient failure;
    /// `None`: no re-try.
    retry: Option<Duration>,
}

/// The outcome of running (part of) the suite once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SuiteRun {
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub duration_ms: u64,
    /// `fail` if a required check failed; `warn` if anything else is not passing; else `pass`.
    pub status: Status,
    pub results: Vec<CheckResult>,
}

impl Registry {
    /// Checks are reported in the order of [`CheckName::ALL`], whatever order they are given in.
    pub fn new(mut checks: Vec<Arc<dyn Check>>, policy: RegistryPolicy) -> Self {
        checks.sort_by_key(|c| c.name());
        Self {
            checks,
            policy,
            retry: None,
        }
    }

    /// Re-tries a failure with a transient reason once, after a pause drawn between half of
    /// `max_delay` and all of it, within the check's own timeout: a blip (one 503, one reset
    /// connection) then never counts as a failing observation. The first attempt stays visible in
    /// `observed.first_attempt`. A zero `max_delay` turns re-trying off.
    pub fn with_retry(mut self, max_delay: Duration) -> Self {
        self.retry = (!max_delay.is_zero()).then_some(max_delay);
        self
    }

    pub fn policy(&self) -> &RegistryPolicy {
        &self.policy
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.checks.iter().map(|c| c.name().as_str()).collect()
    }

    pub fn is_required(&self, name: &str) -> bool {
        self.policy.required.contains(name)
    }

    pub fn timeout_of(&self, name: CheckName) -> Duration {
        self.policy.timeout_of(name)
    }

    /// Runs the named checks (all when `only` is `None`) concurrently; a run takes about as long
    /// as its slowest check. Unknown names are ignored: validate them with [`Self::names`].
    pub async fn run(&self, only: Option<&BTreeSet<String>>) -> SuiteRun {
        let started_at = Utc::now();
        let started = Instant::now();
        let selected = self
            .checks
            .iter()
            .filter(|c| only.is_none_or(|set| set.contains(c.name().as_str())));
        let results = join_all(selected.map(|check| self.run_check(check.as_ref()))).await;
        SuiteRun {
            started_at,
            finished_at: Utc::now(),
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            status: overall(&results, &self.policy.required),
            results,
        }
    }

    async fn run_check(&self, check: &dyn Check) -> CheckResult {
        let timeout = self.timeout_of(check.name());
        let name = check.name().as_str();
        if !check.configured() {
            return CheckResult::not_configured(name, self.is_required(name), check.settings());
        }
        let started = Instant::now();
        let mut result = with_timeout(name, timeout, check.run()).await;
        let transient =
            result.status == Status::Fail && result.reason.is_some_and(|r| r.is_transient());
        if let Some(max_delay) = self.retry.filter(|_| transient) {
            let delay = jitter(max_delay);
            // The re-try runs in what is left of the check's timeout, so a hang (a timeout used
            // all of it) is never waited for twice and detection is not slowed.
            let left = timeout.saturating_sub(started.elapsed() + delay);
            if left >= timeout / 4 {
                tokio::time::sleep(delay).await;
                let first = result;
                result = with_timeout(name, left, check.run()).await;
                result.latency_ms =
                    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                result.observed.insert(
                    "first_attempt".into(),
                    serde_json::json!({
                        "status": first.status,
                        "reason": first.reason,
                        "message": first.message,
                        "latency_ms": first.latency_ms,
                        "retried_after_ms": delay.as_millis() as u64,
                    }),
                );
            }
        }
        match result.status {
            Status::Pass => {
                tracing::debug!(check = name, latency_ms = result.latency_ms, "check passed")
            }
            _ => {
                tracing::info!(check = name, status = ?result.status, reason = ?result.reason, latency_ms = result.latency_ms, "check not passing")
            }
        }
        result
    }
}

/// A pause between half of `max` and all of it, drawn from the clock's nanoseconds: enough to
/// keep processes that saw the same blip from re-trying in step.
fn jitter(max: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let mixed = u64::from(nanos).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
    let half = max / 2;
    half + Duration::from_nanos(mixed % (half.as_nanos().max(1) as u64))
}

/// The overall status of a set of results under a required list.
pub fn overall(results: &[CheckResult], required: &BTreeSet<String>) -> Status {
    let mut status = Status::Pass;
    for r in results {
        match r.status {
            Status::Fail if required.contains(&r.name) => return Status::Fail,
            Status::Fail | Status::Warn => status = Status::Warn,
            Status::Pass | Status::Skipped => {}
        }
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Reason;

    struct Fake {
        name: CheckName,
        delay: Duration,
        result: Status,
        configured: bool,
    }

    impl Check for Fake {
        fn name(&self) -> CheckName {
            self.name
        }
        fn configured(&self) -> bool {
            self.configured
        }
        fn settings(&self) -> &'static str {
            "FAKE_SETTING"
        }
        fn run(&self) -> BoxFuture<'_, CheckResult> {
            Box::pin(async move {
                tokio::time::sleep(self.delay).await;
                match self.result {
                    Status::Pass => CheckResult::pass(self.name.as_str(), "ok"),
                    _ => CheckResult::fail(
                        self.name.as_str(),
                        Reason::UpstreamError,
                        "down",
                        "fix it",
                    ),
                }
            })
        }
    }

    fn fake(name: CheckName, ms: u64, result: Status, configured: bool) -> Arc<dyn Check> {
        Arc::new(Fake {
            name,
            delay: Duration::from_millis(ms),
            result,
            configured,
        })
    }

    fn policy(required: &[&str]) -> RegistryPolicy {
        RegistryPolicy {
            default_timeout: Duration::from_millis(300),
            timeouts: BTreeMap::from([(CheckName::Openai, Duration::from_millis(100))]),
            required: required.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[tokio::test]
    async fn runs_concurrently_in_fixed_order_with_per_check_timeouts() {
        let registry = Registry::new(
            vec![
                fake(CheckName::Stripe, 150, Status::Pass, true),
                fake(CheckName::Openai, 5_000, Status::Pass, true),
                fake(CheckName::Database, 150, Status::Pass, true),
                fake(CheckName::Cloudflare, 0, Status::Pass, false),
                fake(CheckName::Tunnel, 150, Status::Fail, true),
            ],
            policy(&["database", "cloudflare"]),
        );
        let run = registry.run(None).await;
        let names: Vec<&str> = run.results.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, CheckName::ALL.map(CheckName::as_str));
        assert!(
            run.duration_ms < 290,
            "concurrent, not the sum: {} ms",
            run.duration_ms
        );
        let openai = &run.results[2];
        assert_eq!(
            openai.reason,
            Some(Reason::Timeout),
            "its own 100 ms timeout"
        );
        let cloudflare = &run.results[4];
        assert_eq!(
            (cloudflare.status, cloudflare.reason),
            (Status::Fail, Some(Reason::NotConfigured))
        );
        assert_eq!(
            run.status,
            Status::Fail,
            "a required check is not configured"
        );
    }

    /// Fails with `reason` on its first `failures` runs, then passes.
    struct Flaky {
        reason: Reason,
        failures: usize,
        calls: std::sync::atomic::AtomicUsize,
    }

    impl Check for Flaky {
        fn name(&self) -> CheckName {
            CheckName::Stripe
        }
        fn configured(&self) -> bool {
            true
        }
        fn settings(&self) -> &'static str {
            "FAKE_SETTING"
        }
        fn run(&self) -> BoxFuture<'_, CheckResult> {
            let n = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Box::pin(async move {
                if n < self.failures {
                    CheckResult::fail("stripe", self.reason, "blip", "wait")
                } else {
                    CheckResult::pass("stripe", "ok")
                }
            })
        }
    }

    fn flaky(reason: Reason, failures: usize) -> Arc<Flaky> {
        Arc::new(Flaky {
            reason,
            failures,
            calls: Default::default(),
        })
    }

    #[tokio::test]
    async fn a_transient_failure_is_retried_once_after_a_jittered_pause() {
        let blip = flaky(Reason::UpstreamError, 1);
        let registry =
            Registry::new(vec![blip.clone()], policy(&[])).with_retry(Duration::from_millis(40));
        let started = Instant::now();
        let run = registry.run(None).await;
        let result = &run.results[0];
        assert_eq!(result.status, Status::Pass, "{result:#?}");
        assert_eq!(result.observed["first_attempt"]["reason"], "upstream_error");
        let waited = result.observed["first_attempt"]["retried_after_ms"]
            .as_u64()
            .unwrap();
        assert!((20..=40).contains(&waited), "{waited}");
        assert!(started.elapsed() >= Duration::from_millis(20));
        assert_eq!(blip.calls.load(std::sync::atomic::Ordering::SeqCst), 2);

        // Twice failing: one re-try only, and the failure stands.
        let down = flaky(Reason::UpstreamError, 10);
        let registry =
            Registry::new(vec![down.clone()], policy(&[])).with_retry(Duration::from_millis(10));
        assert_eq!(registry.run(None).await.results[0].status, Status::Fail);
        assert_eq!(down.calls.load(std::sync::atomic::Ordering::SeqCst), 2);

        // A reason waiting cannot fix is not re-tried; nor is anything without a retry set.
        let auth = flaky(Reason::Auth, 1);
        let registry =
            Registry::new(vec![auth.clone()], policy(&[])).with_retry(Duration::from_millis(10));
        assert_eq!(registry.run(None).await.results[0].status, Status::Fail);
        assert_eq!(auth.calls.load(std::sync::atomic::Ordering::SeqCst), 1);
        let off = flaky(Reason::UpstreamError, 1);
        let registry = Registry::new(vec![off.clone()], policy(&[]));
        assert_eq!(registry.run(None).await.results[0].status, Status::Fail);
        assert_eq!(off.calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn optional_failures_warn_and_unconfigured_optional_checks_skip() {
        let registry = Registry::new(
            vec![
                fake(CheckName::Database, 0, Status::Pass, true),
                fake(CheckName::Tunnel, 0, Status::Fail, true),
                fake(CheckName::Stripe, 0, Status::Pass, false),
            ],
            policy(&["database"]),
        );
        let run = registry.run(None).await;
        assert_eq!(run.status, Status::Warn);
        assert_eq!(run.results[2].status, Status::Skipped);
        let only: BTreeSet<String> = ["database".to_owned()].into();
        let run = registry.run(Some(&only)).await;
        assert_eq!((run.results.len(), run.status), (1, Status::Pass));
    }
}
