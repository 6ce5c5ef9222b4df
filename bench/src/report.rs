//! The output contract: which figures a run reports, in what order, and how they are written to
//! `results/{latest,partial}.{json,md}`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::load::Outcome;

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
pub struct Report {
    rows: Vec<Row>,
    latency: BTreeMap<&'static str, Value>,
}

/// The output contract's figures, in the order the report lists them.
const KEYS: [&str; 23] = [
    "live_vs_bare",
    "ready_vs_live",
    "ready_db_queries_per_ttl",
    "gate_p99_vs_live_p99",
    "doctor_wall_vs_slowest",
    "doctor_wall_vs_timeout_when_hanging",
    "false_alarm_incidents",
    "false_alarm_gate_fail_rate",
    "false_alarm_ready_flips",
    "detection_p99_ms",
    "recovery_detection_p99_ms",
    "ingest_vs_plain_sqlite",
    "ingest_vs_plain_postgres",
    "deep_vs_first_page",
    "timeline_p99_ms_postgres",
    "idle_rss_mib",
    "peak_rss_mib",
    "rss_after_conn_storm_mib",
    "startup_ms",
    "deploy_overhead_ratio",
    "outage_ready_503_ms",
    "outage_recover_ms",
    "outage_acked_writes_lost",
];

impl Report {
    /// Adds a figure; `meets` judges it against its target (nothing to judge without a value).
    pub fn row(
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

    /// Adds a line to the latency table.
    pub fn latency(&mut self, name: &'static str, outcome: &Outcome) {
        self.latency.insert(
            name,
            json!({
                "rps": outcome.rps().round(),
                "requests": outcome.requests,
                "failures": outcome.failures,
                "p50_ms": outcome.percentile_ms(50.0),
                "p99_ms": outcome.percentile_ms(99.0),
                "max_ms": outcome.max_ms(),
            }),
        );
    }

    /// Writes `<name>.json` and `<name>.md` under `out` and prints the Markdown.
    pub fn write(&self, out: &Path, name: &str, took: Duration) {
        let mut rows: Vec<&Row> = self.rows.iter().collect();
        rows.sort_by_key(|r| KEYS.iter().position(|k| *k == r.key));
        let latency = &self.latency;
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
}

/// `a / b` to three decimals (0 when there is no baseline).
pub fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        0.0
    } else {
        (a / b * 1000.0).round() / 1000.0
    }
}

/// `x` to one decimal.
pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}
