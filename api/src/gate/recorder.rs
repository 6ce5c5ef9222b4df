//! Stores gate evaluations off the request path: a probe-style caller gets its verdict without
//! waiting for a database write, and rows are inserted in batches of what arrived within
//! [`LINGER`].
//!
//! Readers of evaluations call [`Recorder::flush`] first, so what was answered is always visible
//! to whoever asks next; shutdown flushes too.

use std::time::Duration;

use entity::ops_gate_evaluation as evaluation;
use sea_orm::{DatabaseConnection, EntityTrait};
use tokio::sync::{mpsc, oneshot};

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

#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Message>,
}

impl Recorder {
    /// Starts the writer task.
    pub fn spawn(db: DatabaseConnection) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write_loop(db, rx));
        Self { tx }
    }

    /// Queues a row.
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
}

async fn write_loop(db: DatabaseConnection, mut rx: mpsc::Receiver<Message>) {
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
            let count = rows.len();
            if let Err(err) = evaluation::Entity::insert_many(rows)
                .exec_without_returning(&db)
                .await
            {
                tracing::error!(error = %err, count, "storing gate evaluations failed");
            }
        }
        // Rows queued before a flush were in this batch or an earlier one: all written now.
        for done in flushes {
            let _ = done.send(());
        }
    }
}
