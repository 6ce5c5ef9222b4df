//! The real Prisma client and CLI (Node, `tests/prisma/`) against the real `opsdoctor` binary, on
//! SQLite and PostgreSQL: data written by either side read by the other, time order across
//! writers, Prisma Migrate without drift after `opsdoctor migrate up`, and adoption of tables
//! Prisma created first. Without Node or `npm ci` in `tests/prisma` the test says it skipped;
//! under `CI` it fails instead (`.ci/install/20-node-prisma.sh` installs both).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::helpers::{Backend, TestDb};
use crate::on_both_backends;

on_both_backends!(prisma_client_and_migrate_share_the_database);

fn suite_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/prisma")
}

/// Node and the suite's packages, or why not (a skip locally, a failure in CI).
fn node_ready() -> Result<(), String> {
    let node = Command::new("node").arg("--version").output();
    if !matches!(node, Ok(ref out) if out.status.success()) {
        return Err("node is not installed".into());
    }
    if !suite_dir().join("node_modules/.bin/prisma").exists() {
        return Err("run `npm ci` in tests/prisma".into());
    }
    Ok(())
}

async fn prisma_client_and_migrate_share_the_database(backend: Backend) {
    if let Err(why) = node_ready() {
        assert!(
            std::env::var_os("CI").is_none(),
            "the Prisma suite must run in CI: {why}"
        );
        eprintln!("SKIPPED (Prisma suite): {why}");
        return;
    }
    let mut cmd = Command::new("node");
    cmd.current_dir(suite_dir())
        .args(["--test", "--test-timeout=600000", "suite.test.mjs"])
        .env("OPSDOCTOR_BIN", env!("CARGO_BIN_EXE_opsdoctor"));
    // Held until the suite ends: each PostgreSQL scratch database is dropped with its TestDb.
    let mut databases = Vec::new();
    match backend {
        Backend::Sqlite => {
            cmd.env("PRISMA_BACKEND", "sqlite");
        }
        Backend::Postgres => {
            for _ in 0..2 {
                let Some(db) = TestDb::new(Backend::Postgres).await else {
                    return;
                };
                databases.push(db);
            }
            let urls: Vec<&str> = databases.iter().map(|d| d.url.as_str()).collect();
            cmd.env("PRISMA_BACKEND", "postgres")
                .env("PRISMA_PG_URLS", urls.join(","));
        }
    }
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .expect("run node");
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the Prisma suite failed:\n{report}");
    for scenario in [
        "ok 1 - opsdoctor first, then a Prisma app",
        "ok 2 - a Prisma app first, then opsdoctor",
    ] {
        assert!(report.contains(scenario), "{scenario}:\n{report}");
    }
    assert!(report.contains("# fail 0"), "{report}");
    drop(databases);
}
