//! The gate of record: may this release go live? One evaluator serves the HTTP gate, Flagger's
//! webhook and `opsdoctor gate`; every verdict is stored with its reasons.

pub mod cli;
mod evaluator;
pub mod flagger;
pub mod routes;
pub mod waiting;

pub use evaluator::{Gate, GateRequest, GateSource, GateVerdict, ResultSource, Verdict};
