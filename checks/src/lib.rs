//! The opsdoctor check suite: every check returns a [`CheckResult`] value, never panics, never aborts.
//!
//! This crate knows nothing of HTTP serving; the service, the CLI and the gate all consume the same
//! [`Registry`], so readiness, the doctor and the gate can never disagree about what "healthy" means.

pub mod cloudflare;
pub mod database;
pub mod http;
pub mod mask;
mod name;
pub mod openai;
pub mod registry;
mod result;
pub mod stripe;
pub mod tunnel;
pub mod write_health;

pub use name::{CheckName, UnknownCheck};
pub use registry::{on_settings, overall, Check, Registry, RegistryPolicy, SuiteRun};
pub use result::{with_timeout, CheckResult, Reason, Status};
