//! Connecting to the database and applying migrations (once, under a cross-process lock).

use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::pool::PoolConnectionMetadata;
use sea_orm::sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sea_orm::sqlx::{ConnectOptions as _, Connection};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    DbErr, SqlxSqliteConnector, Statement, TransactionTrait,
};
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
    if url.starts_with("sqlite:") {
        return connect_sqlite(config).await;
    }
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(config.db_max_connections)
        .min_connections(0)
        .connect_timeout(config.db_connect_timeout)
        .acquire_timeout(config.db_acquire_timeout)
        .idle_timeout(Duration::from_secs(300))
        .sqlx_logging(false)
        .test_before_acquire(true)
        .connect_lazy(true);
    Database::connect(options).await
}

async fn connect_sqlite(config: &Config) -> Result<DatabaseConnection, DbErr> {
    let url = config.database_url.expose_secret();
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|e| DbErr::Custom(format!("bad SQLite URL: {e}")))?
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true)
        // Checkpoints run in the background (below), not in whichever commit happens to fill
        // the WAL: that commit would otherwise wait milliseconds for the copy and its fsync,
        // and so would every request queued behind it.
        .pragma("wal_autocheckpoint", "0")
        .disable_statement_logging();
    // Opening runs the pragmas, and switching a new file to WAL needs it to itself: a process
    // starting beside another that is creating the file meets SQLITE_BUSY at once (SQLite skips
    // the busy handler there), so opening is retried as the busy timeout would wait.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let pool = loop {
        let opened = SqlitePoolOptions::new()
            .max_connections(config.db_max_connections)
            .min_connections(0)
            .acquire_timeout(config.db_acquire_timeout)
            .idle_timeout(Duration::from_secs(300))
            // A pooled SQLite connection is a file handle that cannot go stale: pinging it
            // before every query only costs a round trip to its worker thread.
            .test_before_acquire(false)
            .after_release(discard_if_in_transaction)
            .connect_with(options.clone())
            .await
            .map_err(|e| DbErr::Conn(sea_orm::RuntimeErr::SqlxError(e)));
        match opened {
            Err(err) if is_busy(&err) && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            other => break other?,
        }
    };
    let db = SqlxSqliteConnector::from_sqlx_sqlite_pool(pool);
    tokio::spawn(checkpoint_loop(db.clone()));
    Ok(db)
}

/// Keeps a returned SQLite connection only when it is outside any transaction and may write.
///
/// A connection opened while the file could not be written (a read-only mount, an immutable
/// file) is read-only for good, even once the file is writable again; kept, it would answer
/// `SQLITE_READONLY` for ever and hold the breaker open. It is closed, and the next one opened
/// afresh.
///
/// After `SQLITE_FULL` or an I/O error SQLite may roll a transaction back by itself; the
/// driver's `ROLLBACK` then fails and the driver still counts the connection as inside a
/// transaction. Its next `BEGIN` becomes a `SAVEPOINT` and a failed statement there a
/// `ROLLBACK TO`, which leaves a real transaction open holding the write lock: every write
/// that lands on it is answered as committed and never is, and every other writer waits.
/// Such a connection is closed here (which rolls back whatever it holds), never reused.
fn discard_if_in_transaction(
    conn: &mut SqliteConnection,
    _meta: PoolConnectionMetadata,
) -> Pin<Box<dyn Future<Output = Result<bool, sea_orm::sqlx::Error>> + Send + '_>> {
    Box::pin(async move {
        // Locking the handle first runs any rollback the dropped transaction queued.
        let mut handle = conn.lock_handle().await?;
        // SAFETY: the handle is locked for this call, so the pointer is a live connection that
        // no other thread uses meanwhile; `sqlite3_get_autocommit` only reads its state.
        let autocommit =
            unsafe { libsqlite3_sys::sqlite3_get_autocommit(handle.as_raw_handle().as_ptr()) };
        // SAFETY: as above; `sqlite3_db_readonly` only reads the state of the named database.
        let read_only = unsafe {
            libsqlite3_sys::sqlite3_db_readonly(handle.as_raw_handle().as_ptr(), c"main".as_ptr())
        } == 1;
        drop(handle);
        if read_only {
            tracing::warn!(
                "a database connection was opened read-only (the file could not be written); it is closed, not reused"
            );
            return Ok(false);
        }
        let clean = autocommit != 0 && !conn.is_in_transaction();
        if !clean {
            tracing::warn!(
                "a database connection was left inside a transaction after an error; it is closed, not reused"
            );
        }
        Ok(clean)
    })
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

/// [`connect`] for a command-line command: on failure, says why on stderr (the location masked)
/// and gives `None`.
pub async fn connect_for_command(config: &Config) -> Option<DatabaseConnection> {
    match connect(config).await {
        Ok(conn) => Some(conn),
        Err(err) => {
            eprintln!(
                "opsdoctor: cannot open the database {}: {err}",
                config.database_location()
            );
            None
        }
    }
}

/// Key of the PostgreSQL advisory lock migrations run under ("opsd", "migr").
const MIGRATION_LOCK: (i32, i32) = (0x6f70_7364, 0x6d69_6772);

/// Applies every pending migration; returns the names applied. Tables a Prisma app created
/// first are adopted when they equal the contract, and refused, naming each difference, when
/// they do not (`migration::adopt_existing`, under the same lock).
///
/// Under a cross-process lock, so that processes starting together on an empty database apply
/// the migrations once: the first takes the lock (a PostgreSQL advisory transaction lock; on
/// SQLite the database's write lock) and applies them inside its transaction, the others wait
/// and then find nothing pending. A migration that fails rolls back with the whole batch.
pub async fn migrate_up(db: &DatabaseConnection) -> Result<Vec<String>, DbErr> {
    let txn = lock_for_migrations(db).await?;
    migration::adopt_existing(&txn).await?;
    let pending: Vec<String> = Migrator::get_pending_migrations(&txn)
        .await?
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    if !pending.is_empty() {
        Migrator::up(&txn, None).await?;
    }
    txn.commit().await?;
    Ok(pending)
}

/// How long a process waits for another's migrations before giving up.
const MIGRATION_LOCK_WAIT: Duration = Duration::from_secs(120);

/// A transaction holding the migration lock.
async fn lock_for_migrations(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    if db.get_database_backend() == DbBackend::Postgres {
        let txn = db.begin().await?;
        txn.execute(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock($1, $2)",
            [MIGRATION_LOCK.0.into(), MIGRATION_LOCK.1.into()],
        ))
        .await?;
        return Ok(txn);
    }
    // SQLite: writing the header's user version (to its own value) takes the write lock before
    // any table exists to write to. A transaction that read first and finds another writer is
    // refused at once (SQLITE_BUSY, to avoid a deadlock) rather than queued, so it lets go of
    // its read and asks again until the other process's migrations are done.
    let deadline = tokio::time::Instant::now() + MIGRATION_LOCK_WAIT;
    loop {
        let txn = db.begin().await?;
        let taken = async {
            let version = txn
                .query_one(Statement::from_string(
                    DbBackend::Sqlite,
                    "PRAGMA user_version",
                ))
                .await?
                .and_then(|row| row.try_get_by_index::<i32>(0).ok())
                .unwrap_or(0);
            txn.execute_unprepared(&format!("PRAGMA user_version = {version}"))
                .await
                .map(|_| ())
        }
        .await;
        match taken {
            Ok(()) => return Ok(txn),
            Err(err) if is_busy(&err) && tokio::time::Instant::now() < deadline => {
                txn.rollback().await?;
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            Err(err) => return Err(err),
        }
    }
}

/// SQLite's "database is locked" (SQLITE_BUSY, primary code 5).
fn is_busy(err: &DbErr) -> bool {
    let (DbErr::Exec(sea_orm::RuntimeErr::SqlxError(e))
    | DbErr::Query(sea_orm::RuntimeErr::SqlxError(e))
    | DbErr::Conn(sea_orm::RuntimeErr::SqlxError(e))) = err
    else {
        return false;
    };
    e.as_database_error()
        .and_then(|d| d.code())
        .and_then(|c| c.parse::<i32>().ok())
        .is_some_and(|c| c & 0xff == 5)
}
