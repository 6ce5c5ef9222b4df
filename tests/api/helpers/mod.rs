//! Test harnesses: a fresh database per test, the service in process on port 0 for most flows,
//! the real binary as a child process where the process is the subject, and local stand-ins for
//! every integration.

pub mod browser;
mod child;
mod client;
mod db;
mod in_process;
mod stack;

pub use child::{finish, opsdoctor, run_cli, TestApp};
pub use client::{decode, ApiClient};
pub use db::{Backend, TestDb};
pub use in_process::InProcessApp;
pub use stack::{with, Stack, OPENAI_KEY};

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef";

/// Declares a scenario `async fn name(backend: Backend)` as one test per backend.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::helpers::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::helpers::Backend::Postgres).await
            }
        }
    )*};
}
