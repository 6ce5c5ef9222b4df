//! Stores gate evaluations off the request path: a probe-style caller gets its verdict without
//! waiting for a database write, and rows are inserted in batches.
//!
//! Readers of evaluations call [`Recorder::flush`] first, so what was answered is always visible
//! to whoever asks next; shutdown flushes too.

use entity::ops_gate_evaluation as evaluation;
use sea_orm::{DatabaseConnection, EntityTrait};
use tokio::sync::{mpsc, oneshot};

/// Rows inserted per statement at most.
const BATCH: usize = 256;
/// Rows waiting at most; beyond it, callers wait for the writer (backpressure).
const QUEUE: usize = 8_192;

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
    while let Some(first) = rx.recv().await {
        let mut rows = Vec::new();
        let mut flushes = Vec::new();
        let mut next = Some(first);
        while let Some(message) = next {
            match message {
                Message::Row(row) => rows.push(*row),
                Message::Flush(done) => flushes.push(done),
            }
            next = if rows.len() < BATCH {
                rx.try_recv().ok()
            } else {
                None
            };
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
        for done in flushes {
            let _ = done.send(());
        }
    }
}
