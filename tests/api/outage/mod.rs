//! Real database faults under a bounded steady load: PostgreSQL cut and restored by a TCP proxy,
//! SQLite held under an exclusive lock by another connection, and a `kill -9` during an outage.
//! Liveness stays 200, readiness follows the database within 2 s both ways, no request waits for
//! a pool timeout, and every write that was acknowledged (stored or queued) is in the database
//! afterwards, counted row by row, once; the outage is one incident.

mod attach;
mod load;
mod read_only;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use entity::{ops_gate_evaluation as evaluation, ops_incident as incident};
use entity::{ops_incident_event as event, Category, Severity};
use reqwest::StatusCode;
use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter};
use serde_json::{json, Value};
use testkit::proxy::{ProxyMode, TcpProxy};

use crate::helpers::{ApiClient, Backend, InProcessApp, TestApp, TestDb};
use load::{Acked, Load};

/// How long readiness may take to follow the database, either way.
const FOLLOW: Duration = Duration::from_secs(2);
/// The longest any request of the load may take: the breaker's operation timeout (set to 1 s
/// here) with room, far below the pool's acquire timeout (5 s) that requests waited for before.
const SLOWEST: Duration = Duration::from_millis(2_500);

/// Waits until the spool is empty and the outage incident resolved, at most `within`.
async fn drained(app: &ApiClient, within: Duration) {
    let started = Instant::now();
    loop {
        let (status, body) = app.get("/health/db").await;
        if status == StatusCode::OK && body["spool"]["depth"] == 0 {
            return;
        }
        assert!(
            started.elapsed() < within,
            "the spool did not drain within {within:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every acknowledged write is stored exactly once: each event id and each gate id is one row.
async fn assert_all_stored(conn: &DatabaseConnection, acked: &Acked) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let events: BTreeSet<String> = event::Entity::find()
            .filter(event::Column::Id.is_in(acked.event_ids.iter().cloned()))
            .all(conn)
            .await
            .expect("read events")
            .into_iter()
            .map(|e| e.id)
            .collect();
        let gates: BTreeSet<String> = evaluation::Entity::find()
            .filter(evaluation::Column::Id.is_in(acked.gate_ids.iter().cloned()))
            .all(conn)
            .await
            .expect("read evaluations")
            .into_iter()
            .map(|e| e.id)
            .collect();
        let missing_events: Vec<_> = acked.event_ids.difference(&events).collect();
        let missing_gates: Vec<_> = acked.gate_ids.difference(&gates).collect();
        if missing_events.is_empty() && missing_gates.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "acknowledged writes are missing: {} of {} events {:?}, {} of {} verdicts {:?}",
            missing_events.len(),
            acked.event_ids.len(),
            missing_events.iter().take(5).collect::<Vec<_>>(),
            missing_gates.len(),
            acked.gate_ids.len(),
            missing_gates.iter().take(5).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Once each: replay never doubles an event (ids are primary keys), and dedupe at replay
    // leaves one open incident per fingerprint the load used.
    for fp in &acked.fingerprints {
        let open = incident::Entity::find()
            .filter(incident::Column::ResolvedAt.is_null())
            .all(conn)
            .await
            .expect("read incidents")
            .into_iter()
            .filter(|i| i.details_json["fingerprint"] == json!(fp))
            .count();
        assert_eq!(open, 1, "fingerprint {fp}: one open incident after replay");
    }
}

/// The outage is one CRITICAL `DB` incident, detected no later than the first queued answer,
/// and resolved once the database is back.
async fn assert_one_outage(
    conn: &DatabaseConnection,
    first_queued: Option<chrono::DateTime<chrono::Utc>>,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let outages: Vec<incident::Model> = incident::Entity::find()
            .filter(incident::Column::Category.eq(Category::Db))
            .all(conn)
            .await
            .expect("read incidents")
            .into_iter()
            .filter(|i| i.details_json["fingerprint"] == "database:outage")
            .collect();
        assert!(outages.len() <= 1, "one outage, one incident: {outages:?}");
        if let Some(outage) = outages.first().filter(|o| o.resolved_at.is_some()) {
            assert_eq!(outage.severity, Severity::Critical);
            if let Some(first) = first_queued {
                assert!(
                    outage.created_at.at()
                        <= first.naive_utc() + chrono::TimeDelta::milliseconds(1),
                    "detected at {} but a write was queued at {first}",
                    outage.created_at.at()
                );
            }
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no resolved outage incident: {outages:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Another process's connection to the SQLite file, one connection so that its `BEGIN` and its
/// `ROLLBACK` meet the same one.
async fn lock_holder(db: &TestDb) -> DatabaseConnection {
    let mut options = sea_orm::ConnectOptions::new(db.url.clone());
    options.max_connections(1).sqlx_logging(false);
    sea_orm::Database::connect(options).await.expect("connect")
}

/// PostgreSQL through a proxy that refuses connections for a while, under steady load.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_cut_and_restored_under_load_loses_nothing() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let upstream = url::Url::parse(&db.url).expect("PostgreSQL URL");
    let upstream = format!(
        "{}:{}",
        upstream.host_str().unwrap_or("127.0.0.1"),
        upstream.port().unwrap_or(5432)
    );
    let upstream = tokio::net::lookup_host(upstream)
        .await
        .expect("resolve PostgreSQL")
        .next()
        .expect("an address");
    let proxy = TcpProxy::start(upstream).await;
    let proxied = proxy.url_for(&db.url);
    let app = InProcessApp::spawn_with(
        &db,
        &[
            ("DATABASE_URL", &proxied),
            ("DB_BREAKER_TIMEOUT_MS", "1000"),
        ],
        &[],
    )
    .await;

    let load = Load::start(app.base.clone(), "pg");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cut_at = Instant::now();
    proxy.cut(ProxyMode::Refuse).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let restored_at = Instant::now();
    proxy.restore().await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let report = load.stop().await;

    report.assert_live_throughout();
    report.assert_ready_follows(cut_at, restored_at, FOLLOW);
    report.assert_no_request_slower_than(SLOWEST);
    assert!(
        report.acked.queued > 0,
        "writes were queued during the cut: {report:?}"
    );
    report.assert_gate_never_passed_while_open(cut_at + FOLLOW, restored_at);

    drained(&app, Duration::from_secs(10)).await;
    let conn = db.connect().await;
    assert_all_stored(&conn, &report.acked).await;
    assert_one_outage(&conn, report.acked.first_queued_at).await;
}

/// SQLite held under an exclusive lock by another connection: writes are queued instead of
/// waiting for the busy timeout, and stored once the lock is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_held_lock_queues_writes_and_replays_them() {
    let db = TestDb::new(Backend::Sqlite).await.expect("SQLite");
    let app = InProcessApp::spawn_with(&db, &[("DB_BREAKER_TIMEOUT_MS", "1000")], &[]).await;
    let load = Load::start(app.base.clone(), "lite");
    tokio::time::sleep(Duration::from_secs(1)).await;

    let holder = lock_holder(&db).await;
    let cut_at = Instant::now();
    holder
        .execute_unprepared("BEGIN EXCLUSIVE")
        .await
        .expect("take the exclusive lock");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let restored_at = Instant::now();
    holder
        .execute_unprepared("ROLLBACK")
        .await
        .expect("release");
    holder.close().await.ok();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let report = load.stop().await;

    report.assert_live_throughout();
    report.assert_ready_follows(cut_at, restored_at, Duration::from_secs(4));
    report.assert_no_request_slower_than(SLOWEST);
    assert!(
        report.acked.queued > 0,
        "writes were queued while locked: {report:?}"
    );

    drained(&app, Duration::from_secs(15)).await;
    let conn = db.connect().await;
    assert_all_stored(&conn, &report.acked).await;
    assert_one_outage(&conn, report.acked.first_queued_at).await;
}

/// The spool survives `kill -9` during an outage and the next start replays it: every queued
/// write is stored once, with the time it was reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_writes_survive_kill_9_and_are_replayed_by_the_next_start() {
    let db = TestDb::new(Backend::Sqlite).await.expect("SQLite");
    let env = [
        ("DB_BREAKER_FAILURES", "1"),
        ("DB_BREAKER_TIMEOUT_MS", "1000"),
    ];
    let app = TestApp::spawn_with(&db, &env, &[]);
    let holder = lock_holder(&db).await;
    holder
        .execute_unprepared("BEGIN EXCLUSIVE")
        .await
        .expect("take the exclusive lock");

    let mut acked = Vec::new();
    for n in 0..20 {
        let (status, body) = app
            .post(
                "/ops/incidents",
                json!({ "severity": "WARN", "category": "API", "summary": format!("report {n}"), "fingerprint": format!("kill9:{}", n % 2) }),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert_eq!(body["queued"], true);
        acked.push((
            body["eventId"].as_str().unwrap().to_owned(),
            body["reportedAt"].as_str().unwrap().to_owned(),
        ));
    }
    let _ = std::process::Command::new("kill")
        .args(["-9", &app.pid().to_string()])
        .status();
    drop(app);
    holder
        .execute_unprepared("ROLLBACK")
        .await
        .expect("release");
    holder.close().await.ok();

    let app = TestApp::spawn_with(&db, &env, &[]);
    drained(&app, Duration::from_secs(15)).await;
    let conn = db.connect().await;
    for (id, at) in &acked {
        let stored = event::Entity::find_by_id(id.as_str())
            .one(&conn)
            .await
            .expect("read event")
            .unwrap_or_else(|| panic!("queued event {id} was lost with the process"));
        assert_eq!(
            api::kernel::timestamp(&stored.created_at),
            *at,
            "original time kept"
        );
    }
    let events = event::Entity::find().all(&conn).await.expect("events");
    let load_events = events
        .iter()
        .filter(|e| acked.iter().any(|(id, _)| *id == e.id))
        .count();
    assert_eq!(load_events, acked.len(), "each queued write stored once");
    for fp in ["kill9:0", "kill9:1"] {
        let open: Vec<Value> = incident::Entity::find()
            .all(&conn)
            .await
            .expect("incidents")
            .into_iter()
            .filter(|i| i.details_json["fingerprint"] == fp)
            .map(|i| json!(i.id))
            .collect();
        assert_eq!(open.len(), 1, "dedupe at replay: one incident for {fp}");
    }
    assert_one_outage(&conn, None).await;
    drop(app);
}

/// At the spool's cap a write the database cannot take is refused with 507 and an error saying
/// so, never dropped silently; what was queued before the cap is stored once the database is
/// back, and what was refused is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_refuses_with_507_and_keeps_what_it_acknowledged() {
    let db = TestDb::new(Backend::Sqlite).await.expect("SQLite");
    let app = InProcessApp::spawn_with(
        &db,
        &[("SPOOL_MAX_BYTES", "4096"), ("DB_BREAKER_FAILURES", "1")],
        &[],
    )
    .await;
    let holder = lock_holder(&db).await;
    holder
        .execute_unprepared("BEGIN EXCLUSIVE")
        .await
        .expect("take the exclusive lock");

    let (mut queued, mut refused) = (Vec::new(), 0);
    for n in 0..100 {
        let (status, body) = app
            .post(
                "/ops/incidents",
                json!({ "severity": "INFO", "category": "OTHER", "summary": format!("spool cap {n} {}", "x".repeat(200)) }),
            )
            .await;
        match status {
            StatusCode::ACCEPTED => queued.push(body["eventId"].as_str().unwrap().to_owned()),
            StatusCode::INSUFFICIENT_STORAGE => {
                assert_eq!(body["error"]["code"], "spool_full", "{body}");
                let message = body["error"]["message"].as_str().unwrap_or_default();
                assert!(message.contains("spool is full"), "{message}");
                refused += 1;
                if refused == 3 {
                    break;
                }
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(refused, 3, "the cap was never reached");
    assert!(!queued.is_empty(), "nothing was queued before the cap");

    holder
        .execute_unprepared("ROLLBACK")
        .await
        .expect("release");
    holder.close().await.ok();
    drained(&app, Duration::from_secs(15)).await;
    let conn = db.connect().await;
    let stored = incident::Entity::find()
        .filter(incident::Column::Category.ne(Category::Db))
        .all(&conn)
        .await
        .expect("incidents");
    assert_eq!(
        stored.len(),
        queued.len(),
        "every queued report stored, no refused one"
    );
    let acked = Acked {
        event_ids: queued.into_iter().collect(),
        ..Default::default()
    };
    assert_all_stored(&conn, &acked).await;
}

/// Opt-in safe shutdown: once the breaker has stayed open for `DB_OUTAGE_EXIT_AFTER_MS`, the
/// service spools a CRITICAL incident, shuts down gracefully and exits 1 (so systemd's
/// `Restart=on-failure` restarts it); the next start stores the incident.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_outage_exits_1_after_spooling_a_critical_incident() {
    let db = TestDb::new(Backend::Sqlite).await.expect("SQLite");
    let env = [
        ("DB_OUTAGE_EXIT_AFTER_MS", "1500"),
        ("DB_BREAKER_FAILURES", "1"),
    ];
    let mut app = TestApp::spawn_with(&db, &env, &[]);
    let holder = lock_holder(&db).await;
    holder
        .execute_unprepared("BEGIN EXCLUSIVE")
        .await
        .expect("take the exclusive lock");
    let exited = tokio::task::block_in_place(|| app.wait_exit(Duration::from_secs(20)))
        .expect("the service did not exit during a persistent outage");
    assert_eq!(exited.code(), Some(1), "exit 1 for the supervisor");
    drop(app);
    holder
        .execute_unprepared("ROLLBACK")
        .await
        .expect("release");
    holder.close().await.ok();

    let app = TestApp::spawn(&db);
    drained(&app, Duration::from_secs(15)).await;
    let conn = db.connect().await;
    let persistent: Vec<incident::Model> = incident::Entity::find()
        .all(&conn)
        .await
        .expect("incidents")
        .into_iter()
        .filter(|i| i.details_json["fingerprint"] == "database:persistent-outage")
        .collect();
    assert_eq!(persistent.len(), 1, "{persistent:?}");
    assert_eq!(persistent[0].severity, Severity::Critical);
    assert_eq!(persistent[0].category, Category::Db);
    drop(app);
}
