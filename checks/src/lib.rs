//! The opsdoctor check suite: every check returns a [`CheckResult`] value, never panics, never aborts.
//!
//! This crate knows nothing of HTTP; the service, the CLI and (later) the gate all consume the same
//! check functions, so readiness and the doctor can never disagree about what "healthy" means.

pub mod database;
pub mod mask;
mod result;

pub use result::{timed, with_timeout, CheckResult, Reason, Status};
