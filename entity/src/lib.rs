//! SeaORM entities for the tables opsdoctor shares with Prisma apps: data only, no behaviour.

pub mod enums;
pub mod json;
pub mod ops_deploy;
pub mod ops_doctor_run;
pub mod ops_gate_evaluation;
pub mod ops_incident;
pub mod ops_incident_event;
pub mod time;

pub use enums::{Category, EventType, Severity};
pub use json::JsonDoc;
pub use time::{TimeForm, Timestamp};
