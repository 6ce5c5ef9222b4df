//! The doctor: runs the check suite, stores each run, turns failures into incidents and
//! recoveries into resolutions, and serves the diagnostic bundle.

pub mod cli;
mod incidents;
pub mod routes;
mod service;

pub use service::{Doctor, DoctorError, RunRecord, Trigger};
