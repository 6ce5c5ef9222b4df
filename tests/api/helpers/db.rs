//! A fresh database per test, SQLite or PostgreSQL, removed when the test ends.

use std::sync::atomic::{AtomicU32, Ordering};

use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use tempfile::TempDir;

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
    postgres: Option<(String, String)>,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

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
                    postgres: None,
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
                let n = COUNTER.fetch_add(1, Ordering::SeqCst);
                let name: String = format!("{base}_t{}_{n}", std::process::id())
                    .chars()
                    .take(60)
                    .collect();
                let admin = Database::connect(&admin_url)
                    .await
                    .expect("connect to PostgreSQL");
                admin
                    .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                    .await
                    .expect("create test database");
                admin.close().await.ok();
                let url = replace_db_name(&admin_url, &name);
                Some(Self {
                    url,
                    backend,
                    dir,
                    postgres: Some((admin_url, name)),
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

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin_url, name)) = self.postgres.take() {
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .ok()?;
                rt.block_on(async {
                    let admin = Database::connect(&admin_url).await.ok()?;
                    admin
                        .execute_unprepared(&format!(
                            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                        ))
                        .await
                        .ok()?;
                    admin.close().await.ok()
                })
            })
            .join();
        }
    }
}

fn replace_db_name(url: &str, name: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (url, None),
    };
    let base = head.rsplit_once('/').map(|(b, _)| b).unwrap_or(head);
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}
