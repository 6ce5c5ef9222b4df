//! Locks for work that must run alone across processes (a deploy, a tunnel restart): an OS file
//! lock whose file says who holds it, and on PostgreSQL an advisory lock held by an open
//! transaction (so it is released when its holder dies with its connection); and what tells a
//! live holder from a dead one (this host's name, a process's start time).

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, Statement,
    TransactionTrait,
};

use crate::store::incidents::ADVISORY_LOCK_CLASS;

/// This host's name, as holders record it.
pub fn this_host() -> String {
    hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into())
}

/// Field 22 of `/proc/<pid>/stat`: when the process started, in clock ticks since boot, so a
/// reused pid is not mistaken for the process that held a lock.
pub fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces; count after it.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Why a file lock was not taken.
#[derive(Debug)]
pub enum FileLockError {
    /// Another process holds it; what its file said (its holder, if written yet).
    Held(String),
    Io(String),
}

/// An OS file lock held by this process; the file holds whatever the holder writes into it.
pub struct FileLock {
    file: File,
    pub path: PathBuf,
}

impl FileLock {
    /// Takes the lock on `path` (creating the file and its directory) without waiting. On success
    /// also gives what the file held before: a holder written there died without clearing it.
    pub fn try_take(path: &Path) -> Result<(Self, String), FileLockError> {
        let io = |e: std::io::Error| FileLockError::Io(format!("{}: {e}", path.display()));
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        let mut previous = String::new();
        let _ = file.read_to_string(&mut previous);
        match fs4::fs_std::FileExt::try_lock_exclusive(&file) {
            Ok(true) => Ok((
                Self {
                    file,
                    path: path.to_owned(),
                },
                previous,
            )),
            Ok(false) => Err(FileLockError::Held(previous)),
            Err(e) => Err(io(e)),
        }
    }

    /// Replaces the file's contents (the holder).
    pub fn write(&mut self, text: &str) -> Result<(), String> {
        self.file
            .set_len(0)
            .and_then(|()| self.file.rewind())
            .and_then(|()| self.file.write_all(text.as_bytes()))
            .and_then(|()| self.file.flush())
            .map_err(|e| format!("{}: {e}", self.path.display()))
    }

    /// Clears the holder and releases the lock.
    pub fn release(self) {
        let _ = self.file.set_len(0);
        let _ = fs4::fs_std::FileExt::unlock(&self.file);
    }
}

/// Whether the file lock is held by a live process now (probed without keeping it).
pub fn file_lock_held(path: &Path) -> bool {
    let Ok(file) = File::options().read(true).write(true).open(path) else {
        return false;
    };
    match fs4::fs_std::FileExt::try_lock_exclusive(&file) {
        Ok(true) => {
            let _ = fs4::fs_std::FileExt::unlock(&file);
            false
        }
        _ => true,
    }
}

/// Takes the PostgreSQL advisory lock named `key` (in opsdoctor's lock class) without waiting,
/// in a transaction that holds it until it is committed, rolled back or dropped. `label`, when
/// given, is set as the session's `application_name` for as long as the transaction lasts, so
/// [`pg_lock_holder`] can tell another process who holds it. `None`: another session holds it.
pub async fn pg_try_xact_lock(
    db: &DatabaseConnection,
    key: &str,
    label: Option<&str>,
) -> Result<Option<(DatabaseTransaction, i32)>, DbErr> {
    let txn = db.begin().await?;
    if let Some(label) = label {
        txn.execute(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT set_config('application_name', $1, true)",
            [label.into()],
        ))
        .await?;
    }
    let row = txn
        .query_one(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_try_advisory_xact_lock($1, hashtext($2)) AS got, pg_backend_pid() AS pid",
            [ADVISORY_LOCK_CLASS.into(), key.into()],
        ))
        .await?
        .ok_or_else(|| DbErr::Custom("no answer to the lock query".into()))?;
    let got: bool = row.try_get("", "got")?;
    let pid: i32 = row.try_get("", "pid")?;
    Ok(got.then_some((txn, pid)))
}

/// The session holding the advisory lock `key`, as PostgreSQL shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct PgHolder {
    /// The server process of the holder's connection.
    pub backend_pid: i32,
    /// The label the holder set ([`pg_try_xact_lock`]).
    pub label: String,
    /// When the holding transaction began.
    pub since: Option<DateTime<Utc>>,
    /// The holder's address as the server sees it (`None` over a Unix socket).
    pub client_addr: Option<String>,
}

/// Who holds the advisory lock `key` in this database (advisory locks are per database), if
/// anyone.
pub async fn pg_lock_holder(db: &DatabaseConnection, key: &str) -> Result<Option<PgHolder>, DbErr> {
    let row = db
        .query_one(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT a.pid, a.application_name AS label, a.xact_start AS since, \
                    host(a.client_addr) AS addr \
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 \
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
               AND l.classid = $1::int8::oid \
               AND l.objid = (hashtext($2)::int8 & 4294967295)::oid \
             LIMIT 1",
            [ADVISORY_LOCK_CLASS.into(), key.into()],
        ))
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    Ok(Some(PgHolder {
        backend_pid: row.try_get("", "pid")?,
        label: row
            .try_get::<Option<String>>("", "label")?
            .unwrap_or_default(),
        since: row.try_get("", "since")?,
        client_addr: row.try_get("", "addr")?,
    }))
}
