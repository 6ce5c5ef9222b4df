//! Reading incidents and their events: single rows, filtered keyset listings, the
//! cross-incident timeline and the counts behind `/ops/incidents/stats`.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDateTime;
use entity::{
    ops_incident as incident, ops_incident_event as event, Category, EventType, Severity, Timestamp,
};
use sea_orm::sea_query::{Alias, Asterisk, Expr, Order, Query, UnionType};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbBackend, DbErr, EntityTrait, FromQueryResult,
    IdenStatic, Iterable, QueryFilter, QueryOrder, QuerySelect, QueryTrait, Statement,
};

use super::{fingerprint_expr, IncidentStore, StoreError};
use crate::kernel::{after_cond, newest_first, page_of, Cursor, Page};

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

impl IncidentStore {
    /// `t` as this store's backend stores a time, for a comparison with a time column.
    pub(super) fn stamp(&self, t: NaiveDateTime) -> Timestamp {
        Timestamp::new(t, self.backend())
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

    /// How many `DETECTED` events an incident has had since its last `RECOVERY_SUCCESS` (or
    /// ever, without one): the failing runs in a row. A passing run records `RECOVERY_SUCCESS`
    /// and resolves the incident; should the resolve not land, the recovery still ends the row.
    pub async fn detections_since_recovery(&self, id: &str) -> Result<u64, StoreError> {
        use sea_orm::PaginatorTrait;
        let recovered = event::Entity::find()
            .filter(event::Column::IncidentId.eq(id))
            .filter(event::Column::EventType.eq(EventType::RecoverySuccess))
            .order_by_desc(event::Column::CreatedAt)
            .order_by_desc(event::Column::Id)
            .one(&self.db)
            .await?;
        let mut query = event::Entity::find()
            .filter(event::Column::IncidentId.eq(id))
            .filter(event::Column::EventType.eq(EventType::Detected));
        if let Some(r) = recovered {
            let since = Cursor {
                created_at: r.created_at.at(),
                id: r.id,
            };
            query = query.filter(after_cond(
                event::Column::CreatedAt,
                event::Column::Id,
                &since,
                self.backend(),
            ));
        }
        Ok(query.count(&self.db).await?)
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
            query = query.filter(after_cond(
                event::Column::CreatedAt,
                event::Column::Id,
                c,
                self.backend(),
            ));
        }
        let statement = query
            .order_by_asc(event::Column::CreatedAt)
            .order_by_asc(event::Column::Id)
            .limit(limit + 1)
            .build(self.backend());
        let rows = self.db.query_all(statement).await?;
        let names = (
            event::Column::CreatedAt.as_str(),
            event::Column::Id.as_str(),
        );
        Ok(page_of(rows, limit, names, |e: &event::Model| Cursor {
            created_at: e.created_at.at(),
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
            cond = cond.add(C::CreatedAt.gte(self.stamp(since)));
        }
        if let Some(until) = filter.until {
            cond = cond.add(C::CreatedAt.lt(self.stamp(until)));
        }
        if let Some(fp) = &filter.fingerprint {
            cond = cond.add(Expr::expr(fingerprint_expr()).eq(fp.as_str()));
        }
        let query = incident::Entity::find().filter(cond);
        Ok(
            newest_first(&self.db, query, (C::CreatedAt, C::Id), limit, before, |i| {
                Cursor {
                    created_at: i.created_at.at(),
                    id: i.id.clone(),
                }
            })
            .await?,
        )
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
            cond = cond.add(C::CreatedAt.gte(self.stamp(since)));
        }
        if let Some(until) = filter.until {
            cond = cond.add(C::CreatedAt.lt(self.stamp(until)));
        }
        if let Some(c) = after {
            cond = cond.add(after_cond(C::CreatedAt, C::Id, c, self.backend()));
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
        let rows = self.db.query_all(self.backend().build(&page_query)).await?;
        let names = (
            event::Column::CreatedAt.as_str(),
            event::Column::Id.as_str(),
        );
        let page = page_of(rows, limit, names, |e: &event::Model| Cursor {
            created_at: e.created_at.at(),
            id: e.id.clone(),
        });
        let mut ids: Vec<&str> = page.items.iter().map(|e| e.incident_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let incidents = if ids.is_empty() {
            HashMap::new()
        } else {
            // Row by row: an incident this version cannot read leaves its events without the
            // short view, and the page stands.
            let statement = incident::Entity::find()
                .filter(incident::Column::Id.is_in(ids))
                .build(self.backend());
            self.db
                .query_all(statement)
                .await?
                .iter()
                .filter_map(|row| incident::Model::from_query_result(row, "").ok())
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
        let values: Vec<sea_orm::Value> = since.map(|t| self.stamp(t).into()).into_iter().collect();
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
