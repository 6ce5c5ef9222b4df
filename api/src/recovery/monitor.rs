//! The monitor's own recoveries: it follows the doctor's background runs and, once a component's
//! check has failed in [`RecoveryConfig::after_runs`] of them in a row, starts a recovery of the failing
//! components under the same rate limit as `POST /health/recover`.
//!
//! [`RecoveryConfig::after_runs`]: crate::config::recovery::RecoveryConfig::after_runs

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Weak};

use checks::{CheckResult, Status};

use super::{Recovery, Refused, Trigger};

/// Counts failing runs in a row per component.
#[derive(Debug, Default)]
pub struct Streaks {
    failing: HashMap<String, u32>,
}

impl Streaks {
    /// Counts a run; returns the components that have now failed in `after` runs in a row.
    pub fn count(&mut self, results: &[CheckResult], after: u32) -> BTreeSet<String> {
        let mut due = BTreeSet::new();
        for result in results {
            let streak = self.failing.entry(result.name.clone()).or_default();
            if result.status == Status::Fail {
                *streak = streak.saturating_add(1);
                if *streak >= after {
                    due.insert(result.name.clone());
                }
            } else {
                *streak = 0;
            }
        }
        due
    }

    /// A recovery was tried for these: they count from zero again.
    pub fn restart(&mut self, components: &BTreeSet<String>) {
        for name in components {
            self.failing.insert(name.clone(), 0);
        }
    }
}

/// Follows the doctor's runs until the recovery is dropped; `after` zero: never starts.
pub fn spawn(recovery: &Arc<Recovery>, after: u32) {
    if after == 0 {
        tracing::info!("the monitor starts no recovery of its own (RECOVERY_AFTER_RUNS=0)");
        return;
    }
    let mut runs = recovery.doctor.subscribe();
    let weak: Weak<Recovery> = Arc::downgrade(recovery);
    tokio::spawn(async move {
        let mut streaks = Streaks::default();
        while runs.changed().await.is_ok() {
            let Some(run) = runs.borrow_and_update().clone() else {
                continue;
            };
            // The monitor's own runs count; a run someone asked for is theirs to act on.
            if run.trigger != crate::doctor::Trigger::Monitor {
                continue;
            }
            let due = streaks.count(&run.run.results, after);
            if due.is_empty() {
                continue;
            }
            let Some(recovery) = weak.upgrade() else {
                return;
            };
            match recovery.recover(Trigger::Monitor, Some(&due)).await {
                Ok(report) => {
                    tracing::warn!(components = ?due, recovered = ?report.recovered, still_failing = ?report.still_failing, "the monitor started a recovery");
                    streaks.restart(&due);
                }
                // Tried again after the next failing run once the limit allows.
                Err(Refused::RateLimited { retry_after, .. }) => {
                    tracing::debug!(components = ?due, retry_after_ms = retry_after.as_millis() as u64, "a recovery is due but rate-limited");
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use checks::Reason;

    use super::*;

    fn run(tunnel_fails: bool) -> Vec<CheckResult> {
        let tunnel = if tunnel_fails {
            CheckResult::fail(
                "tunnel",
                Reason::NoConnections,
                "no edge connection",
                "restart it",
            )
        } else {
            CheckResult::pass("tunnel", "4 edge connections")
        };
        vec![tunnel, CheckResult::pass("database", "ok")]
    }

    #[test]
    fn a_component_is_due_after_k_failing_runs_in_a_row_and_counts_again_after_a_recovery() {
        let mut streaks = Streaks::default();
        assert!(streaks.count(&run(true), 3).is_empty());
        assert!(streaks.count(&run(true), 3).is_empty());
        // A pass in between starts the count again.
        assert!(streaks.count(&run(false), 3).is_empty());
        assert!(streaks.count(&run(true), 3).is_empty());
        assert!(streaks.count(&run(true), 3).is_empty());
        let due = streaks.count(&run(true), 3);
        assert_eq!(due, ["tunnel".to_owned()].into());
        // Refused by the rate limit: still due on the next failing run.
        assert_eq!(streaks.count(&run(true), 3), due);
        streaks.restart(&due);
        assert!(streaks.count(&run(true), 3).is_empty());
    }
}
