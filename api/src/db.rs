//! Connecting to the database and applying migrations.

use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr};
use secrecy::ExposeSecret;

use crate::config::Config;

/// Opens the pool. PostgreSQL connects lazily, so the service starts (and says "not ready")
/// while its database is down; SQLite creates its file and directory if missing.
pub async fn connect(config: &Config) -> Result<DatabaseConnection, DbErr> {
    if let Some(dir) = config.sqlite_dir() {
        std::fs::create_dir_all(&dir).map_err(|e| {
            DbErr::Custom(format!(
                "cannot create the SQLite directory {}: {e}",
                dir.display()
            ))
        })?;
    }
    let url = config.database_url.expose_secret();
    let is_sqlite = url.starts_with("sqlite:");
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(config.db_max_connections)
        .min_connections(0)
        .connect_timeout(config.db_connect_timeout)
        .acquire_timeout(config.db_acquire_timeout)
        .idle_timeout(Duration::from_secs(300))
        .sqlx_logging(false)
        // A pooled SQLite connection is a file handle that cannot go stale: pinging it before
        // every query only costs a round trip to its worker thread.
        .test_before_acquire(!is_sqlite)
        .connect_lazy(!is_sqlite);
    if is_sqlite {
        options.map_sqlx_sqlite_opts(|o| {
            o.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
                // Checkpoints run in the background (below), not in whichever commit happens to
                // fill the WAL: that commit would otherwise wait milliseconds for the copy and
                // its fsync, and so would every request queued behind it.
                .pragma("wal_autocheckpoint", "0")
        });
    }
    let db = Database::connect(options).await?;
    if is_sqlite {
        tokio::spawn(checkpoint_loop(db.clone()));
    }
    Ok(db)
}

/// How often the WAL is copied back into a SQLite database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// Copies the SQLite WAL into the database file every [`CHECKPOINT_EVERY`] without blocking
/// readers or writers (a `PASSIVE` checkpoint; what a reader still needs is copied next time).
/// Stops when the pool is closed.
async fn checkpoint_loop(db: DatabaseConnection) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match db
            .execute_unprepared("PRAGMA wal_checkpoint(PASSIVE)")
            .await
        {
            Ok(_) => {}
            Err(DbErr::ConnectionAcquire(sea_orm::ConnAcquireErr::ConnectionClosed)) => return,
            Err(err) => tracing::warn!(error = %err, "SQLite checkpoint failed"),
        }
    }
}

/// Applies every pending migration; returns the names applied.
pub async fn migrate_up(db: &DatabaseConnection) -> Result<Vec<String>, DbErr> {
    let pending: Vec<String> = Migrator::get_pending_migrations(db)
        .await?
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    if !pending.is_empty() {
        Migrator::up(db, None).await?;
    }
    Ok(pending)
}
