//! The opsdoctor service: configuration, state, routes and CLI wiring, as a library tests can drive.

pub mod auth;
pub mod cli;
pub mod config;
pub mod connections;
pub mod db;
pub mod decisions;
pub mod deploys;
pub mod doctor;
pub mod error;
pub mod extract;
pub mod freshness;
pub mod gate;
pub mod health;
pub mod healthcheck;
pub mod incidents;
pub mod kernel;
pub mod lifecycle;
pub mod limits;
pub mod metrics;
pub mod notify;
pub mod openapi;
pub mod orchestrator;
pub mod params;
pub mod path;
pub mod readiness;
pub mod remote;
pub mod resilience;
pub mod server;
pub mod state;
pub mod status_page;
pub mod store;
pub mod suite;
pub mod telemetry;

pub use config::Config;
pub use server::{router, Application};
pub use state::AppState;
