//! End-to-end tests against real SQLite and PostgreSQL databases: the service in process on port 0
//! for most flows, the real `opsdoctor` binary where the process boundary is the point (exit codes,
//! signals, two processes racing, the process's own log).

mod helpers;

mod bad_input;
mod cli;
mod concurrency;
mod decisions;
mod deploy;
mod doctor;
mod ecosystem;
mod freshness;
mod full_disk;
mod gate;
mod health;
mod incidents;
mod log_files;
mod migrations;
mod notify;
mod nul;
mod outage;
mod packaging;
mod prisma;
mod recovery;
mod schema;
mod secrets;
mod shared_db;
mod sockets;
mod status_page;
mod stores;
mod tunnel_restart;
