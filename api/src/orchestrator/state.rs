//! The states of a deploy, in order, and how their progress is shown: a spinner line per state
//! with the elapsed time on a terminal, plain start/finish lines otherwise (and in CI), and a
//! structured log event for each start and finish.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use super::report::StateOutcome;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    Precheck,
    DbValidate,
    MigrateVerify,
    BackendStart,
    BackendReadyGate,
    FrontendStart,
    TunnelStartOrVerify,
    ExternalVerify,
    Success,
    FailureRollback,
}

impl State {
    /// The states a deploy walks through, before it ends in `SUCCESS` or `FAILURE_ROLLBACK`.
    pub const PATH: [State; 8] = [
        State::Precheck,
        State::DbValidate,
        State::MigrateVerify,
        State::BackendStart,
        State::BackendReadyGate,
        State::FrontendStart,
        State::TunnelStartOrVerify,
        State::ExternalVerify,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Precheck => "PRECHECK",
            State::DbValidate => "DB_VALIDATE",
            State::MigrateVerify => "MIGRATE_VERIFY",
            State::BackendStart => "BACKEND_START",
            State::BackendReadyGate => "BACKEND_READY_GATE",
            State::FrontendStart => "FRONTEND_START",
            State::TunnelStartOrVerify => "TUNNEL_START_OR_VERIFY",
            State::ExternalVerify => "EXTERNAL_VERIFY",
            State::Success => "SUCCESS",
            State::FailureRollback => "FAILURE_ROLLBACK",
        }
    }
}

/// Shows one state's progress until it finishes.
pub struct Progress {
    state: State,
    started: Instant,
    bar: Option<ProgressBar>,
}

/// Whether to draw spinners: stderr is a terminal and this is not CI.
pub fn interactive() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("CI").is_none()
}

impl Progress {
    pub fn start(state: State) -> Self {
        tracing::info!(
            state = state.as_str(),
            event = "start",
            "deploy state started"
        );
        let bar = interactive().then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix:<24} {elapsed:>4} {wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_prefix(state.as_str());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        if bar.is_none() {
            eprintln!("==> {} …", state.as_str());
        }
        Self {
            state,
            started: Instant::now(),
            bar,
        }
    }

    /// A line of what the state is doing now (why it still waits).
    pub fn say(&self, message: &str) {
        match &self.bar {
            Some(bar) => bar.set_message(message.to_owned()),
            None => eprintln!("    {}: {message}", self.state.as_str()),
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn finish(self, outcome: StateOutcome, detail: &str) -> u64 {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let word = format!("{outcome:?}").to_uppercase();
        tracing::info!(state = self.state.as_str(), event = "finish", outcome = %word, duration_ms = ms, detail, "deploy state finished");
        let line = format!(
            "{} {:<24} {:>6.1}s  {detail}",
            match outcome {
                StateOutcome::Ok => "✔",
                StateOutcome::Skipped => "–",
                _ => "✘",
            },
            self.state.as_str(),
            ms as f64 / 1000.0
        );
        match self.bar {
            Some(bar) => bar.finish_with_message(format!("{word} {detail}")),
            None => eprintln!("<== {line} [{word}]"),
        }
        ms
    }
}
