//! A successful `opsdoctor deploy` against the time the application itself needs to start and
//! pass its health checks: the `deploy_overhead_ratio` figure.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::Bench;
use crate::procs::target_dir;
use crate::report::{ratio, Report};

/// How long the bench's application takes to bind its port, like a real service loading itself.
const APP_START_MS: u64 = 2000;
const RUNS: usize = 3;

pub async fn run(bench: &Bench, report: &mut Report) {
    println!("deploy overhead…");
    let app = build_app();
    let dir = bench.dir().join("deploy");
    let control = dir.join("control");
    std::fs::create_dir_all(&control).expect("control dir");
    let mut baselines = Vec::new();
    let mut deploys = Vec::new();
    for i in 0..RUNS {
        let release = format!("r{i}");
        std::fs::write(
            control.join(format!("{release}.start_delay_ms")),
            APP_START_MS.to_string(),
        )
        .expect("start delay");
        baselines.push(app_alone(&app, &control, &release).await);
        deploys.push(deploy(bench, &app, &dir, &control, &release, i));
    }
    baselines.sort_by(f64::total_cmp);
    deploys.sort_by(f64::total_cmp);
    let (base, wall) = (baselines[RUNS / 2], deploys[RUNS / 2]);
    report.row(
        "deploy_overhead_ratio",
        Some(ratio(wall, base)),
        format!("median deploy {wall:.0} ms vs the app's own start to healthy {base:.0} ms (it binds after {APP_START_MS} ms; {RUNS} runs, SQLite, readiness polled every 100 ms)"),
        "≤ 1.2",
        |v| v <= 1.2,
    );
}

fn build_app() -> PathBuf {
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "testkit",
            "--bin",
            "deploy-app",
        ])
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .status()
        .expect("run cargo build");
    assert!(status.success(), "building deploy-app failed");
    target_dir().join("release/deploy-app")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Spawn to two consecutive healthy polls of all three health URLs, polled every 10 ms.
async fn app_alone(app: &Path, control: &Path, release: &str) -> f64 {
    let port = free_port();
    let started = Instant::now();
    let mut child = Command::new(app)
        .args([
            "--port",
            &port.to_string(),
            "--release",
            release,
            "--control",
        ])
        .arg(control)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start deploy-app");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .expect("client");
    let mut streak = 0;
    while streak < 2 && started.elapsed() < Duration::from_secs(30) {
        let mut ok = true;
        for path in ["/health/live", "/health/db", "/health/status"] {
            let url = format!("http://127.0.0.1:{port}{path}");
            ok &= client
                .get(url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
        }
        streak = if ok { streak + 1 } else { 0 };
        if streak < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let took = started.elapsed().as_secs_f64() * 1000.0;
    let _ = child.kill();
    let _ = child.wait();
    took
}

/// One first deploy of `release` to blue, from the command's start to its exit.
fn deploy(bench: &Bench, app: &Path, dir: &Path, control: &Path, release: &str, run: usize) -> f64 {
    let (blue, green) = (free_port(), free_port());
    let state = dir.join(format!("state-{run}"));
    let plan = dir.join(format!("plan-{run}.toml"));
    std::fs::write(
        &plan,
        format!(
            r#"[env.bench]
state_dir = "{state}"
logs_dir = "{logs}"
entry_url = "http://127.0.0.1:{blue}/health/live"
switch = "true"

[env.bench.precheck]
required_settings = ["DATABASE_URL"]

[env.bench.backend]
blue_port = {blue}
green_port = {green}
start = {{ run = "{app} --port {{port}} --release {{release}} --control {control}", background = true }}

[env.bench.backend.health]
liveness = "http://127.0.0.1:{{port}}/health/live"
database = "http://127.0.0.1:{{port}}/health/db"
status = "http://127.0.0.1:{{port}}/health/status"

[env.bench.readiness]
interval = "100ms"
"#,
            state = state.display(),
            logs = dir.join("logs").display(),
            app = app.display(),
            control = control.display(),
        ),
    )
    .expect("plan");
    let started = Instant::now();
    let status = Command::new(&bench.binary)
        .args(["deploy", "--plan"])
        .arg(&plan)
        .args(["--env", "bench", "--release", release])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", bench.sqlite_url("deploy"))
        .env("REQUIRED_CHECKS", "database")
        .env("RUST_LOG", "warn")
        .env("CI", "true")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run opsdoctor deploy");
    let took = started.elapsed().as_secs_f64() * 1000.0;
    assert!(
        status.success(),
        "the bench's deploy failed: see {}",
        dir.join("logs").display()
    );
    if let Ok(pid) = std::fs::read_to_string(state.join("bench-backend-blue.pid")) {
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", pid.trim())])
            .status();
    }
    took
}
