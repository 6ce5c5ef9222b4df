//! Prisma first: tables a Prisma app's own migration created before opsdoctor ever ran.
//!
//! For each migration not yet recorded whose tables (or enum types) already exist, the catalog of
//! what exists is compared with the catalog of what the migration would create (built in a
//! scratch place: a schema inside a rolled-back transaction on PostgreSQL, an in-memory database
//! on SQLite). Equal: the migration is recorded as applied, and one log line says so. Different:
//! start-up stops with every difference named. Nothing of the user's is ever dropped or altered.

use sea_orm_migration::sea_orm::{
    ConnectionTrait, Database, DbBackend, DbErr, Statement, TransactionTrait,
};

use crate::catalog::{self, Objects};
use crate::{script_for, split_statements, BackendSql, MIGRATIONS_TABLE};

/// One migration's name, what it creates, and its DDL.
pub(crate) struct Known {
    pub name: &'static str,
    pub objects: Objects,
    pub up: &'static BackendSql,
}

/// Records as applied every pending migration whose objects already exist exactly as it would
/// create them; returns their names. Fails, naming each difference, when they exist but differ.
/// Run it inside the transaction that holds the migration lock, so that two processes starting
/// together do not both create the bookkeeping table.
pub async fn adopt_existing<C>(db: &C) -> Result<Vec<String>, DbErr>
where
    C: ConnectionTrait + TransactionTrait,
{
    crate::install_bookkeeping(db).await?;
    let backend = db.get_database_backend();
    let applied: Vec<String> = db
        .query_all(Statement::from_string(
            backend,
            format!(r#"SELECT "version" FROM "{MIGRATIONS_TABLE}""#),
        ))
        .await?
        .iter()
        .map(|r| r.try_get::<String>("", "version"))
        .collect::<Result<_, _>>()?;
    let mut equal = Vec::new();
    let mut refusals = Vec::new();
    for known in crate::known() {
        if applied.iter().any(|a| a == known.name) {
            continue;
        }
        let found = catalog::existing(db, &known.objects).await?;
        if found.is_empty() {
            continue;
        }
        let want = reference(db, &known).await?;
        let got = catalog::snapshot(db, &known.objects).await?;
        if got == want {
            equal.push(known.name);
        } else {
            refusals.push(format!(
                "{} exist but differ from what migration {} creates:\n    {}",
                found.join(", "),
                known.name,
                catalog::differences(&got, &want).join("\n    ")
            ));
        }
    }
    if !refusals.is_empty() {
        return Err(DbErr::Migration(format!(
            "the database holds tables opsdoctor would create, but not as it creates them; \
             opsdoctor changes no table it did not create (compare with docs/schema.prisma):\n  {}",
            refusals.join("\n  ")
        )));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let insert = match backend {
        DbBackend::Postgres => {
            format!(r#"INSERT INTO "{MIGRATIONS_TABLE}" ("version", "applied_at") VALUES ($1, $2)"#)
        }
        _ => format!(r#"INSERT INTO "{MIGRATIONS_TABLE}" ("version", "applied_at") VALUES (?, ?)"#),
    };
    let mut adopted = Vec::new();
    for name in equal {
        db.execute(Statement::from_sql_and_values(
            backend,
            &insert,
            [name.into(), now.into()],
        ))
        .await?;
        adopted.push(name.to_owned());
    }
    if !adopted.is_empty() {
        tracing::info!(
            migrations = %adopted.join(", "),
            "adopted existing tables equal to the Prisma schema: recorded their migrations as applied"
        );
    }
    Ok(adopted)
}

/// The catalog snapshot of what `known` creates, built where nothing of the user's is touched.
async fn reference<C>(db: &C, known: &Known) -> Result<Vec<String>, DbErr>
where
    C: ConnectionTrait + TransactionTrait,
{
    let backend = db.get_database_backend();
    let script = script_for(backend, known.up)?;
    match backend {
        DbBackend::Postgres => {
            let txn = db.begin().await?;
            let schema = format!(
                "opsdoctor_contract_{}_{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.subsec_nanos())
                    .unwrap_or(0)
            );
            txn.execute_unprepared(&format!(r#"CREATE SCHEMA "{schema}""#))
                .await?;
            txn.execute_unprepared(&format!(r#"SET LOCAL search_path TO "{schema}""#))
                .await?;
            for statement in split_statements(script) {
                txn.execute_unprepared(statement).await?;
            }
            let rows = catalog::snapshot(&txn, &known.objects).await;
            txn.rollback().await?;
            rows
        }
        _ => {
            let mut options = sea_orm_migration::sea_orm::ConnectOptions::new("sqlite::memory:");
            options.max_connections(1).sqlx_logging(false);
            let scratch = Database::connect(options).await?;
            for statement in split_statements(script) {
                scratch.execute_unprepared(statement).await?;
            }
            let rows = catalog::snapshot(&scratch, &known.objects).await;
            scratch.close().await?;
            rows
        }
    }
}
