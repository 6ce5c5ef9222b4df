//! The deploy report: one JSON shape written to `logs/deploy-report-<timestamp>.json`, stored on
//! the deploy record, and rendered as text for `.txt`, `opsdoctor deploy report` and the terminal.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::command::CommandRun;
use super::lock::Holder;
use super::state::State;

/// How a state ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateOutcome {
    Ok,
    Failed,
    Skipped,
    /// Interrupted by Ctrl-C or SIGTERM.
    Canceled,
}

/// One state as it ran.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateRecord {
    pub state: State,
    pub outcome: StateOutcome,
    pub started_at: DateTime<Utc>,
    pub duration_ms: u64,
    /// What it did or found, in a line.
    pub detail: String,
}

/// The failure, as an operator needs it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    pub state: State,
    pub cause: String,
    pub next_step: String,
}

/// One health poll of one colour.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthSnapshot {
    pub at: DateTime<Utc>,
    pub colour: String,
    pub ok: bool,
    /// `liveness=200 database=503 status=timeout`.
    pub probes: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockReport {
    pub holder: Option<Holder>,
    /// The dead holder this deploy took the lock over from.
    pub took_over: Option<Holder>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Versions {
    pub opsdoctor: String,
    pub release: String,
    /// The git commit of the working directory, when it is a git checkout.
    pub git_commit: Option<String>,
}

/// Everything a deploy did.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub deploy_id: Option<String>,
    pub environment: String,
    pub plan: String,
    pub versions: Versions,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_ms: u64,
    /// `succeeded`, `partial`, `unchanged`, `failed`, `rolled_back`, `canceled`; `running` meanwhile.
    pub outcome: String,
    pub exit_code: Option<u8>,
    /// The colour and release serving before and after.
    pub live_before: Option<String>,
    pub live_after: Option<String>,
    pub states: Vec<StateRecord>,
    pub failure: Option<Failure>,
    pub next_steps: Vec<String>,
    pub health: Vec<HealthSnapshot>,
    pub checks: Vec<serde_json::Value>,
    pub gate_ids: Vec<String>,
    pub commands: Vec<CommandRun>,
    pub lock: LockReport,
    pub incident_id: Option<String>,
    pub notes: Vec<String>,
}

/// Health snapshots kept (the earliest and the latest ones).
const MAX_SNAPSHOTS: usize = 60;

impl Report {
    pub fn new(environment: &str, release: &str, plan: &Path) -> Self {
        Self {
            deploy_id: None,
            environment: environment.to_owned(),
            plan: plan.display().to_string(),
            versions: Versions {
                opsdoctor: env!("CARGO_PKG_VERSION").to_owned(),
                release: release.to_owned(),
                git_commit: git_commit(),
            },
            started_at: Utc::now(),
            finished_at: None,
            duration_ms: 0,
            outcome: "running".into(),
            exit_code: None,
            live_before: None,
            live_after: None,
            states: Vec::new(),
            failure: None,
            next_steps: Vec::new(),
            health: Vec::new(),
            checks: Vec::new(),
            gate_ids: Vec::new(),
            commands: Vec::new(),
            lock: LockReport::default(),
            incident_id: None,
            notes: Vec::new(),
        }
    }

    pub fn snapshot(&mut self, snap: HealthSnapshot) {
        if self.health.len() >= MAX_SNAPSHOTS {
            self.health.remove(MAX_SNAPSHOTS / 2);
        }
        self.health.push(snap);
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    /// Writes `deploy-report-<timestamp>.json` and `.txt` into `dir`; returns the JSON's path.
    pub fn write(&self, dir: &Path) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        let stamp = self.started_at.format("%Y%m%dT%H%M%S%.3fZ");
        let json = dir.join(format!("deploy-report-{stamp}.json"));
        std::fs::write(
            &json,
            serde_json::to_string_pretty(self).unwrap_or_default(),
        )?;
        std::fs::write(dir.join(format!("deploy-report-{stamp}.txt")), self.text())?;
        Ok(json)
    }

    /// The report for a human.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let push = |out: &mut String, line: String| {
            out.push_str(&line);
            out.push('\n');
        };
        push(
            &mut out,
            format!(
                "deploy {} of {} to {}: {} (exit {})",
                self.deploy_id.as_deref().unwrap_or("(not recorded)"),
                self.versions.release,
                self.environment,
                self.outcome.to_uppercase(),
                self.exit_code.map_or("-".into(), |c| c.to_string())
            ),
        );
        push(
            &mut out,
            format!(
                "started {}  took {:.1}s  opsdoctor {}  commit {}  plan {}",
                self.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
                self.duration_ms as f64 / 1000.0,
                self.versions.opsdoctor,
                self.versions.git_commit.as_deref().unwrap_or("-"),
                self.plan
            ),
        );
        push(
            &mut out,
            format!(
                "live before: {}   live after: {}",
                self.live_before.as_deref().unwrap_or("nothing"),
                self.live_after.as_deref().unwrap_or("nothing")
            ),
        );
        if let Some(h) = &self.lock.holder {
            push(&mut out, format!("lock: held by {}", h.describe()));
        }
        if let Some(h) = &self.lock.took_over {
            push(
                &mut out,
                format!("lock: TAKEN OVER from dead holder {}", h.describe()),
            );
        }
        push(&mut out, String::new());
        push(
            &mut out,
            "STATE                    OUTCOME    TIME     DETAIL".into(),
        );
        for s in &self.states {
            push(
                &mut out,
                format!(
                    "{:<24} {:<10} {:>6.1}s  {}",
                    s.state.as_str(),
                    format!("{:?}", s.outcome).to_lowercase(),
                    s.duration_ms as f64 / 1000.0,
                    s.detail
                ),
            );
        }
        if let Some(f) = &self.failure {
            push(&mut out, String::new());
            push(
                &mut out,
                format!("FAILED in {}: {}", f.state.as_str(), f.cause),
            );
            push(&mut out, format!("next step: {}", f.next_step));
        }
        for step in &self.next_steps {
            push(&mut out, format!("  - {step}"));
        }
        if !self.commands.is_empty() {
            push(&mut out, String::new());
            push(&mut out, "COMMANDS".into());
            for c in &self.commands {
                let code = c.exit_code.map_or("-".into(), |c| c.to_string());
                let timed = if c.timed_out { " TIMED OUT" } else { "" };
                push(
                    &mut out,
                    format!(
                        "  [{}] exit {code}{timed} in {} ms: {}",
                        c.purpose,
                        c.duration_ms,
                        c.argv.join(" ")
                    ),
                );
                for line in c.output_tail.iter().rev().take(5).rev() {
                    push(&mut out, format!("      | {line}"));
                }
            }
        }
        if let Some(last) = self.health.last() {
            push(&mut out, String::new());
            push(
                &mut out,
                format!(
                    "last health poll ({}, {}): {}",
                    last.colour,
                    if last.ok { "ok" } else { "not ready" },
                    last.probes
                ),
            );
        }
        for check in &self.checks {
            let name = check["name"].as_str().unwrap_or("?");
            let status = check["status"].as_str().unwrap_or("?");
            let reason = check["reason"].as_str().unwrap_or("");
            push(&mut out, format!("check {name}: {status} {reason}"));
        }
        if let Some(id) = &self.incident_id {
            push(&mut out, format!("incident: {id}"));
        }
        for n in &self.notes {
            push(&mut out, format!("note: {n}"));
        }
        out
    }
}

fn git_commit() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
}
