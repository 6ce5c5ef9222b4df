//! `opsdoctor gate`: waits for a verdict the way a deploy script needs, deterministically.
//!
//! Attempts are scheduled at `start + k × interval` (later when the service asks with
//! `Retry-After`), one line per attempt on stderr says why it is still waiting, the final verdict
//! goes to stdout, and the exit status is 0 pass, 1 fail, 2 partial, 3 could not evaluate.

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::{GateVerdict, Verdict};
use crate::remote::{error_message, Remote, EXIT_UNUSABLE};

/// The service's answer read as a verdict, when it is one.
fn verdict_of(body: &Value) -> Option<GateVerdict> {
    serde_json::from_value(body.clone()).ok()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// What `opsdoctor gate` was asked.
#[derive(Debug, Clone)]
pub struct GateArgs {
    pub url: String,
    pub env: String,
    pub release: String,
    pub require: Vec<String>,
    pub max_age: Duration,
    pub timeout: Duration,
    pub interval: Duration,
    pub start_period: Duration,
    pub consecutive_successes: u32,
    pub allow_partial: bool,
    pub format: Format,
}

fn verdict_code(verdict: Verdict) -> u8 {
    match verdict {
        Verdict::Pass => 0,
        Verdict::Partial => 2,
        Verdict::Fail => 1,
    }
}

fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// One word per check: `tunnel=not_routing stripe=pass`.
fn check_words(verdict: &GateVerdict) -> String {
    verdict
        .checks
        .iter()
        .map(|c| {
            let what = c.reason.map_or(c.status.as_str(), |r| r.as_str());
            format!("{}={what}", c.name)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

pub async fn run(args: GateArgs) -> ExitCode {
    const DAY: Duration = Duration::from_secs(86_400);
    if args.interval < Duration::from_millis(10)
        || args.timeout.is_zero()
        || args.consecutive_successes == 0
    {
        eprintln!("opsdoctor gate: --interval must be at least 10ms, --timeout and --consecutive-successes greater than zero");
        return ExitCode::from(EXIT_UNUSABLE);
    }
    if args.timeout > DAY || args.interval > DAY || args.start_period > DAY || args.max_age > DAY {
        eprintln!("opsdoctor gate: durations longer than a day are not accepted");
        return ExitCode::from(EXIT_UNUSABLE);
    }
    // A verdict that has to run checks takes up to their timeouts; wait for it, within reason.
    let per_request = args.timeout.min(Duration::from_secs(60));
    let remote = match Remote::new(&args.url, per_request) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("opsdoctor gate: {e}");
            return ExitCode::from(EXIT_UNUSABLE);
        }
    };
    if !remote.has_token() {
        eprintln!(
            "opsdoctor gate: set OPSDOCTOR_TOKEN (or ADMIN_TOKEN) to the service's admin token"
        );
        return ExitCode::from(EXIT_UNUSABLE);
    }
    let require: BTreeSet<String> = args
        .require
        .iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    let mut query = format!(
        "/ops/gate?env={}&release={}&max_age={}",
        encode(&args.env),
        encode(&args.release),
        args.max_age.as_secs()
    );
    if !require.is_empty() {
        query.push_str(&format!(
            "&require={}",
            encode(&require.into_iter().collect::<Vec<_>>().join(","))
        ));
    }
    if args.allow_partial {
        query.push_str("&allow_partial=1");
    }

    let started = Instant::now();
    let deadline = started + args.timeout;
    let total = args
        .timeout
        .as_millis()
        .div_ceil(args.interval.as_millis())
        .max(1);
    let mut attempt: u32 = 0;
    let mut streak: u32 = 0;
    let mut last: Option<(Value, GateVerdict)> = None;
    let mut last_problem = String::new();
    let mut last_failed;
    loop {
        attempt += 1;
        let t = started.elapsed().as_secs();
        let prefix = format!("[{attempt}/{total} t={t}s]");
        let mut retry_after = None;
        let answer = remote.send(Method::GET, &query, None).await;
        let read = answer.as_ref().ok().and_then(|a| verdict_of(&a.body));
        match (answer, read) {
            (Ok(answer), _)
                if answer.status == StatusCode::UNAUTHORIZED
                    || answer.status == StatusCode::FORBIDDEN =>
            {
                eprintln!("{prefix} refused: {}", error_message(&answer));
                eprintln!("opsdoctor gate: the service refused the token; check OPSDOCTOR_TOKEN");
                return ExitCode::from(EXIT_UNUSABLE);
            }
            (Ok(answer), _) if answer.status == StatusCode::BAD_REQUEST => {
                eprintln!("opsdoctor gate: {}", error_message(&answer));
                return ExitCode::from(EXIT_UNUSABLE);
            }
            (Ok(answer), Some(read)) => {
                last_failed = false;
                let verdict = read.verdict;
                retry_after = answer.retry_after;
                let accepted =
                    verdict == Verdict::Pass || (verdict == Verdict::Partial && args.allow_partial);
                streak = if accepted { streak + 1 } else { 0 };
                let progress = if accepted && args.consecutive_successes > 1 {
                    format!(" ({streak}/{} consecutive)", args.consecutive_successes)
                } else {
                    String::new()
                };
                eprintln!(
                    "{prefix} {} {}{progress}",
                    verdict.as_str(),
                    check_words(&read)
                );
                let permanent = super::waiting::hopeless(&read, args.allow_partial);
                last = Some((answer.body, read));
                if accepted && streak >= args.consecutive_successes {
                    break;
                }
                if !permanent.is_empty() && started.elapsed() >= args.start_period {
                    eprintln!(
                        "opsdoctor gate: waiting cannot fix {}; giving up",
                        permanent.join(" ")
                    );
                    break;
                }
            }
            (Ok(answer), None) => {
                last_failed = true;
                streak = 0;
                last_problem = format!("could not evaluate: {}", error_message(&answer));
                eprintln!("{prefix} {last_problem}");
                retry_after = answer.retry_after;
            }
            (Err(problem), _) => {
                last_failed = true;
                streak = 0;
                last_problem = problem;
                eprintln!("{prefix} {last_problem}");
            }
        }
        let mut next = started + args.interval.saturating_mul(attempt);
        if let Some(wait) = retry_after {
            next = next.max(Instant::now() + wait);
        }
        if next >= deadline {
            break;
        }
        tokio::time::sleep_until(next.into()).await;
    }

    let elapsed = started.elapsed().as_secs_f64();
    // An old verdict says nothing once the service stopped answering.
    let last = if last_failed { None } else { last };
    let Some((body, read)) = last else {
        eprintln!(
            "opsdoctor gate: no verdict within {}s: {last_problem}",
            args.timeout.as_secs()
        );
        if args.format == Format::Json {
            println!(
                "{}",
                json!({ "verdict": null, "error": last_problem, "attempts": attempt, "exitCode": EXIT_UNUSABLE })
            );
        }
        return ExitCode::from(EXIT_UNUSABLE);
    };
    let mut code = verdict_code(read.verdict);
    if code == 0 && streak < args.consecutive_successes {
        code = 1; // passed, but not as many times in a row as asked before the deadline
    }
    match args.format {
        Format::Text => println!(
            "{} (gate {}, {attempt} attempt(s), {elapsed:.1}s)",
            read.summary, read.gate_id
        ),
        Format::Json => {
            let mut out = body.clone();
            out["attempts"] = json!(attempt);
            out["elapsedSeconds"] = json!((elapsed * 10.0).round() / 10.0);
            out["exitCode"] = json!(code);
            println!("{out}");
        }
    }
    ExitCode::from(code)
}
