//! Storing verdicts: a burst lands whole, a bad call costs no other verdict, and the writer
//! rejects only the rows the database refuses.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use serde_json::json;

use super::{gate, listed_ids};
use crate::helpers::{Backend, InProcessApp, TestDb};
use crate::on_both_backends;

on_both_backends!(
    a_burst_of_verdicts_is_stored_whole,
    one_bad_gate_call_costs_no_other_verdict,
    the_writer_rejects_only_the_rows_the_database_refuses,
);

/// Verdicts are answered before their rows commit: a burst larger than one insert batch must still
/// land whole, in the table within moments (what another process reads) and in this process's
/// listing at once.
async fn a_burst_of_verdicts_is_stored_whole(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let app = InProcessApp::spawn(&db).await;
    const BURST: usize = 150;
    let queries: Vec<String> = (0..BURST)
        .map(|i| format!("env=burst&release=r{}", i % 3))
        .collect();
    let answers = futures::future::join_all(queries.iter().map(|q| gate(&app, q))).await;
    let mut answered: Vec<String> = answers
        .iter()
        .map(|(status, _, body)| {
            assert_eq!(*status, StatusCode::OK, "{body}");
            body["gateId"].as_str().unwrap().to_owned()
        })
        .collect();
    answered.sort();

    // Straight from the table, as another process would read it: there within a second.
    let conn = db.connect().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let stored: Vec<String> = loop {
        let mut ids: Vec<String> = entity::ops_gate_evaluation::Entity::find()
            .filter(entity::ops_gate_evaluation::Column::Environment.eq("burst"))
            .all(&conn)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        ids.sort();
        if ids.len() >= BURST || Instant::now() > deadline {
            break ids;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(stored, answered, "every answered verdict is in the table");

    let (status, page) = app.get("/ops/gate/evaluations?env=burst&limit=500").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let mut listed: Vec<String> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["gateId"].as_str().unwrap().to_owned())
        .collect();
    listed.sort();
    assert_eq!(listed, answered, "the listing shows every answered verdict");
}

/// Rounds of 30 ordinary gate calls and one Flagger call carrying a NUL, sent together so they
/// share an insert batch: the NUL call is refused, and every ordinary verdict is stored.
async fn one_bad_gate_call_costs_no_other_verdict(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let app = InProcessApp::spawn(&db).await;
    let mut answered = Vec::new();
    for round in 0..3 {
        let queries: Vec<String> = (0..30)
            .map(|i| format!("env=round&release=r{round}-{i}"))
            .collect();
        let ordinary = futures::future::join_all(queries.iter().map(|q| gate(&app, q)));
        let poisoned = app.post(
            "/ops/gate",
            json!({"name": "web", "namespace": "round", "phase": "pre-rollout",
                   "metadata": {"env": "round", "note": "a\u{0}b"}}),
        );
        let (ordinary, (status, body)) = tokio::join!(ordinary, poisoned);
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"]["field"], "metadata.note", "{body}");
        for (status, _, body) in ordinary {
            assert_eq!(status, StatusCode::OK, "{body}");
            answered.push(body["gateId"].as_str().unwrap().to_owned());
        }
    }
    answered.sort();
    assert_eq!(listed_ids(&app, "round").await, answered);
}

/// A gate evaluation row as the evaluator builds it.
fn evaluation_row(
    recorder: &api::store::EvaluationStore,
    id: &str,
    summary: &str,
    deploy_id: Option<&str>,
) -> entity::ops_gate_evaluation::ActiveModel {
    entity::ops_gate_evaluation::ActiveModel {
        id: Set(id.to_owned()),
        created_at: Set(recorder.stamp(chrono::Utc::now().naive_utc())),
        environment: Set("writer".to_owned()),
        release: Set("v1".to_owned()),
        verdict: Set("pass".to_owned()),
        summary: Set(summary.to_owned()),
        source: Set("api".to_owned()),
        checks_json: Set(json!({"checks": []})),
        deploy_id: Set(deploy_id.map(str::to_owned)),
    }
}

/// Defence in depth behind validation: a row the database refuses (a deploy that does not exist;
/// on PostgreSQL also a NUL in text and in JSON) is rejected alone, and the rest of its batch is
/// stored.
async fn the_writer_rejects_only_the_rows_the_database_refuses(backend: Backend) {
    use migration::MigratorTrait;
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let conn = db.connect().await;
    migration::Migrator::up(&conn, None).await.unwrap();
    let recorder = api::store::EvaluationStore::spawn(conn.clone(), Default::default());
    let mut good = Vec::new();
    for i in 0..30 {
        let id = format!("good{i:02}");
        if i == 10 {
            recorder
                .record(evaluation_row(
                    &recorder,
                    "bad-deploy",
                    "x",
                    Some("no-such-deploy"),
                ))
                .await;
        }
        if i == 20 && backend == Backend::Postgres {
            recorder
                .record(evaluation_row(&recorder, "bad-nul", "a\u{0}b", None))
                .await;
            let mut row = evaluation_row(&recorder, "bad-json", "x", None);
            row.checks_json = Set(json!({"context": {"note": "a\u{0}b"}}));
            recorder.record(row).await;
        }
        recorder
            .record(evaluation_row(&recorder, &id, "ok", None))
            .await;
        good.push(id);
    }
    recorder.flush().await;
    let mut stored: Vec<String> = entity::ops_gate_evaluation::Entity::find()
        .all(&conn)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    stored.sort();
    assert_eq!(stored, good);
}
