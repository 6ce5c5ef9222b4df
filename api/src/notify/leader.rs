//! One notifier per database. On PostgreSQL, several opsdoctor processes share one database and
//! would each see every transition: the one holding a session advisory lock delivers, the others
//! stand by and take over when its connection goes (a crash or a stop closes it, which releases
//! the lock). A SQLite database belongs to one host, where the outbox's file lock already admits
//! one process per `NOTIFY_DIR`.

use std::time::Duration;

use sea_orm::sqlx::{self, Connection, PgConnection};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend};

/// The advisory lock's two keys: this service's namespace ("opsd") and "notf".
const LOCK: (i32, i32) = (0x6f70_7364, 0x6e6f_7466);

/// The right to deliver, held until dropped.
pub struct Leadership {
    /// The connection holding the lock, taken out of the pool so that dropping it closes it
    /// (a pooled connection would go back to the pool still holding the lock).
    lock: Option<PgConnection>,
}

impl Leadership {
    /// Waits until this process may deliver notifications for `db`.
    pub async fn acquire(db: &DatabaseConnection, poll: Duration) -> Self {
        if db.get_database_backend() != DbBackend::Postgres {
            return Self { lock: None };
        }
        let mut waiting = false;
        loop {
            match try_lock(db).await {
                Ok(Some(lock)) => {
                    if waiting {
                        tracing::info!("taking over notifications for this database");
                    }
                    return Self { lock: Some(lock) };
                }
                Ok(None) if !waiting => {
                    waiting = true;
                    tracing::info!("another opsdoctor process delivers notifications for this database; standing by");
                }
                Ok(None) => {}
                Err(err) => {
                    tracing::warn!(error = %err, "cannot take the notification lock; retrying")
                }
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// Whether the lock is still held: its connection still answers.
    pub async fn held(&mut self) -> bool {
        match &mut self.lock {
            None => true,
            Some(conn) => conn.ping().await.is_ok(),
        }
    }
}

async fn try_lock(db: &DatabaseConnection) -> Result<Option<PgConnection>, sqlx::Error> {
    let mut conn = db.get_postgres_connection_pool().acquire().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
        .bind(LOCK.0)
        .bind(LOCK.1)
        .fetch_one(&mut *conn)
        .await?;
    Ok(locked.then(|| conn.detach()))
}
