//! A SQLite database whose disk fills up: no write is answered 2xx unless it committed or was
//! queued in the spool (on another disk) — and every queued one is stored once space is freed —
//! the failure shows in readiness and the database check, and the service recovers without a
//! restart.
//!
//! The database lives on a small tmpfs of its own, filled by a filler file, as a real disk fills;
//! deleting the file frees the space. (`PRAGMA max_page_count` fails a statement but leaves its
//! transaction open, so it cannot show the connection a real `ENOSPC` leaves behind.) Mounting
//! needs root: elsewhere the test says it is skipped, and under `CI` it fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{json, Value};

use crate::helpers::{Backend, InProcessApp, TestDb};

/// The size of the small disk, and how much of it the filler leaves free.
const DISK_BYTES: u64 = 4 << 20;
const HEADROOM_BYTES: u64 = 512 << 10;

/// A tmpfs mounted for one test, unmounted when it ends.
struct SmallDisk {
    path: PathBuf,
}

impl SmallDisk {
    fn mount(under: &Path) -> Option<Self> {
        let path = under.join("small-disk");
        std::fs::create_dir_all(&path).expect("mount point");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={DISK_BYTES}")])
            .arg("tmpfs")
            .arg(&path)
            .status()
            .is_ok_and(|s| s.success());
        if mounted {
            return Some(Self { path });
        }
        if std::env::var_os("CI").is_some() {
            panic!("cannot mount a tmpfs for the full-disk test: CI must run it as root");
        }
        eprintln!("SKIPPED (full disk): mounting a tmpfs needs root");
        None
    }

    fn free_bytes(&self) -> u64 {
        let out = Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(&self.path)
            .output()
            .expect("df");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .expect("df output")
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// One request with a bound on its wait, so a stuck write fails the test instead of hanging it.
async fn send(
    app: &InProcessApp,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = app.request(method, path).timeout(Duration::from_secs(30));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Acknowledged ids of each kind.
#[derive(Default)]
struct Acknowledged {
    incidents: Vec<String>,
    events: Vec<(String, String)>,
    deploys: Vec<String>,
    refused: usize,
    /// Answered 202 `queued`: kept in the spool, to be stored once the disk has room.
    queued: usize,
}

impl Acknowledged {
    /// One round of writes: a large incident, an event on it, a deploy started and finished.
    async fn round(&mut self, app: &InProcessApp, n: usize) {
        let padding = "x".repeat(30_000);
        let (status, body) = send(
            app,
            reqwest::Method::POST,
            "/ops/incidents",
            Some(json!({
                "severity": "WARN", "category": "OTHER", "summary": format!("disk round {n}"),
                "detailsJson": { "padding": padding, "round": n },
            })),
        )
        .await;
        let Some(id) = self.note(status, &body) else {
            return;
        };
        self.incidents.push(id.clone());
        let (status, body) = send(
            app,
            reqwest::Method::POST,
            &format!("/ops/incidents/{id}/events"),
            Some(json!({ "eventType": "RECOVERY_ATTEMPTED", "message": "x".repeat(9_000) })),
        )
        .await;
        if let Some(event) = self.note(status, &body) {
            self.events.push((id, event));
        }
        let (status, body) = send(
                app,
                reqwest::Method::POST,
                "/ops/deploys",
                Some(json!({ "environment": "prod", "version": format!("v{n}"), "startedBy": "ci", "externalIds": { "note": "x".repeat(9_000) } })),
            )
            .await;
        if let Some(deploy) = self.note(status, &body) {
            self.deploys.push(deploy);
        }
    }

    /// The id of a 2xx answer (a queued one counted); counts a 503 (the database refused);
    /// anything else fails the test.
    fn note(&mut self, status: StatusCode, body: &Value) -> Option<String> {
        if status == StatusCode::ACCEPTED {
            assert_eq!(body["queued"], true, "{body}");
            self.queued += 1;
            // An incident report names its incident; an event, itself; a deploy, itself.
            let id = if body["reportedAt"].is_string() {
                body["incidentId"].as_str()
            } else if body["eventId"].is_string() {
                body["eventId"].as_str()
            } else {
                body["id"].as_str()
            };
            return Some(id.unwrap_or_else(|| panic!("no id in {body}")).to_owned());
        }
        if status.is_success() {
            let id = body["id"]
                .as_str()
                .or_else(|| body["incident"]["id"].as_str())
                .or_else(|| body["event"]["id"].as_str());
            return Some(id.unwrap_or_else(|| panic!("no id in {body}")).to_owned());
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["error"]["code"], "database_unavailable", "{body}");
        self.refused += 1;
        None
    }
}

#[tokio::test]
async fn a_full_disk_never_acknowledges_a_write_that_did_not_commit() {
    let mut db = TestDb::new(Backend::Sqlite).await.expect("sqlite");
    let Some(disk) = SmallDisk::mount(db.dir.path()) else {
        return;
    };
    db.url = format!(
        "sqlite://{}?mode=rwc",
        disk.path.join("opsdoctor.db").display()
    );
    let app = InProcessApp::spawn_with(
        &db,
        &[
            ("READY_CACHE_TTL_MS", "0"),
            ("DB_ACQUIRE_TIMEOUT_MS", "3000"),
        ],
        &[],
    )
    .await;
    // Fill the disk but for a little room, as a log file or a backup would.
    let filler = disk.path.join("filler");
    let room = disk.free_bytes().saturating_sub(HEADROOM_BYTES);
    std::fs::write(&filler, vec![0u8; usize::try_from(room).expect("size")]).expect("filler");

    // Fill it: rounds until several writes are queued (or refused), bounded in count.
    let mut acked = Acknowledged::default();
    for n in 0..60 {
        acked.round(&app, n).await;
        if acked.refused + acked.queued >= 6 {
            break;
        }
    }
    assert!(
        acked.refused + acked.queued >= 6,
        "the size limit was never reached"
    );
    assert!(
        !acked.incidents.is_empty(),
        "nothing fitted before the limit"
    );

    // The failure shows: readiness and the database check say the storage refuses writes.
    let (status, ready) = send(&app, reqwest::Method::GET, "/health/ready", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{ready}");
    assert_eq!(
        ready["checks"]["database"]["reason"], "write_failed",
        "{ready}"
    );
    let (status, health) = send(&app, reqwest::Method::GET, "/health/db", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{health}");
    assert_eq!(health["reason"], "write_failed", "{health}");

    // Free the space.
    std::fs::remove_file(&filler).expect("remove filler");

    // Writes commit again, and readiness recovers with the first one, without a restart.
    let before = acked.incidents.len();
    for n in 100..108 {
        acked.round(&app, n).await;
    }
    assert!(
        acked.incidents.len() >= before + 5,
        "writes did not recover"
    );
    // The spool drains into the database, and readiness is back.
    let started = std::time::Instant::now();
    loop {
        let (status, health) = send(&app, reqwest::Method::GET, "/health/db", None).await;
        if status == StatusCode::OK && health["spool"]["depth"] == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the spool did not drain: {health}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Readiness recovers after two passing database observations in a row (CHECK_RECOVER_AFTER).
    let (mut status, mut ready) = send(&app, reqwest::Method::GET, "/health/ready", None).await;
    while status != StatusCode::OK && started.elapsed() < Duration::from_secs(25) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        (status, ready) = send(&app, reqwest::Method::GET, "/health/ready", None).await;
    }
    assert_eq!(status, StatusCode::OK, "{ready}");
    app.stop().await;

    // After a restart, on a pool of its own, every acknowledged write is there.
    let restarted = InProcessApp::spawn(&db).await;
    for id in &acked.incidents {
        let (status, body) = restarted.get(&format!("/ops/incidents/{id}")).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "acknowledged incident {id} is missing: {body}"
        );
    }
    for (incident, event) in &acked.events {
        let (_, body) = restarted
            .get(&format!("/ops/incidents/{incident}?limit=500"))
            .await;
        let events = body["events"].as_array().cloned().unwrap_or_default();
        assert!(
            events.iter().any(|e| e["id"] == event.as_str()),
            "acknowledged event {event} of {incident} is missing"
        );
    }
    for id in &acked.deploys {
        let (status, body) = restarted.get(&format!("/ops/deploys/{id}")).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "acknowledged deploy {id} is missing: {body}"
        );
    }
    let conn = db.connect().await;
    let stored = conn
        .query_one(Statement::from_string(
            conn.get_database_backend(),
            r#"SELECT COUNT(*) FROM "OpsIncident" WHERE "category" <> 'DB'"#,
        ))
        .await
        .expect("count")
        .expect("row")
        .try_get_by_index::<i64>(0)
        .expect("integer");
    assert_eq!(
        stored as usize,
        acked.incidents.len(),
        "a refused incident was stored"
    );
}
