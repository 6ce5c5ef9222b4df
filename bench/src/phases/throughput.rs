//! Throughput, latency and footprint of the probes, the doctor bundle and the gate: the
//! `live_vs_bare`, `ready_*`, `gate_p99_vs_live_p99`, `idle_rss_mib` and `peak_rss_mib` figures.

use std::time::Duration;

use serde_json::json;

use super::{get_json, http, post_json, Bench, READY_TTL_MS, TOKEN};
use crate::load::{self, get, Bounds, Pace, Target};
use crate::report::{ratio, round1, Report};

/// Runs the phase on a SQLite database beside a bare axum server.
pub async fn run(bench: &Bench, report: &mut Report) {
    let args = &bench.args;
    println!(
        "throughput and latency ({} connections, {:?} per phase)…",
        args.connections, args.duration
    );
    let me = std::env::current_exe().expect("current exe");
    let client = http();
    let bounds = Bounds {
        connections: args.connections,
        duration: args.duration,
        max_requests: 2_000_000,
    };
    let bare = crate::procs::start(&me, &["bare-server"], &[], bench.dir());
    let server = bench.start(&bench.sqlite_url("main"), &[]);
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
    // Every figure above is measured with metrics recorded on every request: the scrape says so.
    let live_counted = live_requests_counted(&client, &server).await;
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
        report.latency(name, o);
    }
    drop(server);

    let live_vs_bare = ratio(live.rps(), bare_live.rps());
    report.row(
        "live_vs_bare",
        Some(live_vs_bare),
        format!(
            "{:.0} vs {:.0} rps (6 alternating slices); with metrics recorded: /metrics counted {live_counted} liveness requests, {} in the measured slices",
            live.rps(),
            bare_live.rps(),
            live.requests
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

/// What `/metrics` counted of `GET /health/live` answered 200 (warm-up and paced phases included).
async fn live_requests_counted(client: &reqwest::Client, server: &crate::procs::Server) -> u64 {
    let series =
        "opsdoctor_http_requests_total{method=\"GET\",route=\"/health/live\",status=\"200\"} ";
    let text = client
        .get(format!("http://{}/metrics", server.addr))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("scrape /metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}
