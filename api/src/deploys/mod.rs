//! Deploy records over HTTP and for scripts (`opsdoctor deploys`); the data and the `DEPLOY`
//! incident a failed deploy opens live in [`crate::store::deploys`].

pub mod cli;
pub mod routes;
