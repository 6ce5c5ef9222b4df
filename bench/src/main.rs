//! `cargo run --release -p bench`: measures opsdoctor's speed and footprint, each figure beside a
//! baseline taken in the same run, and writes `bench/results/latest.{json,md}`.
//!
//! Everything runs on loopback; every load loop is bounded in connections, time and requests.

mod bare;
mod load;
mod procs;
mod seed;
mod storm;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, Subcommand};
use http_body_util::Full;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use serde_json::{json, Value};

use crate::load::{get, Bounds, Outcome, Pace, Target};
use crate::procs::Server;

const TOKEN: &str = "bench-admin-token-0123456789abcdef";
const READY_TTL_MS: u64 = 1000;

#[derive(Parser)]
#[command(about = "Benchmarks for opsdoctor, reported as ratios against same-run baselines")]
struct Args {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// A PostgreSQL URL whose user may create databases; the PostgreSQL figures are measured in a
    /// database the bench creates and drops. Without it they are reported as null.
    #[arg(long, env = "BENCH_POSTGRES_URL")]
    postgres_url: Option<String>,
    /// How long each load phase runs.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Concurrent keep-alive connections of the load generator.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Events seeded for the timeline-at-scale figures.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Incidents seeded for the timeline-at-scale figures.
    #[arg(long, default_value_t = 10_000)]
    incidents: u64,
    /// Reports sent in the ingestion phase.
    #[arg(long, default_value_t = 3_000)]
    reports: u64,
    /// Where to write latest.json and latest.md.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    /// Run only these phases (comma-separated), for profiling one figure; the results then go
    /// to partial.json and partial.md instead of latest.*.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Phase>,
}

/// The phases of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Phase {
    /// Liveness, readiness, the bundle and the gate under load; resident memory.
    Throughput,
    /// A doctor run's wall time against stand-ins.
    Doctor,
    /// Incident reports through the API against plain inserts.
    Ingest,
    /// Keyset pages over a large history.
    Scale,
    /// Start-up time on an existing database.
    Startup,
    /// Resident memory after a storm of idle connections.
    Storm,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the bare baseline (used by the bench itself).
    #[command(hide = true)]
    BareServer,
}

/// One line of the report: a figure, its baseline and its target.
struct Row {
    key: &'static str,
    value: Option<f64>,
    detail: String,
    target: &'static str,
    met: Option<bool>,
}

/// What a run found: the figures and the latency table.
#[derive(Default)]
struct Report {
    rows: Vec<Row>,
    latency: BTreeMap<&'static str, Value>,
}

/// The output contract's figures, in the order the report lists them.
const KEYS: [&str; 14] = [
    "live_vs_bare",
    "ready_vs_live",
    "ready_db_queries_per_ttl",
    "gate_p99_vs_live_p99",
    "doctor_wall_vs_slowest",
    "doctor_wall_vs_timeout_when_hanging",
    "ingest_vs_plain_sqlite",
    "ingest_vs_plain_postgres",
    "deep_vs_first_page",
    "timeline_p99_ms_postgres",
    "idle_rss_mib",
    "peak_rss_mib",
    "rss_after_conn_storm_mib",
    "startup_ms",
];

impl Report {
    /// Adds a figure; `meets` judges it against its target (nothing to judge without a value).
    fn row(
        &mut self,
        key: &'static str,
        value: Option<f64>,
        detail: String,
        target: &'static str,
        meets: impl Fn(f64) -> bool,
    ) {
        debug_assert!(KEYS.contains(&key), "{key} is not in the output contract");
        self.rows.push(Row {
            key,
            value,
            met: value.map(&meets),
            detail,
            target,
        });
    }
}

fn main() {
    let args = Args::parse();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    if let Some(Cmd::BareServer) = args.command {
        runtime.block_on(bare::serve());
        return;
    }
    runtime.block_on(bench(args));
}

fn env(db_url: &str, extra: &[(&str, String)]) -> Vec<(String, String)> {
    let mut env = vec![
        ("DATABASE_URL".to_owned(), db_url.to_owned()),
        ("ADMIN_TOKEN".to_owned(), TOKEN.to_owned()),
        ("DOCTOR_INTERVAL_MS".to_owned(), "0".to_owned()),
        ("DOCTOR_MIN_INTERVAL_MS".to_owned(), "0".to_owned()),
        ("READY_CACHE_TTL_MS".to_owned(), READY_TTL_MS.to_string()),
    ];
    env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    env
}

async fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client")
}

async fn get_json(client: &reqwest::Client, server: &Server, path: &str) -> Value {
    client
        .get(format!("http://{}{path}", server.addr))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json")
}

async fn post_json(client: &reqwest::Client, server: &Server, path: &str, body: Value) -> Value {
    client
        .post(format!("http://{}{path}", server.addr))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json")
}

fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        0.0
    } else {
        (a / b * 1000.0).round() / 1000.0
    }
}

async fn bench(args: Args) {
    let started = Instant::now();
    println!("building the release binary…");
    let binary = procs::build_release();
    let dir = tempfile::tempdir().expect("temp dir");
    let run = |phase: Phase| args.only.is_empty() || args.only.contains(&phase);
    let mut report = Report::default();

    let main_db = sqlite_url(dir.path(), "main");
    if run(Phase::Throughput) {
        throughput(&binary, &main_db, dir.path(), &args, &mut report).await;
    }
    if run(Phase::Doctor) {
        println!("doctor run wall time…");
        let client = http().await;
        let (vs_slowest, vs_timeout, doctor_detail) = doctor_wall(
            &binary,
            &sqlite_url(dir.path(), "doctor"),
            dir.path(),
            &client,
        )
        .await;
        report.row(
            "doctor_wall_vs_slowest",
            Some(vs_slowest),
            doctor_detail.0,
            "≤ 1.1",
            |v| v <= 1.1,
        );
        report.row(
            "doctor_wall_vs_timeout_when_hanging",
            Some(vs_timeout),
            doctor_detail.1,
            "≤ 1.1",
            |v| v <= 1.1,
        );
    }

    // Ingestion and the timeline at scale, on SQLite and (when given) PostgreSQL.
    let postgres = match &args.postgres_url {
        Some(url) => Some(PgDatabase::create(url).await),
        None => None,
    };
    if run(Phase::Ingest) {
        for backend in ["sqlite", "postgres"] {
            let key = if backend == "sqlite" {
                "ingest_vs_plain_sqlite"
            } else {
                "ingest_vs_plain_postgres"
            };
            let urls = match (backend, &postgres) {
                ("sqlite", _) => Some((
                    sqlite_url(dir.path(), "ingest"),
                    sqlite_url(dir.path(), "plain"),
                )),
                (_, Some(pg)) => {
                    pg.create_db("ingest").await;
                    pg.create_db("plain").await;
                    Some((pg.url("ingest"), pg.url("plain")))
                }
                (_, None) => None,
            };
            let Some((url, plain_url)) = urls else {
                report.row(
                    key,
                    None,
                    "no --postgres-url given".into(),
                    "≥ 0.5",
                    |v| v >= 0.5,
                );
                continue;
            };
            println!("incident ingestion on {backend}…");
            let (value, detail) = ingestion(
                &binary,
                &url,
                &plain_url,
                dir.path(),
                args.reports,
                args.connections,
            )
            .await;
            report.row(key, Some(value), detail, "≥ 0.5", |v| v >= 0.5);
        }
    }

    if run(Phase::Scale) {
        println!(
            "timeline at scale ({} events over {} incidents)…",
            args.events, args.incidents
        );
        let sqlite = scale(&binary, &sqlite_url(dir.path(), "scale"), dir.path(), &args).await;
        let pg = match &postgres {
            Some(pg) => {
                pg.create_db("scale").await;
                Some(scale(&binary, &pg.url("scale"), dir.path(), &args).await)
            }
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

    if run(Phase::Storm) {
        println!("connection storm…");
        let server = procs::start(&binary, &[], &env(&main_db, &[]), dir.path());
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

    if run(Phase::Startup) {
        println!("start-up time…");
        let client = http().await;
        let startup = startup_ms(&binary, &main_db, dir.path(), &client).await;
        report.row(
            "startup_ms",
            Some(startup),
            "spawn to first 200 from /health/ready, median of 5, no pending migrations".into(),
            "≤ 300",
            |v| v <= 300.0,
        );
    }

    if let Some(pg) = postgres {
        pg.drop_all().await;
    }
    let name = if args.only.is_empty() {
        "latest"
    } else {
        "partial"
    };
    write_report(&args.out, name, &report, started.elapsed());
}

fn sqlite_url(dir: &Path, name: &str) -> String {
    format!("sqlite://{}/{name}.db?mode=rwc", dir.display())
}

/// Throughput, latency and footprint of the probes, the bundle and the gate.
async fn throughput(binary: &Path, db: &str, dir: &Path, args: &Args, report: &mut Report) {
    println!(
        "throughput and latency ({} connections, {:?} per phase)…",
        args.connections, args.duration
    );
    let me = std::env::current_exe().expect("current exe");
    let client = http().await;
    let bounds = Bounds {
        connections: args.connections,
        duration: args.duration,
        max_requests: 2_000_000,
    };
    let bare = procs::start(&me, &["bare-server"], &[], dir);
    let server = procs::start(binary, &[], &env(db, &[]), dir);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss = server.rss_mib();
    let warm = Bounds {
        duration: Duration::from_millis(500),
        ..bounds
    };
    load::run(bare.addr, get("/health/live", None), warm).await;
    load::run(server.addr, get("/health/live", None), warm).await;
    let live_at = |addr| Target {
        addr,
        make: get("/health/live", None),
    };
    let (bare_live, live) = load::interleaved(
        &live_at(bare.addr),
        &live_at(server.addr),
        Pace::Closed,
        bounds,
        6,
    )
    .await;
    drop(bare);
    let before = get_json(&client, &server, "/ops/doctor").await["readiness"]["checksRun"]
        .as_u64()
        .unwrap_or(0);
    let ready = load::run(server.addr, get("/health/ready", None), bounds).await;
    let after = get_json(&client, &server, "/ops/doctor").await["readiness"]["checksRun"]
        .as_u64()
        .unwrap_or(0);
    let ttls = ready.elapsed.as_secs_f64() / (READY_TTL_MS as f64 / 1000.0);
    let queries_per_ttl = ((after.saturating_sub(before)) as f64 / ttls * 100.0).round() / 100.0;
    let bundle = load::run(server.addr, get("/ops/doctor", Some(TOKEN)), bounds).await;
    let run = post_json(&client, &server, "/ops/doctor/run", json!({})).await;
    assert!(run["results"].is_array(), "doctor run failed: {run}");
    let gate_target = Target {
        addr: server.addr,
        make: get("/ops/gate?env=bench&release=r1&max_age=3600", Some(TOKEN)),
    };
    let gate = load::run(gate_target.addr, gate_target.make.clone(), bounds).await;
    // Latency compared at an equal offered load: half of what the gate sustains at saturation,
    // sent to liveness and to the gate alike.
    let rate = (gate.rps() / 2.0).round();
    let (live_paced, gate_paced) = load::interleaved(
        &live_at(server.addr),
        &gate_target,
        Pace::Rate(rate),
        bounds,
        8,
    )
    .await;
    let peak_rss = server.peak_rss_mib();
    for (name, o) in [
        ("bare_live", &bare_live),
        ("live", &live),
        ("ready", &ready),
        ("doctor_bundle", &bundle),
        ("gate_stored", &gate),
        ("live_at_half_gate_capacity", &live_paced),
        ("gate_stored_at_half_gate_capacity", &gate_paced),
    ] {
        report.latency.insert(name, summary(o));
    }
    drop(server);

    let live_vs_bare = ratio(live.rps(), bare_live.rps());
    report.row(
        "live_vs_bare",
        Some(live_vs_bare),
        format!(
            "{:.0} vs {:.0} rps (6 alternating slices)",
            live.rps(),
            bare_live.rps()
        ),
        "≥ 0.9",
        |v| v >= 0.9,
    );
    report.row(
        "ready_vs_live",
        Some(ratio(ready.rps(), live.rps())),
        format!("{:.0} vs {:.0} rps", ready.rps(), live.rps()),
        "≥ 0.8",
        |v| v >= 0.8,
    );
    report.row(
        "ready_db_queries_per_ttl",
        Some(queries_per_ttl),
        format!(
            "{} database checks for {} probes over {:.1} s (TTL {READY_TTL_MS} ms)",
            after.saturating_sub(before),
            ready.requests,
            ready.elapsed.as_secs_f64()
        ),
        "≤ 1 per TTL",
        |v| v <= 1.05,
    );
    report.row(
        "gate_p99_vs_live_p99",
        Some(ratio(
            gate_paced.percentile_ms(99.0),
            live_paced.percentile_ms(99.0),
        )),
        format!(
            "{:.2} ms vs {:.2} ms at {rate:.0} requests/s each (half the gate's {:.0}/s at saturation; at saturation {:.2} vs {:.2} ms)",
            gate_paced.percentile_ms(99.0),
            live_paced.percentile_ms(99.0),
            gate.rps(),
            gate.percentile_ms(99.0),
            live.percentile_ms(99.0),
        ),
        "≤ 2",
        |v| v <= 2.0,
    );
    report.row(
        "idle_rss_mib",
        Some(round1(idle_rss)),
        "after start-up, before load".into(),
        "≤ 30",
        |v| v <= 30.0,
    );
    report.row(
        "peak_rss_mib",
        Some(round1(peak_rss)),
        "VmHWM after all throughput phases".into(),
        "≤ 80",
        |v| v <= 80.0,
    );
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn summary(o: &Outcome) -> Value {
    json!({
        "rps": o.rps().round(),
        "requests": o.requests,
        "failures": o.failures,
        "p50_ms": o.percentile_ms(50.0),
        "p99_ms": o.percentile_ms(99.0),
        "max_ms": o.max_ms(),
    })
}

async fn doctor_wall(
    binary: &Path,
    db: &str,
    dir: &Path,
    client: &reqwest::Client,
) -> (f64, f64, (String, String)) {
    use testkit::cloudflare::CloudflareMode;
    use testkit::openai::OpenAiMode;
    use testkit::stripe::StripeMode;
    let openai = testkit::openai::start(OpenAiMode::Slow(Duration::from_millis(10))).await;
    let stripe = testkit::stripe::start(StripeMode::Slow(Duration::from_millis(50))).await;
    let cloudflare = testkit::cloudflare::start(CloudflareMode {
        token: testkit::cloudflare::TokenMode::Slow(Duration::from_millis(200)),
        ..CloudflareMode::default()
    })
    .await;
    let extra = vec![
        ("OPENAI_API_KEY", "sk-proj-bench0123456789abcdef".to_owned()),
        ("OPENAI_BASE_URL", format!("{}/v1", openai.base())),
        (
            "STRIPE_SECRET_KEY",
            "sk_test_bench0123456789abcdef".to_owned(),
        ),
        (
            "STRIPE_WEBHOOK_SECRET",
            "whsec_bench0123456789abcdef".to_owned(),
        ),
        ("STRIPE_API_BASE", stripe.base()),
        (
            "CLOUDFLARE_API_TOKEN",
            "cf-bench-0123456789abcdefghijklmnop".to_owned(),
        ),
        (
            "CLOUDFLARE_API_BASE",
            format!("{}/client/v4", cloudflare.base()),
        ),
        ("CHECK_TIMEOUT_MS_OPENAI", "1000".to_owned()),
    ];
    let server = procs::start(binary, &[], &env(db, &extra), dir);
    let mut walls = Vec::new();
    for _ in 0..7 {
        let t = Instant::now();
        let run = post_json(client, &server, "/ops/doctor/run", json!({})).await;
        assert!(run["results"].is_array(), "{run}");
        walls.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    walls.sort_by(f64::total_cmp);
    let median = walls[walls.len() / 2];
    openai.set(OpenAiMode::Slow(Duration::from_secs(30)));
    let t = Instant::now();
    let run = post_json(client, &server, "/ops/doctor/run", json!({})).await;
    let hanging = t.elapsed().as_secs_f64() * 1000.0;
    assert!(run["results"].is_array(), "{run}");
    (
        ratio(median, 200.0),
        ratio(hanging, 1000.0),
        (
            format!(
                "median {median:.0} ms for stand-ins at 10/50/200 ms (7 runs, HTTP round trip)"
            ),
            format!("{hanging:.0} ms with OpenAI hanging and a 1000 ms timeout"),
        ),
    )
}

async fn ingestion(
    binary: &Path,
    url: &str,
    plain_url: &str,
    dir: &Path,
    reports: u64,
    connections: usize,
) -> (f64, String) {
    const FINGERPRINTS: u64 = 50;
    let plain_db = Database::connect(plain_url).await.expect("plain database");
    migration_up(&plain_db).await;
    let plain = seed::plain_inserts(&plain_db, reports, FINGERPRINTS).await;
    plain_db.close().await.ok();
    let server = procs::start(binary, &[], &env(url, &[]), dir);
    let make: load::RequestFn = Arc::new(|n| {
        let body = json!({"severity": "CRITICAL", "category": "API", "summary": format!("report {n}"), "fingerprint": format!("bench:{}", n % FINGERPRINTS)});
        hyper::Request::post("/ops/incidents")
            .header("host", "127.0.0.1")
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Full::new(Bytes::from(body.to_string())))
            .expect("request")
    });
    let outcome = load::run(
        server.addr,
        make,
        Bounds {
            connections,
            duration: Duration::from_secs(120),
            max_requests: reports,
        },
    )
    .await;
    assert_eq!(outcome.failures, 0, "ingestion had failures");
    let api_rate = outcome.rps();
    let plain_rate = reports as f64 / plain.as_secs_f64();
    (ratio(api_rate, plain_rate), format!("{api_rate:.0} reports/s through the API vs {plain_rate:.0}/s plain inserts ({reports} reports, {FINGERPRINTS} fingerprints)"))
}

async fn migration_up(db: &DatabaseConnection) {
    use migration::MigratorTrait;
    migration::Migrator::up(db, None).await.expect("migrate");
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
async fn scale(binary: &Path, url: &str, dir: &Path, args: &Args) -> Scale {
    let db = Database::connect(url).await.expect("scale database");
    migration_up(&db).await;
    let t = Instant::now();
    seed::history(&db, args.incidents, args.events).await;
    let seeded = t.elapsed();
    db.close().await.ok();
    let server = procs::start(binary, &[], &env(url, &[]), dir);
    let client = http().await;
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

async fn startup_ms(binary: &Path, db: &str, dir: &Path, client: &reqwest::Client) -> f64 {
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let server = procs::start(binary, &[], &env(db, &[]), dir);
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
    }
    times.sort_by(f64::total_cmp);
    round1(times[times.len() / 2])
}

/// A PostgreSQL server on which the bench creates (and drops) its own databases.
struct PgDatabase {
    admin_url: String,
    prefix: String,
}

impl PgDatabase {
    async fn create(admin_url: &str) -> Self {
        let prefix = format!("opsdoctor_bench_{}", std::process::id());
        Self {
            admin_url: admin_url.to_owned(),
            prefix,
        }
    }

    fn url(&self, name: &str) -> String {
        let base = self.admin_url.split('?').next().unwrap_or_default();
        let base = base.rsplit_once('/').map(|(b, _)| b).unwrap_or(base);
        format!("{base}/{}_{name}", self.prefix)
    }

    async fn create_db(&self, name: &str) {
        let admin = Database::connect(&self.admin_url)
            .await
            .expect("connect to PostgreSQL");
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{}_{name}\"", self.prefix))
            .await
            .expect("create database");
        admin.close().await.ok();
    }

    async fn drop_all(&self) {
        let admin = Database::connect(&self.admin_url)
            .await
            .expect("connect to PostgreSQL");
        for name in ["ingest", "plain", "scale"] {
            let _ = admin
                .execute_unprepared(&format!(
                    "DROP DATABASE IF EXISTS \"{}_{name}\" WITH (FORCE)",
                    self.prefix
                ))
                .await;
        }
        admin.close().await.ok();
    }
}

fn write_report(out: &Path, name: &str, report: &Report, took: Duration) {
    let mut rows: Vec<&Row> = report.rows.iter().collect();
    rows.sort_by_key(|r| KEYS.iter().position(|k| *k == r.key));
    let latency = &report.latency;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kib| round1(kib / 1024.0 / 1024.0))
        .unwrap_or(0.0);
    let date = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut json = serde_json::Map::new();
    for row in &rows {
        json.insert(row.key.to_owned(), json!(row.value));
    }
    json.insert(
        "machine".into(),
        json!({ "cores": cores, "memory_gib": mem_gib, "os": std::env::consts::OS }),
    );
    json.insert("date".into(), json!(date));
    json.insert("latency_ms".into(), json!(latency));
    json.insert(
        "details".into(),
        rows.iter()
            .map(|r| (r.key.to_owned(), json!(r.detail)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
    );
    json.insert("duration_s".into(), json!(took.as_secs()));
    let mut md = format!("# opsdoctor benchmark — {date}\n\nMachine: {cores} cores, {mem_gib} GiB. Each figure is a ratio to a baseline measured in the same run, or an absolute where the target is one.\n\n| figure | value | target | met | measured |\n| --- | --- | --- | --- | --- |\n");
    for r in rows {
        let value = r
            .value
            .map(|v| format!("{v}"))
            .unwrap_or_else(|| "—".into());
        let met = match r.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "—",
        };
        md.push_str(&format!(
            "| `{}` | {value} | {} | {met} | {} |\n",
            r.key, r.target, r.detail
        ));
    }
    md.push_str("\n| latency under load | rps | p50 ms | p99 ms | max ms |\n| --- | --- | --- | --- | --- |\n");
    for (name, v) in latency {
        md.push_str(&format!(
            "| {name} | {} | {} | {} | {} |\n",
            v["rps"], v["p50_ms"], v["p99_ms"], v["max_ms"]
        ));
    }
    std::fs::create_dir_all(out).expect("results directory");
    std::fs::write(
        out.join(format!("{name}.json")),
        serde_json::to_string_pretty(&Value::Object(json)).expect("json"),
    )
    .expect("write json");
    std::fs::write(out.join(format!("{name}.md")), &md).expect("write markdown");
    println!("\n{md}\nwritten to {}", out.display());
}
