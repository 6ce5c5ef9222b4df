//! The evaluation store, owner of `OpsGateEvaluation`. Verdicts are written off the request
//! path: a probe-style caller gets its verdict without waiting for a database write, and rows
//! are inserted in batches of what arrived within [`LINGER`].
//!
//! Every read here flushes the writer first, so what was answered is always visible to whoever
//! asks next; shutdown flushes too.
//!
//! One row the database refuses costs only itself: a refused batch is split in halves and each
//! retried, down to the refused row, which is logged and dropped. A batch lost to the connection
//! is not split, since every retry would wait for the same connection again: it goes to the
//! sink given at [`EvaluationStore::spawn_with`] (the spool), so an answered verdict is not lost
//! with its batch when the database goes away.

use std::time::Duration;

use checks::write_health::WriteHealth;
use entity::ops_gate_evaluation as evaluation;
use sea_orm::sqlx::postgres::PgDatabaseError;
use sea_orm::sqlx::sqlite::SqliteError;
use sea_orm::{
    sqlx, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, RuntimeErr,
    TryIntoModel,
};
use tokio::sync::{mpsc, oneshot};

use crate::kernel::{newest_first, Cursor, Page};

/// Rows inserted per statement at most.
const BATCH: usize = 64;
/// How long the writer gathers rows before a commit, unless the batch fills or a reader asks
/// for a flush: the most a stored verdict trails its answer.
const LINGER: Duration = Duration::from_millis(20);
/// Rows waiting at most; beyond it, callers wait for the writer (backpressure).
const QUEUE: usize = 2_048;

enum Message {
    Row(Box<evaluation::ActiveModel>),
    Flush(oneshot::Sender<()>),
}

/// Where the writer hands rows it could not write because the database failed as a whole.
pub type LostSink = std::sync::Arc<dyn Fn(Vec<evaluation::Model>, &DbErr) + Send + Sync>;

/// Cheap to clone: a pool handle and the writer's queue.
#[derive(Clone)]
pub struct EvaluationStore {
    db: DatabaseConnection,
    tx: mpsc::Sender<Message>,
}

impl EvaluationStore {
    /// Starts the writer task; what its inserts meet goes to `writes`.
    pub fn spawn(db: DatabaseConnection, writes: WriteHealth) -> Self {
        Self::spawn_with(db, writes, None)
    }

    /// [`Self::spawn`], handing a batch lost to the database to `lost` instead of dropping it.
    pub fn spawn_with(db: DatabaseConnection, writes: WriteHealth, lost: Option<LostSink>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write_loop(db.clone(), writes, rx, lost));
        Self { db, tx }
    }

    /// Inserts rows made earlier (spooled verdicts, replayed); a row whose id is stored already
    /// is left as it is, so replaying twice stores each verdict once.
    pub async fn insert_replayed(&self, rows: Vec<evaluation::Model>) -> Result<(), DbErr> {
        if rows.is_empty() {
            return Ok(());
        }
        let models = rows.into_iter().map(evaluation::ActiveModel::from);
        evaluation::Entity::insert_many(models)
            .on_conflict(
                sea_orm::sea_query::OnConflict::column(evaluation::Column::Id)
                    .do_nothing()
                    .to_owned(),
            )
            .do_nothing()
            .exec_without_returning(&self.db)
            .await
            .map(|_| ())
    }

    /// Queues a row.
    /// `at` as this store's backend stores a time, for a row given to [`Self::record`].
    pub fn stamp(&self, at: chrono::NaiveDateTime) -> entity::Timestamp {
        entity::Timestamp::new(at, sea_orm::ConnectionTrait::get_database_backend(&self.db))
    }

    pub async fn record(&self, row: evaluation::ActiveModel) {
        if self.tx.send(Message::Row(Box::new(row))).await.is_err() {
            tracing::error!("the gate recorder has stopped; an evaluation was not stored");
        }
    }

    /// Waits until every row queued before this call is written (or failed and was logged).
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    /// Stored evaluations, newest first, optionally for one environment and release.
    pub async fn list(
        &self,
        environment: Option<&str>,
        release: Option<&str>,
        limit: u64,
        before: Option<&Cursor>,
    ) -> Result<Page<evaluation::Model>, DbErr> {
        use evaluation::Column as C;
        self.flush().await;
        let mut query = evaluation::Entity::find();
        if let Some(env) = environment {
            query = query.filter(C::Environment.eq(env));
        }
        if let Some(release) = release {
            query = query.filter(C::Release.eq(release));
        }
        newest_first(&self.db, query, (C::CreatedAt, C::Id), limit, before, |r| {
            Cursor {
                created_at: r.created_at.at(),
                id: r.id.clone(),
            }
        })
        .await
    }

    /// A deploy's evaluations, oldest first.
    pub async fn for_deploy(&self, deploy_id: &str) -> Result<Vec<evaluation::Model>, DbErr> {
        use evaluation::Column as C;
        self.flush().await;
        evaluation::Entity::find()
            .filter(C::DeployId.eq(deploy_id))
            .order_by_asc(C::CreatedAt)
            .order_by_asc(C::Id)
            .all(&self.db)
            .await
    }
}

async fn write_loop(
    db: DatabaseConnection,
    writes: WriteHealth,
    mut rx: mpsc::Receiver<Message>,
    lost: Option<LostSink>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        // Gather for a moment: one commit of many rows writes each touched page once, where a
        // commit per few rows writes the same table and index pages again and again.
        let deadline = tokio::time::Instant::now() + LINGER;
        while batch.len() < BATCH && !batch.iter().any(|m| matches!(m, Message::Flush(_))) {
            let room = BATCH - batch.len();
            match tokio::time::timeout_at(deadline, rx.recv_many(&mut batch, room)).await {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
        let mut rows = Vec::with_capacity(batch.len());
        let mut flushes = Vec::new();
        for message in batch.drain(..) {
            match message {
                Message::Row(row) => rows.push(*row),
                Message::Flush(done) => flushes.push(done),
            }
        }
        if !rows.is_empty() {
            store(&db, &writes, rows, lost.as_ref()).await;
        }
        // Rows queued before a flush were in this batch or an earlier one: all written now.
        for done in flushes {
            let _ = done.send(());
        }
    }
}

/// What became of a batch of rows.
#[derive(Debug, Default, PartialEq, Eq)]
struct Outcome {
    stored: usize,
    /// Refused by the database for what they hold; logged one by one.
    rejected: usize,
    /// Not written because the database could not be reached or failed as a whole.
    lost: usize,
}

/// Inserts `rows`, splitting a batch the database refuses until the refused rows stand alone.
async fn store(
    db: &DatabaseConnection,
    writes: &WriteHealth,
    rows: Vec<evaluation::ActiveModel>,
    lost: Option<&LostSink>,
) -> Outcome {
    let mut outcome = Outcome::default();
    // Parts still to insert, the next on top: halves are pushed second half first, so rows are
    // inserted in the order they were answered.
    let mut pending = vec![rows];
    while let Some(mut part) = pending.pop() {
        let count = part.len();
        let Err(err) = evaluation::Entity::insert_many(part.iter().cloned())
            .exec_without_returning(db)
            .await
        else {
            writes.committed();
            outcome.stored += count;
            continue;
        };
        if !refused_for_its_rows(&err) {
            writes.failed(&err);
            let count = count + pending.iter().map(Vec::len).sum::<usize>();
            outcome.lost += count;
            let Some(sink) = lost else {
                tracing::error!(error = %err, count, "storing gate evaluations failed; they are lost");
                break;
            };
            let rows: Vec<evaluation::Model> = std::iter::once(part)
                .chain(pending.drain(..).rev())
                .flatten()
                .filter_map(|row| row.try_into_model().ok())
                .collect();
            sink(rows, &err);
            break;
        }
        if count > 1 {
            let second = part.split_off(count / 2);
            pending.push(second);
            pending.push(part);
            continue;
        }
        // Which row, not what it holds: its text may be anything a client sent.
        let row = &part[0];
        tracing::error!(
            error = %err,
            gate_id = row.id.try_as_ref().map(String::as_str),
            source = row.source.try_as_ref().map(String::as_str),
            "the database refused a gate evaluation; it is not stored"
        );
        outcome.rejected += 1;
    }
    outcome
}

/// Whether the database refused the statement for the values of its rows (a data exception or
/// constraint violation), so that splitting the batch can save the other rows. Anything else —
/// no connection, a full disk, an I/O error — would fail every part alike.
fn refused_for_its_rows(err: &DbErr) -> bool {
    let (DbErr::Exec(RuntimeErr::SqlxError(sqlx::Error::Database(db)))
    | DbErr::Query(RuntimeErr::SqlxError(sqlx::Error::Database(db)))) = err
    else {
        return false;
    };
    if let Some(pg) = db.try_downcast_ref::<PgDatabaseError>() {
        // SQLSTATE classes: 22 data exception (e.g. a NUL in text or `jsonb`), 23 integrity
        // constraint violation, 54 program limit exceeded (e.g. an index row too large).
        return matches!(pg.code().get(..2), Some("22" | "23" | "54"));
    }
    if db.try_downcast_ref::<SqliteError>().is_some() {
        // The primary result code is the low byte of the extended one: SQLITE_TOOBIG (18),
        // SQLITE_CONSTRAINT (19), SQLITE_MISMATCH (20).
        let primary = db
            .code()
            .and_then(|c| c.parse::<i32>().ok())
            .map(|c| c & 0xff);
        return matches!(primary, Some(18..=20));
    }
    false
}

#[cfg(test)]
mod tests {
    use migration::{Migrator, MigratorTrait};
    use sea_orm::{ActiveValue::Set, ConnectOptions, Database};

    use super::*;

    fn row(id: &str, deploy_id: Option<&str>) -> evaluation::ActiveModel {
        evaluation::ActiveModel {
            id: Set(id.to_owned()),
            created_at: Set(entity::Timestamp::new(
                chrono::Utc::now().naive_utc(),
                sea_orm::DbBackend::Sqlite,
            )),
            environment: Set("prod".to_owned()),
            release: Set("v1".to_owned()),
            verdict: Set("pass".to_owned()),
            summary: Set("pass".to_owned()),
            source: Set("api".to_owned()),
            checks_json: Set(serde_json::json!({})),
            deploy_id: Set(deploy_id.map(str::to_owned)),
        }
    }

    async fn database() -> DatabaseConnection {
        // One connection: each connection to `sqlite::memory:` is a database of its own.
        let mut options = ConnectOptions::new("sqlite::memory:");
        options.max_connections(1).sqlx_logging(false);
        let db = Database::connect(options).await.unwrap();
        Migrator::up(&db, None).await.unwrap();
        db
    }

    #[tokio::test]
    async fn refused_rows_cost_only_themselves() {
        let db = database().await;
        let mut rows: Vec<_> = (0..40).map(|i| row(&format!("r{i:02}"), None)).collect();
        rows.insert(7, row("no-deploy", Some("missing")));
        rows.insert(30, row("r03", None));
        let outcome = store(&db, &WriteHealth::default(), rows, None).await;
        assert_eq!(
            outcome,
            Outcome {
                stored: 40,
                rejected: 2,
                lost: 0
            }
        );
        let stored = evaluation::Entity::find().all(&db).await.unwrap();
        assert_eq!(stored.len(), 40);
        assert!(stored.iter().all(|r| r.deploy_id.is_none()));
    }

    #[tokio::test]
    async fn a_batch_lost_to_the_connection_is_not_split() {
        let db = database().await;
        db.close_by_ref().await.unwrap();
        let rows: Vec<_> = (0..64).map(|i| row(&format!("r{i:02}"), None)).collect();
        let handed = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let into = handed.clone();
        let sink: LostSink = std::sync::Arc::new(move |rows, _| into.lock().unwrap().extend(rows));
        let outcome = store(&db, &WriteHealth::default(), rows, Some(&sink)).await;
        assert_eq!(
            outcome,
            Outcome {
                stored: 0,
                rejected: 0,
                lost: 64
            }
        );
        let handed = handed.lock().unwrap();
        assert_eq!(handed.len(), 64, "a lost batch goes to the sink whole");
        assert_eq!(handed[0].id, "r00");
        assert_eq!(handed[63].id, "r63");
    }
}
