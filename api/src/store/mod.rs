//! One store per table, each owning all of its table's SQL and usable without HTTP. Features
//! call stores; a store calls another store, never another table. Each store reports what its
//! writes meet to the one [`checks::write_health::WriteHealth`].

pub mod deploys;
pub mod evaluations;
pub mod incidents;
pub mod runs;

pub use deploys::DeployStore;
pub use evaluations::EvaluationStore;
pub use incidents::{IncidentStore, StoreError};
pub use runs::RunStore;
