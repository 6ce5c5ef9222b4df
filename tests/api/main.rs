//! End-to-end tests against real SQLite and PostgreSQL databases: the service in process on port 0
//! for most flows, the real `opsdoctor` binary where the process boundary is the point (exit codes,
//! signals, two processes racing, the process's own log).

mod helpers;

mod bad_input;
mod cli;
mod concurrency;
mod decisions;
mod doctor;
mod freshness;
mod full_disk;
mod gate;
mod health;
mod incidents;
mod nul;
mod schema;
mod secrets;
mod sockets;
mod stores;
