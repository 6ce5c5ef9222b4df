//! Stand-ins for the receivers of opsdoctor's notifications: a Slack incoming webhook, the
//! PagerDuty Events API v2 and a generic JSON webhook endpoint.
//!
//! Each records every request (path, headers, body, when) and answers the next scripted
//! [`Answer`], or [`Answer::Ok`] once the script is used up, the way the real service does
//! (`shared/reference/integrations.md`): Slack's plain-text `ok` / `invalid_payload` /
//! `no_service`, PagerDuty's `202 {"status":"success",…}` / `400 {"status":"invalid event",…}`,
//! and `429` with `Retry-After`. Both also refuse, as the real ones do, a body they cannot use.

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::{to_bytes, Body};
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Router;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::reply;

/// Which service the stand-in answers as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Slack,
    PagerDuty,
    Webhook,
}

/// One scripted answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Slack `200 ok`, PagerDuty `202` success, a webhook `200`.
    Ok,
    /// `400`: Slack `invalid_payload`, PagerDuty `invalid event`.
    InvalidPayload,
    /// `404 no_service` (a revoked Slack webhook).
    NoService,
    /// `429` with `Retry-After` in seconds.
    RateLimited { retry_after_s: u64 },
    /// `503`.
    Unavailable,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    /// Header names in lowercase.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    pub at: Instant,
    /// The status it was answered with.
    pub status: u16,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

struct Shared {
    script: Mutex<VecDeque<Answer>>,
    received: Mutex<Vec<Received>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running stand-in; dropping it stops it.
pub struct Receiver {
    service: Service,
    shared: Arc<Shared>,
    addr: SocketAddr,
    task: JoinHandle<()>,
    _stop: oneshot::Sender<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    /// The URL to configure: a Slack-shaped webhook URL, PagerDuty's base URL, or a hook path.
    pub fn url(&self) -> String {
        let base = format!("http://{}", self.addr);
        match self.service {
            Service::Slack => format!("{base}/services/T0OPSDOC/B0OPSDOC/slackwebhooksecret0123"),
            Service::PagerDuty => base,
            Service::Webhook => format!("{base}/hooks/opsdoctor"),
        }
    }

    /// Answers to give, in order, before answering [`Answer::Ok`] again.
    pub fn script(&self, answers: impl IntoIterator<Item = Answer>) {
        lock(&self.shared.script).extend(answers);
    }

    /// Forgets the answers not given yet: [`Answer::Ok`] from now on.
    pub fn clear_script(&self) {
        lock(&self.shared.script).clear();
    }

    /// Every request so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.shared.received).clone()
    }

    /// Waits until `n` requests arrived (or `within` passed) and returns them all.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.received();
            if got.len() >= n || Instant::now() >= deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// Starts a stand-in on 127.0.0.1.
pub async fn start(service: Service) -> Receiver {
    let shared = Arc::new(Shared {
        script: Mutex::new(VecDeque::new()),
        received: Mutex::new(Vec::new()),
    });
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("testkit: bind 127.0.0.1:0 for a receiver");
    let addr = listener.local_addr().expect("testkit: a bound address");
    let state = shared.clone();
    let app = Router::new().fallback(move |request: Request| {
        let state = state.clone();
        async move { answer(service, &state, request).await }
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await;
    });
    Receiver {
        service,
        shared,
        addr,
        task,
        _stop: stop,
    }
}

async fn answer(service: Service, shared: &Shared, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let headers = request
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = to_bytes(request.into_body(), 1 << 20)
        .await
        .map(|b| b.to_vec())
        .unwrap_or_default();
    let scripted = lock(&shared.script).pop_front().unwrap_or(Answer::Ok);
    let response = match service {
        Service::Slack => slack(scripted, &path, &body),
        Service::PagerDuty => pagerduty(scripted, &path, &body),
        Service::Webhook => webhook(scripted),
    };
    lock(&shared.received).push(Received {
        path,
        headers,
        body,
        at: Instant::now(),
        status: response.status().as_u16(),
    });
    response
}

fn rate_limited(retry_after_s: u64, body: &'static str, content_type: &str) -> Response {
    reply::header(
        reply::with(
            StatusCode::TOO_MANY_REQUESTS,
            Some(content_type),
            Body::from(body),
        ),
        "retry-after",
        &retry_after_s.to_string(),
    )
}

fn slack(scripted: Answer, path: &str, body: &[u8]) -> Response {
    let text =
        |status: StatusCode, body: &'static str| reply::with(status, Some(reply::TEXT), body);
    if !path.starts_with("/services/") {
        return text(StatusCode::NOT_FOUND, "no_service");
    }
    let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let has_text = json["text"].as_str().is_some_and(|t| !t.is_empty());
    match scripted {
        _ if json.is_null() => text(StatusCode::BAD_REQUEST, "invalid_payload"),
        _ if !has_text && json["blocks"].as_array().is_none_or(Vec::is_empty) => {
            text(StatusCode::BAD_REQUEST, "no_text")
        }
        Answer::Ok => text(StatusCode::OK, "ok"),
        Answer::InvalidPayload => text(StatusCode::BAD_REQUEST, "invalid_payload"),
        Answer::NoService => text(StatusCode::NOT_FOUND, "no_service"),
        Answer::RateLimited { retry_after_s } => {
            rate_limited(retry_after_s, "rate_limited", reply::TEXT)
        }
        Answer::Unavailable => text(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable"),
    }
}

/// Why PagerDuty would refuse this event, if it would.
fn pagerduty_problem(path: &str, event: &Value) -> Option<String> {
    if event["routing_key"].as_str().is_none_or(str::is_empty) {
        return Some("'routing_key' is missing or blank".into());
    }
    if path == "/v2/change/enqueue" {
        return event["payload"]["summary"]
            .as_str()
            .is_none_or(str::is_empty)
            .then(|| "'payload.summary' is missing or blank".into());
    }
    let action = event["event_action"].as_str().unwrap_or_default();
    if !matches!(action, "trigger" | "acknowledge" | "resolve") {
        return Some("'event_action' is invalid".into());
    }
    let dedup = event["dedup_key"].as_str().unwrap_or_default();
    if dedup.chars().count() > 255 || (action != "trigger" && dedup.is_empty()) {
        return Some("'dedup_key' is invalid".into());
    }
    if action == "trigger" {
        let p = &event["payload"];
        let summary = p["summary"].as_str().unwrap_or_default();
        if summary.is_empty() || summary.chars().count() > 1024 {
            return Some("'payload.summary' is invalid".into());
        }
        if p["source"].as_str().is_none_or(str::is_empty) {
            return Some("'payload.source' is missing or blank".into());
        }
        let severity = p["severity"].as_str().unwrap_or_default();
        if !matches!(severity, "critical" | "error" | "warning" | "info") {
            return Some("'payload.severity' is invalid".into());
        }
    }
    None
}

fn pagerduty(scripted: Answer, path: &str, body: &[u8]) -> Response {
    if path != "/v2/enqueue" && path != "/v2/change/enqueue" {
        return reply::json(StatusCode::NOT_FOUND, r#"{"status":"not found"}"#);
    }
    let invalid = |error: &str| {
        reply::json(
            StatusCode::BAD_REQUEST,
            format!(
                r#"{{"status":"invalid event","message":"Event object is invalid","errors":[{}]}}"#,
                reply::quoted(error)
            ),
        )
    };
    let event: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if let Some(problem) = pagerduty_problem(path, &event) {
        return invalid(&problem);
    }
    match scripted {
        Answer::Ok => {
            let dedup = event["dedup_key"].as_str().unwrap_or("generated0001");
            reply::json(
                StatusCode::ACCEPTED,
                format!(
                    r#"{{"status":"success","message":"Event processed","dedup_key":{}}}"#,
                    reply::quoted(dedup)
                ),
            )
        }
        Answer::InvalidPayload | Answer::NoService => invalid("scripted refusal"),
        Answer::RateLimited { retry_after_s } => rate_limited(
            retry_after_s,
            r#"{"status":"throttle event","message":"Requests for this service are arriving too quickly."}"#,
            reply::JSON,
        ),
        Answer::Unavailable => reply::json(
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"status":"unavailable"}"#,
        ),
    }
}

fn webhook(scripted: Answer) -> Response {
    let text =
        |status: StatusCode, body: &'static str| reply::with(status, Some(reply::TEXT), body);
    match scripted {
        Answer::Ok => text(StatusCode::OK, "received"),
        Answer::InvalidPayload => text(StatusCode::BAD_REQUEST, "bad signature"),
        Answer::NoService => text(StatusCode::NOT_FOUND, "no such hook"),
        Answer::RateLimited { retry_after_s } => {
            rate_limited(retry_after_s, "slow down", reply::TEXT)
        }
        Answer::Unavailable => text(StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
    }
}
