//! The incident feed: timeline events of chosen types, oldest first, from a point in time on,
//! each with its incident, for a reader that follows every transition (the notifier).

use chrono::NaiveDateTime;
use entity::{ops_incident as incident, ops_incident_event as event, EventType};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::{IncidentStore, StoreError};
use crate::kernel::{after_cond, Cursor};

impl IncidentStore {
    /// Events of these types created at or after `from` (and after `after`, when given), in
    /// `(createdAt, id)` order, at most `limit`, each with its incident.
    pub async fn events_from(
        &self,
        types: &[EventType],
        from: NaiveDateTime,
        after: Option<&Cursor>,
        limit: u64,
    ) -> Result<Vec<(event::Model, Option<incident::Model>)>, StoreError> {
        let mut query = event::Entity::find()
            .filter(event::Column::EventType.is_in(types.iter().copied()))
            .filter(event::Column::CreatedAt.gte(self.stamp(from)));
        if let Some(after) = after {
            query = query.filter(after_cond(
                event::Column::CreatedAt,
                event::Column::Id,
                after,
                self.backend(),
            ));
        }
        Ok(query
            .find_also_related(incident::Entity)
            .order_by_asc(event::Column::CreatedAt)
            .order_by_asc(event::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?)
    }
}
