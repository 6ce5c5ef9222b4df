//! The deploy state machine: walks the states in order, each advancing or failing with the state,
//! the cause and the next step; what has been changed so far is tracked, so a failure, a
//! Ctrl-C or a SIGTERM undoes exactly that (stop the new colour, switch traffic back).

use std::sync::{Arc, Mutex};

use super::command::{CommandRun, Runner, Vars};
use super::live::{pid_path, stop_pid, Colour, Live};
use super::plan::{EnvPlan, Tier};
use super::report::{Failure, Report, StateOutcome, StateRecord};
use super::state::{Progress, State};
use crate::state::AppState;

/// A state's failure: the cause and what the operator should do.
#[derive(Debug, Clone)]
pub struct Fault {
    pub cause: String,
    pub next_step: String,
}

impl Fault {
    pub fn new(cause: impl Into<String>, next_step: impl Into<String>) -> Self {
        Self {
            cause: cause.into(),
            next_step: next_step.into(),
        }
    }
}

/// What a state did when it did not fail.
pub enum Done {
    Ok(String),
    Skipped(String),
}

/// What has been changed so far, read by the rollback.
#[derive(Debug, Default, Clone)]
pub struct Changes {
    pub started: Vec<&'static str>,
    pub switched: bool,
    pub recovery_attempted: bool,
    pub recovery_failed: bool,
    /// Optional checks failing at the end (a partial deploy).
    pub partial: Vec<String>,
}

/// One deploy in progress.
pub struct Deploy {
    pub env: String,
    pub release: String,
    pub plan: EnvPlan,
    pub app: AppState,
    pub runner: Runner,
    pub report: Arc<Mutex<Report>>,
    pub live: Option<Live>,
    pub target: Colour,
    pub changes: Arc<Mutex<Changes>>,
}

impl Deploy {
    pub fn with_report<T>(&self, f: impl FnOnce(&mut Report) -> T) -> T {
        let mut guard = self.report.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    pub fn changed(&self, f: impl FnOnce(&mut Changes)) {
        let mut guard = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    pub fn changes(&self) -> Changes {
        self.changes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The placeholders of every command: the target colour's.
    pub fn vars(&self, colour: Colour) -> Vars {
        let mut vars: Vars = Vars::new();
        vars.insert("release", self.release.clone());
        vars.insert("env", self.env.clone());
        vars.insert("colour", colour.as_str().to_owned());
        vars.insert("port", colour.port(&self.plan.backend).to_string());
        if let Some(f) = &self.plan.frontend {
            vars.insert("frontend_port", colour.port(f).to_string());
        }
        vars.insert("previous_colour", colour.other().as_str().to_owned());
        vars.insert(
            "previous_port",
            colour.other().port(&self.plan.backend).to_string(),
        );
        vars
    }

    /// Runs a plan command in the foreground and records it.
    pub async fn command(
        &self,
        purpose: &str,
        spec: &super::command::CommandSpec,
        colour: Colour,
    ) -> CommandRun {
        let run = self.runner.run(purpose, spec, &self.vars(colour)).await;
        self.with_report(|r| r.commands.push(run.clone()));
        run
    }

    /// Runs every state in order; the first failure ends the walk.
    pub async fn walk(&self) -> Result<(), (State, Fault)> {
        for state in State::PATH {
            let progress = Progress::start(state);
            let started_at = chrono::Utc::now();
            let outcome = self.step(state, &progress).await;
            let (record, fault) = match outcome {
                Ok(Done::Ok(detail)) => ((StateOutcome::Ok, detail), None),
                Ok(Done::Skipped(detail)) => ((StateOutcome::Skipped, detail), None),
                Err(fault) => ((StateOutcome::Failed, fault.cause.clone()), Some(fault)),
            };
            let duration_ms = progress.finish(record.0, &record.1);
            self.with_report(|r| {
                r.states.push(StateRecord {
                    state,
                    outcome: record.0,
                    started_at,
                    duration_ms,
                    detail: record.1,
                })
            });
            if let Some(fault) = fault {
                return Err((state, fault));
            }
        }
        Ok(())
    }

    async fn step(&self, state: State, progress: &Progress) -> Result<Done, Fault> {
        match state {
            State::Precheck => self.precheck(progress).await,
            State::DbValidate => self.db_validate(progress).await,
            State::MigrateVerify => self.migrate_verify(progress).await,
            State::BackendStart => self.start_tier("backend", &self.plan.backend).await,
            State::BackendReadyGate => self.backend_ready_gate(progress).await,
            State::FrontendStart => self.frontend(progress).await,
            State::TunnelStartOrVerify => self.tunnel(progress).await,
            State::ExternalVerify => self.external_verify(progress).await,
            State::Success | State::FailureRollback => Ok(Done::Skipped(String::new())),
        }
    }

    /// Starts a tier's target colour, after stopping whatever the plan left running on it.
    pub async fn start_tier(&self, name: &'static str, tier: &Tier) -> Result<Done, Fault> {
        let colour = self.target;
        self.stop_tier(name, tier, colour).await;
        let spec = &tier.start;
        let purpose = format!("{name}.start {}", colour.as_str());
        let run = if spec.background {
            let log =
                self.plan
                    .logs_dir
                    .join(format!("{}-{name}-{}.log", self.env, colour.as_str()));
            let run = self
                .runner
                .spawn_background(&purpose, spec, &self.vars(colour), &log);
            if let Some(pid) = run.pid {
                let path = pid_path(&self.plan.state_dir, &self.env, name, colour);
                let _ = std::fs::write(path, pid.to_string());
            }
            self.with_report(|r| r.commands.push(run.clone()));
            run
        } else {
            self.command(&purpose, spec, colour).await
        };
        self.changed(|c| c.started.push(name));
        if !run.ok() {
            return Err(Fault::new(
                format!("the {name} start command failed: {}", run.failure()),
                format!("fix the {name}.start command of the plan (see its output in the report); the live colour kept serving"),
            ));
        }
        Ok(Done::Ok(format!(
            "{name} {} started on port {}{}",
            colour.as_str(),
            colour.port(tier),
            run.pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
        )))
    }

    /// Stops a tier's colour: the plan's stop command, or SIGTERM to the process it started.
    pub async fn stop_tier(&self, name: &'static str, tier: &Tier, colour: Colour) {
        if let Some(stop) = &tier.stop {
            self.command(&format!("{name}.stop {}", colour.as_str()), stop, colour)
                .await;
        }
        let path = pid_path(&self.plan.state_dir, &self.env, name, colour);
        if let Some(pid) = stop_pid(&path, std::time::Duration::from_secs(10)).await {
            self.with_report(|r| {
                r.notes
                    .push(format!("stopped {name} {} (pid {pid})", colour.as_str()))
            });
        }
    }

    /// Switches traffic to `colour` and verifies it through the entry point.
    pub async fn switch_to(&self, colour: Colour) -> Result<(), Fault> {
        let run = self
            .command(
                &format!("switch {}", colour.as_str()),
                &self.plan.switch,
                colour,
            )
            .await;
        if !run.ok() {
            return Err(Fault::new(
                format!("the switch command failed: {}", run.failure()),
                "fix the plan's switch command; check the proxy's configuration by hand",
            ));
        }
        super::probe::entry_ok(&self.plan.entry_url, self.plan.readiness.request_timeout)
            .await
            .map_err(|e| {
                Fault::new(
                    format!("after switching to {}: {e}", colour.as_str()),
                    "check the proxy (its configuration and its error log) and the entry_url of the plan",
                )
            })
    }

    /// Undoes what was changed: switch back (verified), stop what was started. `Ok` when the old
    /// colour (or nothing, if nothing served before) is serving as before.
    pub async fn roll_back(&self) -> Result<String, String> {
        let changes = self.changes();
        let progress = Progress::start(State::FailureRollback);
        let started_at = chrono::Utc::now();
        let mut said = Vec::new();
        let mut result = Ok(());
        if changes.switched {
            match &self.live {
                Some(live) => {
                    progress.say(&format!("switching traffic back to {}", live.describe()));
                    match self.switch_to(live.colour).await {
                        Ok(()) => {
                            self.changed(|c| c.switched = false);
                            said.push(format!(
                                "traffic switched back to {} and verified",
                                live.describe()
                            ));
                        }
                        Err(f) => result = Err(f.cause),
                    }
                }
                None => said.push("nothing served before; nothing to switch back to".into()),
            }
            if let Some(rb) = &self.plan.rollback {
                let colour = self.live.as_ref().map_or(self.target.other(), |l| l.colour);
                let run = self.command("rollback", rb, colour).await;
                if !run.ok() {
                    result = Err(format!("the rollback command failed: {}", run.failure()));
                }
            }
        }
        if result.is_ok() {
            if changes.switched {
                // Requests the proxy's old workers still hold on the new colour finish first.
                progress.say(&format!(
                    "draining {} for {}",
                    self.target.as_str(),
                    humantime::format_duration(self.plan.drain)
                ));
                tokio::time::sleep(self.plan.drain).await;
            }
            if let Some(f) = self
                .plan
                .frontend
                .as_ref()
                .filter(|_| changes.started.contains(&"frontend"))
            {
                self.stop_tier("frontend", f, self.target).await;
                said.push(format!("stopped frontend {}", self.target.as_str()));
            }
            if changes.started.contains(&"backend") {
                self.stop_tier("backend", &self.plan.backend, self.target)
                    .await;
                said.push(format!("stopped backend {}", self.target.as_str()));
            }
            if let Some(live) = &self.live {
                let ok = super::probe::entry_ok(
                    &self.plan.entry_url,
                    self.plan.readiness.request_timeout,
                )
                .await;
                match ok {
                    Ok(()) => said.push(format!(
                        "{} still serving through the entry point",
                        live.describe()
                    )),
                    Err(e) => result = Err(e),
                }
            }
        }
        let (outcome, detail) = match &result {
            Ok(()) if said.is_empty() => (StateOutcome::Ok, "nothing had changed".to_owned()),
            Ok(()) => (StateOutcome::Ok, said.join("; ")),
            Err(e) => (StateOutcome::Failed, e.clone()),
        };
        let duration_ms = progress.finish(outcome, &detail);
        self.with_report(|r| {
            r.states.push(StateRecord {
                state: State::FailureRollback,
                outcome,
                started_at,
                duration_ms,
                detail: detail.clone(),
            })
        });
        result.map(|()| detail)
    }

    pub fn fail(&self, state: State, fault: &Fault) {
        self.with_report(|r| {
            r.failure = Some(Failure {
                state,
                cause: fault.cause.clone(),
                next_step: fault.next_step.clone(),
            })
        });
    }
}
