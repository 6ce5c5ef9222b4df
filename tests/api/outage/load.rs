//! A bounded steady load for the fault tests: probes (liveness and readiness every 50 ms),
//! incident reports and gate calls, each in a task of its own so a slow answer never thins out
//! the others' samples; what was acknowledged is kept, id by id, to be counted afterwards.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

/// The most iterations any one task makes, and the longest the load runs, whatever happens.
const MAX_ITERATIONS: usize = 2_000;
const MAX_RUN: Duration = Duration::from_secs(60);
const PACE: Duration = Duration::from_millis(50);

/// Every write acknowledged (stored or queued).
#[derive(Debug, Default)]
pub struct Acked {
    pub event_ids: BTreeSet<String>,
    pub gate_ids: BTreeSet<String>,
    pub fingerprints: BTreeSet<String>,
    pub queued: usize,
    pub first_queued_at: Option<DateTime<Utc>>,
}

/// One answer: when the request started, its status, how long it took, and what it was.
#[derive(Debug, Clone)]
pub struct Sample {
    pub at: Instant,
    pub status: u16,
    pub took: Duration,
    /// Which request; shown in failure messages.
    #[allow(dead_code)]
    pub what: &'static str,
}

#[derive(Debug, Default)]
pub struct Report {
    pub live: Vec<Sample>,
    pub ready: Vec<Sample>,
    pub writes: Vec<Sample>,
    pub gates: Vec<Sample>,
    pub acked: Acked,
}

pub struct Load {
    stop: Arc<AtomicBool>,
    report: Arc<Mutex<Report>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

async fn timed(req: reqwest::RequestBuilder, what: &'static str) -> (Sample, Value) {
    let at = Instant::now();
    let (status, body) = match req.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
        // A request that did not get an answer at all within the client's timeout.
        Err(_) => (0, Value::Null),
    };
    let sample = Sample {
        at,
        status,
        took: at.elapsed(),
        what,
    };
    (sample, body)
}

impl Load {
    pub fn start(base: String, prefix: &'static str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let report = Arc::new(Mutex::new(Report::default()));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client");
        let token = crate::helpers::ADMIN_TOKEN;
        let started = Instant::now();
        let running = {
            let stop = stop.clone();
            move |i: usize| {
                i < MAX_ITERATIONS && started.elapsed() < MAX_RUN && !stop.load(Ordering::SeqCst)
            }
        };
        let mut tasks = Vec::new();

        let (c, r, b, go) = (
            client.clone(),
            report.clone(),
            base.clone(),
            running.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            while go(i) {
                let (live, _) = timed(c.get(format!("{b}/health/live")), "live").await;
                let (ready, _) = timed(c.get(format!("{b}/health/ready")), "ready").await;
                {
                    let mut r = r.lock().unwrap();
                    r.live.push(live);
                    r.ready.push(ready);
                }
                i += 1;
                tokio::time::sleep(PACE).await;
            }
        }));

        let (c, r, b, go) = (
            client.clone(),
            report.clone(),
            base.clone(),
            running.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            while go(i) {
                let fingerprint = format!("{prefix}:load:{}", i % 3);
                let body = json!({ "severity": "WARN", "category": "API", "summary": format!("load report {i}"), "fingerprint": fingerprint });
                let (sample, body) = timed(
                    c.post(format!("{b}/ops/incidents")).bearer_auth(token).json(&body),
                    "incident report",
                )
                .await;
                record_write(&mut r.lock().unwrap(), sample, &body, fingerprint);
                i += 1;
                tokio::time::sleep(PACE).await;
            }
        }));
        let (c, r, b, go) = (client, report.clone(), base, running);
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            while go(i) {
                let (sample, body) = timed(
                    c.get(format!("{b}/ops/gate?env=prod&release=v1"))
                        .bearer_auth(token),
                    "gate",
                )
                .await;
                {
                    let mut r = r.lock().unwrap();
                    if let Some(id) = body["gateId"].as_str() {
                        r.acked.gate_ids.insert(id.to_owned());
                    }
                    r.gates.push(sample);
                }
                i += 1;
                tokio::time::sleep(PACE).await;
            }
        }));
        Self {
            stop,
            report,
            tasks,
        }
    }

    pub async fn stop(self) -> Report {
        self.stop.store(true, Ordering::SeqCst);
        for task in self.tasks {
            task.await.expect("a load task panicked");
        }
        std::mem::take(&mut *self.report.lock().unwrap())
    }
}

/// Keeps what an incident report's answer acknowledged.
fn record_write(r: &mut Report, sample: Sample, body: &Value, fingerprint: String) {
    match sample.status {
        200 | 201 => {
            let id = body["event"]["id"].as_str().unwrap_or_default();
            r.acked.event_ids.insert(id.to_owned());
            r.acked.fingerprints.insert(fingerprint);
        }
        202 => {
            assert_eq!(body["queued"], true, "{body}");
            let id = body["eventId"].as_str().unwrap_or_default();
            r.acked.event_ids.insert(id.to_owned());
            r.acked.fingerprints.insert(fingerprint);
            r.acked.queued += 1;
            let at = body["reportedAt"]
                .as_str()
                .and_then(|t| t.parse::<DateTime<Utc>>().ok());
            if r.acked.first_queued_at.is_none() {
                r.acked.first_queued_at = at;
            }
        }
        _ => {}
    }
    r.writes.push(sample);
}

impl Report {
    pub fn assert_live_throughout(&self) {
        assert!(!self.live.is_empty());
        let bad: Vec<_> = self.live.iter().filter(|s| s.status != 200).collect();
        assert!(bad.is_empty(), "liveness must stay 200: {bad:?}");
    }

    /// Readiness is 503 from at most `within` after the cut until the return, and 200 from at
    /// most `within` after the return.
    pub fn assert_ready_follows(&self, cut: Instant, restored: Instant, within: Duration) {
        let first_down = self
            .ready
            .iter()
            .find(|s| s.at >= cut && s.status == 503)
            .expect("readiness never turned 503 after the cut");
        assert!(
            first_down.at + first_down.took <= cut + within,
            "readiness turned 503 {:?} after the cut",
            (first_down.at + first_down.took) - cut
        );
        let up_while_down: Vec<_> = self
            .ready
            .iter()
            .filter(|s| s.at >= cut + within && s.at + s.took <= restored && s.status != 503)
            .collect();
        assert!(
            up_while_down.is_empty(),
            "readiness was not 503 during the outage: {up_while_down:?}"
        );
        let first_up = self
            .ready
            .iter()
            .find(|s| s.at >= restored && s.status == 200)
            .expect("readiness never turned 200 after the return");
        assert!(
            first_up.at + first_up.took <= restored + within,
            "readiness turned 200 {:?} after the return",
            (first_up.at + first_up.took) - restored
        );
        let down_after: Vec<_> = self
            .ready
            .iter()
            .filter(|s| s.at >= restored + within && s.status != 200)
            .collect();
        assert!(
            down_after.is_empty(),
            "readiness fell again after the return: {down_after:?}"
        );
    }

    pub fn assert_no_request_slower_than(&self, limit: Duration) {
        let all = self
            .live
            .iter()
            .chain(&self.ready)
            .chain(&self.writes)
            .chain(&self.gates);
        let slow: Vec<_> = all.filter(|s| s.took > limit || s.status == 0).collect();
        assert!(slow.is_empty(), "requests waited past {limit:?}: {slow:?}");
        let failed: Vec<_> = self
            .writes
            .iter()
            .filter(|s| !(200..=202).contains(&s.status))
            .collect();
        assert!(
            failed.is_empty(),
            "every write is stored or queued: {failed:?}"
        );
    }

    /// No gate call that started in `[from, to]` passed: an open breaker overrides a cached pass.
    pub fn assert_gate_never_passed_while_open(&self, from: Instant, to: Instant) {
        let passed: Vec<_> = self
            .gates
            .iter()
            .filter(|s| s.at >= from && s.at + s.took <= to && s.status == 200)
            .collect();
        assert!(
            passed.is_empty(),
            "the gate passed while the database was down: {passed:?}"
        );
    }
}
