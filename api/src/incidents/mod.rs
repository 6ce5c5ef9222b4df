//! The `/ops/incidents` and `/ops/timeline` routes and their JSON shapes; the data lives in
//! [`crate::store::incidents`].

pub mod dto;
pub mod routes;
