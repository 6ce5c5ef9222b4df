//! Building the router and running the server until a shutdown signal, then draining.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use sea_orm::DatabaseConnection;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::classify::ServerErrorsFailureClass;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::{Level, Span};

use crate::config::Config;
use crate::connections::{self, ConnectionLimits};
use crate::error::ApiError;
use crate::state::AppState;
use crate::{
    auth, db, deploys, doctor, gate, health, incidents, limits, metrics, openapi, recovery,
    resilience,
};

/// Every route of the service, with its middleware. Tests drive this with `oneshot`.
///
/// Probes take the shortest path: load balancers call them many times a second, and they read
/// only cached state, so they carry no timeout, body limit or per-request trace span; a panic is
/// still caught. Everything under `/ops` gets the full stack.
pub fn router(state: AppState) -> Router {
    let probes = health::router()
        .merge(doctor::routes::public_router())
        .layer(CatchPanicLayer::custom(|_| internal_error()));
    let admin = incidents::routes::router()
        .merge(doctor::routes::admin_router())
        .merge(gate::routes::router())
        .merge(deploys::routes::router())
        .merge(metrics::routes::router())
        .merge(recovery::routes::router())
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            resilience::routes::refuse_reads_while_open,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_admin,
        ))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limits::refuse_declared_oversize,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limits::request_timeout,
        ))
        .layer(CatchPanicLayer::custom(|_| internal_error()))
        .layer(
            TraceLayer::new_for_http()
                .on_response(DefaultOnResponse::new().level(Level::INFO))
                .on_failure(log_fault),
        );
    Router::new()
        .merge(health::liveness_router())
        .merge(probes)
        .merge(openapi::router())
        .merge(admin)
        .merge(crate::status_page::router(&state))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Issue 15: every request counted and timed by its route template.
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            metrics::http::track,
        ))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint".to_owned())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Logs a request that failed through the service's own fault. A 503 is an answer, not a fault:
/// a `fail` gate verdict is normal operation (the response is logged at INFO like any other), and
/// a database outage logs its cause where it is turned into the 503.
fn log_fault(class: ServerErrorsFailureClass, latency: Duration, span: &Span) {
    if let ServerErrorsFailureClass::StatusCode(StatusCode::SERVICE_UNAVAILABLE) = class {
        return;
    }
    tracing::error!(parent: span, classification = %class, latency_ms = latency.as_millis() as u64, "request failed");
}

fn internal_error() -> Response {
    ApiError::Internal("a handler panicked".to_owned()).into_response()
}

/// A built service: database connected, migrations handled, listener bound.
pub struct Application {
    listener: TcpListener,
    /// Issue 15: the separate `/metrics` listener, when `METRICS_ADDR` is set.
    metrics_listener: Option<TcpListener>,
    state: AppState,
    /// Outgoing notifications; stopped when the application stops.
    notifier: Option<crate::notify::Notifier>,
}

impl Application {
    /// Connects, migrates (unless `migrate` is false) and binds. A database that is down does not
    /// stop start-up: readiness says so, and migrations are retried until they apply.
    pub async fn build(config: Config, migrate: bool) -> Result<Self, StartError> {
        let db = db::connect(&config)
            .await
            .map_err(|e| StartError::Database(e.to_string()))?;
        if migrate {
            if let Err(err) = apply_migrations(&db).await {
                tracing::error!(error = %err, "applying migrations failed; retrying in the background");
                tokio::spawn(retry_migrations(db.clone()));
            }
        } else {
            tracing::warn!(
                "--no-migrate: pending migrations are not applied; readiness reports them"
            );
        }
        let addr = SocketAddr::new(config.host, config.port);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| StartError::Bind(addr, e))?;
        let metrics_listener = match config.metrics_addr {
            Some(addr) => Some(
                metrics::routes::bind(addr)
                    .await
                    .map_err(|e| StartError::Bind(addr, e))?,
            ),
            None => None,
        };
        let interval = config.doctor_interval;
        let spool_dir = config.spool_dir();
        let spool = resilience::Spool::open(&spool_dir, config.resilience.spool_max_bytes)
            .map_err(|e| StartError::Spool(spool_dir.display().to_string(), e))?;
        let state = AppState::with_spool(config, db, spool);
        state.doctor.spawn_monitor(interval);
        crate::recovery::monitor::spawn(&state.recovery, state.config.recovery.after_runs);
        let notifier = crate::notify::spawn(
            &state.config,
            state.incidents.clone(),
            state.deploys.clone(),
        );
        Ok(Self {
            listener,
            metrics_listener,
            state,
            notifier,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The bound address of the separate metrics listener, when `METRICS_ADDR` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref()?.local_addr().ok()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `stop` resolves; then readiness turns 503 at once, the listener closes after
    /// `SHUTDOWN_READY_DELAY_MS`, in-flight requests get `SHUTDOWN_DRAIN_MS`, and the pool closes.
    pub async fn run_until_stopped(self, stop: impl Future<Output = ()>) -> std::io::Result<()> {
        let Self {
            listener,
            metrics_listener,
            state,
            notifier,
        } = self;
        let addr = listener.local_addr()?;
        let (metrics_stop, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
        if let Some(listener) = metrics_listener {
            let metrics_at = listener.local_addr()?;
            tracing::info!(addr = %metrics_at, "metrics listening");
            tokio::spawn(metrics::routes::serve(
                listener,
                state.clone(),
                async move {
                    let _ = metrics_stopped.await;
                },
            ));
        }
        tracing::info!(addr = %addr, url = %format!("http://{addr}"), "opsdoctor listening");
        let (close_tx, close_rx) = tokio::sync::oneshot::channel::<()>();
        let app = router(state.clone());
        let limits = ConnectionLimits::from_config(&state.config).fit_to_fd_limit();
        let lifecycle = state.lifecycle.clone();
        let mut server = tokio::spawn(async move {
            connections::serve(listener, app, limits, lifecycle, async move {
                let _ = close_rx.await;
            })
            .await;
        });

        let exit_after = state.config.resilience.exit_after;
        let mut failure = None;
        tokio::select! {
            () = stop => {}
            () = state.resilience.persistent_outage(exit_after) => {
                tracing::error!(
                    after_ms = exit_after.as_millis() as u64,
                    "the database has stayed unavailable; shutting down so the supervisor restarts the process"
                );
                failure = Some(std::io::Error::other(format!(
                    "the database stayed unavailable for {} ms (DB_OUTAGE_EXIT_AFTER_MS)",
                    exit_after.as_millis()
                )));
            }
            result = &mut server => {
                result.map_err(std::io::Error::other)?;
                return Err(std::io::Error::other("the server stopped by itself"));
            }
        }
        state.lifecycle.begin_shutdown();
        let config = &state.config;
        tracing::info!(
            ready_delay_ms = config.shutdown_ready_delay.as_millis() as u64,
            "shutdown requested; readiness now reports 503"
        );
        tokio::time::sleep(config.shutdown_ready_delay).await;
        let _ = close_tx.send(());
        match tokio::time::timeout(config.shutdown_drain, &mut server).await {
            Ok(joined) => joined.map_err(std::io::Error::other)?,
            Err(_) => {
                tracing::warn!(
                    drain_ms = config.shutdown_drain.as_millis() as u64,
                    "drain time exceeded; exiting with requests in flight"
                );
                server.abort();
            }
        }
        let _ = metrics_stop.send(());
        state.evaluations.flush().await;
        drop(notifier);
        if let Err(err) = state.db.clone().close().await {
            tracing::warn!(error = %err, "closing the database pool failed");
        }
        tracing::info!("opsdoctor stopped");
        failure.map_or(Ok(()), Err)
    }
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the database: {0}")]
    Database(String),
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error("cannot open the spool in {0}: {1}")]
    Spool(String, std::io::Error),
}

async fn apply_migrations(db: &DatabaseConnection) -> Result<(), sea_orm::DbErr> {
    let applied = db::migrate_up(db).await?;
    if applied.is_empty() {
        tracing::info!("schema up to date");
    } else {
        tracing::info!(migrations = ?applied, "migrations applied");
    }
    Ok(())
}

async fn retry_migrations(db: DatabaseConnection) {
    let mut delay = Duration::from_secs(1);
    loop {
        tokio::time::sleep(delay).await;
        match apply_migrations(&db).await {
            Ok(()) => return,
            Err(err) => {
                tracing::warn!(error = %err, retry_in_s = delay.as_secs(), "migrations still cannot be applied")
            }
        }
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
