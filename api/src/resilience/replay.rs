//! The two loops behind the breaker: the probe (a write-lock probe every interval while closed,
//! a half-open probe after each backoff while open) and the replay, which drains the spool in
//! order whenever the breaker is closed and something waits.

use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::Duration;

use sea_orm::{ConnectionTrait, DbErr, TransactionTrait};

use super::breaker::{BreakerState, Transition};
use super::entry::Entry;
use super::outage::{self, db_err_cause, OUTAGE_FINGERPRINT};
use super::Resilience;
use crate::store::incidents::StoreError;

/// Lines replayed between two rewrites of the spool: progress survives a crash mid-replay.
const CHUNK: usize = 64;

/// Whether the database takes a write now: a ping succeeds against a SQLite file that another
/// process holds locked, or that is read-only, and against a PostgreSQL standby, so the probe
/// asks for what writes need. On PostgreSQL it takes a write lock and writes nothing. On SQLite
/// taking the lock is not enough (a connection opened before the file turned read-only takes it,
/// and fails only when it writes the WAL), so it commits the header's user version unchanged:
/// one page to the WAL, no row touched.
async fn probe(this: &Resilience) -> Result<(), String> {
    let attempt = async {
        let txn = this.db.begin().await?;
        if txn.get_database_backend() == sea_orm::DbBackend::Sqlite {
            let version = txn
                .query_one(sea_orm::Statement::from_string(
                    sea_orm::DbBackend::Sqlite,
                    "PRAGMA user_version",
                ))
                .await?
                .and_then(|row| row.try_get_by_index::<i32>(0).ok())
                .unwrap_or(0);
            txn.execute_unprepared(&format!("PRAGMA user_version = {version}"))
                .await?;
            txn.commit().await?;
        } else {
            txn.execute_unprepared(r#"UPDATE "OpsIncident" SET "id" = "id" WHERE 1 = 0"#)
                .await?;
            txn.rollback().await?;
        }
        Ok::<(), DbErr>(())
    };
    let limit = this.settings.op_timeout.min(Duration::from_secs(1));
    match tokio::time::timeout(limit, attempt).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => match db_err_cause(&err) {
            Some(cause) => Err(cause),
            // Anything else (no table yet, before migrations) says nothing about reachability.
            None => Ok(()),
        },
        Err(_) => Err(this.timeout_cause()),
    }
}

/// One probe now, outside the loop's schedule (a recovery asked for it): a closed breaker
/// records the result, an open one turns half-open for it. Fresh connections are made as
/// needed, since the pool replaces a connection that fails its check on acquire.
pub(super) async fn probe_now(this: &Resilience) -> Result<(), String> {
    this.breaker.expedite();
    let half_open = match this.breaker.state() {
        BreakerState::Closed => false,
        _ => this.breaker.try_half_open().is_ok(),
    };
    let began = chrono::Utc::now();
    let outcome = probe(this).await;
    match &outcome {
        Ok(()) => {
            if this.breaker.success() == Transition::Closed {
                this.kick.notify_one();
            }
        }
        Err(cause) if half_open => {
            this.breaker.failure(cause);
        }
        Err(cause) => this.failed_since(cause, began),
    }
    outcome
}

pub(super) async fn probe_loop(weak: Weak<Resilience>) {
    loop {
        let Some(this) = weak.upgrade() else { return };
        let wait = match this.breaker.state() {
            BreakerState::Closed => match (chrono::Utc::now(), probe(&this).await) {
                (_, Ok(())) => {
                    this.breaker.success();
                    this.settings.probe_interval
                }
                (began, Err(cause)) => {
                    this.failed_since(&cause, began);
                    this.settings.probe_interval.min(Duration::from_millis(250))
                }
            },
            BreakerState::Open => match this.breaker.try_half_open() {
                Err(wait) => wait,
                Ok(()) => {
                    match probe(&this).await {
                        Ok(()) => {
                            if this.breaker.success() == Transition::Closed {
                                this.kick.notify_one();
                            }
                        }
                        Err(cause) => {
                            this.breaker.failure(&cause);
                        }
                    }
                    Duration::ZERO
                }
            },
            BreakerState::HalfOpen => Duration::from_millis(50),
        };
        drop(this);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

pub(super) async fn replay_loop(weak: Weak<Resilience>) {
    loop {
        let Some(this) = weak.upgrade() else { return };
        if this.breaker.is_closed() {
            drain(&this).await;
        }
        // Woken by a new spooled write or the breaker closing; a periodic look as a backstop.
        let kick = this.kick.clone();
        let mut changes = this.breaker.subscribe();
        drop(this);
        tokio::select! {
            () = kick.notified() => {}
            _ = changes.changed() => {}
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Replays the spool in order until it is empty or the database fails again; then resolves the
/// outage incident if one is open.
async fn drain(this: &Resilience) {
    loop {
        let pending = match this.spool.pending::<Entry>() {
            Ok(p) => p,
            Err(err) => {
                tracing::error!(error = %err, "the spool cannot be read; replay waits");
                return;
            }
        };
        if pending.is_empty() {
            break;
        }
        let total = pending.len();
        let mut done: Vec<Vec<u8>> = Vec::new();
        let mut stopped = false;
        for line in pending.into_iter().take(CHUNK) {
            let Some(entry) = line.entry else {
                done.push(line.raw);
                continue;
            };
            if matches!(&entry, Entry::OpenIncident { incident, .. } if incident.fingerprint.as_deref() == Some(OUTAGE_FINGERPRINT))
            {
                this.outage_open.store(true, Ordering::SeqCst);
            }
            let applied = tokio::time::timeout(
                this.settings.op_timeout,
                this.stores.apply(entry.clone(), true),
            )
            .await;
            match applied {
                Ok(Ok(_)) => {
                    this.counts.replayed.fetch_add(1, Ordering::Relaxed);
                    done.push(line.raw);
                }
                Ok(Err(err)) => match super::outage_cause(&err) {
                    Some(cause) => {
                        this.failed(&cause);
                        stopped = true;
                        break;
                    }
                    None => {
                        tracing::error!(kind = entry.kind(), error = %err, "a spooled write was refused at replay; it is kept in the spool's rejected file");
                        this.spool.keep_rejected(&entry, &err.to_string());
                        this.counts.rejected.fetch_add(1, Ordering::Relaxed);
                        done.push(line.raw);
                    }
                },
                Err(_) => {
                    this.failed(&this.timeout_cause());
                    stopped = true;
                    break;
                }
            }
        }
        let replayed = done.len();
        if let Err(err) = this.spool.remove_replayed(&done) {
            tracing::error!(error = %err, "the spool cannot be rewritten after replay; its lines will be replayed again (idempotently)");
            return;
        }
        tracing::info!(replayed, left = total - replayed, "spooled writes replayed");
        if stopped {
            return;
        }
    }
    // A recovery that is ending the outage records its outcome on the incident first.
    let held = this.resolution_holds.load(Ordering::SeqCst) > 0;
    if this.breaker.is_closed() && !held && this.outage_open.swap(false, Ordering::SeqCst) {
        match this.stores.apply(outage::resolution(), false).await {
            Ok(_) => tracing::info!("the database outage incident is resolved"),
            Err(StoreError::NotFound(_) | StoreError::AlreadyResolved { .. }) => {}
            Err(err) => {
                tracing::warn!(error = %err, "resolving the database outage incident failed; retrying");
                this.outage_open.store(true, Ordering::SeqCst);
            }
        }
    }
}
