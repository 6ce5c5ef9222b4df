//! A bounded closed-loop load generator: N keep-alive connections, each sending its next request
//! when the last one is answered, until a deadline or a request budget, whichever comes first.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;

/// Builds the n-th request of a run.
pub type RequestFn = Arc<dyn Fn(u64) -> Request<Full<Bytes>> + Send + Sync>;

/// How much load, for how long; every run is bounded in time and in count.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    pub connections: usize,
    pub duration: Duration,
    pub max_requests: u64,
}

/// What a run measured.
#[derive(Debug, Default)]
pub struct Outcome {
    pub requests: u64,
    pub failures: u64,
    pub elapsed: Duration,
    /// Latencies in microseconds, sorted.
    pub latencies_us: Vec<u64>,
}

impl Outcome {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The p-th percentile latency in milliseconds (p in 0..=100).
    pub fn percentile_ms(&self, p: f64) -> f64 {
        percentile(&self.latencies_us, p) as f64 / 1000.0
    }

    pub fn max_ms(&self) -> f64 {
        self.latencies_us.last().copied().unwrap_or(0) as f64 / 1000.0
    }
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A GET of `path` with optional bearer token.
pub fn get(path: &str, token: Option<&str>) -> RequestFn {
    let path = path.to_owned();
    let token = token.map(|t| format!("Bearer {t}"));
    Arc::new(move |_| {
        let mut req = Request::get(path.as_str()).header("host", "127.0.0.1");
        if let Some(t) = &token {
            req = req.header("authorization", t.as_str());
        }
        req.body(Full::new(Bytes::new())).expect("valid request")
    })
}

/// Drives `addr` with requests from `make` within `bounds`; a status outside 2xx counts as a failure.
pub async fn run(addr: SocketAddr, make: RequestFn, bounds: Bounds) -> Outcome {
    let issued = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + bounds.duration;
    let mut workers = Vec::new();
    for _ in 0..bounds.connections {
        let issued = issued.clone();
        let make = make.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = 0u64;
            let Ok(stream) = tokio::net::TcpStream::connect(addr).await else {
                return (latencies, 1);
            };
            let _ = stream.set_nodelay(true);
            let Ok((mut sender, conn)) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
            else {
                return (latencies, 1);
            };
            tokio::spawn(conn);
            loop {
                let n = issued.fetch_add(1, Ordering::Relaxed);
                if n >= bounds.max_requests || Instant::now() >= deadline {
                    break;
                }
                let t = Instant::now();
                let ok = match sender.send_request(make(n)).await {
                    Ok(resp) => {
                        let good = resp.status().is_success();
                        good && resp.into_body().collect().await.is_ok()
                    }
                    Err(_) => false,
                };
                latencies.push(t.elapsed().as_micros() as u64);
                if !ok {
                    failures += 1;
                    if sender.ready().await.is_err() {
                        break;
                    }
                }
            }
            (latencies, failures)
        }));
    }
    let mut outcome = Outcome::default();
    for w in workers {
        if let Ok((lat, failures)) = w.await {
            outcome.latencies_us.extend(lat);
            outcome.failures += failures;
        }
    }
    outcome.elapsed = started.elapsed();
    outcome.requests = outcome.latencies_us.len() as u64;
    outcome.latencies_us.sort_unstable();
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[], 99.0), 0);
    }
}
