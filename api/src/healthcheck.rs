//! `opsdoctor healthcheck`: asks a running opsdoctor on this host for its liveness (or
//! readiness) and exits 0 or 1, so a container's `HEALTHCHECK` needs nothing but the binary.

use std::process::ExitCode;
use std::time::Duration;

/// Which probe to ask.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Probe {
    /// `/health/live`: the process serves requests.
    Live,
    /// `/health/ready`: it also has its database and required checks.
    Ready,
}

/// Exit 0 when the probe answers 200 within `timeout`, else 1 with one line on stderr saying why.
pub async fn run(url: Option<String>, probe: Probe, timeout: Duration) -> ExitCode {
    let base = url.unwrap_or_else(|| {
        let port = std::env::var("PORT")
            .ok()
            .filter(|p| !p.trim().is_empty() && p.trim() != "0")
            .unwrap_or_else(|| "8080".to_owned());
        format!("http://127.0.0.1:{}", port.trim())
    });
    let path = match probe {
        Probe::Live => "/health/live",
        Probe::Ready => "/health/ready",
    };
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let client = match reqwest::Client::builder().timeout(timeout).build() {
        Ok(client) => client,
        Err(err) => {
            eprintln!("opsdoctor healthcheck: {err}");
            return ExitCode::FAILURE;
        }
    };
    match client.get(&url).send().await {
        Ok(response) if response.status().is_success() => ExitCode::SUCCESS,
        Ok(response) => {
            eprintln!(
                "opsdoctor healthcheck: {url} answered {}",
                response.status()
            );
            ExitCode::FAILURE
        }
        Err(err) => {
            let why = if err.is_timeout() {
                "timed out"
            } else if err.is_connect() {
                "could not connect"
            } else {
                "request failed"
            };
            eprintln!("opsdoctor healthcheck: {url}: {why}");
            ExitCode::FAILURE
        }
    }
}
