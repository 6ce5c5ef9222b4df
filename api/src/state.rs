//! Application state: the handles every request shares, behind one `Arc` so that handing them to
//! a request (axum clones the state for every extractor and middleware) is one atomic increment.

use std::sync::Arc;

use axum::extract::FromRef;
use checks::write_health::WriteHealth;
use sea_orm::DatabaseConnection;

use crate::config::Config;
use crate::doctor::Doctor;
use crate::extract::BodyLimit;
use crate::freshness::Freshness;
use crate::gate::Gate;
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use crate::readiness::Readiness;
use crate::store::{DeployStore, EvaluationStore, IncidentStore, RunStore};
use crate::suite::{build_registry, LatestResults};

#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub struct Shared {
    pub config: Arc<Config>,
    pub db: DatabaseConnection,
    pub incidents: IncidentStore,
    pub readiness: Arc<Readiness>,
    pub doctor: Arc<Doctor>,
    pub gate: Arc<Gate>,
    pub deploys: DeployStore,
    pub evaluations: EvaluationStore,
    pub lifecycle: Lifecycle,
    /// Issue 15: the service's Prometheus metrics, and the checks' latest results they read.
    pub metrics: Metrics,
    pub latest: Arc<LatestResults>,
}

impl AppState {
    pub fn new(config: Config, db: DatabaseConnection) -> Self {
        let lifecycle = Lifecycle::default();
        let writes = WriteHealth::default();
        let registry = build_registry(&config, db.clone(), writes.clone());
        let latest = Arc::new(LatestResults::new(config.decisions.policy.clone()));
        let fresh = Arc::new(Freshness::new(registry.clone(), latest.clone()));
        let readiness = Arc::new(Readiness::new(fresh.clone(), &config, lifecycle.clone()));
        let incidents = IncidentStore::new(db.clone(), writes.clone());
        let runs = RunStore::new(db.clone(), writes.clone());
        let evaluations = EvaluationStore::spawn(db.clone(), writes);
        let deploys = DeployStore::new(incidents.clone(), evaluations.clone());
        let doctor = Arc::new(Doctor::new(
            registry.clone(),
            latest.clone(),
            incidents.clone(),
            runs.clone(),
            config.doctor_min_interval,
            config.doctor_escalate_after,
        ));
        let gate = Arc::new(Gate::new(fresh, runs, deploys.clone(), evaluations.clone()));
        Self(Arc::new(Shared {
            incidents,
            config: Arc::new(config),
            db,
            readiness,
            doctor,
            gate,
            deploys,
            evaluations,
            lifecycle,
            metrics: Metrics::new(),
            latest,
        }))
    }
}

impl FromRef<AppState> for BodyLimit {
    fn from_ref(state: &AppState) -> Self {
        BodyLimit(state.config.max_body_bytes)
    }
}
