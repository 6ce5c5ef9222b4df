//! The opsdoctor schema migrations: raw DDL equal to what Prisma Migrate generates for the contract.
//!
//! SeaORM's schema builder cannot produce Prisma's DDL (it writes `varchar`, `timestamp` without
//! precision and unquoted enum type names), so each migration carries the exact SQL per backend.
//! The bookkeeping table is created with Prisma's DDL too, and `docs/schema.prisma` describes it,
//! so that a Prisma app sharing the database sees no drift; tables a Prisma app created first are
//! adopted when they equal the contract (`adopt.rs`).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

mod adopt;
pub mod catalog;
mod m20261122_000001_ops_incident;
mod m20261122_000002_ops_doctor_run;
mod m20261122_000003_ops_deploy_gate;
mod m20261123_000004_sqlite_prisma_times;

pub use adopt::adopt_existing;
pub use sea_orm_migration::MigratorTrait;

use catalog::Objects;

/// Tables the service cannot work without; the database check verifies they exist.
pub const REQUIRED_TABLES: &[&str] = &[
    "OpsIncident",
    "OpsIncidentEvent",
    "OpsDoctorRun",
    "OpsDeploy",
    "OpsGateEvaluation",
];

/// The table in which sea-orm-migration records applied migrations (the model
/// `OpsSchemaMigration` in `docs/schema.prisma`).
pub const MIGRATIONS_TABLE: &str = "seaql_migrations";

/// Prisma's DDL for the bookkeeping table (what `docs/schema.prisma` generates), if absent.
const BOOKKEEPING: BackendSql = BackendSql {
    postgres: include_str!("../sql/postgres/bookkeeping.sql"),
    sqlite: include_str!("../sql/sqlite/bookkeeping.sql"),
};

/// Every migration the service knows, oldest first.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_ops_incident::Migration),
            Box::new(m20261122_000002_ops_doctor_run::Migration),
            Box::new(m20261122_000003_ops_deploy_gate::Migration),
            Box::new(m20261123_000004_sqlite_prisma_times::Migration),
        ]
    }

    /// The bookkeeping table as Prisma would create it, instead of sea-orm-migration's own DDL.
    async fn install<C>(db: &C) -> Result<(), DbErr>
    where
        C: ConnectionTrait,
    {
        install_bookkeeping(db).await
    }
}

/// Creates the bookkeeping table with Prisma's DDL; on PostgreSQL, a table an older opsdoctor
/// created (`version varchar`) gets Prisma's `TEXT` (the one change made to an existing table,
/// and to opsdoctor's own).
pub(crate) async fn install_bookkeeping<C: ConnectionTrait>(db: &C) -> Result<(), DbErr> {
    let backend = db.get_database_backend();
    for statement in split_statements(script_for(backend, &BOOKKEEPING)?) {
        db.execute_unprepared(statement).await?;
    }
    if backend == DbBackend::Postgres {
        db.execute_unprepared(&format!(
            r#"DO $$ BEGIN
                 IF EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema()
                            AND table_name = '{MIGRATIONS_TABLE}' AND column_name = 'version'
                            AND data_type <> 'text') THEN
                   ALTER TABLE "{MIGRATIONS_TABLE}" ALTER COLUMN "version" SET DATA TYPE TEXT;
                 END IF;
               END $$"#
        ))
        .await?;
    }
    Ok(())
}

/// Every schema-creating migration with its objects and DDL, oldest first (for adoption).
pub(crate) fn known() -> [adopt::Known; 3] {
    [
        adopt::Known {
            name: "m20261122_000001_ops_incident",
            objects: Objects {
                tables: &["OpsIncident", "OpsIncidentEvent"],
                enums: &[
                    "OpsIncidentSeverity",
                    "OpsIncidentCategory",
                    "OpsIncidentEventType",
                ],
            },
            up: &m20261122_000001_ops_incident::UP,
        },
        adopt::Known {
            name: "m20261122_000002_ops_doctor_run",
            objects: Objects {
                tables: &["OpsDoctorRun"],
                enums: &[],
            },
            up: &m20261122_000002_ops_doctor_run::UP,
        },
        adopt::Known {
            name: "m20261122_000003_ops_deploy_gate",
            objects: Objects {
                tables: &["OpsDeploy", "OpsGateEvaluation"],
                enums: &[],
            },
            up: &m20261122_000003_ops_deploy_gate::UP,
        },
    ]
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
    for statement in split_statements(script_for(db.get_database_backend(), sql)?) {
        db.execute_unprepared(statement).await?;
    }
    Ok(())
}

/// The script of `sql` for `backend`.
pub(crate) fn script_for(backend: DbBackend, sql: &BackendSql) -> Result<&'static str, DbErr> {
    match backend {
        DbBackend::Postgres => Ok(sql.postgres),
        DbBackend::Sqlite => Ok(sql.sqlite),
        other => Err(DbErr::Migration(format!(
            "{other:?} is not supported: opsdoctor migrates PostgreSQL and SQLite"
        ))),
    }
}

/// Splits a DDL script into statements, dropping `--` comment lines and blank statements.
pub(crate) fn split_statements(script: &str) -> impl Iterator<Item = &str> {
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
