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
use crate::recovery::Recovery;
use crate::resilience::{BreakerPolicy, Resilience, ResilienceSettings, Spool, Stores};
use crate::store::{DeployStore, EvaluationStore, IncidentStore, RunStore};
use crate::suite::{build_registry, LatestResults};
use crate::tunnel_restart::TunnelRestarter;

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
    /// The database circuit breaker and the spool every acknowledged write goes through.
    pub resilience: Arc<Resilience>,
    /// The tunnel restart coordinator: the one way anything in this process restarts the tunnel
    /// (`restart("recovery")`, `restart_with("deploy", …)`, `status()`).
    pub tunnel_restarts: Arc<TunnelRestarter>,
    /// Recovery's rate limit, journal and actions (`POST /health/recover`, the monitor's own).
    pub recovery: Arc<Recovery>,
}

impl AppState {
    /// Builds the state; the spool is opened from `config` (see [`Config::spool_dir`]).
    pub fn new(config: Config, db: DatabaseConnection) -> Self {
        let dir = config.spool_dir();
        let spool = Spool::open(&dir, config.resilience.spool_max_bytes).unwrap_or_else(|err| {
            // `Application::build` opened it a moment ago; only a test building state by hand
            // with an unusable directory gets here, and it gets a spool of its own.
            tracing::error!(error = %err, dir = %dir.display(), "the spool cannot be opened; using a temporary one");
            let fallback = std::env::temp_dir().join(format!("opsdoctor-spool-{}", crate::kernel::new_id()));
            Spool::open(&fallback, config.resilience.spool_max_bytes)
                .unwrap_or_else(|_| panic!("no spool can be opened in {}", fallback.display()))
        });
        Self::with_spool(config, db, spool)
    }

    /// Builds the state around an opened spool.
    pub fn with_spool(config: Config, db: DatabaseConnection, spool: Spool) -> Self {
        let lifecycle = Lifecycle::default();
        let writes = WriteHealth::default();
        let registry = build_registry(&config, db.clone(), writes.clone());
        let latest = Arc::new(LatestResults::new(config.decisions.policy.clone()));
        let fresh = Arc::new(Freshness::new(registry.clone(), latest.clone()));
        let readiness = Arc::new(Readiness::new(fresh.clone(), &config, lifecycle.clone()));
        let incidents = IncidentStore::new(db.clone(), writes.clone());
        let runs = RunStore::new(db.clone(), writes.clone());
        // The spool and the breaker (issue 13): the evaluation writer hands a batch it loses to
        // the database to the spool, so the breaker is made first and the writer points at it.
        let resilience = Arc::new_cyclic(|weak: &std::sync::Weak<Resilience>| {
            let sink = Resilience::evaluation_sink(weak.clone());
            let evaluations = EvaluationStore::spawn_with(db.clone(), writes, Some(sink));
            let stores = Stores {
                deploys: DeployStore::new(incidents.clone(), evaluations.clone()),
                incidents: incidents.clone(),
                runs: runs.clone(),
                evaluations,
            };
            Resilience::new(db.clone(), stores, spool, resilience_settings(&config))
        });
        Resilience::spawn_loops(&resilience);
        let evaluations = resilience.stores.evaluations.clone();
        let deploys = resilience.stores.deploys.clone();
        let doctor = Arc::new(
            Doctor::new(
                registry.clone(),
                latest.clone(),
                incidents.clone(),
                runs.clone(),
                config.doctor_min_interval,
                config.doctor_escalate_after,
            )
            .with_resilience(resilience.clone()),
        );
        let tunnel_restarts = Arc::new(TunnelRestarter::new(
            &config,
            db.clone(),
            resilience.clone(),
            registry.clone(),
        ));
        let gate = Arc::new(
            Gate::new(fresh, runs, deploys.clone(), evaluations.clone())
                .with_resilience(resilience.clone()),
        );
        let metrics = Metrics::new();
        let recovery = Arc::new(Recovery::new(
            doctor.clone(),
            latest.clone(),
            resilience.clone(),
            tunnel_restarts.clone(),
            metrics.clone(),
            &config.recovery,
        ));
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
            metrics,
            latest,
            resilience,
            tunnel_restarts,
            recovery,
        }))
    }
}

/// The breaker's and the spool's settings from the configuration.
fn resilience_settings(config: &Config) -> ResilienceSettings {
    let r = &config.resilience;
    ResilienceSettings {
        breaker: BreakerPolicy {
            failures: r.breaker_failures,
            min_backoff: r.min_backoff,
            max_backoff: r.max_backoff,
        },
        op_timeout: r.op_timeout,
        probe_interval: r.probe_interval,
    }
}

impl FromRef<AppState> for BodyLimit {
    fn from_ref(state: &AppState) -> Self {
        BodyLimit(state.config.max_body_bytes)
    }
}
