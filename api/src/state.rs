//! Application state: a `Clone` struct of cheap handles shared by every request.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::FromRef;
use sea_orm::DatabaseConnection;

use crate::config::Config;
use crate::extract::BodyLimit;
use crate::health::Readiness;
use crate::incidents::IncidentStore;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: DatabaseConnection,
    pub incidents: IncidentStore,
    pub readiness: Arc<Readiness>,
    pub lifecycle: Lifecycle,
}

impl AppState {
    pub fn new(config: Config, db: DatabaseConnection) -> Self {
        let lifecycle = Lifecycle::default();
        let readiness = Arc::new(Readiness::new(db.clone(), &config, lifecycle.clone()));
        Self {
            incidents: IncidentStore::new(db.clone()),
            config: Arc::new(config),
            db,
            readiness,
            lifecycle,
        }
    }
}

impl FromRef<AppState> for BodyLimit {
    fn from_ref(state: &AppState) -> Self {
        BodyLimit(state.config.max_body_bytes)
    }
}

/// Whether the process has begun shutting down; readiness turns 503 the moment it has.
#[derive(Clone, Default)]
pub struct Lifecycle {
    shutting_down: Arc<AtomicBool>,
}

impl Lifecycle {
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }
}
