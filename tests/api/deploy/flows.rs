//! Deploys up to the switch: success (with traffic through nginx during the switch), the
//! readiness gate's recovery and rollback, a database that is down, a failed migration.

use entity::{ops_deploy, ops_incident, ops_incident_event, Category, EventType, Severity};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};

use super::{free_port, states, Scene, Traffic};
use crate::helpers::{Backend, TestDb};
use crate::on_both_backends;

async fn scene(backend: Backend) -> Option<Scene> {
    Scene::new(TestDb::new(backend).await?).await
}

async fn deploy_record(scene: &Scene, id: &str) -> ops_deploy::Model {
    let conn = scene.db.connect().await;
    ops_deploy::Entity::find_by_id(id)
        .one(&conn)
        .await
        .expect("query")
        .expect("the deploy is recorded")
}

async fn incident_events(scene: &Scene, id: &str) -> (ops_incident::Model, Vec<EventType>) {
    let conn = scene.db.connect().await;
    let incident = ops_incident::Entity::find_by_id(id)
        .one(&conn)
        .await
        .expect("query")
        .expect("incident");
    let events = ops_incident_event::Entity::find()
        .filter(ops_incident_event::Column::IncidentId.eq(id))
        .order_by_asc(ops_incident_event::Column::CreatedAt)
        .all(&conn)
        .await
        .expect("events");
    (incident, events.into_iter().map(|e| e.event_type).collect())
}

on_both_backends!(
    successful_deploys_switch_without_a_failed_request,
    readiness_timeout_tries_one_recovery_then_rolls_back,
    database_down_stops_before_anything_starts,
    failed_migration_leaves_the_old_release_serving,
);

async fn successful_deploys_switch_without_a_failed_request(backend: Backend) {
    let Some(scene) = scene(backend).await else {
        return;
    };
    let plan = scene.plan(&Scene::migrate_ok());
    let (code, _, err) = scene.deploy(&plan, "v1", &[]).await;
    assert_eq!(code, 0, "first deploy: {err}");
    let first = scene.latest_report();
    assert_eq!(first["outcome"], "succeeded");
    assert!(scene.serving().await.contains("release v1"));
    let expected: Vec<(String, String)> = [
        ("PRECHECK", "ok"),
        ("DB_VALIDATE", "ok"),
        ("MIGRATE_VERIFY", "ok"),
        ("BACKEND_START", "ok"),
        ("BACKEND_READY_GATE", "ok"),
        ("FRONTEND_START", "skipped"),
        ("TUNNEL_START_OR_VERIFY", "ok"),
        ("EXTERNAL_VERIFY", "ok"),
        ("SUCCESS", "ok"),
    ]
    .iter()
    .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
    .collect();
    assert_eq!(states(&first), expected);

    let traffic = Traffic::start(scene.nginx.entry());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (code, _, err) = scene.deploy(&plan, "v2", &[]).await;
    assert_eq!(code, 0, "second deploy: {err}");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    traffic.assert_no_failure().await;
    assert!(scene.serving().await.contains("release v2"));
    let report = scene.latest_report();
    if backend == Backend::Postgres {
        scene.keep_report_for_docs("success");
    }
    assert_eq!(report["liveBefore"], "blue (v1)");
    assert!(
        report["lock"]["tookOver"].is_null(),
        "a finished deploy leaves no holder behind"
    );
    assert_eq!(report["liveAfter"], "green (v2)");
    assert!(
        !report["gateIds"].as_array().expect("gate ids").is_empty(),
        "the gate's verdicts are linked"
    );
    assert!(
        std::net::TcpListener::bind(("127.0.0.1", scene.blue)).is_ok(),
        "the old colour was stopped"
    );
    let id = report["deployId"].as_str().expect("deploy id");
    let record = deploy_record(&scene, id).await;
    assert_eq!(record.status, "succeeded");
    assert_eq!(
        record.report_json.as_ref().map(|r| &r["deployId"]),
        Some(&report["deployId"]),
        "the report is stored on the record"
    );

    let (code, text, _) = scene.run(&["deploy", "report", id]).await;
    assert_eq!(code, 0);
    assert!(
        text.contains("SUCCEEDED") && text.contains("BACKEND_READY_GATE"),
        "{text}"
    );

    // The release already live and healthy: a quick success that changes nothing.
    let (code, _, err) = scene.deploy(&plan, "v2", &[]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(scene.latest_report()["outcome"], "unchanged");
    assert!(scene.serving().await.contains("release v2"));
}

async fn readiness_timeout_tries_one_recovery_then_rolls_back(backend: Backend) {
    let Some(scene) = scene(backend).await else {
        return;
    };
    let plan = scene.plan(&Scene::migrate_ok());
    assert_eq!(scene.deploy(&plan, "v1", &[]).await.0, 0);

    // A release that recovers when asked: one recovery, then a success.
    scene.mode("v2", "recoverable");
    let (code, _, err) = scene.deploy(&plan, "v2", &[]).await;
    assert_eq!(code, 0, "{err}");
    assert!(scene.latest_report()["notes"]
        .to_string()
        .contains("became ready after the recovery"));
    assert!(scene.serving().await.contains("release v2"));

    scene.mode("v3", "fail");
    let traffic = Traffic::start(scene.nginx.entry());
    let (code, _, err) = scene.deploy(&plan, "v3", &[]).await;
    traffic.assert_no_failure().await;
    assert_eq!(code, 1, "{err}");
    let report = scene.latest_report();
    if backend == Backend::Postgres {
        scene.keep_report_for_docs("rolled-back");
    }
    assert_eq!(report["outcome"], "rolled_back");
    assert_eq!(report["failure"]["state"], "BACKEND_READY_GATE");
    let tail: Vec<(String, String)> = states(&report).into_iter().rev().take(2).collect();
    assert_eq!(tail[0], ("FAILURE_ROLLBACK".into(), "ok".into()));
    assert_eq!(tail[1], ("BACKEND_READY_GATE".into(), "failed".into()));
    assert!(
        scene.serving().await.contains("release v2"),
        "the old colour still serves"
    );
    assert!(
        std::net::TcpListener::bind(("127.0.0.1", scene.blue)).is_ok(),
        "the failed colour was stopped"
    );

    let id = report["deployId"].as_str().expect("id");
    let record = deploy_record(&scene, id).await;
    assert_eq!(record.status, "rolled_back");
    let (incident, events) = incident_events(
        &scene,
        record.incident_id.as_deref().expect("a DEPLOY incident"),
    )
    .await;
    assert_eq!(
        (incident.severity, incident.category),
        (Severity::Critical, Category::Deploy)
    );
    assert_eq!(
        events,
        vec![
            EventType::Detected,
            EventType::RecoveryAttempted,
            EventType::RecoveryFailed,
            EventType::Resolved
        ]
    );

    let (code, why, _) = scene.run(&["deploy", "why", id]).await;
    assert_eq!(code, 0);
    assert!(
        why.contains("failed in BACKEND_READY_GATE") && why.contains("rolled_back"),
        "{why}"
    );
    assert!(why.contains("RecoveryFailed"), "{why}");
}

async fn database_down_stops_before_anything_starts(backend: Backend) {
    let Some(mut scene) = scene(backend).await else {
        return;
    };
    let down = format!("postgres://app:pw@127.0.0.1:{}/app", free_port());
    scene.env.push(("APP_DATABASE_URL".into(), down));
    let plan = scene.plan(&Scene::migrate_ok());
    let (code, _, err) = scene.deploy(&plan, "v1", &[]).await;
    assert_eq!(code, 1, "{err}");
    assert!(
        !err.contains(":pw@"),
        "the database password never shows: {err}"
    );
    let report = scene.latest_report();
    assert_eq!(report["failure"]["state"], "DB_VALIDATE");
    assert_eq!(report["outcome"], "failed");
    let ran: Vec<String> = states(&report).into_iter().map(|(s, _)| s).collect();
    assert!(
        !ran.contains(&"BACKEND_START".to_owned()),
        "nothing started: {ran:?}"
    );
    assert!(
        report["commands"].as_array().is_some_and(|c| c.is_empty()),
        "no command ran"
    );
    assert!(std::net::TcpListener::bind(("127.0.0.1", scene.blue)).is_ok());
    let conn = scene.db.connect().await;
    let db_incident = ops_incident::Entity::find()
        .filter(ops_incident::Column::Category.eq(Category::Db))
        .one(&conn)
        .await
        .expect("query")
        .expect("a DB incident");
    assert_eq!(db_incident.severity, Severity::Critical);
}

async fn failed_migration_leaves_the_old_release_serving(backend: Backend) {
    let Some(scene) = scene(backend).await else {
        return;
    };
    let plan = scene.plan(&Scene::migrate_ok());
    assert_eq!(scene.deploy(&plan, "v1", &[]).await.0, 0);
    let plan = scene
        .plan(r#"{ run = "echo 'ERROR: relation already exists' >&2; exit 3", shell = true }"#);
    let (code, _, err) = scene.deploy(&plan, "v2", &[]).await;
    assert_eq!(code, 1, "{err}");
    let report = scene.latest_report();
    assert_eq!(report["failure"]["state"], "MIGRATE_VERIFY");
    assert_eq!(report["outcome"], "failed");
    let migrate = &report["commands"][0];
    assert_eq!(migrate["exitCode"], 3);
    assert!(migrate["outputTail"]
        .to_string()
        .contains("relation already exists"));
    assert!(scene.serving().await.contains("release v1"));
    assert!(
        std::net::TcpListener::bind(("127.0.0.1", scene.green)).is_ok(),
        "nothing started"
    );
}
