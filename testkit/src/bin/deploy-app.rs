//! The application the deploy tests deploy: a small HTTP server whose health endpoints can be told
//! to pass, fail, hang, recover only when asked, or come up slowly, so every path of
//! `opsdoctor deploy` runs against a real process on a real port.
//!
//! `deploy-app --port P --release R --control DIR`. Its behaviour is read on every request from
//! `DIR/R.mode` (absent: `ok`): `ok`, `fail` (503), `hang` (never answers), `recoverable` (503
//! until `POST /health/recover`), `slow:<ms>` (503 until that long after start). The file
//! `DIR/R.start_delay_ms`, if present, delays binding the port. SIGTERM stops it gracefully.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;

#[derive(Clone)]
struct App {
    release: String,
    port: u16,
    control: PathBuf,
    started: Instant,
    recovered: Arc<AtomicBool>,
}

impl App {
    fn mode(&self) -> String {
        std::fs::read_to_string(self.control.join(format!("{}.mode", self.release)))
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "ok".to_owned())
    }

    async fn health(&self, what: &str) -> (StatusCode, String) {
        let mode = self.mode();
        let healthy = match mode.as_str() {
            "ok" => true,
            "fail" => false,
            "hang" => {
                std::future::pending::<()>().await;
                false
            }
            "recoverable" => self.recovered.load(Ordering::SeqCst),
            other => match other
                .strip_prefix("slow:")
                .and_then(|ms| ms.parse::<u64>().ok())
            {
                Some(ms) => self.started.elapsed() >= Duration::from_millis(ms),
                None => false,
            },
        };
        let status = if healthy {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        (
            status,
            format!("{what} {} ({mode})", if healthy { "ok" } else { "failing" }),
        )
    }
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(port), Some(release), Some(control)) = (
        arg(&args, "--port").and_then(|p| p.parse::<u16>().ok()),
        arg(&args, "--release"),
        arg(&args, "--control"),
    ) else {
        eprintln!("usage: deploy-app --port P --release R --control DIR");
        std::process::exit(2);
    };
    let control = PathBuf::from(control);
    let delay = std::fs::read_to_string(control.join(format!("{release}.start_delay_ms")))
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    if let Some(ms) = delay {
        eprintln!("deploy-app {release}: starting slowly ({ms} ms)");
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let app = App {
        release: release.clone(),
        port,
        control,
        started: Instant::now(),
        recovered: Arc::default(),
    };
    let router = Router::new()
        .route(
            "/",
            get(|State(a): State<App>| async move {
                format!("release {} on port {}\n", a.release, a.port)
            }),
        )
        .route(
            "/health/live",
            get(|State(a): State<App>| async move { a.health("live").await }),
        )
        .route(
            "/health/db",
            get(|State(a): State<App>| async move { a.health("db").await }),
        )
        .route(
            "/health/status",
            get(|State(a): State<App>| async move { a.health("status").await }),
        )
        .route(
            "/health/recover",
            post(|State(a): State<App>| async move {
                a.recovered.store(true, Ordering::SeqCst);
                "recovered"
            }),
        )
        .with_state(app);
    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("deploy-app {release}: cannot bind port {port}: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("deploy-app {release}: serving on 127.0.0.1:{port}");
    let stop = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        term.recv().await;
    };
    let _ = axum::serve(listener, router)
        .with_graceful_shutdown(stop)
        .await;
    eprintln!("deploy-app {release}: stopped");
}
