//! The `OpsIncidentEvent` table: one step of an incident's timeline, deleted with its incident.

use sea_orm::entity::prelude::*;

use crate::{JsonDoc, Timestamp};

use crate::enums::EventType;

/// A row of `OpsIncidentEvent`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "OpsIncidentEvent")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false, column_type = "Text")]
    pub id: String,
    #[sea_orm(column_name = "incidentId", column_type = "Text")]
    pub incident_id: String,
    #[sea_orm(column_name = "createdAt", column_type = "DateTime")]
    pub created_at: Timestamp,
    #[sea_orm(column_name = "eventType")]
    pub event_type: EventType,
    #[sea_orm(column_type = "Text")]
    pub message: String,
    #[sea_orm(column_name = "metadataJson", column_type = "JsonBinary")]
    pub metadata_json: JsonDoc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::ops_incident::Entity",
        from = "Column::IncidentId",
        to = "super::ops_incident::Column::Id",
        on_update = "Cascade",
        on_delete = "Cascade"
    )]
    Incident,
}

impl Related<super::ops_incident::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Incident.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
