//! The run store, owner of `OpsDoctorRun`: each finished doctor run, and the latest one for the
//! gate and the bundle (from any process sharing the database).

use checks::write_health::WriteHealth;
use checks::SuiteRun;
use chrono::{DateTime, Utc};
use entity::{ops_doctor_run as run_row, Timestamp};
use sea_orm::{
    ActiveValue::Set, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryOrder,
};

use crate::kernel::new_id;

/// Cheap to clone: a pool handle.
#[derive(Clone)]
pub struct RunStore {
    db: DatabaseConnection,
    writes: WriteHealth,
}

impl RunStore {
    pub fn new(db: DatabaseConnection, writes: WriteHealth) -> Self {
        Self { db, writes }
    }

    /// Stores a finished run; `trigger` says who asked for it. Returns the run's id.
    #[tracing::instrument(skip_all, fields(trigger))]
    pub async fn insert(&self, trigger: &str, run: &SuiteRun) -> Result<String, DbErr> {
        let id = new_id();
        let model = run_row::ActiveModel {
            id: Set(id.clone()),
            created_at: Set(self.stamp(run.started_at)),
            finished_at: Set(self.stamp(run.finished_at)),
            trigger: Set(trigger.to_owned()),
            status: Set(run.status.as_str().to_owned()),
            duration_ms: Set(i32::try_from(run.duration_ms).unwrap_or(i32::MAX)),
            results_json: Set(serde_json::to_value(&run.results).unwrap_or_default()),
        };
        let outcome = run_row::Entity::insert(model)
            .exec_without_returning(&self.db)
            .await;
        self.writes.observe(&outcome);
        outcome.map(|_| id)
    }

    /// The latest stored run.
    pub async fn latest(&self) -> Result<Option<run_row::Model>, DbErr> {
        run_row::Entity::find()
            .order_by_desc(run_row::Column::CreatedAt)
            .order_by_desc(run_row::Column::Id)
            .one(&self.db)
            .await
    }
}

impl RunStore {
    /// `t` as this store's backend stores a time (millisecond precision).
    fn stamp(&self, t: DateTime<Utc>) -> Timestamp {
        Timestamp::new(t.naive_utc(), self.db.get_database_backend())
    }
}
