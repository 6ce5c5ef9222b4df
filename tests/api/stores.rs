//! The stores on their own, with no HTTP: two pools on one database stand for two processes
//! racing (each store keeps its own in-process write lock, as two processes would).

use std::collections::{HashMap, HashSet};

use api::store::deploys::{FinishStatus, NewDeploy};
use api::store::incidents::{NewEvent, NewIncident, WriteHealth};
use api::store::{DeployStore, EvaluationStore, IncidentStore, StoreError};
use api::Config;
use entity::{ops_incident as incident, Category, EventType, Severity};
use sea_orm::{ConnectionTrait, DatabaseConnection, EntityTrait, PaginatorTrait};
use serde_json::Map;
use tokio::task::JoinSet;

use crate::helpers::{Backend, TestDb};
use crate::on_both_backends;

on_both_backends!(
    events_never_land_after_resolved,
    deduplicated_detections_never_show_after_resolved,
    escalating_twice_at_once_escalates_once,
    a_deploy_whose_incident_cannot_open_stays_running,
);

/// Bounded: this many incidents raced at once ...
const INCIDENTS: usize = 30;
/// ... each with this many writes racing its resolve.
const WRITES_PER_INCIDENT: usize = 4;

/// A pool as the service opens it; small, so that writes queue for connections as under load.
async fn connect(db: &TestDb) -> DatabaseConnection {
    let url = db.url.clone();
    let config = Config::from_lookup(|name| match name {
        "DATABASE_URL" => Some(url.clone()),
        "DB_MAX_CONNECTIONS" => Some("4".to_owned()),
        _ => None,
    })
    .expect("test configuration");
    api::db::connect(&config).await.expect("connect")
}

/// A migrated database and two incident stores on it, as two processes would hold.
async fn two_stores(backend: Backend) -> Option<(TestDb, IncidentStore, IncidentStore)> {
    let db = TestDb::new(backend).await?;
    let first = connect(&db).await;
    api::db::migrate_up(&first).await.expect("migrate");
    let second = connect(&db).await;
    Some((
        db,
        IncidentStore::new(first, WriteHealth::default()),
        IncidentStore::new(second, WriteHealth::default()),
    ))
}

fn report(summary: String, fingerprint: Option<String>) -> NewIncident {
    NewIncident {
        severity: Severity::Warn,
        category: Category::Api,
        summary,
        details: Map::new(),
        fingerprint,
        event_metadata: Map::new(),
    }
}

/// Every answered event is on its incident's timeline, and on a resolved incident `RESOLVED` is
/// the one last event, in the order the API lists a timeline.
async fn assert_timelines(
    store: &IncidentStore,
    incidents: impl IntoIterator<Item = String>,
    answered: &[(String, String)],
) {
    let mut answered_by_incident: HashMap<&str, Vec<&str>> = HashMap::new();
    for (incident, event) in answered {
        answered_by_incident
            .entry(incident)
            .or_default()
            .push(event);
    }
    for id in incidents {
        let found = store.get(&id).await.unwrap().expect("incident");
        let page = store.events(&id, 500, None).await.unwrap();
        assert!(page.next.is_none(), "one page holds the timeline");
        let types: Vec<EventType> = page.items.iter().map(|e| e.event_type).collect();
        let ids: HashSet<&str> = page.items.iter().map(|e| e.id.as_str()).collect();
        for event in answered_by_incident.get(id.as_str()).into_iter().flatten() {
            assert!(ids.contains(event), "answered event {event} is stored");
        }
        let resolved = types.iter().filter(|t| **t == EventType::Resolved).count();
        match found.resolved_at {
            Some(at) => {
                assert_eq!(resolved, 1, "{id}: {types:?}");
                assert_eq!(
                    types.last(),
                    Some(&EventType::Resolved),
                    "{id}: nothing after RESOLVED: {types:?}"
                );
                let last = page.items.last().unwrap();
                assert_eq!(last.created_at, at, "RESOLVED is stamped with resolvedAt");
                assert!(
                    page.items[..page.items.len() - 1]
                        .iter()
                        .all(|e| e.created_at < at),
                    "{id}: every other event is older than resolvedAt"
                );
            }
            None => assert_eq!(resolved, 0, "{id}: {types:?}"),
        }
    }
}

async fn events_never_land_after_resolved(backend: Backend) {
    let Some((_db, a, b)) = two_stores(backend).await else {
        return;
    };
    let mut ids = Vec::new();
    for i in 0..INCIDENTS {
        ids.push(
            a.open(report(format!("race {i}"), None))
                .await
                .unwrap()
                .incident
                .id,
        );
    }

    let mut appends = JoinSet::new();
    let mut resolves = JoinSet::new();
    for id in &ids {
        for n in 0..WRITES_PER_INCIDENT {
            let (a, id) = (a.clone(), id.clone());
            appends.spawn(async move {
                let new = NewEvent {
                    event_type: EventType::RecoveryAttempted,
                    message: format!("attempt {n}"),
                    metadata: Map::new(),
                };
                let outcome = a.append_event(&id, new).await;
                (id, outcome)
            });
        }
        let (b, id) = (b.clone(), id.clone());
        resolves.spawn(async move { b.resolve(&id, None, Map::new()).await });
    }

    let mut answered = Vec::new();
    let mut refused = 0;
    while let Some(joined) = appends.join_next().await {
        match joined.unwrap() {
            (id, Ok(event)) => answered.push((id, event.id)),
            (_, Err(StoreError::Resolved(_))) => refused += 1,
            (_, Err(err)) => panic!("append failed: {err}"),
        }
    }
    while let Some(joined) = resolves.join_next().await {
        joined.unwrap().expect("each incident is resolved once");
    }
    eprintln!(
        "{} appends stored, {refused} refused as resolved",
        answered.len()
    );
    assert_timelines(&a, ids, &answered).await;
}

async fn deduplicated_detections_never_show_after_resolved(backend: Backend) {
    let Some((_db, a, b)) = two_stores(backend).await else {
        return;
    };
    let mut first = Vec::new();
    for i in 0..INCIDENTS {
        let fingerprint = format!("race:{i}");
        let opened = a
            .open(report(format!("race {i}"), Some(fingerprint.clone())))
            .await
            .unwrap();
        first.push((opened.incident.id, fingerprint));
    }

    let mut reports = JoinSet::new();
    let mut resolves = JoinSet::new();
    for (id, fingerprint) in &first {
        for n in 0..WRITES_PER_INCIDENT {
            let (a, fingerprint) = (a.clone(), fingerprint.clone());
            reports.spawn(async move {
                a.open(report(format!("again {n}"), Some(fingerprint)))
                    .await
                    .expect("report")
            });
        }
        let (b, id) = (b.clone(), id.clone());
        resolves.spawn(async move { b.resolve(&id, None, Map::new()).await });
    }

    let mut answered = Vec::new();
    let mut incidents: HashSet<String> = first.iter().map(|(id, _)| id.clone()).collect();
    while let Some(joined) = reports.join_next().await {
        let opened = joined.unwrap();
        incidents.insert(opened.incident.id.clone());
        answered.push((opened.incident.id, opened.event.id));
    }
    while let Some(joined) = resolves.join_next().await {
        joined.unwrap().expect("each incident is resolved once");
    }
    assert_timelines(&a, incidents, &answered).await;
}

async fn escalating_twice_at_once_escalates_once(backend: Backend) {
    let Some((_db, a, b)) = two_stores(backend).await else {
        return;
    };
    let mut ids = Vec::new();
    for i in 0..INCIDENTS {
        ids.push(
            a.open(report(format!("persisting {i}"), None))
                .await
                .unwrap()
                .incident
                .id,
        );
    }

    let mut tasks = JoinSet::new();
    for id in &ids {
        for n in 0..WRITES_PER_INCIDENT {
            let store = if n % 2 == 0 { a.clone() } else { b.clone() };
            let id = id.clone();
            tasks.spawn(async move {
                let outcome = store
                    .escalate(&id, format!("escalation {n}"), Map::new())
                    .await
                    .expect("escalate");
                (id, outcome.is_some())
            });
        }
    }
    let mut escalated: HashMap<String, usize> = HashMap::new();
    while let Some(joined) = tasks.join_next().await {
        let (id, done) = joined.unwrap();
        *escalated.entry(id).or_default() += usize::from(done);
    }

    for id in ids {
        assert_eq!(
            escalated[&id], 1,
            "{id}: one call escalates, the rest see it done"
        );
        let found = a.get(&id).await.unwrap().unwrap();
        assert_eq!(found.severity, Severity::Critical);
        let events = a.events(&id, 500, None).await.unwrap().items;
        let count = events
            .iter()
            .filter(|e| e.event_type == EventType::Escalated)
            .count();
        assert_eq!(count, 1, "{id}: exactly one ESCALATED");
    }
}

/// A test-made trigger that refuses every new incident, and the statement removing it.
fn obstacle(backend: Backend) -> (Vec<&'static str>, &'static str) {
    match backend {
        Backend::Postgres => (
            vec![
                r#"CREATE FUNCTION refuse_incident() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$"#,
                r#"CREATE TRIGGER refuse_incident BEFORE INSERT ON "OpsIncident" FOR EACH ROW EXECUTE FUNCTION refuse_incident()"#,
            ],
            r#"DROP TRIGGER refuse_incident ON "OpsIncident""#,
        ),
        Backend::Sqlite => (
            vec![
                r#"CREATE TRIGGER refuse_incident BEFORE INSERT ON "OpsIncident" BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"#,
            ],
            "DROP TRIGGER refuse_incident",
        ),
    }
}

async fn a_deploy_whose_incident_cannot_open_stays_running(backend: Backend) {
    let Some((_db, incidents, _)) = two_stores(backend).await else {
        return;
    };
    let conn = incidents.connection().clone();
    let evaluations = EvaluationStore::spawn(conn.clone(), incidents.write_health().clone());
    let deploys = DeployStore::new(incidents.clone(), evaluations);
    let started = deploys
        .start(NewDeploy {
            environment: "prod".to_owned(),
            version: "v1.2.3".to_owned(),
            git_sha: None,
            strategy: None,
            started_by: None,
            external_ids: Map::new(),
        })
        .await
        .unwrap();

    let (create, drop) = obstacle(backend);
    for statement in create {
        conn.execute_unprepared(statement).await.unwrap();
    }
    let refused = deploys
        .finish(
            &started.id,
            FinishStatus::Failed,
            Some("smoke tests failed".to_owned()),
            None,
        )
        .await;
    assert!(
        matches!(refused, Err(StoreError::Db(_))),
        "the incident could not open: {refused:?}"
    );
    let after = deploys.get(&started.id).await.unwrap().unwrap();
    assert_eq!(
        (after.status.as_str(), after.incident_id),
        ("running", None),
        "nothing of the finish is kept"
    );
    assert_eq!(incident::Entity::find().count(&conn).await.unwrap(), 0);

    conn.execute_unprepared(drop).await.unwrap();
    let finished = deploys
        .finish(
            &started.id,
            FinishStatus::Failed,
            Some("smoke tests failed".to_owned()),
            None,
        )
        .await
        .expect("the retry finishes the deploy");
    assert_eq!(finished.status, "failed");
    let incident_id = finished.incident_id.expect("the retry opens the incident");
    let opened = incidents.get(&incident_id).await.unwrap().unwrap();
    assert_eq!(opened.category, Category::Deploy);
    assert_eq!(opened.details_json["deployId"], started.id.as_str());
    let stored = deploys.get(&started.id).await.unwrap().unwrap();
    assert_eq!(stored.incident_id.as_deref(), Some(incident_id.as_str()));
}
