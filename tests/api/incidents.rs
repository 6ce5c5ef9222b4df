//! The incident API end to end: lifecycle, dedupe, filters, keyset pagination, timeline, stats.

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{ApiClient, Backend, InProcessApp, TestDb};
use crate::on_both_backends;

on_both_backends!(
    lifecycle,
    fingerprint_dedupe,
    list_filters_and_stable_pagination,
    timeline_and_stats
);

fn is_prisma_cuid(id: &str) -> bool {
    id.len() == 25
        && id.starts_with('c')
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

async fn open(app: &ApiClient, body: Value) -> Value {
    let (status, created) = app.post("/ops/incidents", body).await;
    assert!(
        status == StatusCode::CREATED || status == StatusCode::OK,
        "{status} {created}"
    );
    created
}

async fn lifecycle(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let app = InProcessApp::spawn(&db).await;

    let resp = app
        .request(reqwest::Method::POST, "/ops/incidents")
        .json(&json!({"severity": "WARN", "category": "TUNNEL", "summary": "tunnel flapping", "detailsJson": {"colo": "AMS"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = resp.json().await.unwrap();
    let incident = &created["incident"];
    let id = incident["id"].as_str().unwrap().to_owned();
    assert!(is_prisma_cuid(&id), "{id}");
    assert_eq!(location, format!("/ops/incidents/{id}"));
    assert_eq!(created["deduplicated"], false);
    assert_eq!(incident["status"], "open");
    assert_eq!(incident["detailsJson"], json!({"colo": "AMS"}));
    assert_eq!(incident["resolvedAt"], Value::Null);
    assert!(incident["createdAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(created["event"]["eventType"], "DETECTED");
    assert_eq!(created["event"]["incidentId"], id.as_str());

    let (status, event) = app
        .post(
            &format!("/ops/incidents/{id}/events"),
            json!({"eventType": "RECOVERY_ATTEMPTED", "message": "restarting cloudflared", "metadataJson": {"attempt": 1}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{event}");
    assert!(is_prisma_cuid(event["id"].as_str().unwrap()));
    assert_eq!(event["metadataJson"], json!({"attempt": 1}));

    let (status, resolved) = app
        .post(
            &format!("/ops/incidents/{id}/resolve"),
            json!({"resolutionNotes": "cloudflared restarted"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{resolved}");
    assert_eq!(resolved["incident"]["status"], "resolved");
    assert_eq!(
        resolved["incident"]["resolutionNotes"],
        "cloudflared restarted"
    );
    assert_eq!(resolved["event"]["eventType"], "RESOLVED");

    let (status, again) = app
        .post(&format!("/ops/incidents/{id}/resolve"), json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
    assert_eq!(again["error"]["code"], "conflict");
    let (status, _) = app
        .post(
            &format!("/ops/incidents/{id}/events"),
            json!({"eventType": "DETECTED", "message": "late"}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a resolved incident is not extended"
    );

    let (status, shown) = app.get(&format!("/ops/incidents/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    let types: Vec<&str> = shown["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["eventType"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["DETECTED", "RECOVERY_ATTEMPTED", "RESOLVED"],
        "timeline in order, one RESOLVED"
    );
    assert_eq!(shown["resolvedAt"], resolved["incident"]["resolvedAt"]);
    assert_eq!(shown["nextCursor"], Value::Null);

    // A long timeline pages.
    let (_, page) = app.get(&format!("/ops/incidents/{id}?limit=2")).await;
    assert_eq!(page["events"].as_array().unwrap().len(), 2);
    let cursor = page["nextCursor"].as_str().unwrap();
    let (_, rest) = app
        .get(&format!("/ops/incidents/{id}?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(rest["events"][0]["eventType"], "RESOLVED");
    assert_eq!(rest["nextCursor"], Value::Null);
}

async fn fingerprint_dedupe(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let app = InProcessApp::spawn(&db).await;
    let report = json!({"severity": "CRITICAL", "category": "DB", "summary": "db timeout", "fingerprint": "database:timeout"});

    let (status, first) = app.post("/ops/incidents", report.clone()).await;
    assert_eq!(status, StatusCode::CREATED);
    let id = first["incident"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        first["incident"]["detailsJson"]["fingerprint"], "database:timeout",
        "kept inside detailsJson"
    );

    let (status, second) = app.post("/ops/incidents", report.clone()).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(second["deduplicated"], true);
    assert_eq!(second["incident"]["id"], id.as_str());
    assert_eq!(second["event"]["eventType"], "DETECTED");

    let (_, listed) = app.get("/ops/incidents?fingerprint=database:timeout").await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);

    let (status, _) = app
        .post(
            &format!("/ops/incidents/{id}/resolve"),
            json!({"resolutionNotes": "ok"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, third) = app.post("/ops/incidents", report).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "after resolution the same fingerprint opens a new incident"
    );
    assert_ne!(third["incident"]["id"], id.as_str());

    let (_, open) = app
        .get("/ops/incidents?status=open&fingerprint=database:timeout")
        .await;
    assert_eq!(open["items"].as_array().unwrap().len(), 1);
    let (_, resolved) = app.get("/ops/incidents?status=resolved").await;
    assert_eq!(resolved["items"][0]["id"], id.as_str());
}

async fn list_filters_and_stable_pagination(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let app = InProcessApp::spawn(&db).await;
    let kinds = [
        ("DB", "CRITICAL"),
        ("API", "WARN"),
        ("TUNNEL", "INFO"),
        ("DB", "WARN"),
        ("API", "CRITICAL"),
        ("OTHER", "INFO"),
        ("DEPLOY", "CRITICAL"),
    ];
    let mut ids = Vec::new();
    for (i, (category, severity)) in kinds.iter().enumerate() {
        let created = open(
            &app,
            json!({"severity": severity, "category": category, "summary": format!("incident {i}")}),
        )
        .await;
        ids.push(created["incident"]["id"].as_str().unwrap().to_owned());
    }
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();

    // Page through while new incidents arrive: nothing is repeated or skipped.
    let (_, page1) = app.get("/ops/incidents?limit=3").await;
    let mut seen: Vec<String> = page1["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect();
    let mut cursor = page1["nextCursor"].as_str().unwrap().to_owned();
    open(
        &app,
        json!({"severity": "INFO", "category": "OTHER", "summary": "arrived while paging"}),
    )
    .await;
    loop {
        let (status, page) = app
            .get(&format!("/ops/incidents?limit=3&cursor={cursor}"))
            .await;
        assert_eq!(status, StatusCode::OK);
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_owned()),
        );
        match page["nextCursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen, newest_first, "stable newest-first keyset pages");

    let count = |v: &Value| v["items"].as_array().unwrap().len();
    let (_, db_only) = app.get("/ops/incidents?category=DB").await;
    assert_eq!(count(&db_only), 2);
    assert!(db_only["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["category"] == "DB"));
    let (_, critical) = app.get("/ops/incidents?severity=CRITICAL").await;
    assert_eq!(count(&critical), 3);
    let (_, both) = app
        .get("/ops/incidents?severity=critical&category=db")
        .await;
    assert_eq!(count(&both), 1, "query enum values are case-insensitive");

    let first_created = {
        let (_, shown) = app.get(&format!("/ops/incidents/{}", ids[3])).await;
        shown["createdAt"].as_str().unwrap().to_owned()
    };
    let (_, since) = app
        .get(&format!("/ops/incidents?since={first_created}"))
        .await;
    let since_ids: HashSet<&str> = since["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert!(
        ids[3..].iter().all(|id| since_ids.contains(id.as_str())),
        "since is inclusive"
    );
    assert!(!since_ids.contains(ids[0].as_str()));
    let (_, until) = app
        .get(&format!("/ops/incidents?until={first_created}"))
        .await;
    let until_ids: HashSet<&str> = until["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert!(
        until_ids.contains(ids[0].as_str()) && !until_ids.contains(ids[3].as_str()),
        "until is exclusive"
    );
}

async fn timeline_and_stats(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let app = InProcessApp::spawn(&db).await;
    let started = chrono::Utc::now() - chrono::Duration::seconds(1);
    let a = open(
        &app,
        json!({"severity": "CRITICAL", "category": "DB", "summary": "db down"}),
    )
    .await;
    let b = open(
        &app,
        json!({"severity": "WARN", "category": "API", "summary": "stripe slow"}),
    )
    .await;
    let c = open(
        &app,
        json!({"severity": "WARN", "category": "API", "summary": "openai 429"}),
    )
    .await;
    let a_id = a["incident"]["id"].as_str().unwrap();
    let (status, _) = app
        .post(
            &format!("/ops/incidents/{a_id}/resolve"),
            json!({"resolutionNotes": "failover"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let since = started.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut events = Vec::new();
    let mut url = format!("/ops/timeline?since={since}&limit=2");
    loop {
        let (status, page) = app.get(&url).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        events.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["nextCursor"].as_str() {
            Some(next) => url = format!("/ops/timeline?since={since}&limit=2&cursor={next}"),
            None => break,
        }
    }
    let summary: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e["eventType"].as_str().unwrap().to_owned(),
                e["incident"]["summary"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("DETECTED", "db down"),
        ("DETECTED", "stripe slow"),
        ("DETECTED", "openai 429"),
        ("RESOLVED", "db down"),
    ];
    assert_eq!(
        summary,
        expected.map(|(a, b)| (a.to_owned(), b.to_owned())),
        "oldest first across incidents"
    );

    let (_, resolved_only) = app
        .get(&format!("/ops/timeline?since={since}&eventType=RESOLVED"))
        .await;
    assert_eq!(resolved_only["items"].as_array().unwrap().len(), 1);
    let (_, future) = app.get("/ops/timeline?since=2999-01-01T00:00:00Z").await;
    assert_eq!(future["items"], json!([]));
    assert_eq!(future["nextCursor"], Value::Null);

    let (status, stats) = app.get("/ops/incidents/stats").await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    assert_eq!(stats["open"]["total"], 2);
    assert_eq!(stats["open"]["byCategory"], json!({"API": 2}));
    assert_eq!(stats["open"]["bySeverity"], json!({"WARN": 2}));
    assert_eq!(
        stats["open"]["byCategoryAndSeverity"],
        json!([{"category": "API", "severity": "WARN", "count": 2}])
    );
    assert_eq!(stats["resolved"]["total"], 1);
    let mttr = stats["resolved"]["meanTimeToResolveSeconds"]
        .as_f64()
        .unwrap();
    assert!((0.0..60.0).contains(&mttr), "{mttr}");
    let _ = (b, c);
}
