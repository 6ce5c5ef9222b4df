//! False alarms and time to detection: the monitor (1 s interval) against stand-ins that are
//! healthy but noisy (rare 5xx, 429, dropped connections and slow answers at a set rate), then
//! break for real at known instants and recover. Figures: `false_alarm_incidents`,
//! `false_alarm_gate_fail_rate`, `false_alarm_ready_flips`, `detection_p99_ms`,
//! `recovery_detection_p99_ms`.

use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::cloudflare::{CloudflareMode, TokenMode};
use testkit::cloudflared::MetricsMode;
use testkit::hostname::HostnameMode;
use testkit::openai::OpenAiMode;
use testkit::stripe::StripeMode;
use testkit::{Fake, Fault, Noise};

use super::{http, Bench, TOKEN};
use crate::procs::Server;
use crate::report::Report;

/// Injected faults per million calls: 2 %.
const NOISE_PER_MILLION: u32 = 20_000;
/// How long the healthy-but-noisy period runs.
const NOISY: Duration = Duration::from_secs(90);
/// How often gate verdicts and readiness are sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// Rounds of the break scenarios.
const ROUNDS: usize = 2;
/// A break not detected (or a recovery not seen) within this long counts at this long.
const GIVE_UP: Duration = Duration::from_secs(20);

struct Upstreams {
    openai: Fake<OpenAiMode>,
    stripe: Fake<StripeMode>,
    cloudflare: Fake<CloudflareMode>,
    metrics: Fake<MetricsMode>,
    host: Fake<HostnameMode>,
}

impl Upstreams {
    async fn start() -> Self {
        Self {
            openai: testkit::openai::start(OpenAiMode::Ok).await,
            stripe: testkit::stripe::start(StripeMode::OkNewerApi { livemode: false }).await,
            cloudflare: testkit::cloudflare::start(CloudflareMode::default()).await,
            metrics: testkit::cloudflared::start(MetricsMode::Ready { connections: 4 }).await,
            host: testkit::hostname::start(HostnameMode::Ok).await,
        }
    }

    /// 2 % of every stand-in's answers (each stand-in with a seed of its own, so their faults
    /// do not fall on the same request numbers) become a 5xx page, a 429, a dropped connection or a
    /// 300 ms delay, each stand-in in its own vendor's shape.
    fn noisy(&self, seed: u64) {
        let slow = Duration::from_millis(300);
        self.openai.set_noise(noisy(
            seed,
            vec![
                Fault::Answer(OpenAiMode::ServerErrorHtml(503)),
                Fault::Answer(OpenAiMode::RateLimited),
                Fault::Reset,
                Fault::Answer(OpenAiMode::Slow(slow)),
            ],
        ));
        self.stripe.set_noise(noisy(
            seed + 1,
            vec![
                Fault::Answer(StripeMode::ServerErrorHtml(503)),
                Fault::Answer(StripeMode::ErrorCode {
                    status: 429,
                    code: "lock_timeout",
                }),
                Fault::Reset,
                Fault::Answer(StripeMode::Slow(slow)),
            ],
        ));
        self.cloudflare.set_noise(noisy(
            seed + 2,
            vec![
                Fault::Answer(CloudflareMode {
                    token: TokenMode::ServerError(503),
                    ..CloudflareMode::default()
                }),
                Fault::Answer(CloudflareMode {
                    token: TokenMode::RateLimited,
                    ..CloudflareMode::default()
                }),
                Fault::Reset,
                Fault::Answer(CloudflareMode {
                    token: TokenMode::Slow(slow),
                    ..CloudflareMode::default()
                }),
            ],
        ));
        self.metrics.set_noise(noisy(seed + 3, vec![Fault::Reset]));
        self.host.set_noise(noisy(
            seed + 4,
            vec![Fault::Answer(HostnameMode::ServerError(503)), Fault::Reset],
        ));
    }

    fn faults(&self) -> usize {
        self.openai.faults()
            + self.stripe.faults()
            + self.cloudflare.faults()
            + self.metrics.faults()
            + self.host.faults()
    }

    fn calls(&self) -> usize {
        self.openai.hits()
            + self.stripe.hits()
            + self.cloudflare.hits()
            + self.metrics.hits()
            + self.host.hits()
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("OPENAI_API_KEY", "sk-proj-bench0123456789abcdef".to_owned()),
            ("OPENAI_BASE_URL", format!("{}/v1", self.openai.base())),
            (
                "STRIPE_SECRET_KEY",
                "sk_test_bench0123456789abcdef".to_owned(),
            ),
            (
                "STRIPE_WEBHOOK_SECRET",
                "whsec_bench0123456789abcdef".to_owned(),
            ),
            ("STRIPE_API_BASE", self.stripe.base()),
            (
                "CLOUDFLARE_API_TOKEN",
                "cf-bench-0123456789abcdefghijklmnop".to_owned(),
            ),
            (
                "CLOUDFLARE_API_BASE",
                format!("{}/client/v4", self.cloudflare.base()),
            ),
            ("CLOUDFLARE_ACCOUNT_ID", "acc123".to_owned()),
            ("CLOUDFLARE_TUNNEL_ID", "tun456".to_owned()),
            ("CLOUDFLARED_METRICS_URL", self.metrics.base()),
            ("BASE_URL", format!("{}/health", self.host.base())),
            (
                "REQUIRED_CHECKS",
                "database,tunnel,openai,stripe,cloudflare".to_owned(),
            ),
            ("DOCTOR_INTERVAL_MS", "1000".to_owned()),
            ("CHECK_TIMEOUT_MS", "1000".to_owned()),
        ]
    }
}

/// 2 % of calls answered with one of `faults`, in turn.
fn noisy<M>(seed: u64, faults: Vec<Fault<M>>) -> Option<Noise<M>> {
    Some(Noise {
        per_million: NOISE_PER_MILLION,
        seed,
        faults,
        limit: None,
    })
}

/// One real break: what breaks, and the check that must see it.
struct Break {
    name: &'static str,
    check: &'static str,
    apply: fn(&Upstreams),
    restore: fn(&Upstreams),
}

const BREAKS: [Break; 5] = [
    Break {
        name: "Stripe 401",
        check: "stripe",
        apply: |u| u.stripe.set(StripeMode::InvalidKey),
        restore: |u| u.stripe.set(StripeMode::OkNewerApi { livemode: false }),
    },
    Break {
        name: "OpenAI hangs",
        check: "openai",
        apply: |u| u.openai.set(OpenAiMode::Slow(Duration::from_secs(60))),
        restore: |u| u.openai.set(OpenAiMode::Ok),
    },
    Break {
        name: "Cloudflare API HTML 503",
        check: "cloudflare",
        apply: |u| {
            u.cloudflare.set(CloudflareMode {
                token: TokenMode::ServerError(503),
                ..CloudflareMode::default()
            })
        },
        restore: |u| u.cloudflare.set(CloudflareMode::default()),
    },
    Break {
        name: "hostname 530 (not routing)",
        check: "tunnel",
        apply: |u| u.host.set(HostnameMode::NotRouting),
        restore: |u| u.host.set(HostnameMode::Ok),
    },
    Break {
        name: "cloudflared without edge connections",
        check: "tunnel",
        apply: |u| u.metrics.set(MetricsMode::NoConnections),
        restore: |u| u.metrics.set(MetricsMode::Ready { connections: 4 }),
    },
];

/// Runs the phase on a SQLite database of its own.
pub async fn run(bench: &Bench, report: &mut Report) {
    println!("false alarms and detection…");
    let upstreams = Upstreams::start().await;
    upstreams.noisy(0x5EED);
    let server = bench.start(&bench.sqlite_url("false_alarms"), &upstreams.env());
    let client = &http();
    // Let the first runs settle: a fresh process takes its first observation as it is.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let opened_before = incidents(client, &server, "all").await.len();

    let (calls, faults) = (upstreams.calls(), upstreams.faults());
    let started = Instant::now();
    let (mut verdicts, mut gate_fails, mut probes, mut ready_503) = (0u64, 0u64, 0u64, 0u64);
    while started.elapsed() < NOISY {
        let verdict = gate(client, &server).await;
        verdicts += 1;
        gate_fails += u64::from(verdict["verdict"] == "fail");
        probes += 1;
        ready_503 += u64::from(ready(client, &server).await == 503);
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
    let opened = incidents(client, &server, "all").await.len() - opened_before;
    let (calls, faults) = (upstreams.calls() - calls, upstreams.faults() - faults);
    let noise = format!(
        "{:.0} s at 2 % injected faults (5xx page, 429, dropped connection, 300 ms delay): {faults} faults in {calls} upstream calls, 1 s monitor interval",
        NOISY.as_secs_f64()
    );
    report.row(
        "false_alarm_incidents",
        Some(opened as f64),
        format!("{opened} incidents opened; {noise}"),
        "0",
        |v| v == 0.0,
    );
    let rate = if verdicts == 0 {
        0.0
    } else {
        gate_fails as f64 / verdicts as f64
    };
    report.row(
        "false_alarm_gate_fail_rate",
        Some((rate * 1e6).round() / 1e6),
        format!("{gate_fails} of {verdicts} gate verdicts failed; {noise}"),
        "< 0.001",
        |v| v < 0.001,
    );
    report.row(
        "false_alarm_ready_flips",
        Some(ready_503 as f64),
        format!("{ready_503} of {probes} readiness probes answered 503; {noise}"),
        "0",
        |v| v == 0.0,
    );

    let (mut detect, mut recover) = (Vec::new(), Vec::new());
    let mut seen = Vec::new();
    for _ in 0..ROUNDS {
        for b in &BREAKS {
            (b.apply)(&upstreams);
            let t = Instant::now();
            let detected = wait_until(|| async {
                let open = incidents(client, &server, "open").await;
                let incident = open.iter().any(|i| i["detailsJson"]["check"] == b.check);
                incident && failing(&gate(client, &server).await, b.check)
            })
            .await;
            detect.push(t.elapsed().min(GIVE_UP).as_secs_f64() * 1000.0);
            (b.restore)(&upstreams);
            let t = Instant::now();
            let recovered = wait_until(|| async {
                let open = incidents(client, &server, "open").await;
                let incident = open.iter().any(|i| i["detailsJson"]["check"] == b.check);
                !incident && gate(client, &server).await["verdict"] != "fail"
            })
            .await;
            recover.push(t.elapsed().min(GIVE_UP).as_secs_f64() * 1000.0);
            if !detected || !recovered {
                seen.push(format!(
                    "{}: detected {detected}, recovered {recovered}",
                    b.name
                ));
            }
        }
    }
    let names: Vec<&str> = BREAKS.iter().map(|b| b.name).collect();
    let scenarios = format!(
        "{} breaks ({}; {ROUNDS} rounds) under the same noise, 1 s monitor interval, 1 s check timeout{}",
        detect.len(),
        names.join(", "),
        if seen.is_empty() { String::new() } else { format!("; NOT SEEN: {}", seen.join("; ")) }
    );
    let (d99, dmax) = (p99(&mut detect), detect.iter().cloned().fold(0.0, f64::max));
    let (r99, rmax) = (
        p99(&mut recover),
        recover.iter().cloned().fold(0.0, f64::max),
    );
    report.row(
        "detection_p99_ms",
        Some(d99.round()),
        format!("break to incident open and gate failing: p99 {d99:.0} ms, max {dmax:.0} ms, median {:.0} ms over {scenarios}", median(&detect)),
        "≤ 5000",
        |v| v <= 5000.0,
    );
    report.row(
        "recovery_detection_p99_ms",
        Some(r99.round()),
        format!("repair to incident resolved and gate not failing: p99 {r99:.0} ms, max {rmax:.0} ms, median {:.0} ms over {scenarios}", median(&recover)),
        "≤ 5000",
        |v| v <= 5000.0,
    );
}

/// Polls `done` every 50 ms until it holds or [`GIVE_UP`] passes.
async fn wait_until<F, Fut>(done: F) -> bool
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < GIVE_UP {
        if done().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

fn failing(verdict: &Value, check: &str) -> bool {
    verdict["verdict"] == "fail"
        && verdict["checks"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["name"] == check && c["status"] == "fail")
        })
}

/// The gate as a deploy script asks it, answered from the monitor's results (30 s max age).
async fn gate(client: &reqwest::Client, server: &Server) -> Value {
    get(
        client,
        server,
        "/ops/gate?env=bench&release=r1&mode=verdict",
    )
    .await
}

async fn ready(client: &reqwest::Client, server: &Server) -> u16 {
    client
        .get(format!("http://{}/health/ready", server.addr))
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

async fn incidents(client: &reqwest::Client, server: &Server, status: &str) -> Vec<Value> {
    let page = get(
        client,
        server,
        &format!("/ops/incidents?status={status}&limit=100"),
    )
    .await;
    page["items"].as_array().cloned().unwrap_or_default()
}

async fn get(client: &reqwest::Client, server: &Server, path: &str) -> Value {
    let response = client
        .get(format!("http://{}{path}", server.addr))
        .bearer_auth(TOKEN)
        .send()
        .await;
    match response {
        Ok(r) => r.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

fn p99(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    let i = ((samples.len() as f64 * 0.99).ceil() as usize).clamp(1, samples.len().max(1)) - 1;
    samples.get(i).copied().unwrap_or(0.0)
}

fn median(samples: &[f64]) -> f64 {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(s.len() / 2).copied().unwrap_or(0.0)
}
