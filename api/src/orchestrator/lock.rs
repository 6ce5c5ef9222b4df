//! One deploy per environment at a time: an OS file lock on this host, and on PostgreSQL an
//! advisory lock held by a transaction for the whole deploy, with the holder (host, pid, process
//! start time, release, heartbeat) written beside each so a dead holder can be proven dead and
//! taken over.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, Statement};
use serde::{Deserialize, Serialize};

use super::command::alive;
pub use crate::locks::{file_lock_held, process_start, this_host};
use crate::locks::{pg_try_xact_lock, FileLock, FileLockError};
use crate::store::DeployStore;

/// Who holds (or held) an environment's deploy lock.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Holder {
    pub host: String,
    pub pid: u32,
    /// The process's start time in clock ticks since boot, so a reused pid is not mistaken for it.
    pub process_start: Option<u64>,
    pub release: String,
    pub deploy_id: Option<String>,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    /// On PostgreSQL: the server process of the connection that holds the advisory lock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg_backend_pid: Option<i32>,
}

impl Holder {
    pub fn me(release: &str) -> Self {
        let now = Utc::now();
        Self {
            host: this_host(),
            pid: std::process::id(),
            process_start: process_start(std::process::id()),
            release: release.to_owned(),
            deploy_id: None,
            started_at: now,
            heartbeat_at: now,
            pg_backend_pid: None,
        }
    }

    /// Whether the holder is provably gone: on this host its pid is gone or belongs to a process
    /// started at another time; elsewhere its heartbeat is older than the lease.
    pub fn is_dead(&self, lease: Duration) -> bool {
        if self.host == this_host() {
            return !alive(self.pid) || process_start(self.pid) != self.process_start;
        }
        let age = Utc::now().signed_duration_since(self.heartbeat_at);
        age.to_std().is_ok_and(|age| age > lease)
    }

    pub fn describe(&self) -> String {
        format!(
            "pid {} on {} deploying {} since {} (heartbeat {})",
            self.pid,
            self.host,
            self.release,
            self.started_at.format("%Y-%m-%dT%H:%M:%SZ"),
            self.heartbeat_at.format("%H:%M:%SZ")
        )
    }
}

/// Why the lock could not be taken.
#[derive(Debug)]
pub enum LockError {
    Held(Option<Holder>),
    Io(String),
}

/// A held deploy lock; dropping it releases both parts.
pub struct DeployLock {
    file: FileLock,
    pub path: PathBuf,
    /// The PostgreSQL transaction holding the advisory lock (rolled back when dropped).
    pg: Option<DatabaseTransaction>,
    pub holder: Holder,
    /// A dead holder this lock was taken over from.
    pub took_over: Option<Holder>,
}

pub fn lock_path(state_dir: &Path, env: &str) -> PathBuf {
    state_dir.join(format!("deploy-{env}.lock"))
}

/// The holder written in the lock file, if any.
pub fn read_holder(path: &Path) -> Option<Holder> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

impl DeployLock {
    /// Takes the lock once, without waiting.
    pub async fn try_acquire(
        state_dir: &Path,
        env: &str,
        release: &str,
        db: &DatabaseConnection,
        deploys: &DeployStore,
        lease: Duration,
    ) -> Result<Self, LockError> {
        let path = lock_path(state_dir, env);
        let (file, previous) = FileLock::try_take(&path).map_err(|e| match e {
            FileLockError::Held(text) => LockError::Held(serde_json::from_str(&text).ok()),
            FileLockError::Io(e) => LockError::Io(e),
        })?;
        let previous: Option<Holder> = serde_json::from_str(&previous).ok();
        // The OS lock is ours; a holder still written in the file died without releasing it.
        let mut took_over = previous.filter(|p| p.is_dead(lease));
        let mut holder = Holder::me(release);
        let pg = if db.get_database_backend() == DbBackend::Postgres {
            let (txn, backend_pid, dead) = pg_lock(db, env, deploys, lease).await?;
            holder.pg_backend_pid = Some(backend_pid);
            took_over = took_over.or(dead);
            Some(txn)
        } else {
            None
        };
        let mut lock = Self {
            file,
            path,
            pg,
            holder,
            took_over,
        };
        lock.write_holder().map_err(LockError::Io)?;
        Ok(lock)
    }

    /// Takes the lock, retrying every second until `wait` has passed.
    pub async fn acquire(
        state_dir: &Path,
        env: &str,
        release: &str,
        db: &DatabaseConnection,
        deploys: &DeployStore,
        lease: Duration,
        wait: Duration,
    ) -> Result<Self, LockError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut said = false;
        loop {
            match Self::try_acquire(state_dir, env, release, db, deploys, lease).await {
                Err(LockError::Held(holder)) if tokio::time::Instant::now() < deadline => {
                    if !said {
                        eprintln!(
                            "opsdoctor deploy: waiting up to {} for the lock held by {}",
                            humantime::format_duration(wait),
                            holder.map_or("another deploy".into(), |h| h.describe())
                        );
                        said = true;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                other => return other,
            }
        }
    }

    /// Rewrites the holder in the lock file (on every heartbeat).
    pub fn write_holder(&mut self) -> Result<(), String> {
        let text = serde_json::to_string_pretty(&self.holder).unwrap_or_default();
        self.file.write(&text)
    }

    pub fn heartbeat(&mut self) {
        self.holder.heartbeat_at = Utc::now();
        let _ = self.write_holder();
    }

    /// Releases both locks and clears the holder from the file.
    pub async fn release(mut self) {
        self.file.release();
        if let Some(txn) = self.pg.take() {
            let _ = txn.rollback().await;
        }
    }
}

/// The PostgreSQL advisory lock of an environment, held by a transaction that stays open for the
/// deploy. A holder whose heartbeat (on its running deploy's row) is older than the lease has its
/// connection terminated, which frees the lock for this deploy.
async fn pg_lock(
    db: &DatabaseConnection,
    env: &str,
    deploys: &DeployStore,
    lease: Duration,
) -> Result<(DatabaseTransaction, i32, Option<Holder>), LockError> {
    let io = |e: sea_orm::DbErr| LockError::Io(format!("database: {e}"));
    let key = format!("deploy-lock:{env}");
    let mut took_over = None;
    for attempt in 0..10 {
        if let Some((txn, pid)) = pg_try_xact_lock(db, &key, None).await.map_err(io)? {
            return Ok((txn, pid, took_over));
        }
        let holder = running_holder(deploys, env).await;
        match holder {
            Some(h) if h.is_dead(lease) && attempt == 0 => {
                if let Some(backend) = h.pg_backend_pid {
                    let _ = db
                        .execute(Statement::from_sql_and_values(
                            DbBackend::Postgres,
                            "SELECT pg_terminate_backend($1)",
                            [backend.into()],
                        ))
                        .await;
                }
                took_over = Some(h);
            }
            Some(h) if attempt == 0 || took_over.is_none() => {
                return Err(LockError::Held(Some(h)));
            }
            None if took_over.is_none() => return Err(LockError::Held(None)),
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Err(LockError::Held(took_over))
}

/// The holder recorded on the environment's running deploy, if any.
pub async fn running_holder(deploys: &DeployStore, env: &str) -> Option<Holder> {
    let running = deploys.running_in(env).await.ok()?;
    running.iter().find_map(|d| {
        let report = d.report_json.as_ref()?;
        serde_json::from_value(report.get("lock")?.get("holder")?.clone()).ok()
    })
}
