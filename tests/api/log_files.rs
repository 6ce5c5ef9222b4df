//! The service's JSON log files: rotated when a file would pass its size cap, every line whole,
//! nothing lost (the files hold exactly the lines stderr got), and no secret in any line.

use std::path::Path;

use serde_json::Value;

use crate::helpers::{Backend, TestApp, TestDb, ADMIN_TOKEN};

const STRIPE_KEY: &str = "sk_test_51HxLogFiles0123456789abcdef";

/// Every line of every log file in `dir`, oldest file first.
fn file_lines(dir: &Path) -> (usize, Vec<String>) {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .expect("log dir")
        .map(|e| e.unwrap().path())
        .collect();
    // `opsdoctor.<date>.log` first, then `.1`, `.2` … by number.
    names.sort_by_key(|p| {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let n: u32 = name
            .trim_end_matches(".log")
            .rsplit('.')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        n
    });
    let mut lines = Vec::new();
    for path in &names {
        let text = std::fs::read_to_string(path).expect("read log file");
        assert!(text.ends_with('\n'), "{} ends mid-line", path.display());
        let len = text.len() as u64;
        assert!(
            len <= 2048,
            "{} holds {len} bytes, past the cap",
            path.display()
        );
        lines.extend(text.lines().map(str::to_owned));
    }
    (names.len(), lines)
}

/// A line without its timestamp (each output stamps its own copy).
fn untimed(line: &str) -> Value {
    let mut v: Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    v.as_object_mut().unwrap().remove("timestamp");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_files_rotate_by_size_losing_nothing_and_holding_no_secret() {
    let db = TestDb::new(Backend::Sqlite).await.expect("SQLite");
    let dir = db.dir.path().join("logs");
    let dir_s = dir.display().to_string();
    let env = [
        ("LOG_DIR", dir_s.as_str()),
        ("LOG_MAX_FILE_BYTES", "2048"),
        ("STRIPE_SECRET_KEY", STRIPE_KEY),
        ("STRIPE_API_BASE", "http://127.0.0.1:9"),
    ];
    let app = TestApp::spawn_with(&db, &env, &[]);
    for i in 0..40 {
        let (status, _) = app
            .get(&format!("/ops/incidents?limit={}", 1 + i % 5))
            .await;
        assert!(status.is_success());
    }
    let stderr = app.stop();

    let (files, lines) = file_lines(&dir);
    assert!(files >= 3, "rotated by size into several files: {files}");
    let from_stderr: Vec<Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(untimed)
        .collect();
    let from_files: Vec<Value> = lines.iter().map(|l| untimed(l)).collect();
    assert_eq!(
        from_files.len(),
        from_stderr.len(),
        "the files hold every line stderr got"
    );
    assert_eq!(from_files, from_stderr, "the same lines, in the same order");
    for line in &lines {
        assert!(!line.contains(STRIPE_KEY), "a secret in a log file: {line}");
        assert!(
            !line.contains(ADMIN_TOKEN),
            "the admin token in a log file: {line}"
        );
    }
}
