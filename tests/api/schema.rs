//! The migrated schema equals the Prisma contract's DDL, compared through each database's catalog.

use std::path::Path;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};

use crate::helpers::{run_cli, Backend, TestDb};
use crate::on_both_backends;

on_both_backends!(migrations_equal_the_prisma_contract);

/// Every table the service creates: the contract's two and those Prisma generated for ours.
const TABLES: &str =
    "('OpsIncident', 'OpsIncidentEvent', 'OpsDoctorRun', 'OpsDeploy', 'OpsGateEvaluation')";

/// The contract's DDL followed by the Prisma-generated DDL of each later migration.
fn contract(backend: Backend) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/contract");
    let (base, dir) = match backend {
        Backend::Postgres => ("postgresql.sql", "postgresql"),
        Backend::Sqlite => ("sqlite.sql", "sqlite"),
    };
    let mut scripts = vec![std::fs::read_to_string(root.join(base)).unwrap()];
    let mut generated: Vec<_> = std::fs::read_dir(root.join("generated").join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    generated.sort();
    scripts.extend(
        generated
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap()),
    );
    scripts
}

async fn migrations_equal_the_prisma_contract(backend: Backend) {
    let Some(migrated) = TestDb::new(backend).await else {
        return;
    };
    let reference = migrated.sibling().await;
    for script in contract(backend) {
        reference.run_script(&script).await;
    }
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
            for table in ["OpsIncident", "OpsIncidentEvent", "OpsDoctorRun", "OpsDeploy", "OpsGateEvaluation"] {
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

#[test]
fn docs_schema_prisma_describes_every_table() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let docs = std::fs::read_to_string(root.join("docs/schema.prisma")).unwrap();
    let models =
        std::fs::read_to_string(root.join("tests/contract/generated/schema.prisma")).unwrap();
    assert!(
        docs.ends_with(&models),
        "docs/schema.prisma must end with tests/contract/generated/schema.prisma"
    );
    let contract =
        std::fs::read_to_string(root.join("tests/contract/ops-incident.prisma")).unwrap();
    assert!(
        models.starts_with(&contract),
        "the generated schema extends the contract unchanged"
    );
    for table in TABLES.trim_matches(|c| c == '(' || c == ')').split(", ") {
        let model = format!("model {} {{", table.trim_matches('\''));
        assert!(docs.contains(&model), "docs/schema.prisma lacks {model}");
    }
}
