//! After the switch: TUNNEL_START_OR_VERIFY (the doctor's tunnel check, one restart through the
//! tunnel restart coordinator, so a deploy and a monitor never restart it at once) and EXTERNAL_VERIFY (the gate's verdict on the doctor's checks, and the
//! public URL), waiting only while waiting can still help.

use std::time::{Duration, Instant};

use checks::{Reason, Status};

use super::machine::{Deploy, Done, Fault};
use super::state::Progress;
use crate::gate::{GateRequest, GateSource, Verdict};
use crate::tunnel_restart::RestartResult;

impl Deploy {
    async fn tunnel_result(&self) -> checks::CheckResult {
        crate::tunnel_restart::edge::look(self.app.gate.registry()).await
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
        let config = &self.app.config.tunnel;
        let (spec, wait) = match (&self.plan.tunnel, &config.command) {
            (Some(t), _) => (&t.restart, t.wait),
            (None, Some(command)) => (command, config.wait),
            (None, None) => {
                return Err(Fault::new(
                    format!("{kind}: {}", first.message),
                    first
                        .hint
                        .unwrap_or_else(|| "fix the tunnel, then deploy again".into()),
                ))
            }
        };
        let outcome = self
            .app
            .tunnel_restarts
            .restart_with("deploy", &self.runner, spec, &self.vars(self.target), wait)
            .await
            .map_err(|refused| {
                Fault::new(
                    format!("{kind}, and its restart was refused: {refused}"),
                    "see `opsdoctor tunnel status`; deploy again once the other restart is done or the rate limit allows one",
                )
            })?;
        self.with_report(|r| {
            r.commands.push(outcome.command.clone());
            r.checks
                .push(serde_json::to_value(&outcome.tunnel).unwrap_or_default());
        });
        match outcome.result {
            RestartResult::Connected => Ok(Done::Ok(format!("{kind}; restarted once and it recovered"))),
            RestartResult::CommandFailed => Err(Fault::new(
                format!("{kind}, and its restart failed: {}", outcome.command.failure()),
                "restart cloudflared by hand (systemctl status cloudflared; journalctl -u cloudflared) and fix its configuration",
            )),
            RestartResult::StillDown | RestartResult::Unverified => {
                let again = &outcome.tunnel;
                Err(Fault::new(
                    format!("{kind}; restarted once and still broken after {}: {}", humantime::format_duration(wait), again.message),
                    again.hint.clone().unwrap_or_else(|| "check cloudflared's log, its credentials and the tunnel's route in Cloudflare".into()),
                ))
            }
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
