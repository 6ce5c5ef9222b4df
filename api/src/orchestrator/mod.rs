//! `opsdoctor deploy`: carries a release live from a plan file, or stops safely and says why.
//!
//! The plan ([`plan`]) is read first; then the lock ([`lock`]), the deploy record, the state
//! machine ([`machine`], [`steps`], [`verify`]), and at the end the record's status, the `DEPLOY`
//! incident and the report ([`report`]). Exit status: 0 success, 1 failure (rolled back or
//! nothing changed), 2 partial, 3 could not start.

pub mod cli;
pub use crate::command;
pub mod live;
pub mod lock;
mod machine;
mod people;
pub mod plan;
mod probe;
pub mod report;
mod run;
pub mod state;
mod steps;
mod verify;

#[cfg(test)]
mod plan_tests;

/// Deployed and verified.
pub const EXIT_SUCCESS: u8 = 0;
/// Failed: rolled back, or nothing changed.
pub const EXIT_FAILURE: u8 = 1;
/// Deployed, but an optional check fails.
pub const EXIT_PARTIAL: u8 = 2;
/// Could not start: a bad plan or arguments, or the lock held.
pub const EXIT_UNUSABLE: u8 = 3;
