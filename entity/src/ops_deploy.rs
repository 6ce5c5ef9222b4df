//! The `OpsDeploy` table: one deploy of a release to an environment, from start to finish.

use sea_orm::entity::prelude::*;

use crate::Timestamp;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "OpsDeploy")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false, column_type = "Text")]
    pub id: String,
    /// When the deploy started.
    #[sea_orm(column_name = "createdAt", column_type = "DateTime")]
    pub created_at: Timestamp,
    #[sea_orm(column_type = "Text")]
    pub environment: String,
    #[sea_orm(column_type = "Text")]
    pub version: String,
    #[sea_orm(column_name = "gitSha", column_type = "Text", nullable)]
    pub git_sha: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub strategy: Option<String>,
    #[sea_orm(column_name = "startedBy", column_type = "Text", nullable)]
    pub started_by: Option<String>,
    /// CI run id, Argo analysis run, Flagger checksum …
    #[sea_orm(column_name = "externalIdsJson", column_type = "JsonBinary")]
    pub external_ids_json: Json,
    /// `running`, `succeeded`, `failed`, `rolled_back` or `canceled`.
    #[sea_orm(column_type = "Text")]
    pub status: String,
    #[sea_orm(column_name = "finishedAt", column_type = "DateTime", nullable)]
    pub finished_at: Option<Timestamp>,
    #[sea_orm(column_type = "Text", nullable)]
    pub reason: Option<String>,
    #[sea_orm(column_name = "reportJson", column_type = "JsonBinary", nullable)]
    pub report_json: Option<Json>,
    /// The `DEPLOY` incident a failed or rolled-back deploy opened.
    #[sea_orm(column_name = "incidentId", column_type = "Text", nullable)]
    pub incident_id: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::ops_gate_evaluation::Entity")]
    Gates,
}

impl Related<super::ops_gate_evaluation::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Gates.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
