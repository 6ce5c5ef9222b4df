//! Footprint outside the load phases: resident memory after a storm of idle connections
//! (`rss_after_conn_storm_mib`) and start-up time (`startup_ms`).

use std::time::{Duration, Instant};

use super::{http, Bench};
use crate::report::{round1, Report};
use crate::storm;

/// Resident memory of a fresh service after three rounds of idle connections.
pub async fn storm(bench: &Bench, report: &mut Report) {
    println!("connection storm…");
    let server = bench.start(&bench.sqlite_url("main"), &[]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let storm = storm::run(&server).await;
    let margin = storm.idle_mib + 10.0;
    report.row(
        "rss_after_conn_storm_mib",
        Some(round1(storm.after_mib)),
        format!(
            "idle {:.1} MiB, {:.1} MiB with 2,000 idle connections held; liveness answered in {} of 3 rounds",
            storm.idle_mib, storm.held_mib, storm.live_ok
        ),
        "≤ idle + 10",
        move |v| v <= margin && storm.live_ok == 3,
    );
}

/// Spawn to the first 200 from `/health/ready` on an existing database, median of 5.
pub async fn startup(bench: &Bench, report: &mut Report) {
    println!("start-up time…");
    let client = http();
    let db = bench.sqlite_url("main");
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let server = bench.start(&db, &[]);
        loop {
            let ok = client
                .get(format!("http://{}/health/ready", server.addr))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok || t.elapsed() > Duration::from_secs(30) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        drop(server);
    }
    times.sort_by(f64::total_cmp);
    report.row(
        "startup_ms",
        Some(round1(times[times.len() / 2])),
        "spawn to first 200 from /health/ready, median of 5, no pending migrations".into(),
        "≤ 300",
        |v| v <= 300.0,
    );
}
