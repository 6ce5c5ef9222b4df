//! Incident reports through the API against the best plain inserts of the same rows on the same
//! settings and concurrency: the `ingest_vs_plain_sqlite` and `ingest_vs_plain_postgres` figures.
//!
//! The baseline opens its pool with the service's own `api::db::connect` (so the same journal
//! mode, synchronous level, busy timeout and pool size), runs as many writers as the load
//! generator has connections, and writes the rows a report stream produces: an incident and its
//! `DETECTED` event in one transaction for a new fingerprint, one `DETECTED` event otherwise. It
//! pays no HTTP, no JSON and no dedupe lookup: which incident a fingerprint belongs to is held in
//! memory. On SQLite its writes are serialised in process, as the service's are, because
//! writers contending for SQLite's file lock wait in its sleeping busy handler instead.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use api::kernel::{new_id, now};
use bytes::Bytes;
use entity::{
    ops_incident as incident, ops_incident_event as event, Category, EventType, Severity,
};
use http_body_util::Full;
use sea_orm::{
    ActiveValue::Set, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait,
    TransactionTrait as _,
};
use serde_json::{json, Value};
use tokio::sync::{Mutex, OnceCell};

use super::{migration_up, Bench, TOKEN};
use crate::load::{self, Bounds, Outcome};
use crate::report::{ratio, Report};

/// Distinct fingerprints in the report stream: 50 incidents, the other reports deduplicated.
const FINGERPRINTS: u64 = 50;
/// Alternating slices per side (plain, API, API, plain, …).
const SLICES: u64 = 4;
/// What the API must reach as a fraction of the plain inserts, per backend. Measured 0.23 to 0.25
/// on SQLite and 0.44 to 0.52 on PostgreSQL (three runs): on SQLite every report runs five statements in the
/// one-writer section (begin, the lock-taking update, the dedupe read, the insert, commit) where
/// the baseline runs one insert; on PostgreSQL the writers overlap. The targets leave about a
/// fifth of margin, so that one more statement per report, or a dedupe read that scans, fails.
const TARGETS: [(DbBackend, &str, f64); 2] = [
    (DbBackend::Sqlite, "≥ 0.2", 0.2),
    (DbBackend::Postgres, "≥ 0.35", 0.35),
];

/// Runs the phase on SQLite and, with `--postgres-url`, on PostgreSQL.
pub async fn run(bench: &Bench, report: &mut Report) {
    for backend in [DbBackend::Sqlite, DbBackend::Postgres] {
        let (key, name) = match backend {
            DbBackend::Sqlite => ("ingest_vs_plain_sqlite", "SQLite"),
            _ => ("ingest_vs_plain_postgres", "PostgreSQL"),
        };
        let (target, floor) = TARGETS
            .iter()
            .find(|(b, _, _)| *b == backend)
            .map(|(_, t, f)| (*t, *f))
            .expect("a target per backend");
        let (value, detail) = if backend == DbBackend::Sqlite {
            println!("incident ingestion on {name}…");
            let (api, plain) = (bench.sqlite_url("ingest"), bench.sqlite_url("plain"));
            measure(bench, &api, &plain).await
        } else {
            let (Some(api), Some(plain)) = (
                bench.postgres("ingest").await,
                bench.postgres("plain").await,
            ) else {
                report.row(key, None, "no --postgres-url given".into(), target, |v| {
                    v >= floor
                });
                continue;
            };
            println!("incident ingestion on {name}…");
            measure(bench, &api.url, &plain.url).await
        };
        report.row(key, Some(value), detail, target, |v| v >= floor);
    }
}

/// Sends `--reports` reports to the service and writes as many through the baseline, in
/// alternating slices; returns the ratio of their rates and the detail line.
async fn measure(bench: &Bench, api_url: &str, plain_url: &str) -> (f64, String) {
    let args = &bench.args;
    let writers = args.connections;
    let per_slice = (args.reports / SLICES).max(1);
    let plain = Plain::connect(plain_url).await;
    let server = bench.start(api_url, &[]);
    let (mut api, mut baseline) = (Outcome::default(), Duration::ZERO);
    for slice in 0..SLICES {
        let first = slice * per_slice;
        let api_slice = || async {
            let outcome = load::run(
                server.addr,
                report_request(first),
                Bounds {
                    connections: writers,
                    duration: Duration::from_secs(120),
                    max_requests: per_slice,
                },
            )
            .await;
            assert_eq!(outcome.failures, 0, "ingestion had failures");
            assert_eq!(outcome.requests, per_slice, "ingestion timed out");
            outcome
        };
        if slice % 2 == 0 {
            baseline += plain.write(first, per_slice, writers).await;
            api.merge(api_slice().await);
        } else {
            api.merge(api_slice().await);
            baseline += plain.write(first, per_slice, writers).await;
        }
    }
    plain.db.close().await.ok();
    drop(server);
    let total = per_slice * SLICES;
    let api_rate = api.rps();
    let plain_rate = total as f64 / baseline.as_secs_f64().max(1e-9);
    (
        ratio(api_rate, plain_rate),
        format!(
            "{api_rate:.0} reports/s through the API vs {plain_rate:.0}/s plain inserts \
             ({total} reports, {FINGERPRINTS} fingerprints, {writers} concurrent writers each, \
             {SLICES} alternating slices; API p50/p99 {:.2}/{:.2} ms)",
            api.percentile_ms(50.0),
            api.percentile_ms(99.0),
        ),
    )
}

/// The n-th report of the stream, as the load generator sends it (`first` offsets a slice).
fn report_request(first: u64) -> load::RequestFn {
    Arc::new(move |n| {
        let n = first + n;
        let body = json!({"severity": "CRITICAL", "category": "API", "summary": format!("report {n}"), "fingerprint": format!("bench:{}", n % FINGERPRINTS)});
        hyper::Request::post("/ops/incidents")
            .header("host", "127.0.0.1")
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Full::new(Bytes::from(body.to_string())))
            .expect("request")
    })
}

/// The baseline: the report stream's rows written straight through SeaORM.
struct Plain {
    db: DatabaseConnection,
    /// The incident of each fingerprint, once created (what the service looks up).
    incidents: Vec<OnceCell<String>>,
    /// Held around each SQLite write, as the service's incident store holds its own.
    sqlite_writes: Option<Mutex<()>>,
}

impl Plain {
    /// Opens the pool exactly as the service does and migrates the database.
    async fn connect(url: &str) -> Self {
        let config =
            api::Config::from_lookup(|name| (name == "DATABASE_URL").then(|| url.to_owned()))
                .expect("baseline configuration");
        let db = api::db::connect(&config).await.expect("plain database");
        migration_up(&db).await;
        let sqlite_writes =
            (db.get_database_backend() == DbBackend::Sqlite).then(|| Mutex::new(()));
        Self {
            db,
            incidents: (0..FINGERPRINTS).map(|_| OnceCell::new()).collect(),
            sqlite_writes,
        }
    }

    /// Writes reports `first..first + count` with `writers` concurrent writers, each taking the
    /// next report as it finishes one (as the load generator's connections do); returns the time.
    async fn write(&self, first: u64, count: u64, writers: usize) -> Duration {
        let next = AtomicU64::new(first);
        let end = first + count;
        let started = Instant::now();
        let writer = || async {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= end {
                    break;
                }
                self.report(n).await;
            }
        };
        futures::future::join_all((0..writers).map(|_| writer())).await;
        started.elapsed()
    }

    /// One report's rows: a new incident and its event in one transaction, or one event.
    async fn report(&self, n: u64) {
        let fp = n % FINGERPRINTS;
        let summary = format!("report {n}");
        let details = json!({ "fingerprint": format!("bench:{fp}") });
        let _guard = match &self.sqlite_writes {
            Some(lock) => Some(lock.lock().await),
            None => None,
        };
        let created = AtomicBool::new(false);
        let id = self.incidents[fp as usize]
            .get_or_init(|| async {
                created.store(true, Ordering::Relaxed);
                let id = new_id();
                let at = now();
                let txn = self.db.begin().await.expect("begin");
                incident::Entity::insert(incident::ActiveModel {
                    id: Set(id.clone()),
                    created_at: Set(entity::Timestamp::new(at, txn.get_database_backend())),
                    severity: Set(Severity::Critical),
                    category: Set(Category::Api),
                    summary: Set(summary.clone()),
                    details_json: Set(details.clone().into()),
                    resolved_at: Set(None),
                    resolution_notes: Set(None),
                })
                .exec_without_returning(&txn)
                .await
                .expect("insert incident");
                insert_event(&txn, &id, &summary, json!({ "severity": "CRITICAL" })).await;
                txn.commit().await.expect("commit");
                id
            })
            .await;
        if !created.load(Ordering::Relaxed) {
            let metadata = json!({ "severity": "CRITICAL", "summary": summary, "details": details, "repeat": true });
            insert_event(&self.db, id, &summary, metadata).await;
        }
    }
}

/// Inserts a `DETECTED` event now (one statement, so a transaction of its own outside `txn`).
async fn insert_event<C: ConnectionTrait>(
    conn: &C,
    incident_id: &str,
    message: &str,
    metadata: Value,
) {
    event::Entity::insert(event::ActiveModel {
        id: Set(new_id()),
        incident_id: Set(incident_id.to_owned()),
        created_at: Set(entity::Timestamp::new(now(), conn.get_database_backend())),
        event_type: Set(EventType::Detected),
        message: Set(message.to_owned()),
        metadata_json: Set(metadata.into()),
    })
    .exec_without_returning(conn)
    .await
    .expect("insert event");
}
