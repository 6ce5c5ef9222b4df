//! Incidents: the store (usable without HTTP), its cursors, and the `/ops/incidents` routes.

pub mod cursor;
pub mod dto;
pub mod routes;
pub mod store;

pub use store::{IncidentStore, StoreError};
