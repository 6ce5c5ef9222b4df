//! Health probes of a colour: one poll of its liveness, database readiness and aggregate status
//! URLs, and the readiness gate that wants N consecutive successful polls within a timeout,
//! saying on every poll why it still waits.

use std::time::{Duration, Instant};

use chrono::Utc;

use super::command::{fill, Vars};
use super::plan::{Readiness, Tier};
use super::report::HealthSnapshot;
use super::state::Progress;

/// A client for health probes: one request may take at most `timeout`.
pub fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .pool_max_idle_per_host(0)
        .build()
        .unwrap_or_default()
}

/// One poll of every health URL of a tier on `port`.
pub async fn poll(
    client: &reqwest::Client,
    tier: &Tier,
    port: u16,
    colour: &str,
) -> HealthSnapshot {
    let vars: Vars = [("port", port.to_string())].into_iter().collect();
    let probes = tier.health.urls().into_iter().map(|(name, url)| {
        let url = fill(url, &vars);
        async move {
            match client.get(&url).send().await {
                Ok(r) => (
                    name,
                    r.status().is_success(),
                    r.status().as_u16().to_string(),
                ),
                Err(e) if e.is_timeout() => (name, false, "timeout".to_owned()),
                Err(e) if e.is_connect() => (name, false, "refused".to_owned()),
                Err(_) => (name, false, "error".to_owned()),
            }
        }
    });
    let results = futures::future::join_all(probes).await;
    HealthSnapshot {
        at: Utc::now(),
        colour: colour.to_owned(),
        ok: results.iter().all(|(_, ok, _)| *ok),
        probes: results
            .iter()
            .map(|(n, _, s)| format!("{n}={s}"))
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// Polls until `successes` polls in a row pass or `timeout` passes. Every poll is handed to
/// `seen` (for the report); the error is the last poll's probes.
pub async fn ready_gate(
    tier: &Tier,
    port: u16,
    colour: &str,
    readiness: &Readiness,
    progress: &Progress,
    mut seen: impl FnMut(HealthSnapshot),
) -> Result<u32, String> {
    let client = client(readiness.request_timeout);
    let started = Instant::now();
    let deadline = started + readiness.timeout;
    let mut streak = 0;
    let mut polls = 0;
    loop {
        polls += 1;
        let snap = poll(&client, tier, port, colour).await;
        streak = if snap.ok { streak + 1 } else { 0 };
        let why = if snap.ok {
            format!(
                "{colour}:{port} healthy ({streak}/{} in a row)",
                readiness.successes
            )
        } else {
            format!(
                "{colour}:{port} not ready after {:.0}s: {}",
                started.elapsed().as_secs_f64(),
                snap.probes
            )
        };
        progress.say(&why);
        let last = snap.probes.clone();
        seen(snap);
        if streak >= readiness.successes {
            return Ok(polls);
        }
        let next = started + readiness.interval.saturating_mul(polls);
        if next >= deadline {
            return Err(format!(
                "{colour} on port {port} did not pass {} health polls in a row within {} (last poll: {last})",
                readiness.successes,
                humantime::format_duration(readiness.timeout)
            ));
        }
        tokio::time::sleep_until(next.into()).await;
    }
}

/// Whether the entry point answers 2xx, retried briefly (a reload takes a moment to apply).
pub async fn entry_ok(url: &str, timeout: Duration) -> Result<(), String> {
    let client = client(timeout);
    let mut last = String::new();
    for _ in 0..10 {
        match client.get(url).send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => last = format!("HTTP {}", r.status().as_u16()),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Err(format!("the entry point {url} did not answer 2xx: {last}"))
}
