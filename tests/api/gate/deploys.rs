//! Deploy records, the verdicts they link, and the incident a failed deploy opens.

use reqwest::StatusCode;
use serde_json::{json, Value};

use super::gate;
use crate::helpers::{Backend, InProcessApp, TestDb};
use crate::on_both_backends;

on_both_backends!(deploys_are_recorded_with_their_gates,);

async fn deploys_are_recorded_with_their_gates(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let app = InProcessApp::spawn(&db).await;
    let start = |version: &str| json!({"environment": "prod", "version": version, "gitSha": format!("sha-{version}"), "strategy": "blue-green", "startedBy": "ci", "externalIds": {"ciRun": "42", "argo": "run-7"}});

    let (status, first) = app.post("/ops/deploys", start("v1")).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let first_id = first["id"].as_str().unwrap().to_owned();
    assert_eq!(first["status"], "running");
    assert_eq!(first["externalIds"]["argo"], "run-7");
    let (_, _, verdict) = gate(&app, "env=prod&release=v1").await;
    assert_eq!(
        verdict["deployId"],
        first_id.as_str(),
        "the gate links the running deploy"
    );
    let (status, done) = app
        .post(
            &format!("/ops/deploys/{first_id}/finish"),
            json!({"status": "succeeded", "reportJson": {"durationS": 93}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(
        (done["status"].as_str(), done["incidentId"].as_str()),
        (Some("succeeded"), None)
    );
    let (status, again) = app
        .post(
            &format!("/ops/deploys/{first_id}/finish"),
            json!({"status": "failed"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");

    let (_, second) = app.post("/ops/deploys", start("v2")).await;
    let second_id = second["id"].as_str().unwrap().to_owned();
    let (_, _, v2_gate) = gate(&app, "env=prod&release=sha-v2").await;
    assert_eq!(
        v2_gate["deployId"],
        second_id.as_str(),
        "a release may be named by its git sha"
    );
    let (status, failed) = app
        .post(
            &format!("/ops/deploys/{second_id}/finish"),
            json!({"status": "rolled_back", "reason": "p99 doubled"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let incident_id = failed["incidentId"]
        .as_str()
        .expect("a rolled-back deploy opens an incident")
        .to_owned();
    let (_, incident) = app.get(&format!("/ops/incidents/{incident_id}")).await;
    assert_eq!(
        (incident["category"].as_str(), incident["severity"].as_str()),
        (Some("DEPLOY"), Some("CRITICAL"))
    );
    assert!(incident["summary"]
        .as_str()
        .unwrap()
        .contains("p99 doubled"));
    let linked = &incident["events"][0]["metadataJson"]["gateEvaluations"];
    assert_eq!(
        linked[0]["gateId"], v2_gate["gateId"],
        "its timeline links the deploy's gate verdicts: {incident}"
    );

    let (status, shown) = app.get(&format!("/ops/deploys/{second_id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["gateEvaluations"].as_array().unwrap().len(), 1);
    app.post(
        "/ops/deploys",
        json!({"environment": "staging", "version": "v3"}),
    )
    .await;
    let (_, prod) = app.get("/ops/deploys?env=prod&limit=1").await;
    assert_eq!(prod["items"][0]["id"], second_id.as_str(), "newest first");
    let (_, rest) = app
        .get(&format!(
            "/ops/deploys?env=prod&limit=1&cursor={}",
            prod["nextCursor"].as_str().unwrap()
        ))
        .await;
    assert_eq!(rest["items"][0]["id"], first_id.as_str());
    assert_eq!(rest["nextCursor"], Value::Null);

    for (body, field) in [
        (json!({"version": "v1"}), "environment"),
        (json!({"environment": "prod", "version": ""}), "version"),
        (
            json!({"environment": "prod", "version": "v1", "externalIds": [1]}),
            "externalIds",
        ),
    ] {
        let (status, err) = app.post("/ops/deploys", body.clone()).await;
        assert!(status.is_client_error(), "{body}: {status}");
        assert!(err.to_string().contains(field), "{body}: {err}");
    }
    let (_, third) = app.post("/ops/deploys", start("v4")).await;
    let (status, err) = app
        .post(
            &format!("/ops/deploys/{}/finish", third["id"].as_str().unwrap()),
            json!({"status": "exploded"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(err["error"]["field"], "status");
    let (status, _) = app
        .post(
            "/ops/deploys/cm0000000000000000000000/finish",
            json!({"status": "failed"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
