//! Keyset pages over a large history, first page against deep page: the `deep_vs_first_page`
//! and `timeline_p99_ms_postgres` figures.

use std::time::Instant;

use sea_orm::Database;

use super::{http, migration_up, Bench, TOKEN};
use crate::load;
use crate::procs::Server;
use crate::report::{ratio, Report};
use crate::seed;

/// Runs the phase on SQLite and, with `--postgres-url`, on PostgreSQL.
pub async fn run(bench: &Bench, report: &mut Report) {
    let args = &bench.args;
    println!(
        "timeline at scale ({} events over {} incidents)…",
        args.events, args.incidents
    );
    let sqlite = measure(bench, &bench.sqlite_url("scale")).await;
    let pg = match bench.postgres("scale").await {
        Some(db) => Some(measure(bench, &db.url).await),
        None => None,
    };
    let worst = pg.as_ref().map_or(sqlite.deep_vs_first, |p| {
        p.deep_vs_first.max(sqlite.deep_vs_first)
    });
    let mut detail = format!("SQLite: {}", sqlite.detail);
    if let Some(p) = &pg {
        detail.push_str(&format!("; PostgreSQL: {}", p.detail));
    }
    report.row("deep_vs_first_page", Some(worst), detail, "≤ 1.5", |v| {
        v <= 1.5
    });
    report.row(
        "timeline_p99_ms_postgres",
        pg.as_ref().map(|p| p.timeline_p99_ms),
        pg.as_ref()
            .map(|p| p.timeline_detail.clone())
            .unwrap_or_else(|| "no --postgres-url given".into()),
        "≤ 10 ms",
        |v| v <= 10.0,
    );
}

/// Latencies in microseconds (each sorted) of `times` sequential GETs of each of two paths,
/// alternating between them so that both see the same machine.
async fn alternating(
    client: &reqwest::Client,
    server: &Server,
    paths: [&str; 2],
    times: usize,
) -> [Vec<u64>; 2] {
    let mut samples = [Vec::with_capacity(times), Vec::with_capacity(times)];
    for _ in 0..times {
        for (path, out) in paths.iter().zip(samples.iter_mut()) {
            let t = Instant::now();
            let resp = client
                .get(format!("http://{}{path}", server.addr))
                .bearer_auth(TOKEN)
                .send()
                .await
                .expect("request");
            assert!(resp.status().is_success(), "{path}: {}", resp.status());
            let _ = resp.bytes().await;
            out.push(t.elapsed().as_micros() as u64);
        }
    }
    for s in &mut samples {
        s.sort_unstable();
    }
    samples
}

fn cursor(created: chrono::NaiveDateTime, id: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("v1|{}|{id}", created.and_utc().timestamp_millis()))
}

/// What the timeline-at-scale phase found on one backend.
struct Scale {
    /// The worst p99 ratio of a deep page to its first page.
    deep_vs_first: f64,
    detail: String,
    /// The worst p99 of `GET /ops/timeline`, first or deep page.
    timeline_p99_ms: f64,
    timeline_detail: String,
}

/// Samples per page in the timeline-at-scale phase.
const PAGE_SAMPLES: usize = 3_000;

/// Seeds the history, then compares deep keyset pages with first pages.
async fn measure(bench: &Bench, url: &str) -> Scale {
    let args = &bench.args;
    let db = Database::connect(url).await.expect("scale database");
    migration_up(&db).await;
    let t = Instant::now();
    seed::history(&db, args.incidents, args.events).await;
    let seeded = t.elapsed();
    db.close().await.ok();
    let server = bench.start(url, &[]);
    let client = http();
    let base = chrono::NaiveDate::from_ymd_opt(2026, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .expect("date");
    let deep_incident = (args.incidents / 10).max(1);
    let incident_cursor = cursor(
        base + chrono::Duration::seconds(deep_incident as i64 * 60),
        &format!("cseed{deep_incident:020}"),
    );
    let deep_event = args.events * 8 / 10;
    let timeline_cursor = cursor(
        base + chrono::Duration::seconds(deep_event as i64),
        &format!("eseed{deep_event:020}"),
    );
    let one = format!("cseed{:020}", args.incidents / 2);
    let per = args.events / args.incidents.max(1);
    let inner = per * 8 / 10;
    let event_cursor = cursor(
        base + chrono::Duration::seconds((inner * args.incidents + args.incidents / 2) as i64),
        &format!("eseed{:020}", inner * args.incidents + args.incidents / 2),
    );
    let pairs = [
        (
            "incidents",
            "/ops/incidents?limit=50".to_owned(),
            format!("/ops/incidents?limit=50&cursor={incident_cursor}"),
        ),
        (
            "incident",
            format!("/ops/incidents/{one}?limit=10"),
            format!("/ops/incidents/{one}?limit=10&cursor={event_cursor}"),
        ),
        (
            "timeline",
            "/ops/timeline?since=2026-01-01T00:00:00Z&limit=50".to_owned(),
            format!("/ops/timeline?since=2026-01-01T00:00:00Z&limit=50&cursor={timeline_cursor}"),
        ),
    ];
    let mut worst: f64 = 0.0;
    let mut timeline = (0.0, String::new());
    let mut parts = Vec::new();
    for (name, first, deep) in pairs {
        alternating(&client, &server, [&first, &deep], 20).await;
        let [first, deep] = alternating(&client, &server, [&first, &deep], PAGE_SAMPLES).await;
        let ms = |v: &[u64], p: f64| load::percentile(v, p) as f64 / 1000.0;
        let (first_p99, deep_p99) = (ms(&first, 99.0), ms(&deep, 99.0));
        worst = worst.max(ratio(deep_p99, first_p99));
        let part = format!(
            "{name} {first_p99:.2}/{deep_p99:.2} ms (p50 {:.2}/{:.2})",
            ms(&first, 50.0),
            ms(&deep, 50.0)
        );
        if name == "timeline" {
            timeline = (first_p99.max(deep_p99), format!("p99 first/deep {part}"));
        }
        parts.push(part);
    }
    Scale {
        deep_vs_first: worst,
        detail: format!(
            "p99 first/deep of {PAGE_SAMPLES} alternating requests each: {} (seeded in {:.0} s)",
            parts.join(", "),
            seeded.as_secs_f64()
        ),
        timeline_p99_ms: (timeline.0 * 1000.0_f64).round() / 1000.0,
        timeline_detail: timeline.1,
    }
}
