//! Creates `OpsDeploy` and `OpsGateEvaluation`: deploy records and the gate verdicts given for them.

use sea_orm_migration::prelude::*;

use crate::{run_script, BackendSql};

pub(crate) const UP: BackendSql = BackendSql {
    postgres: include_str!("../sql/postgres/m20261122_000003_ops_deploy_gate.up.sql"),
    sqlite: include_str!("../sql/sqlite/m20261122_000003_ops_deploy_gate.up.sql"),
};

const DOWN: BackendSql = BackendSql {
    postgres: include_str!("../sql/postgres/m20261122_000003_ops_deploy_gate.down.sql"),
    sqlite: include_str!("../sql/sqlite/m20261122_000003_ops_deploy_gate.down.sql"),
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(manager, &UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(manager, &DOWN).await
    }
}
