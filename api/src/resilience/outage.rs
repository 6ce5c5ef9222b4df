//! Telling a database outage from a refused write, and the outage's own incident: one CRITICAL
//! `DB` incident per outage (fingerprint dedupe makes it one across processes too), to which
//! other failures caused by the outage are attached.

use chrono::{DateTime, Utc};
use entity::{Category, EventType, Severity};
use sea_orm::{sqlx, ConnAcquireErr, DbErr, RuntimeErr};
use serde_json::{json, Map, Value};

use super::entry::{Entry, Target};
use crate::store::incidents::{NewEvent, NewIncident, Stamp, StoreError};

/// The fingerprint of the database outage incident.
pub const OUTAGE_FINGERPRINT: &str = "database:outage";

/// Why a store error means the database is unavailable (masked: a kind and a code, never the
/// driver's text, which may hold a host or a value); `None` when the database refused the write
/// for what it holds, or it conflicts.
pub fn outage_cause(err: &StoreError) -> Option<String> {
    match err {
        StoreError::Db(db) => db_err_cause(db),
        _ => None,
    }
}

/// [`outage_cause`] for a bare database error.
pub fn db_err_cause(err: &DbErr) -> Option<String> {
    match err {
        DbErr::ConnectionAcquire(ConnAcquireErr::Timeout) => {
            Some("no database connection could be acquired in time".to_owned())
        }
        DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed) => {
            Some("the database connection pool is closed".to_owned())
        }
        DbErr::Conn(RuntimeErr::SqlxError(e))
        | DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e)) => sqlx_cause(e),
        DbErr::Conn(_) => Some("cannot connect to the database".to_owned()),
        _ => None,
    }
}

fn sqlx_cause(err: &sqlx::Error) -> Option<String> {
    match err {
        sqlx::Error::Io(io) => Some(format!("database connection failed: {:?}", io.kind())),
        sqlx::Error::Tls(_) => Some("database TLS handshake failed".to_owned()),
        sqlx::Error::Protocol(_) => Some("the database connection broke off".to_owned()),
        sqlx::Error::PoolTimedOut => {
            Some("no database connection could be acquired in time".to_owned())
        }
        sqlx::Error::PoolClosed => Some("the database connection pool is closed".to_owned()),
        sqlx::Error::WorkerCrashed => Some("the database driver's worker stopped".to_owned()),
        sqlx::Error::Database(db) => {
            let code = db.code()?;
            let code = code.as_ref();
            if let Ok(extended) = code.parse::<i32>() {
                // SQLite: busy or locked (another process holds the lock), read-only, I/O
                // error, full, cannot open.
                let name = match extended & 0xff {
                    5 => "SQLITE_BUSY: the database is locked",
                    6 => "SQLITE_LOCKED: a table is locked",
                    8 => "SQLITE_READONLY: the database file is read-only",
                    10 => "SQLITE_IOERR: a disk I/O error occurred",
                    13 => "SQLITE_FULL: the disk is full",
                    14 => "SQLITE_CANTOPEN: the database file cannot be opened",
                    _ => return None,
                };
                return Some(name.to_owned());
            }
            // PostgreSQL: connection exceptions, shutdown, insufficient resources, system
            // errors, read-only transactions.
            let outage = code.starts_with("08")
                || code.starts_with("57P")
                || code.starts_with("53")
                || code.starts_with("58")
                || code == "25006";
            outage.then(|| format!("PostgreSQL error {code}"))
        }
        _ => None,
    }
}

fn details(cause: &str) -> Map<String, Value> {
    let mut details = Map::new();
    details.insert("source".into(), "breaker".into());
    details.insert("cause".into(), cause.into());
    details
}

/// The outage incident, detected at `since` (when the first failure of the outage was seen).
pub fn incident(since: DateTime<Utc>, cause: &str) -> Entry {
    let mut stamp = Stamp::now();
    stamp.at = chrono::SubsecRound::trunc_subsecs(since.naive_utc(), 3);
    Entry::OpenIncident {
        stamp,
        incident: NewIncident {
            severity: Severity::Critical,
            category: Category::Db,
            summary: format!("the database is unavailable: {cause}"),
            details: details(cause),
            fingerprint: Some(OUTAGE_FINGERPRINT.to_owned()),
            event_metadata: Map::new(),
        },
    }
}

/// Another failure caused by the outage, attached to the outage incident instead of opening
/// one of its own.
pub fn attach(what: &str, metadata: Value) -> Entry {
    Entry::AppendEvent {
        target: Target::Fingerprint(OUTAGE_FINGERPRINT.to_owned()),
        stamp: Stamp::now(),
        event: NewEvent {
            event_type: EventType::Detected,
            message: format!("{what} while the database is unavailable"),
            metadata: metadata.as_object().cloned().unwrap_or_default(),
        },
    }
}

/// Resolves the outage incident once the database is back and the spool has drained.
pub fn resolution() -> Entry {
    Entry::Resolve {
        target: Target::Fingerprint(OUTAGE_FINGERPRINT.to_owned()),
        stamp: Stamp::now(),
        notes: Some(
            "resolved automatically: the database answers again and every spooled write is stored"
                .to_owned(),
        ),
        metadata: json!({ "source": "breaker" })
            .as_object()
            .cloned()
            .unwrap_or_default(),
    }
}

/// The check reason an outage's cause shows as: the storage refusing writes (`write_failed`:
/// read-only, full, I/O error) or the database not answering (`unreachable`).
pub fn reason_of(cause: &str) -> checks::Reason {
    let storage = [
        "SQLITE_READONLY",
        "SQLITE_IOERR",
        "SQLITE_FULL",
        "SQLITE_CANTOPEN",
        "PostgreSQL error 53",
        "PostgreSQL error 58",
        "PostgreSQL error 25006",
    ];
    if storage.iter().any(|s| cause.starts_with(s)) {
        checks::Reason::WriteFailed
    } else {
        checks::Reason::Unreachable
    }
}

/// The CRITICAL incident written before the service exits for its supervisor to restart it.
pub fn persistent(open_for: std::time::Duration, cause: Option<String>) -> Entry {
    let cause = cause.unwrap_or_else(|| "the database does not answer".to_owned());
    let mut details = details(&cause);
    details.insert("openForMs".into(), (open_for.as_millis() as u64).into());
    Entry::OpenIncident {
        stamp: Stamp::now(),
        incident: NewIncident {
            severity: Severity::Critical,
            category: Category::Db,
            summary: format!(
                "the database has been unavailable for {} s ({cause}); opsdoctor exits for its supervisor to restart it",
                open_for.as_secs()
            ),
            details,
            fingerprint: Some("database:persistent-outage".to_owned()),
            event_metadata: Map::new(),
        },
    }
}
