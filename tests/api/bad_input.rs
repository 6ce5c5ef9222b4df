//! Bad input gets a 4xx JSON error naming the problem, and nothing is stored.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{decode, ApiClient, Backend, InProcessApp, TestDb};
use crate::on_both_backends;

on_both_backends!(
    bad_bodies_are_refused_and_nothing_is_stored,
    bad_queries_ids_and_routes,
    admin_auth,
    enum_fields_of_the_wrong_type_are_named
);

async fn send_raw(
    app: &ApiClient,
    body: &'static str,
    content_type: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = app.request(Method::POST, "/ops/incidents").body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    decode(req.send().await.unwrap()).await
}

async fn bad_bodies_are_refused_and_nothing_is_stored(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let app = InProcessApp::spawn_with(&db, &[("MAX_BODY_BYTES", "2048")], &[]).await;
    let json_ct = Some("application/json");

    let (status, body) = send_raw(&app, r#"{"severity": "WARN", "#, json_ct).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "bad_request");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("malformed JSON"));

    let cases: [(Value, &str); 8] = [
        (
            json!({"severity": "SEVERE", "category": "DB", "summary": "x"}),
            "severity",
        ),
        (
            json!({"severity": "WARN", "category": "database", "summary": "x"}),
            "category",
        ),
        (
            json!({"severity": "WARN", "category": "DB", "summary": 5}),
            "summary",
        ),
        (json!({"severity": "WARN", "category": "DB"}), "summary"),
        (
            json!({"severity": "WARN", "category": "DB", "summary": "   "}),
            "summary",
        ),
        (
            json!({"severity": "WARN", "category": "DB", "summary": "x", "detailsJson": [1, 2]}),
            "detailsJson",
        ),
        (
            json!({"severity": "WARN", "category": "DB", "summary": "x", "fingerprint": ""}),
            "fingerprint",
        ),
        (
            json!({"severity": "WARN", "category": "DB", "summary": "x", "detailJson": {}}),
            "detailJson",
        ),
    ];
    for (payload, field) in cases {
        let (status, body) = app.post("/ops/incidents", payload.clone()).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{payload}: {body}"
        );
        let named = body["error"]["field"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
            + body["error"]["message"].as_str().unwrap();
        assert!(
            named.contains(field),
            "{payload}: error should name {field}: {body}"
        );
    }

    let (status, body) = send_raw(
        &app,
        r#"{"severity":"WARN","category":"DB","summary":"x"}"#,
        Some("text/plain"),
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    let (status, _) = send_raw(
        &app,
        r#"{"severity":"WARN","category":"DB","summary":"x"}"#,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, body) = send_raw(&app, "", json_ct).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let huge = json!({"severity": "WARN", "category": "DB", "summary": "x", "detailsJson": {"blob": "a".repeat(10_000)}});
    let (status, body) = app.post("/ops/incidents", huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["error"]["code"], "payload_too_large");

    let (status, listed) = app.get("/ops/incidents").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        listed["items"],
        json!([]),
        "nothing was stored by bad requests"
    );

    // Events and resolve validate too.
    let (_, created) = app
        .post(
            "/ops/incidents",
            json!({"severity": "INFO", "category": "OTHER", "summary": "ok"}),
        )
        .await;
    let id = created["incident"]["id"].as_str().unwrap();
    for (payload, field) in [
        (
            json!({"eventType": "EXPLODED", "message": "x"}),
            "eventType",
        ),
        (
            json!({"eventType": "RESOLVED", "message": "x"}),
            "eventType",
        ),
        (json!({"eventType": "ESCALATED"}), "message"),
        (
            json!({"eventType": "ESCALATED", "message": "x", "metadataJson": "nope"}),
            "metadataJson",
        ),
    ] {
        let (status, body) = app
            .post(&format!("/ops/incidents/{id}/events"), payload.clone())
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{payload}: {body}"
        );
        assert_eq!(body["error"]["field"], field, "{body}");
    }
    let (status, body) = app
        .post(
            &format!("/ops/incidents/{id}/resolve"),
            json!({"resolutionNotes": 3}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (_, shown) = app.get(&format!("/ops/incidents/{id}")).await;
    assert_eq!(
        shown["events"].as_array().unwrap().len(),
        1,
        "bad events were not stored"
    );
    assert_eq!(shown["status"], "open");
}

async fn bad_queries_ids_and_routes(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let app = InProcessApp::spawn(&db).await;
    for (query, field) in [
        ("status=closed", "status"),
        ("category=NETWORK", "category"),
        ("severity=9", "severity"),
        ("since=yesterday", "since"),
        ("until=2026-13-01T00:00:00Z", "until"),
        ("limit=0", "limit"),
        ("limit=100000", "limit"),
        ("limit=ten", "limit"),
        ("cursor=not-a-cursor", "cursor"),
    ] {
        let (status, body) = app.get(&format!("/ops/incidents?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body["error"]["field"], field, "{query}: {body}");
    }
    let (status, body) = app.get("/ops/timeline?eventType=EXPLODED").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], "eventType");

    let unknown = "cm0000000000000000000000";
    let (status, body) = app.get(&format!("/ops/incidents/{unknown}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "not_found");
    let (status, _) = app
        .post(
            &format!("/ops/incidents/{unknown}/events"),
            json!({"eventType": "ESCALATED", "message": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .post(&format!("/ops/incidents/{unknown}/resolve"), json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.get("/ops/incidents/%27%20or%201=1").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, body) = app.get("/ops/nothing-here").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
    let (status, body) = decode(
        app.request(Method::DELETE, "/ops/incidents")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["error"]["code"], "method_not_allowed");
}

async fn admin_auth(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let app = InProcessApp::spawn(&db).await;
    let url = format!("{}/ops/incidents", app.base);
    let resp = app.client.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    let (_, body) = decode(resp).await;
    assert_eq!(body["error"]["code"], "unauthorized");
    let resp = app
        .client
        .get(&url)
        .bearer_auth("test-admin-token-0123456789abcdeX")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = app
        .client
        .get(&url)
        .header("authorization", "Basic dGVzdA==")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let (status, _) = decode(
        app.client
            .get(format!("{}/health/ready", app.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "health needs no token");
    drop(app);

    let app = InProcessApp::spawn_with(&db, &[("ADMIN_TOKEN", "")], &[]).await;
    let (status, body) = app.get("/ops/incidents").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "admin_token_not_configured");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("ADMIN_TOKEN"));
}

/// serde_json's streaming parser reports a non-string where an enum is expected as a syntax
/// error; the client sent valid JSON with a wrong value, so it is a 422 naming the field.
async fn enum_fields_of_the_wrong_type_are_named(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let app = InProcessApp::spawn(&db).await;
    let (_, created) = app
        .post(
            "/ops/incidents",
            json!({"severity": "INFO", "category": "OTHER", "summary": "ok"}),
        )
        .await;
    let incident = created["incident"]["id"].as_str().unwrap().to_owned();
    let (_, deploy) = app
        .post(
            "/ops/deploys",
            json!({"environment": "prod", "version": "v1"}),
        )
        .await;
    let deploy = deploy["id"].as_str().unwrap().to_owned();
    let wrong = [
        json!(null),
        json!(5),
        json!(["WARN"]),
        json!({}),
        json!(true),
    ];
    for value in wrong {
        let cases = [
            (
                "/ops/incidents".to_owned(),
                json!({"severity": value, "category": "DB", "summary": "x"}),
                "severity",
            ),
            (
                "/ops/incidents".to_owned(),
                json!({"severity": "WARN", "category": value, "summary": "x"}),
                "category",
            ),
            (
                format!("/ops/incidents/{incident}/events"),
                json!({"eventType": value, "message": "x"}),
                "eventType",
            ),
            (
                format!("/ops/deploys/{deploy}/finish"),
                json!({"status": value}),
                "status",
            ),
        ];
        for (path, payload, field) in cases {
            let (status, body) = app.post(&path, payload.clone()).await;
            assert_eq!(
                status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{path} {payload}: {body}"
            );
            assert_eq!(body["error"]["field"], field, "{path} {payload}: {body}");
        }
    }
    let (_, listed) = app.get("/ops/incidents").await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1, "{listed}");
    let (_, shown) = app.get(&format!("/ops/deploys/{deploy}")).await;
    assert_eq!(shown["status"], "running", "{shown}");
}
