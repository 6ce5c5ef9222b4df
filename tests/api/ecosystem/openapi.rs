//! `GET /openapi.json` against the router: every route the code declares is documented, every
//! documented operation is served; then schemathesis fuzzes a live instance against the document.

use std::collections::BTreeSet;
use std::path::Path;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::tool;
use crate::helpers::{Backend, InProcessApp, Stack, TestDb, ADMIN_TOKEN};
use crate::on_both_backends;

on_both_backends!(schemathesis_finds_no_server_error_or_schema_violation);

/// `(path, method)` for every `.route("…", get(…).post(…))` in the service's source. Routes are
/// declared only this way, so a new one cannot hide from this list.
fn declared_routes() -> BTreeSet<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("api/src");
    let route = ".route(\"";
    let mut found = BTreeSet::new();
    let mut stack = vec![src];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read api/src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read source");
            for (at, _) in text.match_indices(route) {
                let rest = &text[at + route.len()..];
                let Some(end) = rest.find('"') else { continue };
                let route_path = rest[..end].to_owned();
                // The method router: up to the parenthesis that closes `.route(`.
                let mut depth = 1;
                let mut close = rest.len();
                for (i, c) in rest.char_indices() {
                    match c {
                        '(' => depth += 1,
                        ')' => {
                            depth -= 1;
                            if depth == 0 {
                                close = i;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                let methods = &rest[end..close];
                for method in ["get", "post", "put", "patch", "delete"] {
                    let call = format!("{method}(");
                    let called = methods
                        .match_indices(&call)
                        .any(|(i, _)| i == 0 || !methods.as_bytes()[i - 1].is_ascii_alphanumeric());
                    if called {
                        found.insert((route_path.clone(), method.to_owned()));
                    }
                }
            }
        }
    }
    found
}

fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut found = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                found.insert((path.clone(), method.to_owned()));
            }
        }
    }
    found
}

/// A new route without a spec (or a spec without a route) fails here; each documented operation
/// is also sent to the router, which must answer it with a handler, not the 404/405 fallbacks.
#[tokio::test]
async fn the_document_lists_exactly_the_routes_the_router_serves() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let app = InProcessApp::spawn(&db).await;
    let (status, doc) = app.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let declared = declared_routes();
    assert!(declared.len() > 20, "too few routes found: {declared:?}");
    let listed = documented(&doc);
    let undocumented: Vec<_> = declared.difference(&listed).collect();
    let unserved: Vec<_> = listed.difference(&declared).collect();
    assert!(
        undocumented.is_empty(),
        "routes without an OpenAPI operation (annotate the handler and add it to ApiDoc's paths): {undocumented:?}"
    );
    assert!(
        unserved.is_empty(),
        "documented operations no route declares: {unserved:?}"
    );
    for (path, method) in &listed {
        let url = format!("{}{}", app.base, path.replace("{id}", "unknown-id"));
        let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
        let resp = app
            .client
            .request(method.clone(), &url)
            .bearer_auth(ADMIN_TOKEN)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .expect("request");
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        assert_ne!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}: {body}"
        );
        assert!(
            !body.contains("no such endpoint"),
            "{method} {path} fell through to the fallback: {body}"
        );
    }
    // Every admin operation declares the bearer scheme, and the scheme is defined.
    assert_eq!(
        doc["components"]["securitySchemes"]["admin"]["scheme"],
        "bearer"
    );
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if path.starts_with("/ops") {
                assert_eq!(
                    op["security"][0]["admin"],
                    serde_json::json!([]),
                    "{method} {path}"
                );
                assert!(
                    op["responses"]["401"].is_object(),
                    "{method} {path}: 401 undocumented"
                );
            }
        }
    }
    let envelope = &doc["components"]["schemas"]["ErrorEnvelope"];
    assert!(envelope["properties"]["error"].is_object(), "{envelope}");
}

/// schemathesis, with the admin token, against a live instance on this backend: every phase,
/// every check but "schema-valid data is accepted" (the service is deliberately stricter than a
/// schema can say: blank-after-trim text, the reserved `RESOLVED` event type), a bounded number of
/// cases per operation.
async fn schemathesis_finds_no_server_error_or_schema_violation(backend: Backend) {
    let Some(st) = tool("schemathesis", ".ci/install/50-schemathesis.sh") else {
        return;
    };
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let stack = Stack::healthy().await;
    let app = stack.serve(&db, &[]).await;
    let report = std::env::temp_dir().join(format!(
        "opsdoctor-schemathesis-{}-{:?}",
        std::process::id(),
        backend
    ));
    let output = tokio::process::Command::new(st)
        .args([
            "run",
            &format!("{}/openapi.json", app.base),
            "--header",
            &format!("Authorization: Bearer {ADMIN_TOKEN}"),
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
            "--max-examples",
            "25",
            "--seed",
            "15",
            "--request-timeout",
            "20",
            "--report-dir",
        ])
        .arg(&report)
        .env("NO_COLOR", "1")
        // schemathesis keeps a cache in its working directory: not in the repository.
        .current_dir(std::env::temp_dir())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(600), output)
        .await
        .expect("schemathesis finished within 10 minutes")
        .expect("schemathesis ran");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tested: u32 = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("Tested: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(tested > 20, "too few operations tested:\n{stdout}");
}
