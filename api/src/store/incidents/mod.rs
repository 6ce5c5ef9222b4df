//! The incident store, owner of `OpsIncident` and `OpsIncidentEvent`: opens (with fingerprint
//! dedupe), extends, escalates and resolves incidents here; reads them in [`read`].
//!
//! It takes a `DatabaseConnection` and knows nothing of HTTP, so the doctor and the gate can open
//! incidents through the same code the API uses.

use std::sync::Arc;

use chrono::NaiveDateTime;
use entity::{
    ops_incident as incident, ops_incident_event as event, EventType, Severity, Timestamp,
};
use sea_orm::sea_query::{Expr, SimpleExpr};
use sea_orm::{
    ActiveEnum, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend,
    DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Statement, TransactionTrait,
};
use serde_json::{json, Map, Value};
use tokio::sync::Mutex;

mod feed;
mod read;
mod types;

pub use read::{IncidentFilter, IncidentStats, OpenState, TimelineFilter};
pub use types::{
    NewEvent, NewIncident, Opened, Stamp, StoreError, MAX_FINGERPRINT_CHARS, MAX_MESSAGE_CHARS,
    MAX_SUMMARY_CHARS,
};

/// What [`IncidentStore::new`] feeds; re-exported so a store can be built without naming `checks`.
pub use checks::write_health::WriteHealth;

use crate::kernel::{new_id, now, timestamp};

/// Namespace for this service's PostgreSQL advisory locks, so they never collide with an app's.
pub(crate) const ADVISORY_LOCK_CLASS: i32 = 0x6f70_7364; // "opsd"

/// The incident store. Cheap to clone: a pool handle and a lock.
#[derive(Clone)]
pub struct IncidentStore {
    db: DatabaseConnection,
    /// What this process's writes met; the `database` check reads it.
    writes: WriteHealth,
    /// SQLite allows one writer at a time; serialising this process's writes here keeps them from
    /// spinning on the file lock. Other processes are held off by SQLite's own lock.
    sqlite_writes: Arc<Mutex<()>>,
}

fn fingerprint_expr() -> SimpleExpr {
    // `->>` extracts a text value on PostgreSQL's JSONB and on SQLite (3.38+) alike.
    Expr::cust(r#""OpsIncident"."detailsJson" ->> 'fingerprint'"#)
}

impl IncidentStore {
    pub fn new(db: DatabaseConnection, writes: WriteHealth) -> Self {
        Self {
            db,
            writes,
            sqlite_writes: Arc::new(Mutex::new(())),
        }
    }

    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// The record of refused writes this store (and every store sharing its connection) feeds.
    pub fn write_health(&self) -> &WriteHealth {
        &self.writes
    }

    /// Passes a write's outcome through [`WriteHealth::observe`].
    fn observed<T>(&self, outcome: Result<T, StoreError>) -> Result<T, StoreError> {
        self.writes.observe(&outcome);
        outcome
    }

    pub fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    /// Serialises this process's SQLite writes (see `sqlite_writes`); a no-op on PostgreSQL.
    pub(crate) async fn write_guard(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match self.backend() {
            DbBackend::Sqlite => Some(self.sqlite_writes.lock().await),
            _ => None,
        }
    }

    /// Reports an incident. With a fingerprint, an open incident with the same fingerprint is
    /// extended with a `DETECTED` event instead; concurrent reports, from any number of processes,
    /// end with exactly one open incident per fingerprint.
    #[tracing::instrument(skip_all, fields(category = ?new.category, severity = ?new.severity))]
    pub async fn open(&self, new: NewIncident) -> Result<Opened, StoreError> {
        self.open_stamped(new, Stamp::now()).await
    }

    /// [`Self::open`] with the ids and time given (a spooled report replayed): with
    /// `stamp.replay`, a report whose event is already stored is not applied again.
    pub async fn open_stamped(&self, new: NewIncident, stamp: Stamp) -> Result<Opened, StoreError> {
        let outcome = async {
            let _guard = self.write_guard().await;
            let txn = self.db.begin().await?;
            let opened = self.open_in_stamped(&txn, new, stamp).await?;
            txn.commit().await?;
            Ok(opened)
        }
        .await;
        self.observed(outcome)
    }

    /// [`Self::open`] inside the caller's transaction (which holds [`Self::write_guard`]), for a
    /// write that must commit together with the incident.
    pub(crate) async fn open_in_stamped<C: ConnectionTrait>(
        &self,
        conn: &C,
        new: NewIncident,
        stamp: Stamp,
    ) -> Result<Opened, StoreError> {
        match self.backend() {
            DbBackend::Postgres => {
                if let Some(fp) = &new.fingerprint {
                    // Held until commit: every process reporting this fingerprint queues here.
                    conn.execute(Statement::from_sql_and_values(
                        DbBackend::Postgres,
                        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
                        [ADVISORY_LOCK_CLASS.into(), fp.clone().into()],
                    ))
                    .await?;
                }
            }
            DbBackend::Sqlite => take_sqlite_write_lock(conn).await?,
            DbBackend::MySql => {}
        }

        let existing = match &new.fingerprint {
            Some(fp) => {
                let mut query = incident::Entity::find()
                    .filter(incident::Column::ResolvedAt.is_null())
                    .filter(Expr::expr(fingerprint_expr()).eq(fp.as_str()))
                    .order_by_asc(incident::Column::CreatedAt);
                if self.backend() == DbBackend::Postgres {
                    // A concurrent resolve either waits for our commit, or commits first and
                    // the row no longer matches: never an event on a resolved incident.
                    query = query.lock_exclusive();
                }
                query.one(conn).await?
            }
            None => None,
        };
        if stamp.replay {
            if let Some(done) = stored_event(conn, &stamp.event_id).await? {
                let incident = incident::Entity::find_by_id(&done.incident_id)
                    .one(conn)
                    .await?
                    .ok_or_else(|| StoreError::NotFound(done.incident_id.clone()))?;
                let deduplicated = incident.id != stamp.incident_id;
                return Ok(Opened {
                    incident,
                    event: done,
                    deduplicated,
                });
            }
        }

        let at = stamp.at;
        let mut details = new.details;
        if let Some(fp) = &new.fingerprint {
            details.insert("fingerprint".to_owned(), Value::String(fp.clone()));
        }

        let (incident, deduplicated) = match existing {
            Some(found) => (found, true),
            None => {
                let model = incident::ActiveModel {
                    id: Set(stamp.incident_id.clone()),
                    created_at: Set(Timestamp::new(at, conn.get_database_backend())),
                    severity: Set(new.severity),
                    category: Set(new.category),
                    summary: Set(new.summary.clone()),
                    details_json: Set(Value::Object(details.clone()).into()),
                    resolved_at: Set(None),
                    resolution_notes: Set(None),
                };
                (
                    incident::Entity::insert(model)
                        .exec_with_returning(conn)
                        .await?,
                    false,
                )
            }
        };

        let mut metadata = if deduplicated {
            json!({ "severity": new.severity, "summary": new.summary, "details": Value::Object(details), "repeat": true })
        } else {
            json!({ "severity": new.severity })
        };
        if let Some(m) = metadata.as_object_mut() {
            m.extend(new.event_metadata);
        }
        let event = insert_event(
            conn,
            stamp.event_id,
            &incident.id,
            at,
            EventType::Detected,
            new.summary,
            metadata.as_object().cloned().unwrap_or_default(),
        )
        .await?;
        Ok(Opened {
            incident,
            event,
            deduplicated,
        })
    }

    /// Appends a timeline event to an open incident. `RESOLVED` goes through [`Self::resolve`].
    ///
    /// The check that the incident is open and the insert are one transaction holding the
    /// incident's lock, so an event never lands after a concurrent `RESOLVED`.
    #[tracing::instrument(skip_all, fields(incident_id = %id))]
    pub async fn append_event(&self, id: &str, new: NewEvent) -> Result<event::Model, StoreError> {
        self.append_event_stamped(id, new, Stamp::now()).await
    }

    /// [`Self::append_event`] with the event's id and time given; with `stamp.replay`, an event
    /// already stored is returned as it is.
    pub async fn append_event_stamped(
        &self,
        id: &str,
        new: NewEvent,
        stamp: Stamp,
    ) -> Result<event::Model, StoreError> {
        let outcome = async {
            let _guard = self.write_guard().await;
            let txn = self.db.begin().await?;
            if stamp.replay {
                if let Some(done) = stored_event(&txn, &stamp.event_id).await? {
                    return Ok(done);
                }
            }
            self.lock_open_incident(&txn, id).await?;
            let event = insert_event(
                &txn,
                stamp.event_id,
                id,
                stamp.at,
                new.event_type,
                new.message,
                new.metadata,
            )
            .await?;
            txn.commit().await?;
            Ok(event)
        }
        .await;
        self.observed(outcome)
    }

    /// Resolves an open incident and appends `RESOLVED`; resolving twice is refused.
    ///
    /// The time is taken once the incident is locked, and is later than every event already on
    /// it, so `RESOLVED` is always the last event of a timeline.
    #[tracing::instrument(skip_all, fields(incident_id = %id))]
    pub async fn resolve(
        &self,
        id: &str,
        notes: Option<String>,
        metadata: Map<String, Value>,
    ) -> Result<(incident::Model, event::Model), StoreError> {
        self.resolve_stamped(id, notes, metadata, Stamp::now())
            .await
    }

    /// [`Self::resolve`] with the event's id and time given; with `stamp.replay`, a resolve
    /// already stored is returned as it is.
    pub async fn resolve_stamped(
        &self,
        id: &str,
        notes: Option<String>,
        metadata: Map<String, Value>,
        stamp: Stamp,
    ) -> Result<(incident::Model, event::Model), StoreError> {
        let outcome = async {
            let _guard = self.write_guard().await;
            let txn = self.db.begin().await?;
            let found = self.lock_incident(&txn, id).await?;
            if stamp.replay {
                if let Some(done) = stored_event(&txn, &stamp.event_id).await? {
                    return Ok((found, done));
                }
            }
            if let Some(resolved_at) = found.resolved_at {
                txn.rollback().await?;
                return Err(StoreError::AlreadyResolved {
                    id: id.to_owned(),
                    resolved_at: timestamp(&resolved_at),
                });
            }
            let at = after_last_event(&txn, id, stamp.at).await?;
            incident::Entity::update_many()
                .col_expr(incident::Column::ResolvedAt, Expr::value(at))
                .col_expr(
                    incident::Column::ResolutionNotes,
                    Expr::value(notes.clone()),
                )
                .filter(incident::Column::Id.eq(id))
                .exec(&txn)
                .await?;
            let message = notes.clone().unwrap_or_else(|| "resolved".to_owned());
            let event = insert_event(
                &txn,
                stamp.event_id,
                id,
                at,
                EventType::Resolved,
                message,
                metadata,
            )
            .await?;
            let backend = txn.get_database_backend();
            txn.commit().await?;
            let incident = incident::Model {
                resolved_at: Some(Timestamp::new(at, backend)),
                resolution_notes: notes,
                ..found
            };
            Ok((incident, event))
        }
        .await;
        self.observed(outcome)
    }

    /// Raises an open incident to CRITICAL and appends `ESCALATED`, once: `None` when the
    /// incident was escalated already (by another process, say).
    #[tracing::instrument(skip_all, fields(incident_id = %id))]
    pub async fn escalate(
        &self,
        id: &str,
        message: String,
        metadata: Map<String, Value>,
    ) -> Result<Option<event::Model>, StoreError> {
        let outcome = async {
            let _guard = self.write_guard().await;
            let txn = self.db.begin().await?;
            self.lock_open_incident(&txn, id).await?;
            // Read under the lock: a concurrent escalation has committed by now, and is seen.
            let escalated = event::Entity::find()
                .filter(event::Column::IncidentId.eq(id))
                .filter(event::Column::EventType.eq(EventType::Escalated))
                .one(&txn)
                .await?;
            if escalated.is_some() {
                txn.rollback().await?;
                return Ok(None);
            }
            incident::Entity::update_many()
                .col_expr(incident::Column::Severity, Severity::Critical.as_enum())
                .filter(incident::Column::Id.eq(id))
                .exec(&txn)
                .await?;
            let event = insert_event(
                &txn,
                new_id(),
                id,
                now(),
                EventType::Escalated,
                message,
                metadata,
            )
            .await?;
            txn.commit().await?;
            Ok(Some(event))
        }
        .await;
        self.observed(outcome)
    }

    /// [`Self::lock_incident`], refusing a resolved incident (the transaction rolls back when it
    /// is dropped).
    async fn lock_open_incident<C: ConnectionTrait>(
        &self,
        conn: &C,
        id: &str,
    ) -> Result<incident::Model, StoreError> {
        let found = self.lock_incident(conn, id).await?;
        if found.resolved_at.is_some() {
            return Err(StoreError::Resolved(id.to_owned()));
        }
        Ok(found)
    }

    /// Locks an incident until the end of `conn`'s transaction and reads it as of the lock.
    ///
    /// PostgreSQL locks the row (`FOR UPDATE` waits for a concurrent resolve to commit, then
    /// returns the row as it committed); SQLite takes its write lock before reading.
    async fn lock_incident<C: ConnectionTrait>(
        &self,
        conn: &C,
        id: &str,
    ) -> Result<incident::Model, StoreError> {
        let mut query = incident::Entity::find_by_id(id);
        match self.backend() {
            DbBackend::Postgres => query = query.lock_exclusive(),
            DbBackend::Sqlite => take_sqlite_write_lock(conn).await?,
            DbBackend::MySql => {}
        }
        query
            .one(conn)
            .await?
            .ok_or_else(|| StoreError::NotFound(id.to_owned()))
    }
}

/// Takes SQLite's write lock now (like `BEGIN IMMEDIATE`), so that what the transaction reads
/// next cannot go stale before it writes: other processes wait on `busy_timeout`.
async fn take_sqlite_write_lock<C: ConnectionTrait>(conn: &C) -> Result<(), DbErr> {
    conn.execute_unprepared(r#"UPDATE "OpsIncident" SET "id" = "id" WHERE 1 = 0"#)
        .await?;
    Ok(())
}

/// `at`, or a millisecond after the incident's latest event if `at` has not passed it (two
/// events in one millisecond, or another process's clock ahead), so that the new event sorts last.
async fn after_last_event<C: ConnectionTrait>(
    conn: &C,
    incident_id: &str,
    at: NaiveDateTime,
) -> Result<NaiveDateTime, DbErr> {
    let latest = event::Entity::find()
        .filter(event::Column::IncidentId.eq(incident_id))
        .order_by_desc(event::Column::CreatedAt)
        .one(conn)
        .await?;
    Ok(match latest {
        Some(latest) if latest.created_at.at() >= at => {
            latest.created_at.at() + chrono::TimeDelta::milliseconds(1)
        }
        _ => at,
    })
}

/// The event with this id, if it is stored: how a replayed write finds it was applied already.
async fn stored_event<C: ConnectionTrait>(
    conn: &C,
    event_id: &str,
) -> Result<Option<event::Model>, DbErr> {
    event::Entity::find_by_id(event_id).one(conn).await
}

async fn insert_event<C: ConnectionTrait>(
    db: &C,
    event_id: String,
    incident_id: &str,
    at: NaiveDateTime,
    event_type: EventType,
    message: String,
    metadata: Map<String, Value>,
) -> Result<event::Model, DbErr> {
    let model = event::ActiveModel {
        id: Set(event_id),
        incident_id: Set(incident_id.to_owned()),
        created_at: Set(Timestamp::new(at, db.get_database_backend())),
        event_type: Set(event_type),
        message: Set(message),
        metadata_json: Set(Value::Object(metadata).into()),
    };
    event::Entity::insert(model).exec_with_returning(db).await
}
