//! End-to-end tests: the real `opsdoctor` binary against real SQLite and PostgreSQL databases.

mod helpers;

mod bad_input;
mod cli;
mod concurrency;
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
