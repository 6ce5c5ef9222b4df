//! What each state of the deploy does, up to traffic: PRECHECK, DB_VALIDATE, MIGRATE_VERIFY, the
//! backend's readiness gate (with its one recovery) and FRONTEND_START; the switch follows the
//! last tier that became ready.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use checks::database::DatabaseCheck;
use checks::Check;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, Statement};

use super::command::{alive, on_path};
use super::live::{pid_path, read_pid};
use super::machine::{Deploy, Done, Fault};
use super::plan::{Tier, DEFAULT_REQUIRED_SETTINGS};
use super::probe::ready_gate;
use super::state::Progress;

impl Deploy {
    pub(super) async fn precheck(&self, progress: &Progress) -> Result<Done, Fault> {
        let required: Vec<String> =
            self.plan
                .precheck
                .required_settings
                .clone()
                .unwrap_or_else(|| {
                    DEFAULT_REQUIRED_SETTINGS
                        .iter()
                        .map(|s| (*s).to_owned())
                        .collect()
                });
        let missing: Vec<&String> = required
            .iter()
            .filter(|name| std::env::var(name).map_or(true, |v| v.trim().is_empty()))
            .collect();
        if !missing.is_empty() {
            return Err(Fault::new(
                format!("required settings missing or empty: {}", join(&missing)),
                "set them in the environment (or .env) of the deploy, or change precheck.required_settings in the plan",
            ));
        }
        progress.say("settings present; checking ports");
        let mut tiers = vec![("backend", &self.plan.backend)];
        if let Some(f) = &self.plan.frontend {
            tiers.push(("frontend", f));
        }
        let mut notes = Vec::new();
        for (name, tier) in &tiers {
            let port = self.target.port(tier);
            if TcpListener::bind(("127.0.0.1", port)).is_err() {
                let pid = read_pid(&pid_path(
                    &self.plan.state_dir,
                    &self.env,
                    name,
                    self.target,
                ));
                match pid.filter(|p| alive(*p)) {
                    Some(pid) => notes.push(format!(
                        "port {port} is held by the plan's own {name} {} (pid {pid}); it is stopped before the start",
                        self.target.as_str()
                    )),
                    None if tier.stop.is_some() => notes.push(format!(
                        "port {port} is in use; the plan's {name}.stop runs before the start"
                    )),
                    None => {
                        return Err(Fault::new(
                            format!("port {port} ({name} {}) is in use by a process the plan did not start", self.target.as_str()),
                            format!("find it with `ss -ltnp 'sport = :{port}'` and stop it, or give the plan a {name}.stop command"),
                        ))
                    }
                }
            }
        }
        let mut dirs = vec![self.plan.logs_dir.clone(), self.plan.state_dir.clone()];
        dirs.extend(self.plan.precheck.writable_dirs.iter().cloned());
        for dir in &dirs {
            let probe = dir.join(format!(".opsdoctor-write-probe-{}", std::process::id()));
            let ok = std::fs::create_dir_all(dir)
                .and_then(|()| std::fs::write(&probe, b"ok"))
                .and_then(|()| std::fs::remove_file(&probe));
            if let Err(e) = ok {
                return Err(Fault::new(
                    format!("directory {} is not writable: {e}", dir.display()),
                    "create it and give the deploying user write access (or free disk space)",
                ));
            }
        }
        let missing: Vec<String> = self
            .plan
            .commands()
            .iter()
            .filter(|(_, spec)| !on_path(&spec.program()))
            .map(|(field, spec)| format!("{} ({field})", spec.program()))
            .collect();
        if !missing.is_empty() {
            return Err(Fault::new(
                format!("commands not found on PATH: {}", missing.join(", ")),
                "install them or use absolute paths in the plan",
            ));
        }
        notes.insert(
            0,
            format!(
                "{} settings, ports, {} directories and {} commands ok",
                required.len(),
                dirs.len(),
                self.plan.commands().len()
            ),
        );
        Ok(Done::Ok(notes.join("; ")))
    }

    /// Connects to the application's database with retry and backoff within the deadline, and
    /// records its latency baseline. A database that stays down opens a CRITICAL `DB` incident.
    pub(super) async fn db_validate(&self, progress: &Progress) -> Result<Done, Fault> {
        let var = &self.plan.database.url_env;
        let url = std::env::var(var).unwrap_or_default();
        if url.trim().is_empty() {
            return Err(Fault::new(
                format!("{var} (the application's database URL) is not set"),
                format!("set {var}, or name another variable in database.url_env"),
            ));
        }
        let deadline = Instant::now() + self.plan.database.connect_deadline;
        let mut backoff = Duration::from_millis(200);
        let mut attempt = 0;
        let (conn, last_error) = loop {
            attempt += 1;
            let mut options = ConnectOptions::new(url.clone());
            options
                .connect_timeout(Duration::from_secs(3))
                .acquire_timeout(Duration::from_secs(3))
                .max_connections(2)
                .sqlx_logging(false);
            let error = match Database::connect(options).await {
                Ok(conn) => match conn.execute_unprepared("SELECT 1").await {
                    Ok(_) => break (Some(conn), String::new()),
                    Err(e) => e.to_string(),
                },
                Err(e) => e.to_string(),
            };
            let error = self.runner.mask(&error);
            progress.say(&format!("attempt {attempt}: {error}"));
            if Instant::now() + backoff >= deadline {
                break (None, error);
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        };
        let Some(conn) = conn else {
            let cause = format!(
                "the database ({var}) did not answer within {} after {attempt} attempts: {last_error}",
                humantime::format_duration(self.plan.database.connect_deadline)
            );
            let incident = self.open_db_incident(&cause).await;
            self.with_report(|r| {
                r.notes.push(match incident {
                    Some(id) => format!("opened CRITICAL DB incident {id}"),
                    None => "could not record the DB incident".into(),
                })
            });
            return Err(Fault::new(
                cause,
                "nothing was started and the live colour keeps serving; bring the database back (check the server, its disk and the network), then deploy again",
            ));
        };
        let mut samples = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            let _ = conn.execute_unprepared("SELECT 1").await;
            samples.push(t.elapsed().as_micros());
        }
        samples.sort_unstable();
        let baseline = samples[1];
        self.with_report(|r| {
            r.notes.push(format!(
                "database latency baseline: {baseline} µs (median of 3)"
            ))
        });
        Ok(Done::Ok(format!(
            "connected after {attempt} attempt(s); latency baseline {baseline} µs"
        )))
    }

    async fn open_db_incident(&self, cause: &str) -> Option<String> {
        use crate::store::incidents::NewIncident;
        let mut details = serde_json::Map::new();
        details.insert("environment".into(), self.env.clone().into());
        details.insert("release".into(), self.release.clone().into());
        details.insert("state".into(), "DB_VALIDATE".into());
        let opened = self
            .app
            .incidents
            .open(NewIncident {
                severity: entity::Severity::Critical,
                category: entity::Category::Db,
                summary: format!(
                    "deploy of {} to {} stopped: database down",
                    self.release, self.env
                ),
                details,
                fingerprint: Some(format!("deploy:db-down:{}", self.env)),
                event_metadata: serde_json::Map::from_iter([("message".to_owned(), cause.into())]),
            })
            .await
            .ok()?;
        Some(opened.incident.id)
    }

    /// Runs the migrations before anything starts, then verifies them with the doctor's
    /// database check and the plan's tables.
    pub(super) async fn migrate_verify(&self, progress: &Progress) -> Result<Done, Fault> {
        let mut did = Vec::new();
        if let Some(migrate) = &self.plan.database.migrate {
            progress.say("running the migration command");
            let run = self.command("database.migrate", migrate, self.target).await;
            if !run.ok() {
                return Err(Fault::new(
                    format!("the migration failed: {}", run.failure()),
                    "nothing was started or switched; the old release keeps serving. Read the migration's output in the report, fix it (or restore the database), then deploy again",
                ));
            }
            did.push(format!("migration ran in {} ms", run.duration_ms));
        }
        let url = std::env::var(&self.plan.database.url_env).unwrap_or_default();
        let conn: DatabaseConnection = Database::connect(url).await.map_err(|e| {
            Fault::new(
                format!("database: {}", self.runner.mask(&e.to_string())),
                "check the database",
            )
        })?;
        let check = DatabaseCheck::new(conn.clone(), self.plan.database.url_env.clone());
        let result = check.run().await;
        self.with_report(|r| {
            r.checks
                .push(serde_json::to_value(&result).unwrap_or_default())
        });
        if result.status == checks::Status::Fail {
            return Err(Fault::new(
                format!("after migrating: {}", result.message),
                result
                    .hint
                    .unwrap_or_else(|| "apply the migrations, then deploy again".into()),
            ));
        }
        let mut missing = Vec::new();
        for table in &self.plan.database.tables {
            let probe = format!("SELECT 1 FROM \"{}\" WHERE 1 = 0", table.replace('"', ""));
            let stmt = Statement::from_string(conn.get_database_backend(), probe);
            if conn.execute(stmt).await.is_err() {
                missing.push(table.clone());
            }
        }
        if !missing.is_empty() {
            return Err(Fault::new(
                format!("tables missing after the migration: {}", missing.join(", ")),
                "the migration did not create them: check the migration command and the database it ran against",
            ));
        }
        did.push(format!(
            "migrations applied, {} table(s) present",
            self.plan.database.tables.len()
        ));
        Ok(Done::Ok(did.join("; ")))
    }

    pub(super) async fn backend_ready_gate(&self, progress: &Progress) -> Result<Done, Fault> {
        let detail = self
            .gate_tier("backend", &self.plan.backend, progress)
            .await?;
        if self.plan.frontend.is_some() {
            return Ok(Done::Ok(detail));
        }
        self.switch_now(progress).await?;
        Ok(Done::Ok(format!(
            "{detail}; traffic switched to {} and verified",
            self.target.as_str()
        )))
    }

    pub(super) async fn frontend(&self, progress: &Progress) -> Result<Done, Fault> {
        let Some(tier) = &self.plan.frontend else {
            return Ok(Done::Skipped("the plan has no frontend".into()));
        };
        let started = self.start_tier("frontend", tier).await?;
        let gated = self.gate_tier("frontend", tier, progress).await?;
        self.switch_now(progress).await?;
        let started = match started {
            Done::Ok(s) | Done::Skipped(s) => s,
        };
        Ok(Done::Ok(format!(
            "{started}; {gated}; traffic switched to {} and verified",
            self.target.as_str()
        )))
    }

    async fn switch_now(&self, progress: &Progress) -> Result<(), Fault> {
        progress.say(&format!("switching traffic to {}", self.target.as_str()));
        self.changed(|c| c.switched = true);
        self.switch_to(self.target).await
    }

    /// The readiness gate of a tier; on timeout one recovery, then the gate once more.
    async fn gate_tier(
        &self,
        name: &str,
        tier: &Tier,
        progress: &Progress,
    ) -> Result<String, Fault> {
        let colour = self.target;
        let port = colour.port(tier);
        let readiness = &self.plan.readiness;
        let seen = |s| self.with_report(|r| r.snapshot(s));
        let first = ready_gate(tier, port, colour.as_str(), readiness, progress, seen).await;
        let why = match first {
            Ok(polls) => {
                return Ok(format!(
                    "{name} {} ready after {polls} poll(s)",
                    colour.as_str()
                ))
            }
            Err(why) => why,
        };
        self.changed(|c| c.recovery_attempted = true);
        progress.say(&format!("not ready; trying one recovery: {why}"));
        let recovered = if let Some(recover) = &tier.recover {
            let run = self
                .command(
                    &format!("{name}.recover {}", colour.as_str()),
                    recover,
                    colour,
                )
                .await;
            run.ok().then_some(()).ok_or_else(|| run.failure())
        } else if let Some(url) = &tier.recover_url {
            let url = url.replace("{port}", &port.to_string());
            match super::probe::client(readiness.request_timeout)
                .post(&url)
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => Err(format!("POST {url} answered HTTP {}", r.status().as_u16())),
                Err(e) => Err(format!("POST {url}: {e}")),
            }
        } else {
            Err("the plan has no recover command and no recover_url".into())
        };
        self.with_report(|r| {
            r.notes.push(format!(
                "recovery of {name} {}: {}",
                colour.as_str(),
                recovered.clone().err().unwrap_or_else(|| "done".into())
            ))
        });
        let seen = |s| self.with_report(|r| r.snapshot(s));
        match ready_gate(tier, port, colour.as_str(), readiness, progress, seen).await {
            Ok(polls) => {
                self.with_report(|r| {
                    r.notes.push(format!(
                        "{name} {} became ready after the recovery",
                        colour.as_str()
                    ))
                });
                Ok(format!(
                    "{name} {} ready after one recovery ({polls} poll(s))",
                    colour.as_str()
                ))
            }
            Err(again) => {
                self.changed(|c| c.recovery_failed = true);
                Err(Fault::new(
                    format!("{why}; one recovery was tried and it is still not ready: {again}"),
                    format!("read the {name}'s own log ({}/{}-{name}-{}.log for a background start) and its health endpoints; the live colour kept serving", self.plan.logs_dir.display(), self.env, colour.as_str()),
                ))
            }
        }
    }
}

fn join(items: &[&String]) -> String {
    items
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
