//! The bench's phases, one module each, and what they share: the service's environment, an HTTP
//! client, and where their databases live.

pub mod deploy;
pub mod doctor;
pub mod false_alarms;
pub mod footprint;
pub mod ingest;
pub mod outage;
pub mod scale;
pub mod throughput;

use std::path::{Path, PathBuf};
use std::time::Duration;

use sea_orm::DatabaseConnection;
use serde_json::Value;
use tempfile::TempDir;
use testkit::pg::ScratchDatabase;

use crate::procs::Server;
use crate::Args;

/// The admin token every service the bench starts is given.
pub const TOKEN: &str = "bench-admin-token-0123456789abcdef";
/// Readiness's cache TTL in the bench, which `ready_db_queries_per_ttl` is counted against.
pub const READY_TTL_MS: u64 = 1000;

/// What every phase runs against: the release binary, a scratch directory (SQLite files and
/// the servers' working directory) and the command line.
pub struct Bench {
    pub binary: PathBuf,
    pub dir: TempDir,
    pub args: Args,
}

impl Bench {
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A SQLite database file of the given name in the scratch directory.
    pub fn sqlite_url(&self, name: &str) -> String {
        format!("sqlite://{}/{name}.db?mode=rwc", self.dir().display())
    }

    /// A PostgreSQL database of its own for `phase`, dropped with the handle; `None` without
    /// `--postgres-url`.
    pub async fn postgres(&self, phase: &str) -> Option<ScratchDatabase> {
        let admin_url = self.args.postgres_url.as_deref()?;
        let db = ScratchDatabase::create(admin_url, &format!("opsdoctor_bench_{phase}"))
            .await
            .expect("create a PostgreSQL database (does the user have CREATEDB?)");
        Some(db)
    }

    /// Starts the service on `db` with the bench's settings and `extra` variables.
    pub fn start(&self, db: &str, extra: &[(&str, String)]) -> Server {
        crate::procs::start(&self.binary, &[], &env(db, extra), self.dir())
    }
}

/// The service's environment: no background doctor runs, the bench's token and readiness TTL.
fn env(db_url: &str, extra: &[(&str, String)]) -> Vec<(String, String)> {
    let mut env = vec![
        ("DATABASE_URL".to_owned(), db_url.to_owned()),
        ("ADMIN_TOKEN".to_owned(), TOKEN.to_owned()),
        ("DOCTOR_INTERVAL_MS".to_owned(), "0".to_owned()),
        ("DOCTOR_MIN_INTERVAL_MS".to_owned(), "0".to_owned()),
        ("READY_CACHE_TTL_MS".to_owned(), READY_TTL_MS.to_string()),
    ];
    env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    env
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client")
}

pub async fn get_json(client: &reqwest::Client, server: &Server, path: &str) -> Value {
    client
        .get(format!("http://{}{path}", server.addr))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json")
}

pub async fn post_json(
    client: &reqwest::Client,
    server: &Server,
    path: &str,
    body: Value,
) -> Value {
    client
        .post(format!("http://{}{path}", server.addr))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json")
}

pub async fn migration_up(db: &DatabaseConnection) {
    use migration::MigratorTrait;
    migration::Migrator::up(db, None).await.expect("migrate");
}
