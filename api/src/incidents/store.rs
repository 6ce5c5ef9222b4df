//! The incident store: opens (with fingerprint dedupe), extends, resolves and queries incidents.
//!
//! It takes a `DatabaseConnection` and knows nothing of HTTP, so the doctor and the gate can open
//! incidents through the same code the API uses.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{NaiveDateTime, SubsecRound, Utc};
use entity::{
    ops_incident as incident, ops_incident_event as event, Category, EventType, Severity,
};
use sea_orm::sea_query::{Alias, Asterisk, Expr, Order, Query, SimpleExpr, UnionType};
use sea_orm::{
    ActiveEnum, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection,
    DbBackend, DbErr, EntityTrait, FromQueryResult, Iterable, QueryFilter, QueryOrder, QuerySelect,
    QueryTrait, Statement, TransactionTrait,
};
use serde_json::{json, Map, Value};
use tokio::sync::Mutex;

use checks::write_health::{AsDbErr, WriteHealth};

use super::cursor::Cursor;

/// Namespace for this service's PostgreSQL advisory locks, so they never collide with an app's.
const ADVISORY_LOCK_CLASS: i32 = 0x6f70_7364; // "opsd"

/// Why a store operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("incident `{0}` does not exist")]
    NotFound(String),
    #[error("incident `{id}` was already resolved at {resolved_at}")]
    AlreadyResolved { id: String, resolved_at: String },
    #[error("incident `{0}` is resolved; report a new incident instead of extending it")]
    Resolved(String),
    #[error("deploy `{id}` already finished as {status}")]
    DeployFinished { id: String, status: String },
    #[error(transparent)]
    Db(#[from] DbErr),
}

impl AsDbErr for StoreError {
    fn as_db_err(&self) -> Option<&DbErr> {
        match self {
            Self::Db(err) => Some(err),
            _ => None,
        }
    }
}

/// A new incident as reported.
#[derive(Debug, Clone)]
pub struct NewIncident {
    pub severity: Severity,
    pub category: Category,
    pub summary: String,
    pub details: Map<String, Value>,
    /// Reports with the same fingerprint extend one open incident instead of opening another.
    pub fingerprint: Option<String>,
    /// Extra metadata for the `DETECTED` event (links to related records, say).
    pub event_metadata: Map<String, Value>,
}

/// A timeline event to append.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event_type: EventType,
    pub message: String,
    pub metadata: Map<String, Value>,
}

/// What reporting an incident did.
#[derive(Debug, Clone)]
pub struct Opened {
    pub incident: incident::Model,
    pub event: event::Model,
    /// True when an open incident with the same fingerprint was extended instead.
    pub deduplicated: bool,
}

/// One page of a keyset-paginated listing.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<Cursor>,
}

/// Whether to list open or resolved incidents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenState {
    Open,
    Resolved,
}

/// Filters for listing incidents; all optional and combined with AND.
#[derive(Debug, Clone, Default)]
pub struct IncidentFilter {
    pub state: Option<OpenState>,
    pub category: Option<Category>,
    pub severity: Option<Severity>,
    pub since: Option<NaiveDateTime>,
    pub until: Option<NaiveDateTime>,
    pub fingerprint: Option<String>,
}

/// Filters for the cross-incident timeline.
#[derive(Debug, Clone, Default)]
pub struct TimelineFilter {
    pub since: Option<NaiveDateTime>,
    pub until: Option<NaiveDateTime>,
    pub event_type: Option<EventType>,
}

/// Counts of open incidents and the mean time to resolve.
#[derive(Debug, Clone)]
pub struct IncidentStats {
    pub open_total: u64,
    pub open_by_category: BTreeMap<Category, u64>,
    pub open_by_severity: BTreeMap<Severity, u64>,
    pub open_by_category_and_severity: Vec<(Category, Severity, u64)>,
    pub resolved_total: u64,
    pub mean_time_to_resolve_seconds: Option<f64>,
}

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

/// Now, at the millisecond precision the schema stores (`TIMESTAMP(3)`).
pub fn now() -> NaiveDateTime {
    Utc::now().naive_utc().trunc_subsecs(3)
}

/// A new Prisma-compatible id (CUID v1, as Prisma's `cuid()` makes).
pub fn new_id() -> String {
    cuid::cuid1()
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

    fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    async fn write_guard(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
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
        let outcome = async {
            let _guard = self.write_guard().await;
            let txn = self.db.begin().await?;
            match self.backend() {
                DbBackend::Postgres => {
                    if let Some(fp) = &new.fingerprint {
                        // Held until commit: every process reporting this fingerprint queues here.
                        txn.execute(Statement::from_sql_and_values(
                            DbBackend::Postgres,
                            "SELECT pg_advisory_xact_lock($1, hashtext($2))",
                            [ADVISORY_LOCK_CLASS.into(), fp.clone().into()],
                        ))
                        .await?;
                    }
                }
                DbBackend::Sqlite => {
                    // Take SQLite's write lock first (like BEGIN IMMEDIATE), so that the read below
                    // cannot go stale before our write: other processes wait on busy_timeout.
                    txn.execute_unprepared(r#"UPDATE "OpsIncident" SET "id" = "id" WHERE 1 = 0"#)
                        .await?;
                }
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
                    query.one(&txn).await?
                }
                None => None,
            };

            let at = now();
            let mut details = new.details;
            if let Some(fp) = &new.fingerprint {
                details.insert("fingerprint".to_owned(), Value::String(fp.clone()));
            }

            let (incident, deduplicated) = match existing {
                Some(found) => (found, true),
                None => {
                    let model = incident::ActiveModel {
                        id: Set(new_id()),
                        created_at: Set(at),
                        severity: Set(new.severity),
                        category: Set(new.category),
                        summary: Set(new.summary.clone()),
                        details_json: Set(Value::Object(details.clone())),
                        resolved_at: Set(None),
                        resolution_notes: Set(None),
                    };
                    (
                        incident::Entity::insert(model)
                            .exec_with_returning(&txn)
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
                &txn,
                &incident.id,
                at,
                EventType::Detected,
                new.summary,
                metadata.as_object().cloned().unwrap_or_default(),
            )
            .await?;
            txn.commit().await?;
            Ok(Opened {
                incident,
                event,
                deduplicated,
            })

        }
        .await;
        self.observed(outcome)
    }

    /// Appends a timeline event to an open incident. `RESOLVED` goes through [`Self::resolve`].
    #[tracing::instrument(skip_all, fields(incident_id = %id))]
    pub async fn append_event(&self, id: &str, new: NewEvent) -> Result<event::Model, StoreError> {
        let outcome = async {
            let found = self
                .get(id)
                .await?
                .ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
            if found.resolved_at.is_some() {
                return Err(StoreError::Resolved(id.to_owned()));
            }
            let _guard = self.write_guard().await;
            match insert_event(
                &self.db,
                id,
                now(),
                new.event_type,
                new.message,
                new.metadata,
            )
            .await
            {
                Err(err) if is_foreign_key_violation(&err) => {
                    Err(StoreError::NotFound(id.to_owned()))
                }
                other => Ok(other?),
            }
        }
        .await;
        self.observed(outcome)
    }

    /// Resolves an open incident and appends `RESOLVED`; resolving twice is refused.
    #[tracing::instrument(skip_all, fields(incident_id = %id))]
    pub async fn resolve(
        &self,
        id: &str,
        notes: Option<String>,
        metadata: Map<String, Value>,
    ) -> Result<(incident::Model, event::Model), StoreError> {
        let outcome = async {
            let _guard = self.write_guard().await;
            let txn = self.db.begin().await?;
            let at = now();
            // The update is the first statement: it takes the row (PostgreSQL) or file (SQLite) lock,
            // so of two concurrent resolves exactly one sees the incident open.
            let updated = incident::Entity::update_many()
                .col_expr(incident::Column::ResolvedAt, Expr::value(at))
                .col_expr(
                    incident::Column::ResolutionNotes,
                    Expr::value(notes.clone()),
                )
                .filter(incident::Column::Id.eq(id))
                .filter(incident::Column::ResolvedAt.is_null())
                .exec(&txn)
                .await?;
            if updated.rows_affected == 0 {
                let found = incident::Entity::find_by_id(id).one(&txn).await?;
                txn.rollback().await?;
                return Err(match found {
                    Some(found) => StoreError::AlreadyResolved {
                        id: id.to_owned(),
                        resolved_at: found
                            .resolved_at
                            .map(|t| super::dto::timestamp(&t))
                            .unwrap_or_default(),
                    },
                    None => StoreError::NotFound(id.to_owned()),
                });
            }
            let message = notes.unwrap_or_else(|| "resolved".to_owned());
            let event = insert_event(&txn, id, at, EventType::Resolved, message, metadata).await?;
            let incident = incident::Entity::find_by_id(id)
                .one(&txn)
                .await?
                .ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
            txn.commit().await?;
            Ok((incident, event))
        }
        .await;
        self.observed(outcome)
    }

    /// Open incidents whose `detailsJson` has every given key equal to the given text value.
    pub async fn open_with_details(
        &self,
        details: &[(&str, &str)],
    ) -> Result<Vec<incident::Model>, StoreError> {
        let mut query = incident::Entity::find().filter(incident::Column::ResolvedAt.is_null());
        for (key, value) in details {
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(StoreError::Db(DbErr::Custom(format!(
                    "`{key}` is not a valid details key"
                ))));
            }
            query = query.filter(
                Expr::expr(Expr::cust(format!(
                    r#""OpsIncident"."detailsJson" ->> '{key}'"#
                )))
                .eq(*value),
            );
        }
        Ok(query
            .order_by_asc(incident::Column::CreatedAt)
            .all(&self.db)
            .await?)
    }

    /// How many events of a type an incident's timeline holds.
    pub async fn count_events(&self, id: &str, event_type: EventType) -> Result<u64, StoreError> {
        use sea_orm::PaginatorTrait;
        Ok(event::Entity::find()
            .filter(event::Column::IncidentId.eq(id))
            .filter(event::Column::EventType.eq(event_type))
            .count(&self.db)
            .await?)
    }

    /// Raises an open incident to CRITICAL and appends `ESCALATED`.
    #[tracing::instrument(skip_all, fields(incident_id = %id))]
    pub async fn escalate(
        &self,
        id: &str,
        message: String,
        metadata: Map<String, Value>,
    ) -> Result<event::Model, StoreError> {
        let outcome = async {
            let _guard = self.write_guard().await;
            let txn = self.db.begin().await?;
            let updated = incident::Entity::update_many()
                .col_expr(incident::Column::Severity, Severity::Critical.as_enum())
                .filter(incident::Column::Id.eq(id))
                .filter(incident::Column::ResolvedAt.is_null())
                .exec(&txn)
                .await?;
            if updated.rows_affected == 0 {
                txn.rollback().await?;
                return Err(StoreError::Resolved(id.to_owned()));
            }
            let event =
                insert_event(&txn, id, now(), EventType::Escalated, message, metadata).await?;
            txn.commit().await?;
            Ok(event)
        }
        .await;
        self.observed(outcome)
    }

    /// The most recent events of the given types across incidents, newest first.
    pub async fn recent_events(
        &self,
        types: &[EventType],
        limit: u64,
    ) -> Result<Vec<event::Model>, StoreError> {
        Ok(event::Entity::find()
            .filter(event::Column::EventType.is_in(types.iter().copied()))
            .order_by_desc(event::Column::CreatedAt)
            .order_by_desc(event::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?)
    }

    pub async fn get(&self, id: &str) -> Result<Option<incident::Model>, StoreError> {
        Ok(incident::Entity::find_by_id(id).one(&self.db).await?)
    }

    /// An incident's timeline, oldest first.
    pub async fn events(
        &self,
        id: &str,
        limit: u64,
        after: Option<&Cursor>,
    ) -> Result<Page<event::Model>, StoreError> {
        let mut query = event::Entity::find().filter(event::Column::IncidentId.eq(id));
        if let Some(c) = after {
            query = query.filter(after_cond(event::Column::CreatedAt, event::Column::Id, c));
        }
        let rows = query
            .order_by_asc(event::Column::CreatedAt)
            .order_by_asc(event::Column::Id)
            .limit(limit + 1)
            .all(&self.db)
            .await?;
        Ok(paginate(rows, limit, |e| Cursor {
            created_at: e.created_at,
            id: e.id.clone(),
        }))
    }

    /// Incidents matching `filter`, newest first.
    pub async fn list(
        &self,
        filter: &IncidentFilter,
        limit: u64,
        before: Option<&Cursor>,
    ) -> Result<Page<incident::Model>, StoreError> {
        use incident::Column as C;
        let mut cond = Condition::all();
        match filter.state {
            Some(OpenState::Open) => cond = cond.add(C::ResolvedAt.is_null()),
            Some(OpenState::Resolved) => cond = cond.add(C::ResolvedAt.is_not_null()),
            None => {}
        }
        if let Some(category) = filter.category {
            cond = cond.add(C::Category.eq(category));
        }
        if let Some(severity) = filter.severity {
            cond = cond.add(C::Severity.eq(severity));
        }
        if let Some(since) = filter.since {
            cond = cond.add(C::CreatedAt.gte(since));
        }
        if let Some(until) = filter.until {
            cond = cond.add(C::CreatedAt.lt(until));
        }
        if let Some(fp) = &filter.fingerprint {
            cond = cond.add(Expr::expr(fingerprint_expr()).eq(fp.as_str()));
        }
        if let Some(c) = before {
            cond = cond.add(before_cond(C::CreatedAt, C::Id, c));
        }
        let rows = incident::Entity::find()
            .filter(cond)
            .order_by_desc(C::CreatedAt)
            .order_by_desc(C::Id)
            .limit(limit + 1)
            .all(&self.db)
            .await?;
        Ok(paginate(rows, limit, |i| Cursor {
            created_at: i.created_at,
            id: i.id.clone(),
        }))
    }

    /// Events across all incidents, oldest first, with the incidents they belong to.
    pub async fn timeline(
        &self,
        filter: &TimelineFilter,
        limit: u64,
        after: Option<&Cursor>,
    ) -> Result<(Page<event::Model>, HashMap<String, incident::Model>), StoreError> {
        use event::Column as C;
        let mut cond = Condition::all();
        if let Some(since) = filter.since {
            cond = cond.add(C::CreatedAt.gte(since));
        }
        if let Some(until) = filter.until {
            cond = cond.add(C::CreatedAt.lt(until));
        }
        if let Some(c) = after {
            cond = cond.add(after_cond(C::CreatedAt, C::Id, c));
        }
        // The contract indexes events by (eventType, createdAt), not by createdAt alone: one
        // ordered, limited scan per event type, merged in one statement, reads only what the
        // page needs: SELECT * FROM (SELECT * FROM (… ORDER BY LIMIT) UNION ALL …) ORDER BY LIMIT.
        let types: Vec<EventType> = match filter.event_type {
            Some(t) => vec![t],
            None => EventType::iter().collect(),
        };
        let branch = |(n, t): (usize, EventType)| {
            let scan = event::Entity::find()
                .filter(cond.clone())
                .filter(C::EventType.eq(t))
                .order_by_asc(C::CreatedAt)
                .order_by_asc(C::Id)
                .limit(limit + 1)
                .into_query();
            Query::select()
                .column(Asterisk)
                .from_subquery(scan, Alias::new(format!("t{n}")))
                .to_owned()
        };
        let mut branches = types.into_iter().enumerate().map(branch);
        let mut merged = branches.next().unwrap_or_else(Query::select);
        for b in branches {
            merged.union(UnionType::All, b);
        }
        let page_query = Query::select()
            .column(Asterisk)
            .from_subquery(merged, Alias::new("merged"))
            .order_by(C::CreatedAt, Order::Asc)
            .order_by(C::Id, Order::Asc)
            .limit(limit + 1)
            .to_owned();
        let rows = event::Model::find_by_statement(self.backend().build(&page_query))
            .all(&self.db)
            .await?;
        let page = paginate(rows, limit, |e| Cursor {
            created_at: e.created_at,
            id: e.id.clone(),
        });
        let mut ids: Vec<&str> = page.items.iter().map(|e| e.incident_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let incidents = if ids.is_empty() {
            HashMap::new()
        } else {
            incident::Entity::find()
                .filter(incident::Column::Id.is_in(ids))
                .all(&self.db)
                .await?
                .into_iter()
                .map(|i| (i.id.clone(), i))
                .collect()
        };
        Ok((page, incidents))
    }

    /// Open counts by category and severity, and the mean time to resolve (optionally of
    /// incidents created since a time).
    pub async fn stats(&self, since: Option<NaiveDateTime>) -> Result<IncidentStats, StoreError> {
        use incident::Column as C;
        let open: Vec<(Category, Severity, i64)> = incident::Entity::find()
            .select_only()
            .column(C::Category)
            .column(C::Severity)
            .column_as(Expr::col(C::Id).count(), "n")
            .filter(C::ResolvedAt.is_null())
            .group_by(C::Category)
            .group_by(C::Severity)
            .into_tuple()
            .all(&self.db)
            .await?;

        let mut stats = IncidentStats {
            open_total: 0,
            open_by_category: BTreeMap::new(),
            open_by_severity: BTreeMap::new(),
            open_by_category_and_severity: Vec::new(),
            resolved_total: 0,
            mean_time_to_resolve_seconds: None,
        };
        for (category, severity, n) in open {
            let n = u64::try_from(n).unwrap_or(0);
            stats.open_total += n;
            *stats.open_by_category.entry(category).or_default() += n;
            *stats.open_by_severity.entry(severity).or_default() += n;
            stats
                .open_by_category_and_severity
                .push((category, severity, n));
        }
        stats.open_by_category_and_severity.sort();

        #[derive(FromQueryResult)]
        struct Resolved {
            n: i64,
            mean: Option<f64>,
        }
        let backend = self.backend();
        let seconds = match backend {
            DbBackend::Postgres => r#"EXTRACT(EPOCH FROM ("resolvedAt" - "createdAt"))::float8"#,
            _ => r#"(julianday("resolvedAt") - julianday("createdAt")) * 86400.0"#,
        };
        let since_clause = match (backend, since) {
            (_, None) => String::new(),
            (DbBackend::Postgres, Some(_)) => r#" AND "createdAt" >= $1"#.to_owned(),
            (_, Some(_)) => r#" AND "createdAt" >= ?"#.to_owned(),
        };
        let sql = format!(
            r#"SELECT COUNT(*) AS n, AVG({seconds}) AS mean FROM "OpsIncident" WHERE "resolvedAt" IS NOT NULL{since_clause}"#
        );
        let values: Vec<sea_orm::Value> = since.into_iter().map(Into::into).collect();
        let resolved =
            Resolved::find_by_statement(Statement::from_sql_and_values(backend, sql, values))
                .one(&self.db)
                .await?;
        if let Some(r) = resolved {
            stats.resolved_total = u64::try_from(r.n).unwrap_or(0);
            stats.mean_time_to_resolve_seconds = r.mean.map(|m| (m * 1000.0).round() / 1000.0);
        }
        Ok(stats)
    }
}

async fn insert_event<C: ConnectionTrait>(
    db: &C,
    incident_id: &str,
    at: NaiveDateTime,
    event_type: EventType,
    message: String,
    metadata: Map<String, Value>,
) -> Result<event::Model, DbErr> {
    let model = event::ActiveModel {
        id: Set(new_id()),
        incident_id: Set(incident_id.to_owned()),
        created_at: Set(at),
        event_type: Set(event_type),
        message: Set(message),
        metadata_json: Set(Value::Object(metadata)),
    };
    event::Entity::insert(model).exec_with_returning(db).await
}

fn is_foreign_key_violation(err: &DbErr) -> bool {
    matches!(
        err.sql_err(),
        Some(sea_orm::SqlErr::ForeignKeyConstraintViolation(_))
    )
}

/// Rows strictly after the cursor in ascending `(createdAt, id)` order. The redundant
/// `createdAt >= c` lets an index on `createdAt` seek to the cursor instead of scanning to it.
fn after_cond<T: ColumnTrait>(created: T, id: T, c: &Cursor) -> Condition {
    Condition::all().add(created.gte(c.created_at)).add(
        Condition::any().add(created.gt(c.created_at)).add(
            Condition::all()
                .add(created.eq(c.created_at))
                .add(id.gt(c.id.as_str())),
        ),
    )
}

/// Rows strictly before the cursor in descending `(createdAt, id)` order (with the same
/// redundant bound as [`after_cond`]).
pub(crate) fn before_cond<T: ColumnTrait>(created: T, id: T, c: &Cursor) -> Condition {
    Condition::all().add(created.lte(c.created_at)).add(
        Condition::any().add(created.lt(c.created_at)).add(
            Condition::all()
                .add(created.eq(c.created_at))
                .add(id.lt(c.id.as_str())),
        ),
    )
}

/// Trims the look-ahead row and derives the next cursor from the last row kept.
pub(crate) fn paginate<T>(mut rows: Vec<T>, limit: u64, key: impl Fn(&T) -> Cursor) -> Page<T> {
    let more = rows.len() as u64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next = if more { rows.last().map(key) } else { None };
    Page { items: rows, next }
}
