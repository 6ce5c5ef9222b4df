//! `cargo run --release -p bench`: measures opsdoctor's speed and footprint, each figure beside a
//! baseline taken in the same run, and writes `bench/results/latest.{json,md}`.
//!
//! Everything runs on loopback; every load loop is bounded in connections, time and requests.

mod bare;
mod load;
mod phases;
mod procs;
mod report;
mod seed;
mod storm;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

use crate::phases::Bench;
use crate::report::Report;

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
    /// Run against this opsdoctor binary instead of building the release one (for phases whose
    /// figures do not depend on the build profile, such as `false-alarms`; the report names it).
    #[arg(long)]
    binary: Option<PathBuf>,
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
    /// False alarms against noisy stand-ins, and time to detect real breaks and recoveries.
    FalseAlarms,
    /// Keyset pages over a large history.
    Scale,
    /// Start-up time on an existing database.
    Startup,
    /// Resident memory after a storm of idle connections.
    Storm,
    /// A successful `opsdoctor deploy` against the application's own start.
    Deploy,
    /// Readiness and acknowledged writes through a database outage.
    Outage,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the bare baseline (used by the bench itself).
    #[command(hide = true)]
    BareServer,
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

async fn bench(args: Args) {
    let started = Instant::now();
    let binary = match args.binary.clone() {
        Some(binary) => binary,
        None => {
            println!("building the release binary…");
            procs::build_release()
        }
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let only = args.only.clone();
    let run = |phase: Phase| only.is_empty() || only.contains(&phase);
    let bench = Bench { binary, dir, args };
    let mut report = Report::default();

    if run(Phase::Throughput) {
        phases::throughput::run(&bench, &mut report).await;
    }
    if run(Phase::Doctor) {
        phases::doctor::run(&bench, &mut report).await;
    }
    if run(Phase::FalseAlarms) {
        phases::false_alarms::run(&bench, &mut report).await;
    }
    if run(Phase::Ingest) {
        phases::ingest::run(&bench, &mut report).await;
    }
    if run(Phase::Scale) {
        phases::scale::run(&bench, &mut report).await;
    }
    if run(Phase::Storm) {
        phases::footprint::storm(&bench, &mut report).await;
    }
    if run(Phase::Startup) {
        phases::footprint::startup(&bench, &mut report).await;
    }
    if run(Phase::Deploy) {
        phases::deploy::run(&bench, &mut report).await;
    }
    if run(Phase::Outage) {
        phases::outage::run(&bench, &mut report).await;
    }

    let name = if only.is_empty() { "latest" } else { "partial" };
    report.write(&bench.args.out, name, started.elapsed());
}
