//! The `database` check: reachability, a latency baseline, pending migrations and required tables.

use std::collections::BTreeSet;
use std::time::Instant;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement};

use crate::{CheckResult, Reason};

pub const NAME: &str = "database";

/// How many pings make up the latency baseline.
const PINGS: u32 = 3;

/// Runs the database check. `location` is the already-masked URL, reported as an observed value.
///
/// The caller wraps this in [`crate::with_timeout`]; a hanging database becomes a `timeout`.
#[tracing::instrument(skip_all, fields(check = NAME))]
pub async fn check(db: &DatabaseConnection, location: &str) -> CheckResult {
    let backend = backend_name(db.get_database_backend());
    let base = |r: CheckResult| r.observe("backend", backend).observe("location", location);

    let mut total_us: u128 = 0;
    for _ in 0..PINGS {
        let started = Instant::now();
        if let Err(err) = db.ping().await {
            tracing::warn!(error = %err, "database ping failed");
            return base(classify_connection_error(&err));
        }
        total_us += started.elapsed().as_micros();
    }
    let baseline_ms = (total_us as f64 / f64::from(PINGS)) / 1000.0;
    let base = |r: CheckResult| base(r).observe("latency_baseline_ms", round2(baseline_ms));

    let present = match existing_tables(db).await {
        Ok(tables) => tables,
        Err(err) => {
            tracing::warn!(error = %err, "reading the catalog failed");
            return base(CheckResult::fail(
                NAME,
                Reason::BadResponse,
                "the database answered pings but its catalog could not be read",
                "check the database user's privileges on the catalog (information_schema / sqlite_master)",
            ));
        }
    };

    let pending = match pending_migrations(db, &present).await {
        Ok(pending) => pending,
        Err(err) => {
            tracing::warn!(error = %err, "reading applied migrations failed");
            return base(CheckResult::fail(
                NAME,
                Reason::BadResponse,
                format!(
                    "the {} table could not be read",
                    migration::MIGRATIONS_TABLE
                ),
                "check the database user's privileges, then run `opsdoctor migrate status`",
            ));
        }
    };
    if !pending.is_empty() {
        return base(
            CheckResult::fail(
                NAME,
                Reason::MigrationsPending,
                format!(
                    "{} migration(s) pending: {}",
                    pending.len(),
                    pending.join(", ")
                ),
                "run `opsdoctor migrate up` (or start the service without --no-migrate)",
            )
            .observe("pending_migrations", pending),
        );
    }

    let missing: Vec<&str> = migration::REQUIRED_TABLES
        .iter()
        .copied()
        .filter(|t| !present.contains(*t))
        .collect();
    if !missing.is_empty() {
        return base(
            CheckResult::fail(
                NAME,
                Reason::MissingTables,
                format!("migrations are recorded as applied but tables are missing: {}", missing.join(", ")),
                "the schema was altered by hand: restore the tables or run `opsdoctor migrate fresh --yes` on a disposable database",
            )
            .observe("missing_tables", missing),
        );
    }

    base(CheckResult::pass(
        NAME,
        format!("{backend} reachable, schema up to date ({baseline_ms:.2} ms per ping)"),
    ))
}

fn backend_name(backend: DbBackend) -> &'static str {
    match backend {
        DbBackend::Postgres => "postgres",
        DbBackend::Sqlite => "sqlite",
        DbBackend::MySql => "mysql",
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Tells a refused or unresolvable server from other connection failures.
fn classify_connection_error(err: &DbErr) -> CheckResult {
    let text = err.to_string().to_ascii_lowercase();
    let (reason, hint) = if text.contains("refused") {
        (
            Reason::ConnectionRefused,
            "the database server is not listening: start it or fix DATABASE_URL's host and port",
        )
    } else if text.contains("lookup")
        || text.contains("resolve")
        || text.contains("name or service")
    {
        (
            Reason::Dns,
            "the database host name does not resolve: fix DATABASE_URL's host",
        )
    } else if text.contains("timed out") || text.contains("pool timed out") {
        (Reason::Timeout, "the database did not hand out a connection in time: check its load and max_connections")
    } else if text.contains("password") || text.contains("authentication") {
        (
            Reason::Auth,
            "the database refused the credentials: fix DATABASE_URL's user and password",
        )
    } else {
        (
            Reason::Unreachable,
            "the database cannot be reached: check that it is up and that DATABASE_URL is right",
        )
    };
    CheckResult::fail(NAME, reason, "database ping failed", hint)
}

async fn existing_tables(db: &DatabaseConnection) -> Result<BTreeSet<String>, DbErr> {
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Sqlite => "SELECT name AS table_name FROM sqlite_master WHERE type = 'table'",
        DbBackend::Postgres => {
            "SELECT table_name::text AS table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        }
        DbBackend::MySql => {
            "SELECT table_name AS table_name FROM information_schema.tables WHERE table_schema = DATABASE()"
        }
    };
    let rows = db.query_all(Statement::from_string(backend, sql)).await?;
    rows.iter()
        .map(|row| row.try_get::<String>("", "table_name"))
        .collect()
}

/// Known migrations not recorded as applied; all of them when the bookkeeping table is absent.
async fn pending_migrations(
    db: &DatabaseConnection,
    present: &BTreeSet<String>,
) -> Result<Vec<String>, DbErr> {
    let known = migration::migration_names();
    if !present.contains(migration::MIGRATIONS_TABLE) {
        return Ok(known);
    }
    let backend = db.get_database_backend();
    let sql = format!("SELECT version FROM {}", migration::MIGRATIONS_TABLE);
    let applied: BTreeSet<String> = db
        .query_all(Statement::from_string(backend, sql))
        .await?
        .iter()
        .map(|row| row.try_get::<String>("", "version"))
        .collect::<Result<_, _>>()?;
    Ok(known.into_iter().filter(|m| !applied.contains(m)).collect())
}

/// The database check as a registry entry.
pub struct DatabaseCheck {
    db: DatabaseConnection,
    location: String,
}

impl DatabaseCheck {
    pub fn new(db: DatabaseConnection, location: String) -> Self {
        Self { db, location }
    }
}

impl crate::registry::Check for DatabaseCheck {
    fn name(&self) -> &'static str {
        NAME
    }

    fn configured(&self) -> bool {
        true
    }

    fn settings(&self) -> &'static str {
        "DATABASE_URL"
    }

    fn run(&self) -> futures::future::BoxFuture<'_, CheckResult> {
        Box::pin(check(&self.db, &self.location))
    }
}
