//! A running deploy's progress on its own row: the report so far (with the lock holder and its
//! heartbeat, which other hosts read to tell a live holder from a dead one), and the running
//! deploy of an environment.

use entity::ops_deploy as deploy;
use sea_orm::{ColumnTrait, DbErr, EntityTrait, QueryFilter, QueryOrder};
use serde_json::Value;

use super::{DeployStatus, DeployStore};

impl DeployStore {
    /// Stores the report so far on a running deploy; `false` once the deploy is no longer running.
    pub async fn save_progress(&self, id: &str, report: Value) -> Result<bool, DbErr> {
        let outcome = deploy::Entity::update_many()
            .col_expr(deploy::Column::ReportJson, report.into())
            .filter(deploy::Column::Id.eq(id))
            .filter(deploy::Column::Status.eq(DeployStatus::Running.as_str()))
            .exec(&self.db)
            .await;
        self.incidents.write_health().observe(&outcome);
        Ok(outcome?.rows_affected == 1)
    }

    /// The running deploys of an environment, newest first (more than one only when a holder
    /// died without finishing its record).
    pub async fn running_in(&self, environment: &str) -> Result<Vec<deploy::Model>, DbErr> {
        deploy::Entity::find()
            .filter(deploy::Column::Environment.eq(environment))
            .filter(deploy::Column::Status.eq(DeployStatus::Running.as_str()))
            .order_by_desc(deploy::Column::CreatedAt)
            .all(&self.db)
            .await
    }
}
