//! Notifications end to end: the service in process, a failing check and a deploy, and local
//! stand-ins answering as Slack, PagerDuty and a webhook receiver. What each receives, the
//! webhook's signature checked with `openssl`, retries by answer, the per-target rate limit,
//! delivery once, and delivery after a restart.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use testkit::openai::OpenAiMode;
use testkit::receivers::{self, Answer, Received, Receiver, Service};

use crate::helpers::{
    with, ApiClient, Backend, InProcessApp, Stack, TestDb, ADMIN_TOKEN, OPENAI_KEY,
};
use crate::on_both_backends;

const HOOK_SECRET: &str = "hook-signing-secret-0123456789";
const ROUTING_KEY: &str = "R0UTINGKEY0123456789abcdefabcdef";
const STATUS_URL: &str = "https://ops.example.com/status";
const WAIT: Duration = Duration::from_secs(20);

struct Receivers {
    slack: Receiver,
    pagerduty: Receiver,
    hook: Receiver,
}

impl Receivers {
    async fn start() -> Self {
        Self {
            slack: receivers::start(Service::Slack).await,
            pagerduty: receivers::start(Service::PagerDuty).await,
            hook: receivers::start(Service::Webhook).await,
        }
    }

    fn env(&self, dir: &std::path::Path, min_interval_ms: &str) -> Vec<(String, String)> {
        [
            ("NOTIFY_SLACK_WEBHOOK_URL", self.slack.url()),
            ("NOTIFY_WEBHOOK_URL", self.hook.url()),
            ("NOTIFY_WEBHOOK_SECRET", HOOK_SECRET.to_owned()),
            ("NOTIFY_PAGERDUTY_ROUTING_KEY", ROUTING_KEY.to_owned()),
            ("NOTIFY_PAGERDUTY_URL", self.pagerduty.url()),
            ("NOTIFY_DIR", dir.display().to_string()),
            ("NOTIFY_POLL_MS", "100".to_owned()),
            ("NOTIFY_MIN_INTERVAL_MS", min_interval_ms.to_owned()),
            ("NOTIFY_RETRY_BASE_MS", "200".to_owned()),
            ("NOTIFY_RETRY_MAX_MS", "3000".to_owned()),
            ("STATUS_PAGE_URL", STATUS_URL.to_owned()),
            ("DOCTOR_ESCALATE_AFTER_RUNS", "2".to_owned()),
            // Delivery is under test here, not the flap thresholds: one observation decides
            // (the thresholds are tested in `decisions`).
            ("CHECK_FAIL_AFTER", "1".to_owned()),
            ("CHECK_RECOVER_AFTER", "1".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

async fn serve(stack: &Stack, db: &TestDb, env: &[(String, String)]) -> InProcessApp {
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    InProcessApp::spawn_with(db, &with(&stack.env(), &pairs), &[]).await
}

async fn doctor(app: &ApiClient) -> Value {
    let (status, body) = app.post("/ops/doctor/run", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// Runs the doctor with OpenAI failing until the incident is opened and escalated, then passing
/// so it resolves; returns the incident's fingerprint.
async fn fail_escalate_recover(stack: &Stack, app: &ApiClient) -> String {
    stack.openai.set(OpenAiMode::ServerErrorJson(500));
    let first = doctor(app).await;
    let opened = first["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["check"] == "openai" && a["action"] == "opened")
        .unwrap_or_else(|| panic!("no incident opened: {first}"));
    let fingerprint = opened["fingerprint"].as_str().unwrap().to_owned();
    doctor(app).await;
    stack.openai.set(OpenAiMode::Ok);
    doctor(app).await;
    fingerprint
}

async fn finish_a_deploy(app: &ApiClient, version: &str, outcome: &str) {
    let (status, started) = app
        .post(
            "/ops/deploys",
            json!({"environment": "prod", "version": version, "gitSha": "abc1234"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    let id = started["id"].as_str().unwrap();
    let (status, done) = app
        .post(
            &format!("/ops/deploys/{id}/finish"),
            json!({"status": outcome}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
}

fn delivered(received: &[Received]) -> Vec<&Received> {
    received.iter().filter(|r| r.status < 300).collect()
}

/// Checks the signature as a receiver would, with `openssl` (see docs/integrations.md).
fn verify_with_openssl(r: &Received) {
    let Ok(openssl) = which_openssl() else {
        if std::env::var_os("CI").is_some() {
            panic!("openssl is not installed: in CI the signature must be checked with it");
        }
        eprintln!("SKIPPED (openssl not installed): webhook signature not checked with it");
        return;
    };
    let ts = &r.headers["x-opsdoctor-timestamp"];
    let mut signed = ts.as_bytes().to_vec();
    signed.push(b'.');
    signed.extend_from_slice(&r.body);
    let mut child = std::process::Command::new(openssl)
        .args(["dgst", "-sha256", "-hmac", HOOK_SECRET, "-hex"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run openssl");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&signed).unwrap();
    let out = child.wait_with_output().unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    let hex = printed.trim().rsplit(' ').next().unwrap_or_default();
    assert_eq!(
        r.headers["x-opsdoctor-signature"],
        format!("sha256={hex}"),
        "the signature openssl computes over timestamp.body"
    );
    let age = chrono::Utc::now().timestamp() - ts.parse::<i64>().unwrap();
    assert!((0..120).contains(&age), "a fresh timestamp: {ts}");
}

fn which_openssl() -> Result<String, ()> {
    std::process::Command::new("openssl")
        .arg("version")
        .output()
        .map(|_| "openssl".to_owned())
        .map_err(|_| ())
}

fn assert_no_secret(received: &[Received]) {
    let slack_secret = "slackwebhooksecret0123";
    for r in received {
        let seen = String::from_utf8_lossy(&r.body);
        for secret in [slack_secret, HOOK_SECRET, ADMIN_TOKEN, OPENAI_KEY] {
            assert!(
                !seen.contains(secret),
                "{secret} leaked to {}: {seen}",
                r.path
            );
        }
        if !r.path.starts_with("/v2/") {
            assert!(
                !seen.contains(ROUTING_KEY),
                "routing key leaked to {}",
                r.path
            );
        }
    }
}

on_both_backends!(transitions_reach_slack_the_webhook_and_pagerduty_once);

async fn transitions_reach_slack_the_webhook_and_pagerduty_once(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let stack = Stack::healthy().await;
    let to = Receivers::start().await;
    let dir = tempfile::tempdir().unwrap();
    let app = serve(&stack, &db, &to.env(dir.path(), "50")).await;

    let fingerprint = fail_escalate_recover(&stack, &app).await;
    finish_a_deploy(&app, "v9", "succeeded").await;

    let slack = to.slack.wait_for(4, WAIT).await;
    let texts: Vec<String> = slack
        .iter()
        .map(|r| r.json()["text"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(texts.len(), 4, "{texts:#?}");
    assert!(
        texts[0].contains("Incident opened: openai check failing"),
        "{}",
        texts[0]
    );
    assert!(
        texts[1].contains("[CRITICAL] Incident escalated"),
        "{}",
        texts[1]
    );
    assert!(
        texts[2].starts_with("[RESOLVED] openai check failing"),
        "{}",
        texts[2]
    );
    assert!(
        texts[3].starts_with("Deploy v9 to prod succeeded"),
        "{}",
        texts[3]
    );
    assert!(texts.iter().all(|t| t.contains(&format!("<{STATUS_URL}|"))));
    let fields = slack[0].json()["blocks"][1]["fields"].to_string();
    for shown in ["*Severity*", "*Component*\\nopenai", "*Reason*", "*Hint*"] {
        assert!(fields.contains(shown), "{shown} in {fields}");
    }

    let pd = to.pagerduty.wait_for(4, WAIT).await;
    let events: Vec<(String, Value)> = pd.iter().map(|r| (r.path.clone(), r.json())).collect();
    assert_eq!(events.len(), 4, "{events:#?}");
    let actions: Vec<&str> = events[..3]
        .iter()
        .map(|(_, e)| e["event_action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["trigger", "trigger", "resolve"]);
    for (path, event) in &events[..3] {
        assert_eq!(path, "/v2/enqueue");
        assert_eq!(event["dedup_key"], fingerprint.as_str());
        assert_eq!(event["routing_key"], ROUTING_KEY);
    }
    assert_eq!(events[1].1["payload"]["severity"], "critical");
    assert_eq!(events[3].0, "/v2/change/enqueue");
    assert_eq!(events[3].1["payload"]["custom_details"]["version"], "v9");
    assert!(pd.iter().all(|r| r.status == 202));

    let hooks = to.hook.wait_for(4, WAIT).await;
    let kinds: Vec<String> = hooks
        .iter()
        .map(|r| r.headers["x-opsdoctor-event"].clone())
        .collect();
    assert_eq!(
        kinds,
        [
            "incident.opened",
            "incident.escalated",
            "incident.resolved",
            "deploy.finished"
        ]
    );
    for r in &hooks {
        verify_with_openssl(r);
        assert_eq!(r.json()["type"], r.headers["x-opsdoctor-event"].as_str());
    }
    assert_eq!(
        hooks[0].json()["incident"]["fingerprint"],
        fingerprint.as_str()
    );

    // The feed is read again and again (with a look-back); nothing is delivered twice.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(to.slack.received().len(), 4);
    assert_eq!(to.pagerduty.received().len(), 4);
    assert_eq!(to.hook.received().len(), 4);
    for r in [
        to.slack.received(),
        to.pagerduty.received(),
        to.hook.received(),
    ] {
        assert_no_secret(&r);
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_answer_is_retried_or_not_as_it_means_and_targets_are_rate_limited() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let stack = Stack::healthy().await;
    let to = Receivers::start().await;
    // Slack: 429 (wait 1 s), 503, then `ok` for the opening; `invalid_payload` for the
    // escalation and `no_service` for the resolve, neither retried.
    to.slack.script([
        Answer::RateLimited { retry_after_s: 1 },
        Answer::Unavailable,
        Answer::Ok,
        Answer::InvalidPayload,
        Answer::NoService,
    ]);
    // PagerDuty: 429 then 202 for the trigger; 400 for the second trigger, not retried.
    to.pagerduty.script([
        Answer::RateLimited { retry_after_s: 1 },
        Answer::Ok,
        Answer::InvalidPayload,
    ]);
    let dir = tempfile::tempdir().unwrap();
    let app = serve(&stack, &db, &to.env(dir.path(), "300")).await;
    fail_escalate_recover(&stack, &app).await;

    let slack = to.slack.wait_for(5, WAIT).await;
    let statuses: Vec<u16> = slack.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 503, 200, 400, 404]);
    assert!(
        slack[1].at - slack[0].at >= Duration::from_millis(950),
        "Retry-After: 1 is honoured"
    );
    assert_eq!(slack[0].body, slack[2].body, "the same message, retried");
    for pair in slack.windows(2) {
        assert!(
            pair[1].at - pair[0].at >= Duration::from_millis(290),
            "one request per NOTIFY_MIN_INTERVAL_MS per target"
        );
    }
    let pd = to.pagerduty.wait_for(4, WAIT).await;
    let statuses: Vec<u16> = pd.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [429, 202, 400, 202],
        "the 400 is not retried; the resolve goes on"
    );
    assert!(pd[1].at - pd[0].at >= Duration::from_millis(950));
    assert_eq!(pd[3].json()["event_action"], "resolve");

    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        to.slack.received().len(),
        5,
        "4xx answers are never retried"
    );
    assert_eq!(to.pagerduty.received().len(), 4);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_delivers_what_was_queued_and_nothing_twice() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let stack = Stack::healthy().await;
    let to = Receivers::start().await;
    to.slack.script([Answer::Unavailable; 100]);
    let dir = tempfile::tempdir().unwrap();
    let mut env = to.env(dir.path(), "50");
    env.push(("NOTIFY_RETRY_BASE_MS".into(), "3000".into()));
    let first = serve(&stack, &db, &env).await;
    stack.openai.set(OpenAiMode::ServerErrorJson(500));
    doctor(&first).await;
    assert_eq!(to.pagerduty.wait_for(1, WAIT).await.len(), 1);
    assert_eq!(to.slack.wait_for(1, WAIT).await[0].status, 503);
    // PagerDuty's delivery is recorded as settled in the outbox before the stop.
    let journal = dir.path().join("outbox.jsonl");
    let deadline = std::time::Instant::now() + WAIT;
    while !std::fs::read_to_string(&journal)
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with(r#"{"settle""#) && l.contains(r#"@pagerduty""#))
    {
        assert!(std::time::Instant::now() < deadline, "never settled");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    first.stop().await;

    // Slack is back; the second process finds the undelivered message in the outbox.
    to.slack.clear_script();
    let second = serve(&stack, &db, &env).await;
    let slack = to.slack.wait_for(2, WAIT).await;
    assert_eq!(slack.len(), 2);
    assert_eq!(slack[1].status, 200);
    assert_eq!(slack[0].body, slack[1].body);
    assert!(slack[1].json()["text"]
        .as_str()
        .unwrap()
        .contains("Incident opened"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(delivered(&to.slack.received()).len(), 1);
    assert_eq!(
        to.pagerduty.received().len(),
        1,
        "delivered before the restart: not sent again"
    );
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_sharing_a_postgres_database_deliver_once_and_take_over() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let stack = Stack::healthy().await;
    let to = Receivers::start().await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = serve(&stack, &db, &to.env(dir_a.path(), "50")).await;
    let second = serve(&stack, &db, &to.env(dir_b.path(), "50")).await;
    stack.openai.set(OpenAiMode::ServerErrorJson(500));
    doctor(&first).await;
    assert_eq!(to.slack.wait_for(1, WAIT).await.len(), 1);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        to.slack.received().len(),
        1,
        "one of the two processes delivers"
    );
    assert_eq!(to.pagerduty.received().len(), 1);

    // Whichever delivered, the survivor delivers what happens next.
    first.stop().await;
    stack.openai.set(OpenAiMode::Ok);
    doctor(&second).await;
    let deadline = std::time::Instant::now() + WAIT;
    let resolved = |r: &Received| {
        r.json()["text"]
            .as_str()
            .unwrap_or_default()
            .starts_with("[RESOLVED]")
    };
    while !to.slack.received().iter().any(resolved) {
        assert!(
            std::time::Instant::now() < deadline,
            "the resolve was never delivered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        to.slack.received().iter().filter(|r| resolved(r)).count(),
        1
    );
    second.stop().await;
}

/// The real binary, logging at `debug` in JSON, with every notification secret planted and
/// receivers that refuse, throttle and fail: no piece of a secret reaches its log, the status
/// page or a receiver that should not have it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notification_secrets_never_reach_the_log_or_the_status_page() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let stack = Stack::healthy().await;
    stack.openai.set(OpenAiMode::ServerErrorJson(500));
    let to = Receivers::start().await;
    to.slack.script([Answer::InvalidPayload]);
    to.pagerduty
        .script([Answer::RateLimited { retry_after_s: 1 }]);
    to.hook.script([Answer::Unavailable]);
    let dir = tempfile::tempdir().unwrap();
    let mut env = stack.env();
    env.extend(to.env(dir.path(), "50"));
    env.push(("RUST_LOG".into(), "debug".into()));
    let app = crate::helpers::TestApp::spawn_with(&db, &with(&env, &[]), &[]);
    let (status, _) = app.post("/ops/doctor/run", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    to.slack.wait_for(1, WAIT).await;
    to.pagerduty.wait_for(2, WAIT).await;
    to.hook.wait_for(2, WAIT).await;
    let mut pages = String::new();
    for token in [None, Some(ADMIN_TOKEN)] {
        let mut request = app.client.get(format!("{}/status", app.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        pages.push_str(&request.send().await.unwrap().text().await.unwrap());
    }
    assert!(pages.contains("openai"), "{pages}");
    let logs = app.stop();
    assert!(
        logs.contains("notification refused"),
        "the 400 was logged:\n{logs}"
    );
    for (what, text) in [("the log", &logs), ("the status page", &pages)] {
        for secret in ["slackwebhooksecret0123", ROUTING_KEY, HOOK_SECRET] {
            assert!(!text.contains(secret), "{what} shows {secret}");
        }
    }
    for r in [
        to.slack.received(),
        to.pagerduty.received(),
        to.hook.received(),
    ] {
        assert_no_secret(&r);
    }
}
