//! When waiting for a better verdict is pointless: the one rule `opsdoctor gate` and the deploy
//! orchestrator both stop on, so they wait the same way.

use checks::Status;

use super::{GateVerdict, Verdict};

/// The failures that no amount of waiting fixes and that keep this verdict from being accepted:
/// a required check failing for a permanent reason, or, when a partial verdict is not accepted,
/// an optional check failing for one (a `partial` whose optional failure is `misconfigured`
/// stays partial however long one waits). Empty when waiting may still help.
pub fn hopeless(verdict: &GateVerdict, allow_partial: bool) -> Vec<String> {
    let blocking = |required: bool| match verdict.verdict {
        Verdict::Pass => false,
        Verdict::Fail => required,
        Verdict::Partial => !allow_partial && !required,
    };
    let permanent: Vec<String> = verdict
        .checks
        .iter()
        .filter(|c| c.status == Status::Fail && c.transient == Some(false) && blocking(c.required))
        .map(|c| format!("{}={}", c.name, c.reason.map_or("?", |r| r.as_str())))
        .collect();
    permanent
}
