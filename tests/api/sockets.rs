//! Connections and the HTTP layer: idle and half-sent connections are closed, liveness answers
//! under a connection storm, limits answer at once in JSON, shutdown closes keep-alive
//! connections, and ordinary 503 answers are not logged as faults.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{decode, ApiClient, Backend, InProcessApp, TestApp, TestDb, ADMIN_TOKEN};
use crate::on_both_backends;

on_both_backends!(
    a_declared_oversize_body_is_refused_at_once,
    error_bodies_are_json,
    answers_during_the_shutdown_delay_close_the_connection,
    a_fail_verdict_and_readiness_503_are_not_logged_as_errors
);

fn addr(app: &ApiClient) -> String {
    app.base.trim_start_matches("http://").to_owned()
}

/// Sends `head` on a fresh connection and reads until the server closes it, for at most `within`.
/// Returns what was read and how long the server took to close, or `None` if it did not.
async fn send_and_read(
    app: &ApiClient,
    head: &[u8],
    within: Duration,
) -> (String, Option<Duration>) {
    let mut stream = TcpStream::connect(addr(app)).await.unwrap();
    let started = Instant::now();
    stream.write_all(head).await.unwrap();
    let mut out = Vec::new();
    let closed = tokio::time::timeout(within, async {
        let mut buf = [0u8; 8192];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .ok();
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

/// The JSON body of a raw HTTP/1.1 response.
fn json_body(response: &str) -> Value {
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str(body).unwrap_or_else(|_| panic!("not a JSON body: {response:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_half_sent_connections_are_closed_within_their_timeouts() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let app = InProcessApp::spawn_with(
        &db,
        &[
            ("IDLE_TIMEOUT_MS", "1000"),
            ("HEADER_READ_TIMEOUT_MS", "500"),
        ],
        &[],
    )
    .await;
    let within = Duration::from_secs(5);
    let idle = (0..50).map(|_| send_and_read(&app, b"", within));
    let half =
        (0..50).map(|_| send_and_read(&app, b"GET /health/live HTTP/1.1\r\nHost: x\r\n", within));
    let kept = (0..50).map(|_| {
        send_and_read(
            &app,
            b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n",
            within,
        )
    });
    let (idle, half, kept) = tokio::join!(
        futures::future::join_all(idle),
        futures::future::join_all(half),
        futures::future::join_all(kept)
    );
    for (what, results, at_least, at_most) in [
        ("idle", idle, 900, 2_500),
        ("half-sent", half, 400, 2_000),
        ("idle after one answer", kept, 900, 2_500),
    ] {
        for (_, closed) in results {
            let closed = closed.unwrap_or_else(|| panic!("an {what} connection stayed open"));
            let ms = closed.as_millis();
            assert!(
                (at_least..=at_most).contains(&ms),
                "{what} closed after {ms} ms"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn liveness_answers_while_2000_idle_connections_are_held() {
    rlimit::increase_nofile_limit(8192).unwrap();
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    // Started with a soft limit of 256 open files, as under many supervisors: the service must
    // raise it (or hold fewer connections) rather than stop accepting.
    let app = TestApp::spawn_with_soft_nofile(&db, 256);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut held = Vec::with_capacity(2000);
    while held.len() < 2000 && Instant::now() < deadline {
        let stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr(&app)))
            .await
            .expect("connect in time")
            .expect("connect");
        held.push(stream);
    }
    assert_eq!(held.len(), 2000, "opened in time");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    for _ in 0..5 {
        let resp = client
            .get(format!("{}/health/live", app.base))
            .send()
            .await
            .expect("liveness answers");
        assert_eq!(resp.status(), StatusCode::OK);
    }
    drop(held);
}

async fn a_declared_oversize_body_is_refused_at_once(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let app = InProcessApp::spawn(&db).await;
    let head = format!(
        "POST /ops/incidents HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\n\r\n"
    );
    let (response, closed) = send_and_read(&app, head.as_bytes(), Duration::from_secs(3)).await;
    assert!(
        response.starts_with("HTTP/1.1 413"),
        "no 413 within 3 s: {response:?}"
    );
    assert!(closed.is_some(), "the connection is closed after the 413");
    let body = json_body(&response);
    assert_eq!(body["error"]["code"], "payload_too_large", "{body}");
}

async fn error_bodies_are_json(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let app = InProcessApp::spawn_with(&db, &[("REQUEST_TIMEOUT_MS", "300")], &[]).await;

    // 408: a body that never arrives in full.
    let head = format!(
        "POST /ops/incidents HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
    );
    let (response, _) = send_and_read(&app, head.as_bytes(), Duration::from_secs(3)).await;
    assert!(response.starts_with("HTTP/1.1 408"), "{response:?}");
    assert_eq!(json_body(&response)["error"]["code"], "request_timeout");

    // 400 naming the parameter: an id that is not UTF-8 once decoded.
    for path in ["/ops/incidents/%FF", "/ops/deploys/%FF"] {
        let resp = app
            .request(reqwest::Method::GET, path)
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.headers()[reqwest::header::CONTENT_TYPE],
            "application/json"
        );
        let (status, body) = decode(resp).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(body["error"]["field"], "id", "{path}: {body}");
    }

    // 414 and 431, on an admin route and on liveness alike.
    let long = "a".repeat(16 * 1024);
    for path in [
        format!("/ops/incidents?fingerprint={long}"),
        format!("/health/live?{long}"),
    ] {
        let (status, body) = app.get(&path).await;
        assert_eq!(status, StatusCode::URI_TOO_LONG, "{body}");
        assert_eq!(body["error"]["code"], "uri_too_long", "{body}");
    }
    for path in ["/ops/incidents", "/health/live"] {
        let resp = app
            .request(reqwest::Method::GET, path)
            .header("x-padding", "b".repeat(64 * 1024))
            .send()
            .await
            .unwrap();
        let (status, body) = decode(resp).await;
        assert_eq!(
            status,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "{body}"
        );
        assert_eq!(body["error"]["code"], "headers_too_large", "{body}");
    }

    // What hyper answers before the service sees it: bytes that are not HTTP, more headers than it
    // parses, a URI over 64 KiB. The same envelope, with a body length that fits.
    // More headers than hyper parses (100): small, so the server reads all of it before answering.
    let many_headers: String = (0..120).map(|n| format!("X-H{n}: v\r\n")).collect();
    let huge_header = format!("GET /health/live HTTP/1.1\r\nHost: x\r\n{many_headers}\r\n");
    let huge_uri = format!(
        "GET /health/live?{} HTTP/1.1\r\nHost: x\r\n\r\n",
        "d".repeat(70 * 1024)
    );
    for (head, status, code) in [
        ("GARBAGE\r\n\r\n".to_owned(), "400", "bad_request"),
        (
            "GET / HTTP/1.1\r\nBad Header\r\n\r\n".to_owned(),
            "400",
            "bad_request",
        ),
        (huge_header, "431", "headers_too_large"),
        (huge_uri, "414", "uri_too_long"),
    ] {
        let (response, _) = send_and_read(&app, head.as_bytes(), Duration::from_secs(5)).await;
        assert!(
            response.starts_with(&format!("HTTP/1.1 {status}")),
            "{response:?}"
        );
        assert!(
            response.contains("content-type: application/json"),
            "{response:?}"
        );
        let body = json_body(&response);
        assert_eq!(body["error"]["code"], code, "{response:?}");
        let declared: usize = response
            .split("content-length: ")
            .nth(1)
            .and_then(|rest| rest.split("\r\n").next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no content-length: {response:?}"));
        assert_eq!(declared, body.to_string().len(), "{response:?}");
    }
}

async fn answers_during_the_shutdown_delay_close_the_connection(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let mut app = TestApp::spawn_with(&db, &[("SHUTDOWN_READY_DELAY_MS", "1500")], &[]);
    let live = format!("{}/health/live", app.base);
    let before = app.client.get(&live).send().await.unwrap();
    assert!(before.headers().get(reqwest::header::CONNECTION).is_none());

    std::process::Command::new("kill")
        .args(["-TERM", &app.pid().to_string()])
        .status()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for path in ["/health/live", "/health/ready", "/ops/incidents"] {
        let resp = app
            .request(reqwest::Method::GET, path)
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.headers()
                .get(reqwest::header::CONNECTION)
                .map(|v| v.to_str().unwrap()),
            Some("close"),
            "{path} during the shutdown delay"
        );
    }
    let status = app
        .terminate(Duration::from_secs(10))
        .expect("exits after the delay and drain");
    assert!(status.success(), "exit status {status:?}");
}

async fn a_fail_verdict_and_readiness_503_are_not_logged_as_errors(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    // Stripe is required but not configured: readiness and the gate fail, as designed.
    let app = TestApp::spawn_with(&db, &[("REQUIRED_CHECKS", "database,stripe")], &[]);
    let (status, body) = app.get("/ops/gate?env=prod&release=r1").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["verdict"], "fail", "{body}");
    let (status, body) = app.get("/health/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");

    // The response line is written after the answer; give the log reader a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !app.logs().contains("\"status\":503") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let logs = app.logs();
    let lines: Vec<Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["level"] == "INFO" && l["status"] == 503),
        "the 503 answer is logged at INFO:\n{logs}"
    );
    let errors: Vec<&Value> = lines.iter().filter(|l| l["level"] == "ERROR").collect();
    assert!(errors.is_empty(), "ERROR lines: {errors:?}");
}
