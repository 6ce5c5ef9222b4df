//! A fresh database per test, SQLite or PostgreSQL, removed when the test ends.

use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use tempfile::TempDir;
use testkit::pg::ScratchDatabase;

/// Where PostgreSQL tests create their databases; `.ci/run` exports it.
pub const POSTGRES_ENV: &str = "OPSDOCTOR_TEST_POSTGRES_URL";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database of its own for one test, removed when the test ends.
pub struct TestDb {
    pub url: String,
    pub backend: Backend,
    /// Working directory for spawned processes (and the SQLite file).
    pub dir: TempDir,
    /// The PostgreSQL database, held only to be dropped with this.
    _postgres: Option<ScratchDatabase>,
}

impl TestDb {
    /// A fresh, empty database; `None` (after saying so) when PostgreSQL is not configured locally.
    pub async fn new(backend: Backend) -> Option<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        match backend {
            Backend::Sqlite => {
                let url = format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display());
                Some(Self {
                    url,
                    backend,
                    dir,
                    _postgres: None,
                })
            }
            Backend::Postgres => {
                let Some(admin_url) = std::env::var(POSTGRES_ENV).ok().filter(|u| !u.is_empty())
                else {
                    if std::env::var_os("CI").is_some() {
                        panic!("{POSTGRES_ENV} is not set: in CI the PostgreSQL tests must run");
                    }
                    eprintln!("SKIPPED (PostgreSQL): set {POSTGRES_ENV}=postgres://postgres@127.0.0.1:5432/test to run");
                    return None;
                };
                let base = admin_url
                    .rsplit('/')
                    .next()
                    .unwrap_or("test")
                    .split('?')
                    .next()
                    .unwrap_or("test")
                    .to_owned();
                let db = ScratchDatabase::create(&admin_url, &format!("{base}_t"))
                    .await
                    .expect("create test database");
                Some(Self {
                    url: db.url.clone(),
                    backend,
                    dir,
                    _postgres: Some(db),
                })
            }
        }
    }

    pub async fn connect(&self) -> DatabaseConnection {
        Database::connect(&self.url)
            .await
            .expect("connect to test database")
    }

    /// Runs a `;`-separated SQL script statement by statement.
    pub async fn run_script(&self, sql: &str) {
        let db = self.connect().await;
        for statement in sql.split(";\n").map(str::trim).filter(|s| {
            s.lines()
                .any(|l| !l.trim().is_empty() && !l.trim().starts_with("--"))
        }) {
            db.execute(Statement::from_string(
                db.get_database_backend(),
                statement.to_owned(),
            ))
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
        }
        db.close().await.ok();
    }

    /// A second database on the same server (for comparisons); SQLite: another file.
    pub async fn sibling(&self) -> Self {
        Self::new(self.backend).await.expect("sibling database")
    }
}
