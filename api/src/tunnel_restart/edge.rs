//! The edge connections, as the doctor's `tunnel` check sees them (through the app's registry):
//! one look, and the wait after a restart until they are back or a deadline passes.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use checks::{CheckResult, Reason, Registry, Status};

/// How often the check is re-run while waiting.
const POLL: Duration = Duration::from_millis(500);

/// The tunnel check once.
pub async fn look(registry: &Registry) -> CheckResult {
    let only: BTreeSet<String> = [checks::tunnel::NAME.to_owned()].into();
    let run = registry.run(Some(&only)).await;
    run.results.into_iter().next().unwrap_or_else(|| {
        CheckResult::fail(
            checks::tunnel::NAME,
            Reason::NotConfigured,
            "no tunnel check",
            "set CLOUDFLARED_METRICS_URL (and BASE_URL) for the tunnel check",
        )
    })
}

/// The edge connections cloudflared reported, when its metrics server was asked.
pub fn connections(result: &CheckResult) -> Option<u64> {
    result.observed.get("ready_connections")?.as_u64()
}

/// Whether the tunnel holds edge connections: by cloudflared's own count when the check read it,
/// else by the check passing (the public hostname or Cloudflare's view of the tunnel).
pub fn connected(result: &CheckResult) -> bool {
    match connections(result) {
        Some(n) => n > 0,
        None => matches!(result.status, Status::Pass | Status::Warn),
    }
}

/// Whether there is a tunnel check to watch at all.
pub fn watchable(result: &CheckResult) -> bool {
    result.status != Status::Skipped && result.reason != Some(Reason::NotConfigured)
}

/// Re-runs the check until the connections are back or `wait` has passed; gives the last
/// result and how long it took.
pub async fn wait_for(registry: &Registry, wait: Duration) -> (CheckResult, Duration) {
    let started = Instant::now();
    loop {
        let result = look(registry).await;
        if connected(&result) || started.elapsed() >= wait {
            return (result, started.elapsed());
        }
        let left = wait.saturating_sub(started.elapsed());
        tokio::time::sleep(POLL.min(left)).await;
    }
}
