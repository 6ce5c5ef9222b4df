//! One `opsdoctor deploy`: plan, lock, record, the state machine under Ctrl-C and SIGTERM, then
//! SUCCESS or FAILURE_ROLLBACK, the record's status, the incident's events and the report.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use entity::EventType;
use serde_json::Map;

use super::command::Runner;
use super::live::{read_live, write_live, Colour, Live};
use super::lock::{DeployLock, LockError};
use super::machine::{Changes, Deploy, Fault};
use super::plan::{self, EnvPlan};
use super::report::{Report, StateOutcome, StateRecord};
use super::state::State;
use super::{EXIT_FAILURE, EXIT_PARTIAL, EXIT_SUCCESS, EXIT_UNUSABLE};
use crate::config::Config;
use crate::state::AppState;
use crate::store::deploys::{FinishStatus, NewDeploy};
use crate::store::incidents::NewEvent;
use crate::telemetry::scrub::Scrubber;
use crate::{db, telemetry};

pub async fn deploy(
    path: &Path,
    env: &str,
    release: &str,
    dry_run: bool,
    lock_wait: Option<Duration>,
) -> u8 {
    let plan = match plan::load(path, env) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("opsdoctor deploy: bad plan: {e}");
            return EXIT_UNUSABLE;
        }
    };
    let live = read_live(&plan.state_dir, env);
    let target = live.as_ref().map_or(Colour::Blue, |l| l.colour.other());
    if dry_run {
        print_dry_run(&plan, env, release, live.as_ref(), target);
        return EXIT_SUCCESS;
    }
    let config = match Config::from_env(&[]) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("opsdoctor deploy: {e}");
            return EXIT_UNUSABLE;
        }
    };
    let _log = telemetry::init(config.log_format, &config.secrets(), None);
    let Some(conn) = db::connect_for_command(&config).await else {
        return EXIT_UNUSABLE;
    };
    if config.auto_migrate {
        if let Err(e) = db::migrate_up(&conn).await {
            eprintln!("opsdoctor deploy: cannot migrate opsdoctor's tables: {e}");
            return EXIT_UNUSABLE;
        }
    }
    let app = AppState::new(config.clone(), conn.clone());
    let lease = plan.lock.lease;
    let acquired = match lock_wait {
        Some(wait) => {
            DeployLock::acquire(
                &plan.state_dir,
                env,
                release,
                &conn,
                &app.deploys,
                lease,
                wait,
            )
            .await
        }
        None => {
            DeployLock::try_acquire(&plan.state_dir, env, release, &conn, &app.deploys, lease).await
        }
    };
    let mut lock = match acquired {
        Ok(l) => l,
        Err(LockError::Held(holder)) => {
            eprintln!(
                "opsdoctor deploy: another deploy of {env} holds the lock: {}; wait for it (--lock-wait 15m) or see `opsdoctor deploy lock status`",
                holder.map_or("holder unknown".into(), |h| h.describe())
            );
            return EXIT_UNUSABLE;
        }
        Err(LockError::Io(e)) => {
            eprintln!("opsdoctor deploy: cannot take the deploy lock: {e}");
            return EXIT_UNUSABLE;
        }
    };
    let mut report = Report::new(env, release, path);
    report.live_before = live.as_ref().map(Live::describe);
    let record = app
        .deploys
        .start(NewDeploy {
            environment: env.to_owned(),
            version: release.to_owned(),
            git_sha: looks_like_sha(release).then(|| release.to_owned()),
            strategy: Some("blue-green".into()),
            started_by: Some(format!(
                "{}@{}",
                std::env::var("USER").unwrap_or_else(|_| "?".into()),
                lock.holder.host
            )),
            external_ids: Map::new(),
        })
        .await;
    let deploy_id = match record {
        Ok(r) => r.id,
        Err(e) => {
            eprintln!("opsdoctor deploy: cannot record the deploy: {e}");
            lock.release().await;
            return EXIT_UNUSABLE;
        }
    };
    lock.holder.deploy_id = Some(deploy_id.clone());
    let _ = lock.write_holder();
    report.deploy_id = Some(deploy_id.clone());
    report.lock.holder = Some(lock.holder.clone());
    report.lock.took_over = lock.took_over.clone();
    if let Some(dead) = &lock.took_over {
        report.notes.push(format!(
            "took the lock over from a dead holder: {}",
            dead.describe()
        ));
    }
    // Records left running by a dead holder are closed: their deploy will never finish.
    for stale in app.deploys.running_in(env).await.unwrap_or_default() {
        if stale.id != deploy_id {
            let why = format!(
                "abandoned: its deploy process died; the lock was taken over by deploy {deploy_id}"
            );
            let _ = app
                .deploys
                .finish(
                    &stale.id,
                    FinishStatus::Failed,
                    Some(why),
                    stale.report_json.clone(),
                )
                .await;
            report.notes.push(format!(
                "closed deploy {} left running by a dead holder",
                stale.id
            ));
        }
    }
    eprintln!(
        "opsdoctor deploy {deploy_id}: {release} to {env} ({} → {})",
        report.live_before.as_deref().unwrap_or("nothing live"),
        target.as_str()
    );
    let scrubber = Arc::new(Scrubber::new(&config.secrets()));
    let d = Deploy {
        env: env.to_owned(),
        release: release.to_owned(),
        plan,
        app,
        runner: Runner::new(scrubber, true),
        report: Arc::new(Mutex::new(report)),
        live,
        target,
        changes: Arc::new(Mutex::new(Changes::default())),
    };
    let lock = Arc::new(tokio::sync::Mutex::new(lock));
    let beat = heartbeat(&d, lock.clone(), &deploy_id, lease);
    let code = drive(&d, &deploy_id).await;
    beat.abort();
    // The heartbeat holds the lock's other handle until its task is really gone.
    let _ = beat.await;
    if let Ok(lock) = Arc::try_unwrap(lock) {
        lock.into_inner().release().await;
    }
    code
}

/// Rewrites the holder and stores the report so far, every few seconds, until aborted.
fn heartbeat(
    d: &Deploy,
    lock: Arc<tokio::sync::Mutex<DeployLock>>,
    id: &str,
    lease: Duration,
) -> tokio::task::JoinHandle<()> {
    let report = d.report.clone();
    let deploys = d.app.deploys.clone();
    let id = id.to_owned();
    let every = (lease / 3).clamp(Duration::from_millis(200), Duration::from_secs(5));
    tokio::spawn(async move {
        loop {
            let holder = {
                let mut l = lock.lock().await;
                l.heartbeat();
                l.holder.clone()
            };
            let json = {
                let mut r = report.lock().unwrap_or_else(|p| p.into_inner());
                r.lock.holder = Some(holder);
                r.to_json()
            };
            let _ = deploys.save_progress(&id, json).await;
            tokio::time::sleep(every).await;
        }
    })
}

enum Ended {
    Walked(Result<(), (State, Fault)>),
    Signal(&'static str),
}

async fn drive(d: &Deploy, id: &str) -> u8 {
    if let Some(code) = already_live(d, id).await {
        return code;
    }
    let ended = tokio::select! {
        r = d.walk() => Ended::Walked(r),
        s = signal() => Ended::Signal(s),
    };
    let (status, reason, code) = match ended {
        Ended::Walked(Ok(())) => succeed(d).await,
        Ended::Walked(Err((state, fault))) => {
            d.fail(state, &fault);
            let changed = {
                let c = d.changes();
                !c.started.is_empty() || c.switched
            };
            let rolled = d.roll_back().await;
            let reason = format!("{}: {}", state.as_str(), fault.cause);
            d.with_report(|r| {
                if let Err(e) = &rolled {
                    r.next_steps.insert(
                        0,
                        format!("THE ROLLBACK FAILED ({e}): check what serves now by hand"),
                    );
                }
                r.next_steps.push(format!("opsdoctor deploy why {id}"));
                r.live_after = d.live.as_ref().map(Live::describe);
            });
            let status = if changed && rolled.is_ok() {
                FinishStatus::RolledBack
            } else {
                FinishStatus::Failed
            };
            (status, reason, EXIT_FAILURE)
        }
        Ended::Signal(name) => {
            eprintln!("opsdoctor deploy: {name} received; undoing what this deploy changed");
            let fault = Fault::new(
                format!("interrupted by {name}"),
                "deploy again when ready; the previous colour kept serving",
            );
            let state = d.with_report(|r| {
                let state = State::PATH
                    .get(r.states.len())
                    .copied()
                    .unwrap_or(State::ExternalVerify);
                r.states.push(StateRecord {
                    state,
                    outcome: StateOutcome::Canceled,
                    started_at: chrono::Utc::now(),
                    duration_ms: 0,
                    detail: format!("interrupted by {name}"),
                });
                state
            });
            d.fail(state, &fault);
            let rolled = d.roll_back().await;
            d.with_report(|r| {
                r.live_after = d.live.as_ref().map(Live::describe);
                if let Err(e) = rolled {
                    r.next_steps.push(format!(
                        "THE ROLLBACK FAILED ({e}): check what serves now by hand"
                    ));
                }
            });
            (
                FinishStatus::Canceled,
                format!("{}: interrupted by {name}", state.as_str()),
                EXIT_FAILURE,
            )
        }
    };
    finish(d, id, status, reason, code).await
}

/// The release already serving and healthy: a quick success that changes nothing.
async fn already_live(d: &Deploy, id: &str) -> Option<u8> {
    let live = d.live.as_ref().filter(|l| l.release == d.release)?;
    let client = super::probe::client(d.plan.readiness.request_timeout);
    let snap = super::probe::poll(
        &client,
        &d.plan.backend,
        live.colour.port(&d.plan.backend),
        live.colour.as_str(),
    )
    .await;
    if !snap.ok {
        return None;
    }
    d.with_report(|r| {
        r.snapshot(snap);
        r.notes.push(format!(
            "{} is already live and healthy; nothing changed",
            live.describe()
        ));
        r.live_after = Some(live.describe());
    });
    eprintln!(
        "opsdoctor deploy: {} is already live and healthy; nothing to do",
        live.describe()
    );
    Some(
        finish(
            d,
            id,
            FinishStatus::Succeeded,
            "already live and healthy; nothing changed".into(),
            EXIT_SUCCESS,
        )
        .await,
    )
}

async fn succeed(d: &Deploy) -> (FinishStatus, String, u8) {
    let progress = super::state::Progress::start(State::Success);
    let started_at = chrono::Utc::now();
    let mut did = vec![format!("{} serves {}", d.target.as_str(), d.release)];
    if let Some(old) = d.live.as_ref().filter(|_| d.plan.stop_previous) {
        progress.say(&format!(
            "draining {} for {}",
            old.colour.as_str(),
            humantime::format_duration(d.plan.drain)
        ));
        tokio::time::sleep(d.plan.drain).await;
        if let Some(f) = &d.plan.frontend {
            d.stop_tier("frontend", f, old.colour).await;
        }
        d.stop_tier("backend", &d.plan.backend, old.colour).await;
        did.push(format!("stopped {}", old.describe()));
    }
    let live = Live {
        colour: d.target,
        release: d.release.clone(),
        since: chrono::Utc::now(),
        deploy_id: d.with_report(|r| r.deploy_id.clone()),
    };
    if let Err(e) = write_live(&d.plan.state_dir, &d.env, &live) {
        did.push(format!("could not remember the live colour: {e}"));
    }
    let partial = d.changes().partial;
    let detail = did.join("; ");
    let duration_ms = progress.finish(StateOutcome::Ok, &detail);
    d.with_report(|r| {
        r.live_after = Some(live.describe());
        r.states.push(StateRecord {
            state: State::Success,
            outcome: StateOutcome::Ok,
            started_at,
            duration_ms,
            detail,
        });
        if !partial.is_empty() {
            r.next_steps.push(format!(
                "deployed, but optional checks fail: {}; see `opsdoctor doctor`",
                partial.join(" ")
            ));
        }
    });
    if partial.is_empty() {
        (
            FinishStatus::Succeeded,
            "deployed and verified".into(),
            EXIT_SUCCESS,
        )
    } else {
        (
            FinishStatus::Succeeded,
            format!("partial: optional checks fail: {}", partial.join(" ")),
            EXIT_PARTIAL,
        )
    }
}

/// Closes the record (opening the `DEPLOY` incident on failure), adds the recovery and rollback
/// to the incident's timeline, and writes the report.
async fn finish(d: &Deploy, id: &str, status: FinishStatus, reason: String, code: u8) -> u8 {
    let outcome = match (status, code) {
        (FinishStatus::Succeeded, EXIT_PARTIAL) => "partial",
        (FinishStatus::Succeeded, _)
            if d.live.as_ref().is_some_and(|l| l.release == d.release)
                && d.changes().started.is_empty() =>
        {
            "unchanged"
        }
        (s, _) => s.as_str(),
    };
    let json = d.with_report(|r| {
        let now = chrono::Utc::now();
        r.finished_at = Some(now);
        r.duration_ms = u64::try_from((now - r.started_at).num_milliseconds().max(0)).unwrap_or(0);
        r.outcome = outcome.to_owned();
        r.exit_code = Some(code);
        r.to_json()
    });
    let incident = match d
        .app
        .deploys
        .finish(id, status, Some(reason), Some(json))
        .await
    {
        Ok(m) => m.incident_id,
        Err(e) => {
            d.with_report(|r| {
                r.notes
                    .push(format!("could not store the deploy's end: {e}"))
            });
            None
        }
    };
    if let Some(incident) = &incident {
        let changes = d.changes();
        let store = &d.app.incidents;
        let event = |t, m: String| NewEvent {
            event_type: t,
            message: m,
            metadata: Map::new(),
        };
        if changes.recovery_attempted {
            let _ = store
                .append_event(
                    incident,
                    event(
                        EventType::RecoveryAttempted,
                        "one recovery of the new colour was tried".into(),
                    ),
                )
                .await;
        }
        if changes.recovery_failed {
            let _ = store
                .append_event(
                    incident,
                    event(
                        EventType::RecoveryFailed,
                        "still not ready after the recovery; rolling back".into(),
                    ),
                )
                .await;
        }
        let rolled = d.with_report(|r| {
            r.states
                .last()
                .is_some_and(|s| s.state == State::FailureRollback && s.outcome == StateOutcome::Ok)
        });
        if status == FinishStatus::RolledBack && rolled {
            let _ = store.resolve(incident, Some("rolled back: the previous colour serves again, verified through the entry point".into()), Map::new()).await;
        }
        d.with_report(|r| r.incident_id = Some(incident.clone()));
    }
    let (text, written) = d.with_report(|r| (r.text(), r.write(&d.plan.logs_dir)));
    match written {
        Ok(path) => eprintln!("{text}report: {}", path.display()),
        Err(e) => eprintln!(
            "{text}could not write the report into {}: {e}",
            d.plan.logs_dir.display()
        ),
    }
    code
}

async fn signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}

fn looks_like_sha(release: &str) -> bool {
    (7..=40).contains(&release.len()) && release.chars().all(|c| c.is_ascii_hexdigit())
}

fn print_dry_run(plan: &EnvPlan, env: &str, release: &str, live: Option<&Live>, target: Colour) {
    let runner = Runner::new(Arc::new(Scrubber::new(&[])), false);
    let _ = &runner;
    println!(
        "dry run: {release} to {env}: live {} → target {}",
        live.map_or("nothing".into(), Live::describe),
        target.as_str()
    );
    let mut vars = super::command::Vars::new();
    vars.insert("release", release.to_owned());
    vars.insert("env", env.to_owned());
    vars.insert("colour", target.as_str().to_owned());
    vars.insert("port", target.port(&plan.backend).to_string());
    vars.insert("previous_colour", target.other().as_str().to_owned());
    vars.insert(
        "previous_port",
        target.other().port(&plan.backend).to_string(),
    );
    if let Some(f) = &plan.frontend {
        vars.insert("frontend_port", target.port(f).to_string());
    }
    let show = |field: &str, spec: &super::command::CommandSpec| {
        println!(
            "      {field}: {}{}",
            spec.argv(&vars).join(" "),
            if spec.background { " (background)" } else { "" }
        );
    };
    for state in State::PATH {
        println!("  {}", state.as_str());
        match state {
            State::MigrateVerify => {
                if let Some(m) = &plan.database.migrate {
                    show("database.migrate", m)
                }
            }
            State::BackendStart => show("backend.start", &plan.backend.start),
            State::BackendReadyGate => {
                for (k, u) in plan.backend.health.urls() {
                    println!("      poll {k}: {}", super::command::fill(u, &vars));
                }
                if plan.frontend.is_none() {
                    show("switch", &plan.switch)
                }
            }
            State::FrontendStart => match &plan.frontend {
                Some(f) => {
                    show("frontend.start", &f.start);
                    show("switch", &plan.switch)
                }
                None => println!("      skipped: no frontend"),
            },
            State::TunnelStartOrVerify => {
                if let Some(t) = &plan.tunnel {
                    println!(
                        "      tunnel check; if broken: {}",
                        t.restart.argv(&vars).join(" ")
                    )
                }
            }
            _ => {}
        }
    }
    println!(
        "  SUCCESS: stop {} after {}",
        target.other().as_str(),
        humantime::format_duration(plan.drain)
    );
    println!(
        "  FAILURE_ROLLBACK: switch back to {}, stop {}",
        target.other().as_str(),
        target.as_str()
    );
}
