//! On SQLite, rewrites every stored time into the text a Prisma client writes
//! (`2026-11-23T14:26:28.566+00:00`), so that rows of older opsdoctor versions
//! (`2026-11-23 14:26:27.738`), of `CURRENT_TIMESTAMP` defaults and of Prisma's `unixepoch-ms`
//! option (integer milliseconds) compare in time order with new ones. PostgreSQL stores a real
//! `TIMESTAMP(3)`: nothing to do there. The DDL is unchanged.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

/// Every `DateTime` column of the schema, by table.
pub(crate) const TIME_COLUMNS: &[(&str, &[&str])] = &[
    ("OpsIncident", &["createdAt", "resolvedAt"]),
    ("OpsIncidentEvent", &["createdAt"]),
    ("OpsDoctorRun", &["createdAt", "finishedAt"]),
    ("OpsDeploy", &["createdAt", "finishedAt"]),
    ("OpsGateEvaluation", &["createdAt"]),
];

/// The `UPDATE`s that rewrite one table's times; a row already in Prisma's form is left alone.
pub(crate) fn normalise_statements() -> Vec<String> {
    let mut out = Vec::new();
    for (table, columns) in TIME_COLUMNS {
        for c in *columns {
            // Integers are Prisma's milliseconds; text is any form SQLite's date functions read
            // (they convert an explicit offset to UTC). Unreadable text is left as it is.
            let ms = format!("CAST(round(\"{c}\") AS INTEGER)");
            let canonical = format!(
                "CASE WHEN typeof(\"{c}\") IN ('integer', 'real') \
                 THEN strftime('%Y-%m-%dT%H:%M:%S', {ms} / 1000, 'unixepoch') \
                 || printf('.%03d+00:00', {ms} % 1000) \
                 ELSE strftime('%Y-%m-%dT%H:%M:%f+00:00', \"{c}\") END"
            );
            out.push(format!(
                "UPDATE \"{table}\" SET \"{c}\" = {canonical} \
                 WHERE \"{c}\" IS NOT NULL AND ({canonical}) IS NOT NULL \
                 AND (typeof(\"{c}\") <> 'text' OR \"{c}\" <> ({canonical}))"
            ));
        }
    }
    out
}

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if db.get_database_backend() != DbBackend::Sqlite {
            return Ok(());
        }
        for statement in normalise_statements() {
            db.execute_unprepared(&statement).await?;
        }
        Ok(())
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        // Prisma's text is read by every version of opsdoctor: nothing to undo.
        Ok(())
    }
}
