//! The migrated schema equals the Prisma contract's DDL, compared through each database's catalog.

use std::path::Path;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};

use crate::helpers::{run_cli, Backend, TestDb};
use crate::on_both_backends;

on_both_backends!(migrations_equal_the_prisma_contract);

const TABLES: &str = "('OpsIncident', 'OpsIncidentEvent')";

fn contract(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => include_str!("../contract/postgresql.sql"),
        Backend::Sqlite => include_str!("../contract/sqlite.sql"),
    }
}

async fn migrations_equal_the_prisma_contract(backend: Backend) {
    let Some(migrated) = TestDb::new(backend).await else {
        return;
    };
    let reference = migrated.sibling().await;
    reference.run_script(contract(backend)).await;
    let (exit, stdout, stderr) = run_cli(Some(&migrated), &[], &["migrate", "up"]);
    assert!(exit.success(), "{stdout}{stderr}");

    let want = snapshot(&reference.connect().await).await;
    let migrated_conn = migrated.connect().await;
    let got = snapshot(&migrated_conn).await;
    assert!(
        want.len() > 20,
        "the catalog snapshot saw the contract: {want:#?}"
    );
    assert_eq!(
        got, want,
        "migrated schema differs from the Prisma contract"
    );

    // The comparison is sharp enough to see one missing index.
    migrated_conn
        .execute_unprepared(r#"DROP INDEX "OpsIncident_category_resolvedAt_idx""#)
        .await
        .unwrap();
    assert_ne!(snapshot(&migrated_conn).await, want);
}

/// Every catalog fact about the two contract tables, as sorted text rows.
async fn snapshot(db: &DatabaseConnection) -> Vec<String> {
    let queries: Vec<String> = match db.get_database_backend() {
        DbBackend::Postgres => vec![
            format!("SELECT concat_ws(' | ', 'column', table_name, column_name, ordinal_position::text, data_type, udt_name, is_nullable, coalesce(column_default, '<none>'), coalesce(datetime_precision::text, '-')) AS row FROM information_schema.columns WHERE table_schema = current_schema() AND table_name IN {TABLES}"),
            format!("SELECT concat_ws(' | ', 'constraint', c.conrelid::regclass::text, c.conname, c.contype::text, pg_get_constraintdef(c.oid)) AS row FROM pg_constraint c JOIN pg_class r ON r.oid = c.conrelid JOIN pg_namespace n ON n.oid = r.relnamespace WHERE n.nspname = current_schema() AND r.relname IN {TABLES}"),
            format!("SELECT concat_ws(' | ', 'index', tablename, indexname, indexdef) AS row FROM pg_indexes WHERE schemaname = current_schema() AND tablename IN {TABLES}"),
            "SELECT concat_ws(' | ', 'enum', t.typname, e.enumsortorder::text, e.enumlabel) AS row FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = current_schema()".to_owned(),
        ],
        _ => {
            let mut q = vec![format!("SELECT type || ' | ' || name || ' | ' || tbl_name AS row FROM sqlite_master WHERE tbl_name IN {TABLES}")];
            for table in ["OpsIncident", "OpsIncidentEvent"] {
                q.push(format!("SELECT 'column | {table} | ' || cid || ' | ' || name || ' | ' || type || ' | ' || \"notnull\" || ' | ' || coalesce(dflt_value, '<none>') || ' | ' || pk AS row FROM pragma_table_info('{table}')"));
                q.push(format!("SELECT 'fk | {table} | ' || id || ' | ' || seq || ' | ' || \"table\" || ' | ' || \"from\" || ' | ' || \"to\" || ' | ' || on_update || ' | ' || on_delete || ' | ' || \"match\" AS row FROM pragma_foreign_key_list('{table}')"));
                q.push(format!("SELECT 'index | {table} | ' || il.name || ' | ' || il.\"unique\" || ' | ' || il.origin || ' | ' || il.partial || ' | ' || ii.seqno || ' | ' || ii.name AS row FROM pragma_index_list('{table}') il, pragma_index_info(il.name) ii"));
            }
            q
        }
    };
    let mut rows = Vec::new();
    for sql in queries {
        for row in db
            .query_all(Statement::from_string(db.get_database_backend(), sql))
            .await
            .unwrap()
        {
            rows.push(row.try_get::<String>("", "row").unwrap());
        }
    }
    rows.sort();
    rows
}

#[test]
fn the_contract_copy_matches_the_shared_reference() {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/prisma");
    if !shared.exists() {
        eprintln!("SKIPPED: ../shared is not beside this checkout");
        return;
    }
    for file in ["postgresql.sql", "sqlite.sql", "ops-incident.prisma"] {
        let ours = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/contract")
                .join(file),
        )
        .unwrap();
        let theirs = std::fs::read_to_string(shared.join(file)).unwrap();
        assert_eq!(
            ours, theirs,
            "tests/contract/{file} drifted from the shared contract"
        );
    }
}
