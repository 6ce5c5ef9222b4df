//! The record of recovery attempts: the last 50, with trigger, component, action, outcome and
//! duration, and counts per component since the process started.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use serde::Serialize;
use utoipa::ToSchema;

/// How many attempts are kept.
pub const KEPT: usize = 50;

/// Who started a recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// `POST /health/recover`.
    Api,
    /// The background monitor, after a component failed in enough runs in a row.
    Monitor,
}

/// What was done for a component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// The breaker's backoff forgotten and the database probed at once with a fresh connection.
    ProbeDatabase,
    /// The tunnel restarted through the restart coordinator.
    RestartTunnel,
    /// Nothing opsdoctor can restart (a vendor's API): the check is run again.
    RerunCheck,
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The component's check passes after the action.
    Succeeded,
    /// The action ran (or could not), and the check still fails.
    Failed,
    /// The action was not allowed to run (another restart holds the lock, or restarts are
    /// rate-limited); the check was run again all the same.
    Refused,
}

/// A check's status in brief, before or after an action.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Brief {
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub message: String,
}

/// One recovery attempt of one component.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// When it started (RFC 3339, UTC).
    pub at: String,
    pub trigger: Trigger,
    /// The check's name: `database`, `tunnel`, `openai`, `stripe`, `cloudflare`.
    pub component: String,
    pub action: ActionKind,
    pub outcome: Outcome,
    pub duration_ms: u64,
    /// What the action did or why it could not, in words (never a secret).
    pub detail: String,
    pub before: Brief,
    pub after: Brief,
    /// The open incident the attempt was recorded on, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incident_id: Option<String>,
    /// How the `RECOVERY_*` events were recorded: `stored`, `queued` (in the spool, stored when
    /// the database returns), `no_open_incident`, or why they could not be.
    pub recorded: String,
}

/// Counts of one component's attempts.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    pub attempts: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub refused: u64,
    /// `succeeded / attempts`; `null` before the first attempt.
    pub success_rate: Option<f64>,
}

impl Counts {
    fn add(&mut self, outcome: Outcome) {
        self.attempts += 1;
        match outcome {
            Outcome::Succeeded => self.succeeded += 1,
            Outcome::Failed => self.failed += 1,
            Outcome::Refused => self.refused += 1,
        }
        self.success_rate = Some(self.succeeded as f64 / self.attempts as f64);
    }
}

/// `GET /health/recovery-stats`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// The last attempts, newest first (at most 50).
    pub attempts: Vec<Attempt>,
    /// Every attempt since the process started.
    pub total: Counts,
    /// Per component, since the process started.
    pub by_component: BTreeMap<String, Counts>,
    /// When the next recovery may start (RFC 3339), when the rate limit holds one back now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_allowed_at: Option<String>,
}

/// The attempts and counts, shared by the routes, the monitor and the bundle.
#[derive(Default)]
pub struct Journal {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    recent: VecDeque<Attempt>,
    total: Counts,
    by_component: BTreeMap<String, Counts>,
}

impl Journal {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn push(&self, attempt: Attempt) {
        let mut inner = self.lock();
        inner.total.add(attempt.outcome);
        inner
            .by_component
            .entry(attempt.component.clone())
            .or_default()
            .add(attempt.outcome);
        if inner.recent.len() == KEPT {
            inner.recent.pop_back();
        }
        inner.recent.push_front(attempt);
    }

    /// The newest `n` attempts, newest first.
    pub fn recent(&self, n: usize) -> Vec<Attempt> {
        self.lock().recent.iter().take(n).cloned().collect()
    }

    pub fn stats(&self, next_allowed_at: Option<String>) -> Stats {
        let inner = self.lock();
        Stats {
            attempts: inner.recent.iter().cloned().collect(),
            total: inner.total.clone(),
            by_component: inner.by_component.clone(),
            next_allowed_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(component: &str, outcome: Outcome, n: usize) -> Attempt {
        let brief = Brief {
            status: "fail".into(),
            reason: None,
            message: String::new(),
        };
        Attempt {
            at: format!("attempt {n}"),
            trigger: Trigger::Api,
            component: component.into(),
            action: ActionKind::RerunCheck,
            outcome,
            duration_ms: 1,
            detail: String::new(),
            before: brief.clone(),
            after: brief,
            incident_id: None,
            recorded: "no_open_incident".into(),
        }
    }

    #[test]
    fn keeps_the_last_fifty_newest_first_and_counts_every_attempt() {
        let journal = Journal::default();
        for n in 0..60 {
            let outcome = if n % 3 == 0 {
                Outcome::Succeeded
            } else {
                Outcome::Failed
            };
            journal.push(attempt(
                if n % 2 == 0 { "tunnel" } else { "database" },
                outcome,
                n,
            ));
        }
        journal.push(attempt("tunnel", Outcome::Refused, 60));
        let stats = journal.stats(None);
        assert_eq!(stats.attempts.len(), KEPT);
        assert_eq!(stats.attempts[0].at, "attempt 60");
        assert_eq!(stats.attempts[KEPT - 1].at, "attempt 11");
        assert_eq!(stats.total.attempts, 61);
        assert_eq!(stats.total.succeeded, 20);
        assert_eq!(stats.total.refused, 1);
        assert_eq!(stats.total.failed, 40);
        let tunnel = &stats.by_component["tunnel"];
        assert_eq!(
            (tunnel.attempts, tunnel.succeeded, tunnel.refused),
            (31, 10, 1)
        );
        assert_eq!(tunnel.success_rate, Some(10.0 / 31.0));
        assert_eq!(journal.recent(20).len(), 20);
    }
}
