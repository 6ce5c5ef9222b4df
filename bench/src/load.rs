//! Bounded load generators over N keep-alive connections, until a deadline or a request budget,
//! whichever comes first: closed loop (each connection sends when the last answer is in), for
//! throughput, and open loop at a fixed rate, for latency at an equal offered load.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
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

    /// Adds another run of the same load (e.g. one slice of an interleaved comparison).
    pub fn merge(&mut self, other: Outcome) {
        self.requests += other.requests;
        self.failures += other.failures;
        self.elapsed += other.elapsed;
        self.latencies_us.extend(other.latencies_us);
        self.latencies_us.sort_unstable();
    }
}

/// A server and the requests to send it.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub make: RequestFn,
}

/// How a comparison drives its targets.
#[derive(Clone, Copy, Debug)]
pub enum Pace {
    /// As fast as answers come back ([`run`]).
    Closed,
    /// At this many requests a second ([`run_at_rate`]).
    Rate(f64),
}

/// Drives two targets in alternating slices (A B, B A, A B …) with the same bounds and pace, so
/// that drift in what else the machine is doing falls on both alike; returns both totals.
pub async fn interleaved(
    a: &Target,
    b: &Target,
    pace: Pace,
    bounds: Bounds,
    slices: u32,
) -> (Outcome, Outcome) {
    let slice = Bounds {
        duration: bounds.duration / slices.max(1),
        ..bounds
    };
    let once = |t: &Target| {
        let (addr, make) = (t.addr, t.make.clone());
        async move {
            match pace {
                Pace::Closed => run(addr, make, slice).await,
                Pace::Rate(rate) => run_at_rate(addr, make, rate, slice).await,
            }
        }
    };
    let (mut total_a, mut total_b) = (Outcome::default(), Outcome::default());
    for i in 0..slices.max(1) {
        if i % 2 == 0 {
            total_a.merge(once(a).await);
            total_b.merge(once(b).await);
        } else {
            total_b.merge(once(b).await);
            total_a.merge(once(a).await);
        }
    }
    (total_a, total_b)
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

/// One connection's latencies (µs) and failures.
type Worker = tokio::task::JoinHandle<(Vec<u64>, u64)>;

/// A keep-alive HTTP/1.1 connection to `addr`.
async fn connect(addr: SocketAddr) -> Option<SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(conn);
    Some(sender)
}

/// Sends one request and reads the whole answer, counting an error or a status outside 2xx as a
/// failure; false when the connection cannot be used again.
async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    req: Request<Full<Bytes>>,
    failures: &mut u64,
) -> bool {
    let ok = match sender.send_request(req).await {
        Ok(resp) => resp.status().is_success() && resp.into_body().collect().await.is_ok(),
        Err(_) => false,
    };
    if ok {
        return true;
    }
    *failures += 1;
    sender.ready().await.is_ok()
}

/// Joins the workers into one outcome.
async fn gather(workers: Vec<Worker>, started: Instant) -> Outcome {
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

/// Drives `addr` with requests from `make` within `bounds` (closed loop: each connection sends
/// its next request when the last one is answered); a status outside 2xx counts as a failure.
pub async fn run(addr: SocketAddr, make: RequestFn, bounds: Bounds) -> Outcome {
    let issued = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + bounds.duration;
    let mut workers = Vec::new();
    for _ in 0..bounds.connections {
        let issued = issued.clone();
        let make = make.clone();
        workers.push(tokio::spawn(async move {
            let (mut latencies, mut failures) = (Vec::new(), 0u64);
            let Some(mut sender) = connect(addr).await else {
                return (latencies, 1);
            };
            loop {
                let n = issued.fetch_add(1, Ordering::Relaxed);
                if n >= bounds.max_requests || Instant::now() >= deadline {
                    break;
                }
                let t = Instant::now();
                let usable = exchange(&mut sender, make(n), &mut failures).await;
                latencies.push(t.elapsed().as_micros() as u64);
                if !usable {
                    break;
                }
            }
            (latencies, failures)
        }));
    }
    gather(workers, started).await
}

/// Drives `addr` at a fixed offered rate (open loop): each of `bounds.connections` connections
/// sends on its own schedule, staggered so that together they send `rate` requests a second,
/// until the deadline or the request budget. A latency runs from the send, or from the scheduled
/// time when the previous answer on that connection came too late to send on time, so a slow
/// answer also counts against the requests it held up (no coordinated omission).
pub async fn run_at_rate(addr: SocketAddr, make: RequestFn, rate: f64, bounds: Bounds) -> Outcome {
    let issued = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + bounds.duration;
    let connections = bounds.connections.max(1);
    let interval = Duration::from_secs_f64(connections as f64 / rate.max(1.0));
    let mut workers = Vec::new();
    for c in 0..connections {
        let issued = issued.clone();
        let make = make.clone();
        let mut scheduled = started + interval.mul_f64(c as f64 / connections as f64);
        workers.push(tokio::spawn(async move {
            let (mut latencies, mut failures) = (Vec::new(), 0u64);
            let Some(mut sender) = connect(addr).await else {
                return (latencies, 1);
            };
            while scheduled < deadline {
                let n = issued.fetch_add(1, Ordering::Relaxed);
                if n >= bounds.max_requests {
                    break;
                }
                let late = Instant::now() > scheduled;
                if !late {
                    tokio::time::sleep_until(scheduled.into()).await;
                }
                let t = if late { scheduled } else { Instant::now() };
                let usable = exchange(&mut sender, make(n), &mut failures).await;
                latencies.push(t.elapsed().as_micros() as u64);
                if !usable {
                    break;
                }
                scheduled += interval;
            }
            (latencies, failures)
        }));
    }
    gather(workers, started).await
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
