//! Whether the database still accepts writes: a ping and a catalog read succeed on a full disk,
//! so the stores report what their writes met, and the `database` check (hence readiness and the
//! gate) fails `write_failed` until a later write commits.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use sea_orm::{DbErr, RuntimeErr};

/// The last write the storage refused, if no write has committed since.
#[derive(Debug, Clone)]
pub struct WriteFailure {
    pub at: DateTime<Utc>,
    /// The database's error code (SQLite's primary result code name, PostgreSQL's SQLSTATE).
    pub code: String,
    /// What the storage said, safe to show: an error code and its meaning, never a value.
    pub message: String,
}

/// Shared by every store of one process and by its `database` check. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct WriteHealth {
    last_failure: Arc<Mutex<Option<WriteFailure>>>,
}

impl WriteHealth {
    /// Notes what a write met: a storage failure sets the flag, a commit clears it; other
    /// outcomes (a constraint the client broke, a database that is down, which the ping already
    /// sees) leave it as it is.
    pub fn observe<T, E: AsDbErr>(&self, outcome: &Result<T, E>) {
        match outcome {
            Ok(_) => self.committed(),
            Err(err) => {
                if let Some(err) = err.as_db_err() {
                    self.failed(err);
                }
            }
        }
    }

    /// A write failed: sets the flag when the storage itself refused it.
    pub fn failed(&self, err: &DbErr) {
        if let Some((code, message)) = storage_failure(err) {
            tracing::error!(code, message, "the database refused a write");
            self.set(Some(WriteFailure {
                at: Utc::now(),
                code: code.to_owned(),
                message: message.to_owned(),
            }));
        }
    }

    /// A write committed: the storage accepts writes again.
    pub fn committed(&self) {
        if self.failure().is_some() {
            tracing::info!("the database accepts writes again");
            self.set(None);
        }
    }

    /// The last refused write, while no write has committed since.
    pub fn failure(&self) -> Option<WriteFailure> {
        self.last_failure.lock().ok()?.clone()
    }

    fn set(&self, value: Option<WriteFailure>) {
        if let Ok(mut slot) = self.last_failure.lock() {
            *slot = value;
        }
    }
}

/// Errors that may carry a database error.
pub trait AsDbErr {
    fn as_db_err(&self) -> Option<&DbErr>;
}

impl AsDbErr for DbErr {
    fn as_db_err(&self) -> Option<&DbErr> {
        Some(self)
    }
}

/// When the storage itself refuses a write (disk full, I/O error, read-only, corrupt), its code
/// and meaning; `None` for anything else.
pub fn storage_failure(err: &DbErr) -> Option<(&'static str, &'static str)> {
    let (DbErr::Exec(RuntimeErr::SqlxError(sqlx_err))
    | DbErr::Query(RuntimeErr::SqlxError(sqlx_err))) = err
    else {
        return None;
    };
    let code = sqlx_err.as_database_error()?.code()?;
    match code.parse::<i32>() {
        // SQLite: an extended result code whose low byte is the primary code.
        Ok(extended) => match extended & 0xff {
            8 => Some(("SQLITE_READONLY", "the database file is read-only")),
            10 => Some(("SQLITE_IOERR", "a disk I/O error occurred")),
            11 => Some(("SQLITE_CORRUPT", "the database file is malformed")),
            13 => Some((
                "SQLITE_FULL",
                "the disk (or the database's size limit) is full",
            )),
            14 => Some((
                "SQLITE_CANTOPEN",
                "a database or journal file cannot be opened",
            )),
            _ => None,
        },
        // PostgreSQL: class 53 (insufficient resources), 58 (system error), read-only.
        Err(_) => match code.as_ref() {
            "53100" => Some(("53100", "disk full")),
            "53200" => Some(("53200", "out of memory")),
            "25006" => Some(("25006", "the transaction is read-only")),
            c if c.starts_with("53") => Some(("53000", "insufficient resources")),
            c if c.starts_with("58") => Some(("58000", "system error (I/O)")),
            _ => None,
        },
    }
}
