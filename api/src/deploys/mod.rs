//! Deploy records: started, finished, linked to their gate verdicts, and a `DEPLOY` incident when
//! a deploy fails or is rolled back.

pub mod cli;
pub mod routes;
mod store;

pub use store::{DeployStore, FinishStatus, NewDeploy};
