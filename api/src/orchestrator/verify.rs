//! After the switch: TUNNEL_START_OR_VERIFY (the doctor's tunnel check, one restart under the
//! tunnel restart lock) and EXTERNAL_VERIFY (the gate's verdict on the doctor's checks, and the
//! public URL), waiting only while waiting can still help.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use checks::{Reason, Status};

use super::machine::{Deploy, Done, Fault};
use super::state::Progress;
use crate::gate::{GateRequest, GateSource, Verdict};

/// Holds the tunnel restart lock for as long as it lives.
pub struct TunnelRestartGuard(#[allow(dead_code)] std::fs::File);

/// The one place the tunnel restart is serialised: an OS file lock in the state directory,
/// waited for up to a minute. A coordinator shared with the service can replace this function.
pub fn tunnel_restart_lock(state_dir: &Path) -> Result<TunnelRestartGuard, String> {
    let path: PathBuf = state_dir.join("tunnel-restart.lock");
    let file = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match fs4::fs_std::FileExt::try_lock_exclusive(&file) {
            Ok(true) => return Ok(TunnelRestartGuard(file)),
            Ok(false) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200))
            }
            Ok(false) => {
                return Err("another tunnel restart holds its lock for over a minute".into())
            }
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
    }
}

impl Deploy {
    async fn tunnel_result(&self) -> checks::CheckResult {
        let only: BTreeSet<String> = ["tunnel".to_owned()].into();
        let run = self.app.gate.registry().run(Some(&only)).await;
        run.results.into_iter().next().unwrap_or_else(|| {
            checks::CheckResult::fail(
                "tunnel",
                Reason::NotConfigured,
                "no tunnel check",
                "configure it",
            )
        })
    }

    pub(super) async fn tunnel(&self, progress: &Progress) -> Result<Done, Fault> {
        let first = self.tunnel_result().await;
        if first.status == Status::Skipped && self.plan.tunnel.is_none() {
            return Ok(Done::Skipped(
                "no tunnel in the plan or the settings".into(),
            ));
        }
        if matches!(first.status, Status::Pass | Status::Warn) {
            return Ok(Done::Ok(format!("tunnel ok: {}", first.message)));
        }
        let kind = match first.reason {
            Some(Reason::ProcessDown) => "cloudflared is not running",
            Some(Reason::NotRouting) => {
                "cloudflared runs but the hostname is not routed (530/1033)"
            }
            Some(Reason::OriginUnreachable) => "the tunnel cannot reach the origin (502)",
            Some(Reason::NoConnections) => "cloudflared holds no edge connection",
            _ => "the tunnel check fails",
        };
        progress.say(&format!("{kind}; restarting it once"));
        let Some(tunnel) = &self.plan.tunnel else {
            return Err(Fault::new(
                format!("{kind}: {}", first.message),
                first
                    .hint
                    .unwrap_or_else(|| "fix the tunnel, then deploy again".into()),
            ));
        };
        let run = {
            let _guard = tunnel_restart_lock(&self.plan.state_dir).map_err(|e| {
                Fault::new(
                    format!("tunnel restart lock: {e}"),
                    "retry when the other restart is done",
                )
            })?;
            self.command("tunnel.restart", &tunnel.restart, self.target)
                .await
        };
        if !run.ok() {
            return Err(Fault::new(
                format!("{kind}, and its restart failed: {}", run.failure()),
                "restart cloudflared by hand (systemctl status cloudflared; journalctl -u cloudflared) and fix its configuration",
            ));
        }
        let deadline = Instant::now() + tunnel.wait;
        loop {
            let again = self.tunnel_result().await;
            if again.status == Status::Pass {
                self.with_report(|r| {
                    r.checks
                        .push(serde_json::to_value(&again).unwrap_or_default())
                });
                return Ok(Done::Ok(format!("{kind}; restarted once and it recovered")));
            }
            progress.say(&format!("after the restart: {}", again.message));
            if Instant::now() >= deadline {
                self.with_report(|r| {
                    r.checks
                        .push(serde_json::to_value(&again).unwrap_or_default())
                });
                return Err(Fault::new(
                    format!("{kind}; restarted once and still broken after {}: {}", humantime::format_duration(tunnel.wait), again.message),
                    again.hint.unwrap_or_else(|| "check cloudflared's log, its credentials and the tunnel's route in Cloudflare".into()),
                ));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    pub(super) async fn external_verify(&self, progress: &Progress) -> Result<Done, Fault> {
        let started = Instant::now();
        let timeout = self.plan.readiness.timeout;
        let mut detail;
        loop {
            let verdict = self
                .app
                .gate
                .evaluate(GateRequest {
                    environment: self.env.clone(),
                    release: self.release.clone(),
                    require: self.plan.required(),
                    max_age: Duration::ZERO,
                    source: GateSource::Api,
                    context: Some(serde_json::json!({ "orchestrator": true })),
                    record: true,
                })
                .await;
            self.app.evaluations.flush().await;
            self.with_report(|r| {
                r.gate_ids.push(verdict.gate_id.clone());
                r.checks = verdict
                    .checks
                    .iter()
                    .map(|c| serde_json::to_value(c).unwrap_or_default())
                    .collect();
            });
            detail = format!("gate {}: {}", verdict.verdict.as_str(), verdict.summary);
            progress.say(&detail);
            let hopeless = crate::gate::waiting::hopeless(&verdict, false);
            match verdict.verdict {
                Verdict::Pass => break,
                Verdict::Partial if !hopeless.is_empty() || started.elapsed() >= timeout => {
                    let optional: Vec<String> = verdict
                        .checks
                        .iter()
                        .filter(|c| c.status == Status::Fail)
                        .map(|c| format!("{}={}", c.name, c.reason.map_or("?", |r| r.as_str())))
                        .collect();
                    self.changed(|c| c.partial = optional);
                    break;
                }
                Verdict::Fail if !hopeless.is_empty() || started.elapsed() >= timeout => {
                    let why = if hopeless.is_empty() {
                        "still failing at the end of the wait".to_owned()
                    } else {
                        format!("waiting cannot fix {}", hopeless.join(" "))
                    };
                    return Err(Fault::new(
                        format!("after the switch the required checks fail ({why}): {}", verdict.summary),
                        "traffic was switched back to the previous colour; fix what the checks name (see `opsdoctor doctor`), then deploy again",
                    ));
                }
                _ => tokio::time::sleep(self.plan.readiness.interval).await,
            }
        }
        if let Some(public) = &self.plan.public_url {
            super::probe::entry_ok(public, self.plan.readiness.request_timeout)
                .await
                .map_err(|e| {
                    Fault::new(
                        format!("the public URL through the tunnel fails: {e}"),
                        "traffic was switched back; check the tunnel's route and the proxy",
                    )
                })?;
            detail.push_str("; public URL answers");
        }
        Ok(Done::Ok(detail))
    }
}
