//! Flap-proof decisions: whether a check is *failing* by the thresholds, not by its latest
//! observation. A component is declared failing after N consecutive failing observations (N for
//! transient reasons, 1 by default for reasons waiting cannot fix) and recovered after M
//! consecutive passes, per check; a failure another check's failure explains is marked as its
//! consequence. Incidents, escalation, readiness and the gate act on these decisions; the raw
//! observations stay in the run.

use std::collections::{BTreeMap, HashMap};

use checks::{CheckName, CheckResult, Reason, Status};
use serde::{Deserialize, Serialize};

/// The thresholds of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Consecutive failing observations, with a transient reason, before the check is failing.
    pub fail_after: u32,
    /// The same for reasons waiting cannot fix (`auth`, `misconfigured`, …).
    pub fail_after_permanent: u32,
    /// Consecutive passing observations before a failing check has recovered.
    pub recover_after: u32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            fail_after: 2,
            fail_after_permanent: 1,
            recover_after: 2,
        }
    }
}

/// Thresholds for every check: a default and per-check overrides.
#[derive(Debug, Clone, Default)]
pub struct DecisionPolicy {
    pub default: Thresholds,
    pub per_check: BTreeMap<CheckName, Thresholds>,
}

impl DecisionPolicy {
    pub fn of(&self, name: &str) -> Thresholds {
        name.parse::<CheckName>()
            .ok()
            .and_then(|n| self.per_check.get(&n).copied())
            .unwrap_or(self.default)
    }
}

/// A check's state by the thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decided {
    Passing,
    Failing,
}

/// What the thresholds make of a check's observations so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    pub check: String,
    pub state: Decided,
    /// Consecutive failing observations up to this one (0 after a pass).
    pub failing_streak: u32,
    /// Consecutive passing observations up to this one (0 after a failure).
    pub passing_streak: u32,
    /// The streak that changes the state, for the current kind of observation.
    pub threshold: u32,
    /// Whether this observation changed the state.
    pub changed: bool,
    /// The check whose failure explains this one; its own incident is not opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consequence_of: Option<String>,
}

impl Decision {
    pub fn is_failing(&self) -> bool {
        self.state == Decided::Failing
    }

    /// A fresh process has no history: its first observation is taken as it is.
    fn first(check: &str, observed: &CheckResult, t: Thresholds) -> Self {
        let failing = observed.status == Status::Fail;
        Self {
            check: check.to_owned(),
            state: if failing {
                Decided::Failing
            } else {
                Decided::Passing
            },
            failing_streak: u32::from(failing),
            passing_streak: u32::from(!failing),
            threshold: if failing {
                fail_threshold(observed.reason, t)
            } else {
                t.recover_after
            },
            changed: true,
            consequence_of: None,
        }
    }

    /// The decision after one more observation.
    fn next(&self, observed: &CheckResult, t: Thresholds) -> Self {
        let failing = observed.status == Status::Fail;
        let mut d = self.clone();
        d.changed = false;
        d.consequence_of = None;
        if failing {
            d.failing_streak = d.failing_streak.saturating_add(1);
            d.passing_streak = 0;
            d.threshold = fail_threshold(observed.reason, t);
            if d.state == Decided::Passing && d.failing_streak >= d.threshold {
                d.state = Decided::Failing;
                d.changed = true;
            }
        } else {
            d.passing_streak = d.passing_streak.saturating_add(1);
            d.failing_streak = 0;
            d.threshold = t.recover_after;
            if d.state == Decided::Failing && d.passing_streak >= d.threshold {
                d.state = Decided::Passing;
                d.changed = true;
            }
        }
        d
    }
}

fn fail_threshold(reason: Option<Reason>, t: Thresholds) -> u32 {
    if reason.is_some_and(Reason::is_transient) {
        t.fail_after
    } else {
        t.fail_after_permanent
    }
}

/// Every check's decision in this process, updated by each observation.
#[derive(Debug, Default)]
pub struct Decisions {
    policy: DecisionPolicy,
    current: HashMap<String, Decision>,
}

impl Decisions {
    pub fn new(policy: DecisionPolicy) -> Self {
        Self {
            policy,
            current: HashMap::new(),
        }
    }

    /// Feeds one observation in and returns the decision it leads to.
    pub fn observe(&mut self, observed: &CheckResult) -> Decision {
        let t = self.policy.of(&observed.name);
        let next = match self.current.get(&observed.name) {
            Some(d) => d.next(observed, t),
            None => Decision::first(&observed.name, observed, t),
        };
        self.current.insert(observed.name.clone(), next.clone());
        next
    }
}

/// Marks the failures that another failing check explains, among one run's decisions:
/// - the database failing explains the public hostname's 5xx or timeout at the tunnel check
///   (the origin behind the tunnel answers from this database);
/// - the Cloudflare token failing (`auth`, `forbidden`, `token_*`) explains the tunnel check's
///   `auth` or `forbidden` from Cloudflare's tunnel API, which uses the same token.
///
/// Within the tunnel check, cloudflared being down explains `not_routing`: the check reports
/// the root cause and lists the rest (`observed.failing_reasons`), and [`incident_key`] keeps
/// them one incident.
pub fn mark_consequences(results: &[CheckResult], decisions: &mut [Decision]) {
    let failing = |name: CheckName| -> Option<&CheckResult> {
        let i = results.iter().position(|r| r.name == name.as_str())?;
        decisions[i].is_failing().then_some(&results[i])
    };
    let database = failing(CheckName::Database).is_some();
    let token = failing(CheckName::Cloudflare).is_some_and(|r| {
        matches!(
            r.reason,
            Some(Reason::Auth | Reason::Forbidden | Reason::TokenDisabled | Reason::TokenExpired)
        )
    });
    for (result, decision) in results.iter().zip(decisions.iter_mut()) {
        if result.name != CheckName::Tunnel.as_str() || result.status != Status::Fail {
            continue;
        }
        let from_public = result.observed.contains_key("public_http_status");
        decision.consequence_of = match result.reason {
            Some(Reason::UpstreamError | Reason::Timeout) if database && from_public => {
                Some(CheckName::Database.as_str().to_owned())
            }
            Some(Reason::Auth | Reason::Forbidden) if token => {
                Some(CheckName::Cloudflare.as_str().to_owned())
            }
            _ => None,
        };
    }
}

/// The fingerprint of the incident a failure belongs to: `check:<name>:<reason>`, except that
/// the tunnel's "not connected" family (`process_down`, `no_connections`, `not_routing`) is one
/// incident, `check:tunnel:not_connected`, whichever of them a run sees first.
pub fn incident_key(check: &str, reason: Option<Reason>) -> String {
    let reason = reason.map_or("unknown", Reason::as_str);
    let tunnel_down = check == CheckName::Tunnel.as_str()
        && matches!(reason, "process_down" | "no_connections" | "not_routing");
    if tunnel_down {
        "check:tunnel:not_connected".to_owned()
    } else {
        format!("check:{check}:{reason}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail(name: &str, reason: Reason) -> CheckResult {
        CheckResult::fail(name, reason, "down", "fix it")
    }

    fn pass(name: &str) -> CheckResult {
        CheckResult::pass(name, "ok")
    }

    #[test]
    fn transient_failures_need_two_in_a_row_and_recovery_two_passes() {
        let mut d = Decisions::default();
        assert!(!d.observe(&pass("stripe")).is_failing());
        let once = d.observe(&fail("stripe", Reason::UpstreamError));
        assert!(!once.is_failing() && once.failing_streak == 1 && once.threshold == 2);
        assert!(
            !d.observe(&pass("stripe")).is_failing(),
            "a blip is forgotten"
        );
        assert!(!d.observe(&fail("stripe", Reason::Timeout)).is_failing());
        let twice = d.observe(&fail("stripe", Reason::UpstreamError));
        assert!(twice.is_failing() && twice.changed);
        let one_pass = d.observe(&pass("stripe"));
        assert!(one_pass.is_failing() && !one_pass.changed);
        assert!(d.observe(&fail("stripe", Reason::Timeout)).is_failing());
        assert!(
            d.observe(&pass("stripe")).is_failing(),
            "the pass streak restarted"
        );
        let recovered = d.observe(&pass("stripe"));
        assert!(!recovered.is_failing() && recovered.changed);
    }

    #[test]
    fn permanent_reasons_fail_at_once_and_thresholds_are_per_check() {
        let mut policy = DecisionPolicy::default();
        policy.per_check.insert(
            CheckName::Openai,
            Thresholds {
                fail_after: 3,
                fail_after_permanent: 2,
                recover_after: 1,
            },
        );
        let mut d = Decisions::new(policy);
        d.observe(&pass("stripe"));
        assert!(d.observe(&fail("stripe", Reason::Auth)).is_failing());
        d.observe(&pass("openai"));
        assert!(!d.observe(&fail("openai", Reason::Auth)).is_failing());
        assert!(d.observe(&fail("openai", Reason::Auth)).is_failing());
        assert!(!d.observe(&pass("openai")).is_failing(), "recovers after 1");
        assert!(!d.observe(&fail("openai", Reason::Dns)).is_failing());
        assert!(!d.observe(&fail("openai", Reason::Dns)).is_failing());
        assert!(d.observe(&fail("openai", Reason::Dns)).is_failing());
    }

    #[test]
    fn a_first_observation_is_taken_as_it_is() {
        let mut d = Decisions::default();
        assert!(d
            .observe(&fail("database", Reason::ConnectionRefused))
            .is_failing());
    }

    #[test]
    fn the_database_explains_the_origins_errors_and_the_token_the_tunnel_apis() {
        let mut tunnel = fail("tunnel", Reason::UpstreamError);
        tunnel
            .observed
            .insert("public_http_status".into(), 503.into());
        let results = vec![fail("database", Reason::ConnectionRefused), tunnel.clone()];
        let mut d = Decisions::default();
        let mut decisions: Vec<Decision> = results.iter().map(|r| d.observe(r)).collect();
        mark_consequences(&results, &mut decisions);
        assert_eq!(decisions[1].consequence_of.as_deref(), Some("database"));

        // The same 503 with the database passing is the tunnel's own failure.
        let results = vec![pass("database"), tunnel];
        let mut d = Decisions::default();
        let mut decisions: Vec<Decision> = results.iter().map(|r| d.observe(r)).collect();
        mark_consequences(&results, &mut decisions);
        assert_eq!(decisions[1].consequence_of, None);

        let results = vec![
            fail("tunnel", Reason::Auth),
            fail("cloudflare", Reason::TokenExpired),
        ];
        let mut d = Decisions::default();
        let mut decisions: Vec<Decision> = results.iter().map(|r| d.observe(r)).collect();
        mark_consequences(&results, &mut decisions);
        assert_eq!(decisions[0].consequence_of.as_deref(), Some("cloudflare"));
    }

    #[test]
    fn a_disconnected_tunnel_is_one_incident_whichever_symptom_comes_first() {
        let keys: Vec<String> = [
            Reason::ProcessDown,
            Reason::NotRouting,
            Reason::NoConnections,
        ]
        .into_iter()
        .map(|r| incident_key("tunnel", Some(r)))
        .collect();
        assert!(
            keys.iter().all(|k| k == "check:tunnel:not_connected"),
            "{keys:?}"
        );
        assert_eq!(
            incident_key("tunnel", Some(Reason::OriginUnreachable)),
            "check:tunnel:origin_unreachable"
        );
        assert_eq!(
            incident_key("stripe", Some(Reason::Auth)),
            "check:stripe:auth"
        );
    }
}
