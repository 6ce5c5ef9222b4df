//! The `OpsDoctorRun` table: one stored run of the check suite, with every check's result.

use sea_orm::entity::prelude::*;

use crate::Timestamp;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "OpsDoctorRun")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false, column_type = "Text")]
    pub id: String,
    /// When the run started.
    #[sea_orm(column_name = "createdAt", column_type = "DateTime")]
    pub created_at: Timestamp,
    #[sea_orm(column_name = "finishedAt", column_type = "DateTime")]
    pub finished_at: Timestamp,
    /// Who asked: `api` (POST /ops/doctor/run) or `monitor` (the background monitor).
    #[sea_orm(column_type = "Text")]
    pub trigger: String,
    /// Overall `pass`, `warn` or `fail`.
    #[sea_orm(column_type = "Text")]
    pub status: String,
    #[sea_orm(column_name = "durationMs")]
    pub duration_ms: i32,
    /// The array of check results, in the registry's order.
    #[sea_orm(column_name = "resultsJson", column_type = "JsonBinary")]
    pub results_json: Json,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
