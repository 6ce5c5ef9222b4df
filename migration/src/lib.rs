//! The opsdoctor schema migrations: raw DDL equal to what Prisma Migrate generates for the contract.
//!
//! SeaORM's schema builder cannot produce Prisma's DDL (it writes `varchar`, `timestamp` without
//! precision and unquoted enum type names), so each migration carries the exact SQL per backend.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

mod m20261122_000001_ops_incident;
mod m20261122_000002_ops_doctor_run;
mod m20261122_000003_ops_deploy_gate;

pub use sea_orm_migration::MigratorTrait;

/// Tables the service cannot work without; the database check verifies they exist.
pub const REQUIRED_TABLES: &[&str] = &[
    "OpsIncident",
    "OpsIncidentEvent",
    "OpsDoctorRun",
    "OpsDeploy",
    "OpsGateEvaluation",
];

/// The table in which sea-orm-migration records applied migrations.
pub const MIGRATIONS_TABLE: &str = "seaql_migrations";

/// Every migration the service knows, oldest first.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_ops_incident::Migration),
            Box::new(m20261122_000002_ops_doctor_run::Migration),
            Box::new(m20261122_000003_ops_deploy_gate::Migration),
        ]
    }
}

/// The names of all known migrations, oldest first (what `seaql_migrations.version` holds).
pub fn migration_names() -> Vec<String> {
    Migrator::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .collect()
}

/// DDL for one migration on each supported backend.
pub(crate) struct BackendSql {
    pub postgres: &'static str,
    pub sqlite: &'static str,
}

/// Runs each `;`-terminated statement of the script for the connection's backend.
pub(crate) async fn run_script(manager: &SchemaManager<'_>, sql: &BackendSql) -> Result<(), DbErr> {
    let db = manager.get_connection();
    let script = match db.get_database_backend() {
        DbBackend::Postgres => sql.postgres,
        DbBackend::Sqlite => sql.sqlite,
        other => {
            return Err(DbErr::Migration(format!(
                "{other:?} is not supported: opsdoctor migrates PostgreSQL and SQLite"
            )))
        }
    };
    for statement in split_statements(script) {
        db.execute_unprepared(statement).await?;
    }
    Ok(())
}

/// Splits a DDL script into statements, dropping `--` comment lines and blank statements.
fn split_statements(script: &str) -> impl Iterator<Item = &str> {
    script
        .split(";\n")
        .map(str::trim)
        .map(|s| s.trim_end_matches(';'))
        .filter(|s| {
            s.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with("--"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_contract_script_into_statements() {
        let sql = include_str!("../sql/postgres/m20261122_000001_ops_incident.up.sql");
        let statements: Vec<_> = split_statements(sql).collect();
        assert_eq!(statements.len(), 10, "{statements:#?}");
        assert!(statements.iter().all(|s| !s.ends_with(';')));
    }
}
