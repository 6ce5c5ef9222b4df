//! `opsdoctor doctor`: the check suite from a shell, as a table (colour on a terminal) or JSON.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::process::ExitCode;

use checks::{CheckName, CheckResult, Status, SuiteRun};

use crate::config::Config;
use crate::{db, suite};

/// Runs the suite once and prints it; the exit status says whether required checks pass.
pub async fn run(config: &Config, json: bool, only: &[String]) -> ExitCode {
    let selected: BTreeSet<String> = only
        .iter()
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    if let Some(unknown) = selected.iter().find_map(|n| n.parse::<CheckName>().err()) {
        eprintln!(
            "opsdoctor: unknown check `{}` in --only; known checks are {}",
            unknown.name,
            CheckName::ALL.map(CheckName::as_str).join(", ")
        );
        return ExitCode::from(2);
    }
    let Some(conn) = db::connect_for_command(config).await else {
        return ExitCode::FAILURE;
    };
    let registry = suite::build_registry(config, conn, Default::default());
    let run = registry
        .run((!selected.is_empty()).then_some(&selected))
        .await;
    if json {
        println!("{}", serde_json::to_string_pretty(&run).unwrap_or_default());
    } else {
        print!("{}", table(&run, &registry.policy().required, colour()));
    }
    exit_code(&run, &registry.policy().required)
}

/// 0: every required check passes; 1: a required check fails; 2: only optional checks fail.
fn exit_code(run: &SuiteRun, required: &BTreeSet<String>) -> ExitCode {
    let failed = |r: &&CheckResult| r.status == Status::Fail;
    if run
        .results
        .iter()
        .filter(failed)
        .any(|r| required.contains(&r.name))
    {
        ExitCode::from(1)
    } else if run.results.iter().any(|r| r.status == Status::Fail) {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

fn colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

fn table(run: &SuiteRun, required: &BTreeSet<String>, colour: bool) -> String {
    let paint = |status: Status, text: &str| {
        if !colour {
            return text.to_owned();
        }
        let code = match status {
            Status::Pass => "32",
            Status::Warn => "33",
            Status::Fail => "31",
            Status::Skipped => "90",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    };
    let mut out = format!(
        "{:<11} {:<8} {:>8}  {:<20} {}\n",
        "CHECK", "STATUS", "LATENCY", "REASON", "MESSAGE"
    );
    for r in &run.results {
        let name = if required.contains(&r.name) {
            format!("{}*", r.name)
        } else {
            r.name.clone()
        };
        let status = r.status.as_str().to_ascii_uppercase();
        let reason = r.reason.map(|x| x.as_str()).unwrap_or_default();
        out.push_str(&format!(
            "{name:<11} {} {:>6}ms  {reason:<20} {}\n",
            paint(r.status, &format!("{status:<8}")),
            r.latency_ms,
            r.message
        ));
        if let Some(hint) = r
            .hint
            .as_deref()
            .filter(|_| matches!(r.status, Status::Fail | Status::Warn))
        {
            out.push_str(&format!("{:<31}→ {hint}\n", ""));
        }
    }
    let overall = run.status.as_str().to_ascii_uppercase();
    out.push_str(&format!(
        "\n{} in {} ms (* = required)\n",
        paint(run.status, &overall),
        run.duration_ms
    ));
    out
}
