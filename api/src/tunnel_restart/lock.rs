//! The restart lock: an OS file lock on this host (`tunnel-restart.lock`, holding its holder), and
//! on PostgreSQL an advisory lock across hosts, held by a transaction whose session is labelled
//! with the holder. Never waited for: a second restart is refused at once, naming the holder.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend};

use super::types::{CrossHost, RestartHolder, RestartRefused};
use crate::locks::{
    file_lock_held, pg_lock_holder, pg_try_xact_lock, FileLock, FileLockError, PgHolder,
};
use crate::resilience::outage::db_err_cause;

/// The advisory lock's key (in opsdoctor's lock class; the deploy lock's are `deploy-lock:<env>`).
const PG_KEY: &str = "tunnel-restart";

pub fn lock_path(dir: &Path) -> PathBuf {
    dir.join("tunnel-restart.lock")
}

/// A held restart lock; [`RestartLock::release`] releases both parts (dropping it does too, less
/// tidily: the holder stays written in the file, unlocked).
pub struct RestartLock {
    file: FileLock,
    pg: Option<DatabaseTransaction>,
    pub holder: RestartHolder,
    pub cross_host: CrossHost,
}

impl RestartLock {
    /// Takes both parts without waiting, or says who holds the lock. `usable`: whether the
    /// database answers; without it only this host's file lock is taken.
    pub async fn try_take(
        dir: &Path,
        db: &DatabaseConnection,
        usable: bool,
        trigger: &str,
    ) -> Result<Self, RestartRefused> {
        let path = lock_path(dir);
        let mut file = match FileLock::try_take(&path) {
            Ok((file, _left_by_a_dead_holder)) => file,
            Err(FileLockError::Held(text)) => {
                return Err(RestartRefused::Held {
                    holder: file_holder(&path, &text).await,
                })
            }
            Err(FileLockError::Io(error)) => return Err(RestartRefused::Lock { error }),
        };
        let holder = RestartHolder::me(trigger);
        let (pg, cross_host) = match db.get_database_backend() {
            DbBackend::Postgres if usable => {
                match pg_try_xact_lock(db, PG_KEY, Some(&holder.label())).await {
                    Ok(Some((txn, _))) => (Some(txn), CrossHost::Held),
                    Ok(None) => {
                        file.release();
                        let holder = pg_holder(db).await.ok().flatten();
                        return Err(RestartRefused::Held { holder });
                    }
                    Err(e) => (None, unavailable(&e)),
                }
            }
            DbBackend::Postgres => (
                None,
                CrossHost::Unavailable {
                    error: "the database does not answer".into(),
                },
            ),
            _ => (None, CrossHost::NotNeeded),
        };
        let text = serde_json::to_string_pretty(&holder).unwrap_or_default();
        if let Err(error) = file.write(&text) {
            file.release();
            return Err(RestartRefused::Lock { error });
        }
        Ok(Self {
            file,
            pg,
            holder,
            cross_host,
        })
    }

    /// Clears the holder and releases both parts.
    pub async fn release(self) {
        self.file.release();
        if let Some(txn) = self.pg {
            let _ = txn.rollback().await;
        }
    }
}

fn unavailable(err: &sea_orm::DbErr) -> CrossHost {
    CrossHost::Unavailable {
        error: db_err_cause(err).unwrap_or_else(|| "the lock query failed".into()),
    }
}

/// The holder written in a held lock file. A holder that has just taken the lock may not have
/// written itself yet, so an empty file is read again for a moment.
async fn file_holder(path: &Path, first: &str) -> Option<RestartHolder> {
    let mut text = first.to_owned();
    for _ in 0..10 {
        if let Ok(holder) = serde_json::from_str(&text) {
            return Some(holder);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        text = std::fs::read_to_string(path).unwrap_or_default();
    }
    None
}

async fn pg_holder(db: &DatabaseConnection) -> Result<Option<RestartHolder>, sea_orm::DbErr> {
    Ok(pg_lock_holder(db, PG_KEY).await?.and_then(
        |PgHolder {
             label,
             since,
             client_addr,
             ..
         }| RestartHolder::from_label(&label, since, client_addr),
    ))
}

/// The restart running now: on this host from the lock file, else (PostgreSQL) on any host.
pub async fn current_holder(
    dir: &Path,
    db: &DatabaseConnection,
    usable: bool,
) -> Option<RestartHolder> {
    let path = lock_path(dir);
    if file_lock_held(&path) {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        return file_holder(&path, &text).await;
    }
    if usable && db.get_database_backend() == DbBackend::Postgres {
        return pg_holder(db).await.ok().flatten();
    }
    None
}

#[cfg(test)]
mod tests {
    use sea_orm::Database;

    use super::*;
    use crate::tunnel_restart::types::clean_trigger;

    #[test]
    fn a_holder_survives_its_session_label_and_triggers_are_kept_plain() {
        let mut holder = RestartHolder::me("Monitor Script:1");
        assert_eq!(holder.trigger, "monitor_script_1");
        assert_eq!(clean_trigger(""), "unknown");
        assert_eq!(clean_trigger("a-very-long-trigger-name").len(), 16);
        holder.host = "web-1.internal".into();
        let back = RestartHolder::from_label(&holder.label(), Some(holder.since), None)
            .expect("a restart's label");
        assert_eq!(back, holder);
        assert_eq!(RestartHolder::from_label("psql", None, None), None);
        holder.host = "h".repeat(80);
        assert_eq!(holder.label().len(), 63, "PostgreSQL keeps 63 bytes");
    }

    #[tokio::test]
    async fn a_second_restart_is_refused_at_once_naming_the_holder_until_it_releases() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::connect("sqlite::memory:").await.unwrap();
        let first = RestartLock::try_take(dir.path(), &db, true, "recovery")
            .await
            .expect("free");
        assert_eq!(first.cross_host, CrossHost::NotNeeded, "SQLite: one host");
        assert_eq!(
            current_holder(dir.path(), &db, true).await.as_ref(),
            Some(&first.holder)
        );
        let started = std::time::Instant::now();
        match RestartLock::try_take(dir.path(), &db, true, "cli").await {
            Err(RestartRefused::Held { holder: Some(h) }) => {
                assert_eq!(
                    (h.pid, h.trigger.as_str()),
                    (std::process::id(), "recovery")
                );
                assert_eq!(h.host, crate::locks::this_host());
            }
            Err(other) => panic!("refused for another reason: {other}"),
            Ok(_) => panic!("two restarts hold the lock"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "never waited for"
        );
        first.release().await;
        assert_eq!(current_holder(dir.path(), &db, true).await, None);
        let again = RestartLock::try_take(dir.path(), &db, true, "cli")
            .await
            .expect("free again");
        drop(again);
        assert!(
            RestartLock::try_take(dir.path(), &db, true, "cli")
                .await
                .is_ok(),
            "a holder that went away without releasing does not hold the lock"
        );
    }
}
