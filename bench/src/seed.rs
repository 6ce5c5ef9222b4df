//! Seeding a large incident history with set-based SQL, and the plain-insert baseline.

use std::time::{Duration, Instant};

use entity::{
    ops_incident as incident, ops_incident_event as event, Category, EventType, Severity,
};
use sea_orm::{ActiveValue::Set, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait};
use serde_json::json;

/// Inserts `incidents` incidents and `events` events (spread evenly) with one statement each.
pub async fn history(db: &DatabaseConnection, incidents: u64, events: u64) {
    let statements = match db.get_database_backend() {
        DbBackend::Postgres => vec![
            format!(
                r#"INSERT INTO "OpsIncident" ("id","createdAt","severity","category","summary","detailsJson")
                   SELECT 'cseed' || lpad(i::text, 20, '0'), timestamp '2026-01-01' + i * interval '60 seconds',
                          'WARN'::"OpsIncidentSeverity", 'API'::"OpsIncidentCategory", 'seeded ' || i, '{{}}'::jsonb
                   FROM generate_series(0, {}) AS i"#,
                incidents - 1
            ),
            format!(
                r#"INSERT INTO "OpsIncidentEvent" ("id","incidentId","createdAt","eventType","message","metadataJson")
                   SELECT 'eseed' || lpad(i::text, 20, '0'), 'cseed' || lpad((i % {incidents})::text, 20, '0'),
                          timestamp '2026-01-01' + i * interval '1 second',
                          (ARRAY['DETECTED','RECOVERY_ATTEMPTED','RECOVERY_SUCCESS','RECOVERY_FAILED','ESCALATED','DETECTED'])[1 + i % 6]::"OpsIncidentEventType",
                          'seeded event ' || i, '{{}}'::jsonb
                   FROM generate_series(0, {}) AS i"#,
                events - 1
            ),
            r#"ANALYZE "OpsIncident""#.to_owned(),
            r#"ANALYZE "OpsIncidentEvent""#.to_owned(),
        ],
        _ => vec![
            format!(
                r#"INSERT INTO "OpsIncident" ("id","createdAt","severity","category","summary","detailsJson")
                   WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {})
                   SELECT printf('cseed%020d', i), strftime('%Y-%m-%d %H:%M:%f', '2026-01-01', '+' || (i * 60) || ' seconds'),
                          'WARN', 'API', 'seeded ' || i, '{{}}' FROM n"#,
                incidents - 1
            ),
            format!(
                r#"INSERT INTO "OpsIncidentEvent" ("id","incidentId","createdAt","eventType","message","metadataJson")
                   WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {})
                   SELECT printf('eseed%020d', i), printf('cseed%020d', i % {incidents}),
                          strftime('%Y-%m-%d %H:%M:%f', '2026-01-01', '+' || i || ' seconds'),
                          CASE i % 6 WHEN 1 THEN 'RECOVERY_ATTEMPTED' WHEN 2 THEN 'RECOVERY_SUCCESS'
                                     WHEN 3 THEN 'RECOVERY_FAILED' WHEN 4 THEN 'ESCALATED' ELSE 'DETECTED' END,
                          'seeded event ' || i, '{{}}' FROM n"#,
                events - 1
            ),
            "ANALYZE".to_owned(),
        ],
    };
    for sql in statements {
        db.execute_unprepared(&sql).await.expect("seed");
    }
}

/// The baseline for ingestion: the same rows a report stream produces (an incident per distinct
/// fingerprint, an event per report), inserted one by one through SeaORM.
pub async fn plain_inserts(db: &DatabaseConnection, reports: u64, fingerprints: u64) -> Duration {
    let started = Instant::now();
    let mut ids = Vec::new();
    for n in 0..reports {
        let fp = n % fingerprints;
        let now = chrono::Utc::now().naive_utc();
        if fp as usize >= ids.len() {
            let id = cuid::cuid1();
            let model = incident::ActiveModel {
                id: Set(id.clone()),
                created_at: Set(now),
                severity: Set(Severity::Critical),
                category: Set(Category::Api),
                summary: Set(format!("report {n}")),
                details_json: Set(json!({ "fingerprint": format!("bench:{fp}") })),
                resolved_at: Set(None),
                resolution_notes: Set(None),
            };
            incident::Entity::insert(model)
                .exec_without_returning(db)
                .await
                .expect("insert incident");
            ids.push(id);
        }
        let model = event::ActiveModel {
            id: Set(cuid::cuid1()),
            incident_id: Set(ids[fp as usize].clone()),
            created_at: Set(now),
            event_type: Set(EventType::Detected),
            message: Set(format!("report {n}")),
            metadata_json: Set(json!({ "severity": "CRITICAL" })),
        };
        event::Entity::insert(model)
            .exec_without_returning(db)
            .await
            .expect("insert event");
    }
    started.elapsed()
}
