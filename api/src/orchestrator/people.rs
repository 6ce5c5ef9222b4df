//! The deploy commands for people: who holds the lock (and releasing a dead holder's), a stored
//! report as text, and "why did this deploy fail?" in a few lines.

use std::process::ExitCode;

use entity::ops_deploy;

use super::cli::LockAction;
use super::command::{alive, kill_group};
use super::lock::{file_lock_held, lock_path, read_holder, running_holder, this_host};
use super::report::Report;
use super::{plan, EXIT_FAILURE, EXIT_UNUSABLE};
use crate::config::Config;
use crate::db;
use crate::state::AppState;

async fn app() -> Option<AppState> {
    let config = Config::from_env(&[])
        .map_err(|e| eprintln!("opsdoctor deploy: {e}"))
        .ok()?;
    let conn = db::connect_for_command(&config).await?;
    Some(AppState::new(config, conn))
}

pub async fn lock(action: LockAction) -> ExitCode {
    let (args, release, force) = match action {
        LockAction::Status(a) => (a, false, false),
        LockAction::Release { args, force } => (args, true, force),
    };
    let plan = match plan::load(&args.plan, &args.env) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("opsdoctor deploy: bad plan: {e}");
            return ExitCode::from(EXIT_UNUSABLE);
        }
    };
    let path = lock_path(&plan.state_dir, &args.env);
    let held = file_lock_held(&path);
    let holder = read_holder(&path);
    let remote = match app().await {
        Some(app) => running_holder(&app.deploys, &args.env).await,
        None => None,
    };
    let holder = holder.or(remote);
    let dead = holder
        .as_ref()
        .is_some_and(|h| !held && h.is_dead(plan.lock.lease));
    match (&holder, held) {
        (None, false) => println!("{}: free", args.env),
        (Some(h), true) => println!("{}: held by {}", args.env, h.describe()),
        (None, true) => println!("{}: held (holder not written yet)", args.env),
        (Some(h), false) if dead => println!(
            "{}: free; its last holder died without releasing it: {}",
            args.env,
            h.describe()
        ),
        (Some(h), false) => println!("{}: held on another host by {}", args.env, h.describe()),
    }
    if !release {
        return ExitCode::SUCCESS;
    }
    match holder {
        Some(h) if held && h.host == this_host() && alive(h.pid) => {
            if !force {
                eprintln!("opsdoctor deploy: the holder is alive; add --force to stop it (it rolls back and releases the lock)");
                return ExitCode::from(EXIT_FAILURE);
            }
            kill_group(h.pid, libc::SIGTERM);
            // SIGTERM to the process itself too: the deploy runs in the caller's process group.
            // SAFETY: kill(2) on a pid; no memory is involved.
            unsafe { libc::kill(h.pid as i32, libc::SIGTERM) };
            println!(
                "sent SIGTERM to pid {}; it rolls back and releases the lock",
                h.pid
            );
        }
        Some(_) if held => {
            eprintln!("opsdoctor deploy: the lock is held by a live process; it cannot be released from here");
            return ExitCode::from(EXIT_FAILURE);
        }
        _ => {
            let _ = std::fs::write(&path, b"");
            println!("released: the holder is cleared; the next deploy closes any record it left running");
        }
    }
    ExitCode::SUCCESS
}

async fn stored(id: &str) -> Result<(AppState, ops_deploy::Model), ExitCode> {
    let app = app().await.ok_or(ExitCode::from(EXIT_UNUSABLE))?;
    match app.deploys.get(id).await {
        Ok(Some(d)) => Ok((app, d)),
        Ok(None) => {
            eprintln!("opsdoctor deploy: no deploy {id}");
            Err(ExitCode::from(EXIT_FAILURE))
        }
        Err(e) => {
            eprintln!("opsdoctor deploy: {e}");
            Err(ExitCode::from(EXIT_UNUSABLE))
        }
    }
}

pub async fn report(id: &str, json: bool) -> ExitCode {
    let (_, deploy) = match stored(id).await {
        Ok(x) => x,
        Err(code) => return code,
    };
    let Some(value) = deploy.report_json.clone() else {
        eprintln!("opsdoctor deploy: deploy {id} has no report (it was recorded by a script)");
        return ExitCode::from(EXIT_FAILURE);
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
        return ExitCode::SUCCESS;
    }
    match serde_json::from_value::<Report>(value) {
        Ok(mut r) => {
            r.incident_id = r.incident_id.or(deploy.incident_id);
            print!("{}", r.text());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("opsdoctor deploy: the stored report cannot be read: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

pub async fn why(id: &str) -> ExitCode {
    let (app, deploy) = match stored(id).await {
        Ok(x) => x,
        Err(code) => return code,
    };
    let report: Option<Report> = deploy
        .report_json
        .clone()
        .and_then(|v| serde_json::from_value(v).ok());
    println!(
        "deploy {} of {} to {}: {}",
        deploy.id, deploy.version, deploy.environment, deploy.status
    );
    if deploy.status == "succeeded" {
        println!(
            "it did not fail: {}",
            deploy.reason.as_deref().unwrap_or("deployed and verified")
        );
        return ExitCode::SUCCESS;
    }
    if let Some(f) = report.as_ref().and_then(|r| r.failure.clone()) {
        println!("failed in {}: {}", f.state.as_str(), f.cause);
        println!("next step: {}", f.next_step);
    } else if let Some(reason) = &deploy.reason {
        println!("reason: {reason}");
    }
    if let Some(r) = &report {
        if let Some(rb) = r
            .states
            .iter()
            .rev()
            .find(|s| s.state == super::state::State::FailureRollback)
        {
            println!("rollback: {:?}: {}", rb.outcome, rb.detail);
        }
        if let Some(c) = r.commands.iter().rev().find(|c| !c.ok()) {
            println!("failed command: {}", c.failure());
        }
        println!("live now: {}", r.live_after.as_deref().unwrap_or("nothing"));
    }
    let verdicts = app
        .evaluations
        .for_deploy(&deploy.id)
        .await
        .unwrap_or_default();
    for v in verdicts.iter().rev().take(3) {
        println!("gate {}: {} {}", v.id, v.verdict, v.summary);
    }
    if let Some(incident) = &deploy.incident_id {
        let severity = match app.incidents.get(incident).await {
            Ok(Some(i)) => format!(
                "{:?} {:?}, {}",
                i.severity,
                i.category,
                if i.resolved_at.is_some() {
                    "resolved"
                } else {
                    "open"
                }
            ),
            _ => "?".into(),
        };
        let events: Vec<String> = match app.incidents.events(incident, 50, None).await {
            Ok(page) => page
                .items
                .iter()
                .map(|e| format!("{:?}", e.event_type))
                .collect(),
            Err(_) => Vec::new(),
        };
        println!("incident {incident} ({severity}): {}", events.join(" → "));
    }
    ExitCode::SUCCESS
}
