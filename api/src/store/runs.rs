//! The run store, owner of `OpsDoctorRun`: each finished doctor run, and the latest one for the
//! gate and the bundle (from any process sharing the database).

use checks::write_health::WriteHealth;
use checks::SuiteRun;
use entity::{ops_doctor_run as run_row, Timestamp};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryOrder};

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
        let row = Self::row(trigger, run, self.db.get_database_backend());
        let id = row.id.clone();
        self.insert_row(row).await.map(|()| id)
    }

    /// The row a finished run is stored as, with a new id.
    pub fn row(trigger: &str, run: &SuiteRun, backend: sea_orm::DbBackend) -> run_row::Model {
        run_row::Model {
            id: new_id(),
            created_at: Timestamp::new(run.started_at.naive_utc(), backend),
            finished_at: Timestamp::new(run.finished_at.naive_utc(), backend),
            trigger: trigger.to_owned(),
            status: run.status.as_str().to_owned(),
            duration_ms: i32::try_from(run.duration_ms).unwrap_or(i32::MAX),
            results_json: serde_json::to_value(&run.results).unwrap_or_default(),
        }
    }

    /// Stores a run row as made; a row whose id is stored already is left as it is, so a
    /// spooled run replayed twice is one row.
    pub async fn insert_row(&self, row: run_row::Model) -> Result<(), DbErr> {
        let model: run_row::ActiveModel = row.into();
        let outcome = run_row::Entity::insert(model)
            .on_conflict(
                OnConflict::column(run_row::Column::Id)
                    .do_nothing()
                    .to_owned(),
            )
            .do_nothing()
            .exec_without_returning(&self.db)
            .await;
        self.writes.observe(&outcome);
        outcome.map(|_| ())
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
    /// The backend this store writes to (times are written in its form).
    pub fn backend(&self) -> sea_orm::DbBackend {
        self.db.get_database_backend()
    }
}
