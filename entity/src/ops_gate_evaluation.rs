//! The `OpsGateEvaluation` table: one gate verdict (may this release go live?) with its reasons.

use sea_orm::entity::prelude::*;

use crate::Timestamp;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "OpsGateEvaluation")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false, column_type = "Text")]
    pub id: String,
    #[sea_orm(column_name = "createdAt", column_type = "DateTime")]
    pub created_at: Timestamp,
    #[sea_orm(column_type = "Text")]
    pub environment: String,
    #[sea_orm(column_type = "Text")]
    pub release: String,
    /// `pass`, `partial` or `fail`.
    #[sea_orm(column_type = "Text")]
    pub verdict: String,
    #[sea_orm(column_type = "Text")]
    pub summary: String,
    /// Who asked: `api`, `flagger`, `cli`.
    #[sea_orm(column_type = "Text")]
    pub source: String,
    /// Each check's status, reason, latency and age, the required list and the maximum age.
    #[sea_orm(column_name = "checksJson", column_type = "JsonBinary")]
    pub checks_json: Json,
    #[sea_orm(column_name = "deployId", column_type = "Text", nullable)]
    pub deploy_id: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::ops_deploy::Entity",
        from = "Column::DeployId",
        to = "super::ops_deploy::Column::Id",
        on_update = "Cascade",
        on_delete = "SetNull"
    )]
    Deploy,
}

impl Related<super::ops_deploy::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Deploy.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
