//! A doctor run's wall time against stand-ins that answer slowly or hang: the
//! `doctor_wall_vs_slowest` and `doctor_wall_vs_timeout_when_hanging` figures.

use std::time::{Duration, Instant};

use serde_json::json;

use super::{http, post_json, Bench};
use crate::report::{ratio, Report};

/// Runs the phase on a SQLite database of its own.
pub async fn run(bench: &Bench, report: &mut Report) {
    println!("doctor run wall time…");
    let (vs_slowest, vs_timeout, (slowest_detail, timeout_detail)) = wall(bench).await;
    report.row(
        "doctor_wall_vs_slowest",
        Some(vs_slowest),
        slowest_detail,
        "≤ 1.1",
        |v| v <= 1.1,
    );
    report.row(
        "doctor_wall_vs_timeout_when_hanging",
        Some(vs_timeout),
        timeout_detail,
        "≤ 1.1",
        |v| v <= 1.1,
    );
}

async fn wall(bench: &Bench) -> (f64, f64, (String, String)) {
    use testkit::cloudflare::CloudflareMode;
    use testkit::openai::OpenAiMode;
    use testkit::stripe::StripeMode;
    let openai = testkit::openai::start(OpenAiMode::Slow(Duration::from_millis(10))).await;
    let stripe = testkit::stripe::start(StripeMode::Slow(Duration::from_millis(50))).await;
    let cloudflare = testkit::cloudflare::start(CloudflareMode {
        token: testkit::cloudflare::TokenMode::Slow(Duration::from_millis(200)),
        ..CloudflareMode::default()
    })
    .await;
    let extra = vec![
        ("OPENAI_API_KEY", "sk-proj-bench0123456789abcdef".to_owned()),
        ("OPENAI_BASE_URL", format!("{}/v1", openai.base())),
        (
            "STRIPE_SECRET_KEY",
            "sk_test_bench0123456789abcdef".to_owned(),
        ),
        (
            "STRIPE_WEBHOOK_SECRET",
            "whsec_bench0123456789abcdef".to_owned(),
        ),
        ("STRIPE_API_BASE", stripe.base()),
        (
            "CLOUDFLARE_API_TOKEN",
            "cf-bench-0123456789abcdefghijklmnop".to_owned(),
        ),
        (
            "CLOUDFLARE_API_BASE",
            format!("{}/client/v4", cloudflare.base()),
        ),
        ("CHECK_TIMEOUT_MS_OPENAI", "1000".to_owned()),
    ];
    let server = bench.start(&bench.sqlite_url("doctor"), &extra);
    let client = &http();
    let mut walls = Vec::new();
    for _ in 0..7 {
        let t = Instant::now();
        let run = post_json(client, &server, "/ops/doctor/run", json!({})).await;
        assert!(run["results"].is_array(), "{run}");
        walls.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    walls.sort_by(f64::total_cmp);
    let median = walls[walls.len() / 2];
    openai.set(OpenAiMode::Slow(Duration::from_secs(30)));
    let t = Instant::now();
    let run = post_json(client, &server, "/ops/doctor/run", json!({})).await;
    let hanging = t.elapsed().as_secs_f64() * 1000.0;
    assert!(run["results"].is_array(), "{run}");
    (
        ratio(median, 200.0),
        ratio(hanging, 1000.0),
        (
            format!(
                "median {median:.0} ms for stand-ins at 10/50/200 ms (7 runs, HTTP round trip)"
            ),
            format!("{hanging:.0} ms with OpenAI hanging and a 1000 ms timeout"),
        ),
    )
}
