//! A SQLite file that turns read-only under the service (made immutable with `chattr +i`, as a
//! filesystem remounted read-only after a disk error would be): writes are queued instead of
//! failing, readiness follows the file both ways, and every acknowledged write is stored once it
//! is writable again, including by connections the pool opened while it was not.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use super::load::Load;
use super::{assert_all_stored, assert_one_outage, drained, SLOWEST};
use crate::helpers::{Backend, InProcessApp, TestDb};

/// Files made immutable for as long as it lives; made writable again however the test ends, so
/// the temporary directory can be removed.
struct Immutable(Vec<PathBuf>);

impl Immutable {
    /// `None` after a visible skip where `chattr +i` is not allowed (not root, or a filesystem
    /// without the attribute); under `CI` that fails instead.
    fn set(files: Vec<PathBuf>) -> Option<Self> {
        let done = Command::new("chattr").arg("+i").args(&files).status();
        if done.as_ref().is_ok_and(|s| s.success()) {
            return Some(Self(files));
        }
        let _ = Command::new("chattr").arg("-i").args(&files).status();
        if std::env::var_os("CI").is_some() {
            panic!("`chattr +i` failed: CI runs as root on ext4, where it must work ({done:?})");
        }
        eprintln!("SKIPPED: `chattr +i` is not allowed here (run as root on ext4)");
        None
    }

    fn clear(&mut self) {
        if !self.0.is_empty() {
            let status = Command::new("chattr").arg("-i").args(&self.0).status();
            assert!(status.is_ok_and(|s| s.success()), "chattr -i");
            self.0.clear();
        }
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").args(&self.0).status();
    }
}

fn sqlite_files(db: &TestDb) -> Vec<PathBuf> {
    let main = db.dir.path().join("test.db");
    let wal = db.dir.path().join("test.db-wal");
    [main, wal].into_iter().filter(|p| p.exists()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sqlite_file_turning_read_only_queues_writes_and_replays_them() {
    let db = TestDb::new(Backend::Sqlite).await.expect("SQLite");
    let app = InProcessApp::spawn_with(&db, &[("DB_BREAKER_TIMEOUT_MS", "1000")], &[]).await;
    let load = Load::start(app.base.clone(), "ro");
    tokio::time::sleep(Duration::from_secs(1)).await;

    let files = sqlite_files(&db);
    assert_eq!(files.len(), 2, "the database and its WAL: {files:?}");
    let cut_at = Instant::now();
    let Some(mut immutable) = Immutable::set(files) else {
        load.stop().await;
        return;
    };
    tokio::time::sleep(Duration::from_secs(4)).await;
    let restored_at = Instant::now();
    immutable.clear();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let report = load.stop().await;

    report.assert_live_throughout();
    report.assert_ready_follows(cut_at, restored_at, Duration::from_secs(2));
    report.assert_no_request_slower_than(SLOWEST);
    assert!(
        report.acked.queued > 0,
        "writes were queued while the file was read-only: {report:?}"
    );
    drained(&app, Duration::from_secs(15)).await;
    assert_eq!(app.get("/health/ready").await.0, StatusCode::OK);
    let conn = db.connect().await;
    assert_all_stored(&conn, &report.acked).await;
    assert_one_outage(&conn, report.acked.first_queued_at).await;
}
