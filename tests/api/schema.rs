//! The migrated schema equals the Prisma contract's DDL, compared through each database's catalog.

use std::path::Path;

use migration::catalog::Objects;
use sea_orm::{ConnectionTrait, DatabaseConnection};

use crate::helpers::{run_cli, Backend, TestDb};
use crate::on_both_backends;

on_both_backends!(migrations_equal_the_prisma_contract);

/// Every table the service creates: the contract's two, those Prisma generated for ours, and
/// the migrations' bookkeeping table (described in `docs/schema.prisma` as well).
pub const ALL: Objects = Objects {
    tables: &[
        "OpsIncident",
        "OpsIncidentEvent",
        "OpsDoctorRun",
        "OpsDeploy",
        "OpsGateEvaluation",
        "seaql_migrations",
    ],
    enums: &[
        "OpsIncidentSeverity",
        "OpsIncidentCategory",
        "OpsIncidentEventType",
    ],
};

/// The contract's DDL followed by the Prisma-generated DDL of each later migration: what a
/// Prisma app's own migration of `docs/schema.prisma` creates.
pub fn contract(backend: Backend) -> Vec<String> {
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

/// Every catalog fact about the tables the service creates, through the production comparison
/// (`migration::catalog`, which `opsdoctor migrate up` uses to adopt tables Prisma created).
async fn snapshot(db: &DatabaseConnection) -> Vec<String> {
    migration::catalog::snapshot(db, &ALL).await.unwrap()
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
    for table in ALL.tables {
        let named = format!("model {table} {{");
        let mapped = format!("@@map(\"{table}\")");
        assert!(
            docs.contains(&named) || docs.contains(&mapped),
            "docs/schema.prisma lacks a model of {table}"
        );
    }
}
