//! Handlers through `router(state).oneshot`, with no socket: bad input gets the status and the
//! field it should name, and keyset pages meet at their boundaries. The state is built as the
//! service builds it, on one in-memory SQLite connection with the migrations applied.

use std::collections::HashSet;

use api::{router, AppState, Config};
use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use sea_orm::{ConnectOptions, Database};
use serde_json::{json, Value};
use tower::ServiceExt;

const TOKEN: &str = "routes-admin-token-0123456789abcdef";
/// Small, so a body over it is cheap to build.
const MAX_BODY_BYTES: usize = 1024;

/// The service's router on a fresh in-memory database.
async fn service() -> Router {
    let max_body = MAX_BODY_BYTES.to_string();
    let config = Config::from_lookup(|name| match name {
        "DATABASE_URL" => Some("sqlite::memory:".to_owned()),
        "ADMIN_TOKEN" => Some(TOKEN.to_owned()),
        "MAX_BODY_BYTES" => Some(max_body.clone()),
        "DOCTOR_INTERVAL_MS" => Some("0".to_owned()),
        _ => None,
    })
    .expect("configuration");
    // Each `sqlite::memory:` connection is a database of its own: keep exactly one, for good.
    let forever = std::time::Duration::from_secs(86_400);
    let mut options = ConnectOptions::new("sqlite::memory:");
    options
        .max_connections(1)
        .min_connections(1)
        .idle_timeout(forever)
        .max_lifetime(forever)
        .sqlx_logging(false);
    let db = Database::connect(options).await.expect("in-memory SQLite");
    api::db::migrate_up(&db).await.expect("migrations");
    router(AppState::new(config, db))
}

/// One request with the admin token; `content_type` and `declared` (a `Content-Length`) only
/// when given.
async fn send(
    app: &Router,
    method: Method,
    uri: &str,
    body: Option<(&str, Option<&str>)>,
    declared: Option<usize>,
) -> (StatusCode, Value) {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"));
    if let Some(length) = declared {
        request = request.header(header::CONTENT_LENGTH, length);
    }
    let body = match body {
        Some((text, content_type)) => {
            if let Some(ct) = content_type {
                request = request.header(header::CONTENT_TYPE, ct);
            }
            Body::from(text.to_owned())
        }
        None => Body::empty(),
    };
    let response = app
        .clone()
        .oneshot(request.body(body).expect("request"))
        .await
        .expect("infallible");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&bytes)))
    };
    (status, value)
}

async fn get(app: &Router, uri: &str) -> (StatusCode, Value) {
    send(app, Method::GET, uri, None, None).await
}

async fn post(app: &Router, uri: &str, body: &Value) -> (StatusCode, Value) {
    let text = body.to_string();
    send(
        app,
        Method::POST,
        uri,
        Some((&text, Some("application/json"))),
        None,
    )
    .await
}

/// Asserts the error envelope: the status, the code, and the field it names.
fn assert_error(
    what: &str,
    (status, body): &(StatusCode, Value),
    want: StatusCode,
    code: &str,
    field: Option<&str>,
) {
    assert_eq!(*status, want, "{what}: {body}");
    assert_eq!(body["error"]["code"], code, "{what}: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{what}: {body}"
    );
    assert_eq!(body["error"]["field"], json!(field), "{what}: {body}");
}

#[tokio::test]
async fn body_values_that_are_wrong_are_422_naming_the_field() {
    let app = service().await;
    let ok = |extra: Value| {
        let mut body = json!({"severity": "WARN", "category": "DB", "summary": "x"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    for (uri, body, field) in [
        (
            "/ops/incidents",
            ok(json!({"severity": "SEVERE"})),
            "severity",
        ),
        ("/ops/incidents", ok(json!({"category": 3})), "category"),
        ("/ops/incidents", ok(json!({"summary": ""})), "summary"),
        (
            "/ops/incidents",
            ok(json!({"detailsJson": "x"})),
            "detailsJson",
        ),
        ("/ops/incidents", ok(json!({"colour": "red"})), "colour"),
        (
            "/ops/incidents",
            json!({"severity": "WARN", "category": "DB"}),
            "summary",
        ),
        ("/ops/deploys", json!({"version": "v1"}), "environment"),
        (
            "/ops/deploys",
            json!({"environment": "prod", "version": "v1", "region": "eu"}),
            "region",
        ),
        (
            "/ops/deploys/cm0000000000000000000000/finish",
            json!({"status": "exploded"}),
            "status",
        ),
    ] {
        let answer = post(&app, uri, &body).await;
        assert_error(
            &format!("{uri} {body}"),
            &answer,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_value",
            Some(field),
        );
    }
}

#[tokio::test]
async fn bodies_that_are_not_json_or_too_large_are_refused() {
    let app = service().await;
    let valid = r#"{"severity":"WARN","category":"DB","summary":"x"}"#;
    let json_ct = Some("application/json");

    let malformed = send(
        &app,
        Method::POST,
        "/ops/incidents",
        Some((r#"{"severity": "#, json_ct)),
        None,
    )
    .await;
    assert_eq!(malformed.0, StatusCode::BAD_REQUEST, "{}", malformed.1);
    assert_eq!(malformed.1["error"]["code"], "bad_request");

    for content_type in [Some("text/plain"), None] {
        let (status, body) = send(
            &app,
            Method::POST,
            "/ops/incidents",
            Some((valid, content_type)),
            None,
        )
        .await;
        assert_eq!(
            status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type:?}: {body}"
        );
        assert_eq!(body["error"]["code"], "unsupported_media_type", "{body}");
    }

    // Over the limit: found while reading, and refused from the declared length alone.
    let huge = json!({"severity": "WARN", "category": "DB", "summary": "x".repeat(MAX_BODY_BYTES)})
        .to_string();
    for declared in [None, Some(huge.len())] {
        let (status, body) = send(
            &app,
            Method::POST,
            "/ops/incidents",
            Some((&huge, json_ct)),
            declared,
        )
        .await;
        assert_eq!(
            status,
            StatusCode::PAYLOAD_TOO_LARGE,
            "declared {declared:?}: {body}"
        );
        assert_eq!(body["error"]["code"], "payload_too_large", "{body}");
    }

    let (status, listed) = get(&app, "/ops/incidents").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["items"], json!([]), "nothing was stored: {listed}");
}

#[tokio::test]
async fn bad_query_values_are_400_naming_the_parameter() {
    let app = service().await;
    for (uri, field) in [
        ("/ops/incidents?limit=0", "limit"),
        ("/ops/incidents?limit=501", "limit"),
        ("/ops/incidents?limit=-1", "limit"),
        ("/ops/incidents?cursor=%%%", "cursor"),
        ("/ops/incidents?cursor=bm90LWEtY3Vyc29y", "cursor"),
        ("/ops/incidents?since=2026-02-30T00:00:00Z", "since"),
        ("/ops/timeline?limit=0", "limit"),
        ("/ops/timeline?cursor=x", "cursor"),
        ("/ops/deploys?limit=501", "limit"),
        ("/ops/deploys?cursor=x", "cursor"),
        ("/ops/gate/evaluations?limit=0", "limit"),
        ("/ops/gate?env=prod&release=v1&require=redis", "require"),
        ("/ops/gate?env=prod&release=v1&max_age=soon", "max_age"),
    ] {
        let answer = get(&app, uri).await;
        assert_error(
            uri,
            &answer,
            StatusCode::BAD_REQUEST,
            "bad_request",
            Some(field),
        );
    }
    // The limits' own boundaries are accepted.
    for uri in ["/ops/incidents?limit=1", "/ops/incidents?limit=500"] {
        let (status, body) = get(&app, uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {body}");
    }
}

#[tokio::test]
async fn unknown_ids_routes_and_methods_answer_json() {
    let app = service().await;
    let unknown = "cm0000000000000000000000";
    for uri in [
        format!("/ops/incidents/{unknown}"),
        format!("/ops/deploys/{unknown}"),
        "/ops/nothing-here".to_owned(),
        "/nothing-here".to_owned(),
    ] {
        let answer = get(&app, &uri).await;
        assert_error(&uri, &answer, StatusCode::NOT_FOUND, "not_found", None);
    }
    for (method, uri) in [
        (Method::DELETE, "/ops/incidents"),
        (Method::PUT, "/ops/deploys"),
        (Method::POST, "/health/live"),
    ] {
        let answer = send(&app, method.clone(), uri, None, None).await;
        assert_error(
            &format!("{method} {uri}"),
            &answer,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            None,
        );
    }
}

/// Pages of every size from 1 to one past the total: each row once, in the order of one big page,
/// and `nextCursor` null exactly on the last page (also when the last page is exactly full).
#[tokio::test]
async fn keyset_pages_meet_at_their_boundaries() {
    let app = service().await;
    const TOTAL: usize = 5;
    for n in 0..TOTAL {
        let (status, body) = post(
            &app,
            "/ops/incidents",
            &json!({"severity": "INFO", "category": "OTHER", "summary": format!("page {n}")}),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let ids = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, whole) = get(&app, "/ops/incidents?limit=500").await;
    let all = ids(&whole);
    assert_eq!(all.len(), TOTAL, "{whole}");
    assert_eq!(whole["nextCursor"], Value::Null, "{whole}");

    for limit in 1..=TOTAL + 1 {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let uri = match &cursor {
                Some(c) => format!("/ops/incidents?limit={limit}&cursor={c}"),
                None => format!("/ops/incidents?limit={limit}"),
            };
            let (status, page) = get(&app, &uri).await;
            assert_eq!(status, StatusCode::OK, "{uri}: {page}");
            let got = ids(&page);
            pages += 1;
            seen.extend(got.iter().cloned());
            match page["nextCursor"].as_str() {
                Some(next) => {
                    assert_eq!(got.len(), limit, "only a full page has a next: {page}");
                    assert!(
                        seen.len() < TOTAL,
                        "a next cursor after the last row: {page}"
                    );
                    cursor = Some(next.to_owned());
                }
                None => break,
            }
        }
        assert_eq!(seen, all, "limit {limit}");
        assert_eq!(pages, TOTAL.div_ceil(limit), "limit {limit}");
        assert_eq!(
            seen.iter().collect::<HashSet<_>>().len(),
            TOTAL,
            "limit {limit}: a row twice"
        );
    }
}
