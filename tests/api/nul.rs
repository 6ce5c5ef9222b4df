//! A NUL character is refused wherever a client can put one — body, query, path — with a 4xx
//! naming the field, on both backends alike; PostgreSQL cannot store it, SQLite must not either.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{decode, Backend, InProcessApp, TestDb};
use crate::on_both_backends;

on_both_backends!(nul_is_refused_everywhere_and_nothing_is_stored);

async fn nul_is_refused_everywhere_and_nothing_is_stored(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let app = InProcessApp::spawn(&db).await;
    let (status, created) = app
        .post(
            "/ops/incidents",
            json!({"severity": "WARN", "category": "DB", "summary": "seed"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let incident = created["incident"]["id"].as_str().unwrap().to_owned();
    let (status, deploy) = app
        .post(
            "/ops/deploys",
            json!({"environment": "prod", "version": "v1"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{deploy}");
    let deploy = deploy["id"].as_str().unwrap().to_owned();

    let nul = "a\u{0}b";
    let incident_body = |extra: Value| {
        let mut body = json!({"severity": "WARN", "category": "DB", "summary": "x"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let bodies: Vec<(String, Value, &str)> = vec![
        (
            "/ops/incidents".into(),
            incident_body(json!({"summary": nul})),
            "summary",
        ),
        (
            "/ops/incidents".into(),
            incident_body(json!({"fingerprint": nul})),
            "fingerprint",
        ),
        (
            "/ops/incidents".into(),
            incident_body(json!({"detailsJson": {nul: 1}})),
            "detailsJson",
        ),
        (
            "/ops/incidents".into(),
            incident_body(json!({"detailsJson": {"a": {"b": ["ok", nul]}}})),
            "detailsJson.a.b[1]",
        ),
        (
            format!("/ops/incidents/{incident}/events"),
            json!({"eventType": "ESCALATED", "message": nul}),
            "message",
        ),
        (
            format!("/ops/incidents/{incident}/events"),
            json!({"eventType": "ESCALATED", "message": "x", "metadataJson": {"k": nul}}),
            "metadataJson.k",
        ),
        (
            format!("/ops/incidents/{incident}/resolve"),
            json!({"resolutionNotes": nul}),
            "resolutionNotes",
        ),
        (
            "/ops/deploys".into(),
            json!({"environment": "prod", "version": "v2", "strategy": nul}),
            "strategy",
        ),
        (
            "/ops/deploys".into(),
            json!({"environment": "prod", "version": "v2", "startedBy": nul}),
            "startedBy",
        ),
        (
            format!("/ops/deploys/{deploy}/finish"),
            json!({"status": "failed", "reason": nul}),
            "reason",
        ),
        (
            format!("/ops/deploys/{deploy}/finish"),
            json!({"status": "failed", "reportJson": {nul: true}}),
            "reportJson",
        ),
        (
            "/ops/gate".into(),
            json!({"name": "web", "namespace": "prod", "phase": "pre-rollout", "metadata": {"note": nul}}),
            "metadata.note",
        ),
        (
            "/ops/gate".into(),
            json!({"name": nul, "namespace": "prod", "phase": "pre-rollout"}),
            "name",
        ),
    ];
    for (path, payload, field) in bodies {
        let (status, body) = app.post(&path, payload.clone()).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "POST {path} {payload}: {body}"
        );
        assert_eq!(
            body["error"]["field"], field,
            "POST {path} {payload}: {body}"
        );
        assert_eq!(body["error"]["code"], "invalid_value", "{body}");
    }

    let gets = [
        ("/ops/incidents?fingerprint=%00", "fingerprint"),
        ("/ops/incidents?fingerprint=x%00y&limit=5", "fingerprint"),
        ("/ops/timeline?eventType=%00", "eventType"),
        ("/ops/deploys?env=%00", "env"),
        ("/ops/gate/evaluations?env=%00", "env"),
        ("/ops/gate/evaluations?release=v%001", "release"),
        ("/ops/gate?env=%00&release=v1", "env"),
        ("/ops/deploys/%00", "id"),
        ("/ops/deploys/ab%00", "id"),
        ("/ops/incidents/%00", "id"),
    ];
    for (path, field) in gets {
        let (status, body) = app.get(path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "GET {path}: {body}");
        assert_eq!(body["error"]["field"], field, "GET {path}: {body}");
    }
    let posts = [
        ("/ops/deploys/%00/finish", json!({"status": "failed"}), "id"),
        (
            "/ops/incidents/%00/events",
            json!({"eventType": "ESCALATED", "message": "x"}),
            "id",
        ),
        ("/ops/incidents/%00/resolve", json!({}), "id"),
    ];
    for (path, payload, field) in posts {
        let (status, body) = app.post(path, payload).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "POST {path}: {body}");
        assert_eq!(body["error"]["field"], field, "POST {path}: {body}");
    }
    let (status, body) = decode(
        app.request(Method::HEAD, "/ops/gate?env=prod&release=%00")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // Nothing was stored: the seeded incident is open with its first event only, the seeded
    // deploy is still running, one deploy exists, and no gate verdict was recorded.
    let (status, listed) = app.get("/ops/incidents").await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed["items"].as_array().unwrap().len(), 1, "{listed}");
    let (_, shown) = app.get(&format!("/ops/incidents/{incident}")).await;
    assert_eq!(shown["status"], "open", "{shown}");
    assert_eq!(shown["events"].as_array().unwrap().len(), 1, "{shown}");
    let (_, deploys) = app.get("/ops/deploys").await;
    assert_eq!(deploys["items"].as_array().unwrap().len(), 1, "{deploys}");
    assert_eq!(deploys["items"][0]["status"], "running", "{deploys}");
    let (_, gates) = app.get("/ops/gate/evaluations").await;
    assert_eq!(gates["items"], json!([]), "{gates}");
}
