//! The `database` check: reachability, a latency baseline, pending migrations, required tables
//! and whether writes still commit.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement};

use crate::write_health::WriteHealth;
use crate::{CheckName, CheckResult, Reason};

pub const NAME: &str = CheckName::Database.as_str();

/// How many pings make up the latency baseline.
const PINGS: u32 = 3;

/// A ping slower than this makes the check ask the server's port directly whether it refuses
/// connections: the pool retries a refused connection until its acquire timeout, which is longer
/// than the check's, so a server that is down would otherwise look like a slow one.
const REFUSED_PROBE_AFTER: Duration = Duration::from_millis(150);

/// Runs the database check. `location` is the already-masked URL, reported as an observed value.
///
/// The caller wraps this in [`crate::with_timeout`]; a hanging database becomes a `timeout`.
pub async fn check(db: &DatabaseConnection, location: &str) -> CheckResult {
    DatabaseCheck::new(db.clone(), location.to_owned())
        .run_check()
        .await
}

impl DatabaseCheck {
    #[tracing::instrument(skip_all, fields(check = NAME))]
    async fn run_check(&self) -> CheckResult {
        let (db, location) = (&self.db, self.location.as_str());
        let backend = backend_name(db.get_database_backend());
        let base = |r: CheckResult| r.observe("backend", backend).observe("location", location);

        let mut total_us: u128 = 0;
        for _ in 0..PINGS {
            let started = Instant::now();
            if let Err(failed) = self.ping().await {
                return base(failed);
            }
            total_us += started.elapsed().as_micros();
        }
        let baseline_ms = (total_us as f64 / f64::from(PINGS)) / 1000.0;
        let result = schema_check(db, backend, baseline_ms).await;
        let result = match (result.is_pass(), self.writes.failure()) {
            (true, Some(failure)) => CheckResult::fail(
                NAME,
                Reason::WriteFailed,
                format!(
                    "{backend} answers reads, but refused a write at {}: {} ({})",
                    failure.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    failure.message,
                    failure.code
                ),
                "free space on the database's disk (or raise its size limit) and check its logs; this clears at the next write that commits",
            )
            .observe("write_error_code", failure.code)
            .observe("latency_baseline_ms", round2(baseline_ms)),
            _ => result,
        };
        base(result)
    }

    /// One ping; when it is slow and the server's port refuses connections, `connection_refused`
    /// at once instead of a timeout later.
    async fn ping(&self) -> Result<(), CheckResult> {
        let ping = async {
            self.db.ping().await.map_err(|err| {
                tracing::warn!(error = %err, "database ping failed");
                classify_connection_error(&err)
            })
        };
        let Some(server) = &self.server else {
            return ping.await;
        };
        let refused = async {
            tokio::time::sleep(REFUSED_PROBE_AFTER).await;
            let probe = tokio::time::timeout(
                Duration::from_secs(1),
                tokio::net::TcpStream::connect(server.as_str()),
            )
            .await;
            match probe {
                Ok(Err(err)) if err.kind() == std::io::ErrorKind::ConnectionRefused => {}
                // Listening, slow or unknown: the ping's own outcome decides.
                _ => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            outcome = ping => outcome,
            () = refused => {
                tracing::warn!("database ping is waiting on a server that refuses connections");
                Err(CheckResult::fail(NAME, Reason::ConnectionRefused, "database ping failed: the server refuses connections", REFUSED_HINT))
            }
        }
    }
}

const REFUSED_HINT: &str =
    "the database server is not listening: start it or fix DATABASE_URL's host and port";

/// Catalog, migrations and tables, once the database answers pings.
async fn schema_check(db: &DatabaseConnection, backend: &str, baseline_ms: f64) -> CheckResult {
    let base = |r: CheckResult| r.observe("latency_baseline_ms", round2(baseline_ms));

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
        (Reason::ConnectionRefused, REFUSED_HINT)
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
    /// `host:port` of a database server, to tell a refused port from a slow server.
    server: Option<String>,
    writes: WriteHealth,
}

impl DatabaseCheck {
    pub fn new(db: DatabaseConnection, location: String) -> Self {
        Self {
            db,
            location,
            server: None,
            writes: WriteHealth::default(),
        }
    }

    /// The server's `host:port` (for a networked database).
    pub fn server(mut self, address: Option<String>) -> Self {
        self.server = address;
        self
    }

    /// The stores' record of refused writes: the check fails `write_failed` while it is set.
    pub fn write_health(mut self, writes: WriteHealth) -> Self {
        self.writes = writes;
        self
    }
}

impl crate::registry::Check for DatabaseCheck {
    fn name(&self) -> CheckName {
        CheckName::Database
    }

    fn configured(&self) -> bool {
        true
    }

    fn settings(&self) -> &'static str {
        "DATABASE_URL"
    }

    fn run(&self) -> futures::future::BoxFuture<'_, CheckResult> {
        Box::pin(self.run_check())
    }
}
