//! Migrations under a cross-process lock: processes starting together on an empty database apply
//! them once; the others wait for the lock and find nothing pending, instead of failing on
//! `table already exists` and recovering only by retrying.

use std::process::{Command, Stdio};

use migration::MigratorTrait;

use crate::helpers::{Backend, TestDb};
use crate::on_both_backends;

/// Two pools (two processes' worth) migrating one empty database at the same moment, several
/// times over on fresh databases: both succeed every time, and the migrations are applied once.
async fn two_pools_migrating_together_apply_once(backend: Backend) {
    for _ in 0..3 {
        let Some(db) = TestDb::new(backend).await else {
            return;
        };
        let (a, b) = (db.connect().await, db.connect().await);
        let (ra, rb) = tokio::join!(api::db::migrate_up(&a), api::db::migrate_up(&b));
        let (ra, rb) = (ra.expect("first migrates"), rb.expect("second migrates"));
        let total = migration::Migrator::migrations().len();
        assert_eq!(
            ra.len() + rb.len(),
            total,
            "each migration applied once: {ra:?} / {rb:?}"
        );
        assert!(
            ra.is_empty() || rb.is_empty(),
            "one of them applied everything: {ra:?} / {rb:?}"
        );
    }
}

/// Two `opsdoctor migrate up` processes started together on an empty database both exit 0, and
/// exactly one of them applied the migrations.
async fn two_processes_starting_together(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_opsdoctor"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", &db.url)
            .env("RUST_LOG", "warn")
            .current_dir(db.dir.path())
            .args(["migrate", "up"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start opsdoctor migrate up")
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    for out in [&a, &b] {
        assert!(
            out.status.success(),
            "both exit 0; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let applied = [&a, &b]
        .iter()
        .filter(|o| String::from_utf8_lossy(&o.stdout).contains("applied "))
        .count();
    assert_eq!(applied, 1, "exactly one process applied the migrations");
}

on_both_backends!(
    two_pools_migrating_together_apply_once,
    two_processes_starting_together
);
