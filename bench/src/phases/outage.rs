//! A database outage under steady writes: how soon readiness turns 503 after the database goes
//! (`outage_ready_503_ms`), how soon it is 200 again after it returns (`outage_recover_ms`), and
//! how many acknowledged writes are missing afterwards (`outage_acked_writes_lost`, target 0).
//!
//! With `--postgres-url` the database is PostgreSQL behind `testkit`'s TCP proxy, cut to refuse
//! connections; without it, a SQLite file held under another connection's exclusive lock.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use entity::ops_incident_event as event;
use sea_orm::{ColumnTrait, ConnectionTrait, Database, EntityTrait, QueryFilter};
use serde_json::{json, Value};
use testkit::proxy::{ProxyMode, TcpProxy};

use super::{http, Bench, TOKEN};
use crate::report::{round1, Report};

/// How long the database is gone, and how long the load runs after it returns.
const DOWN: Duration = Duration::from_secs(4);
const AFTER: Duration = Duration::from_secs(4);
/// Bounds of each load loop, whatever happens.
const MAX_REQUESTS: usize = 5_000;
const MAX_RUN: Duration = Duration::from_secs(60);

/// How the database is taken away and given back.
enum Fault {
    Proxy(TcpProxy),
    Lock(sea_orm::DatabaseConnection),
}

pub async fn run(bench: &Bench, report: &mut Report) {
    println!("database outage…");
    let pg = bench.postgres("outage").await;
    let (fault, url, direct, backend) = match &pg {
        Some(db) => {
            let parsed = url::Url::parse(&db.url).expect("PostgreSQL URL");
            let upstream = tokio::net::lookup_host(format!(
                "{}:{}",
                parsed.host_str().unwrap_or("127.0.0.1"),
                parsed.port().unwrap_or(5432)
            ))
            .await
            .expect("resolve PostgreSQL")
            .next()
            .expect("an address");
            let proxy = TcpProxy::start(upstream).await;
            let url = proxy.url_for(&db.url);
            (
                Some(Fault::Proxy(proxy)),
                url,
                db.url.clone(),
                "PostgreSQL cut by a proxy",
            )
        }
        None => {
            let url = bench.sqlite_url("outage");
            // The lock's holder connects once the service has created the file.
            (None, url.clone(), url, "SQLite under a held exclusive lock")
        }
    };
    let server = bench.start(&url, &[]);
    let base = format!("http://{}", server.addr);
    let client = http();
    wait_ready(&client, &base).await;
    let fault = match fault {
        Some(f) => f,
        None => {
            let mut options = sea_orm::ConnectOptions::new(direct.clone());
            options.max_connections(1).sqlx_logging(false);
            Fault::Lock(Database::connect(options).await.expect("connect"))
        }
    };

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let ready: Arc<Mutex<Vec<(Instant, u16)>>> = Arc::default();
    let started = Instant::now();
    let writer = {
        let (client, base, stop, acked) =
            (client.clone(), base.clone(), stop.clone(), acked.clone());
        tokio::spawn(async move {
            for n in 0..MAX_REQUESTS {
                if stop.load(Ordering::SeqCst) || started.elapsed() > MAX_RUN {
                    break;
                }
                let body = json!({ "severity": "WARN", "category": "API", "summary": format!("outage bench {n}"), "fingerprint": format!("bench:{}", n % 4) });
                if let Some(id) = report_incident(&client, &base, body).await {
                    acked.lock().unwrap().insert(id);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let poller = {
        let (client, base, stop, ready) =
            (client.clone(), base.clone(), stop.clone(), ready.clone());
        tokio::spawn(async move {
            for _ in 0..MAX_REQUESTS * 2 {
                if stop.load(Ordering::SeqCst) || started.elapsed() > MAX_RUN {
                    break;
                }
                let status = client
                    .get(format!("{base}/health/ready"))
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await
                    .map_or(0, |r| r.status().as_u16());
                ready.lock().unwrap().push((Instant::now(), status));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    tokio::time::sleep(Duration::from_secs(1)).await;
    let cut = Instant::now();
    match &fault {
        Fault::Proxy(proxy) => proxy.cut(ProxyMode::Refuse).await,
        Fault::Lock(holder) => {
            holder
                .execute_unprepared("BEGIN EXCLUSIVE")
                .await
                .expect("lock");
        }
    }
    tokio::time::sleep(DOWN).await;
    let restored = Instant::now();
    match &fault {
        Fault::Proxy(proxy) => proxy.restore().await,
        Fault::Lock(holder) => {
            holder.execute_unprepared("ROLLBACK").await.expect("unlock");
        }
    }
    tokio::time::sleep(AFTER).await;
    stop.store(true, Ordering::SeqCst);
    let _ = tokio::join!(writer, poller);

    let samples = ready.lock().unwrap().clone();
    let ms = |d: Duration| round1(d.as_secs_f64() * 1000.0);
    let down_ms = samples
        .iter()
        .find(|(at, s)| *at >= cut && *s == 503)
        .map(|(at, _)| ms(*at - cut));
    let up_ms = samples
        .iter()
        .find(|(at, s)| *at >= restored && *s == 200)
        .map(|(at, _)| ms(*at - restored));
    drained(&client, &base).await;
    let acked = acked.lock().unwrap().clone();
    let db = Database::connect(&direct).await.expect("connect");
    let stored = event::Entity::find()
        .filter(event::Column::Id.is_in(acked.iter().cloned()))
        .all(&db)
        .await
        .expect("read events")
        .len();
    let lost = acked.len() - stored;
    drop(server);

    report.row(
        "outage_ready_503_ms",
        down_ms,
        format!("{backend}: from the cut to the first readiness 503, probed every 10 ms under steady writes"),
        "≤ 2000",
        |v| v <= 2000.0,
    );
    report.row(
        "outage_recover_ms",
        up_ms,
        format!("{backend}: from the database's return to the first readiness 200"),
        "≤ 2000",
        |v| v <= 2000.0,
    );
    report.row(
        "outage_acked_writes_lost",
        Some(lost as f64),
        format!(
            "{backend}: of {} incident reports answered 2xx (stored or queued) during a {} s outage, missing afterwards",
            acked.len(),
            DOWN.as_secs()
        ),
        "0",
        |v| v == 0.0,
    );
}

/// Reports an incident; the id of its event when the answer acknowledged it.
async fn report_incident(client: &reqwest::Client, base: &str, body: Value) -> Option<String> {
    let resp = client
        .post(format!("{base}/ops/incidents"))
        .bearer_auth(TOKEN)
        .timeout(Duration::from_secs(10))
        .json(&body)
        .send()
        .await
        .ok()?;
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.ok()?;
    let id = match status {
        200 | 201 => body["event"]["id"].as_str(),
        202 => body["eventId"].as_str(),
        _ => None,
    };
    id.map(str::to_owned)
}

async fn wait_ready(client: &reqwest::Client, base: &str) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        let ok = client
            .get(format!("{base}/health/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ok {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (bounded) until the spool has drained into the database.
async fn drained(client: &reqwest::Client, base: &str) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        if let Ok(resp) = client.get(format!("{base}/health/db")).send().await {
            let body: Value = resp.json().await.unwrap_or_default();
            if body["ready"] == true && body["spool"]["depth"] == 0 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
