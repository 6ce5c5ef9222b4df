//! Seeding a large incident history with set-based SQL.

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend};

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
                   SELECT printf('cseed%020d', i), strftime('%Y-%m-%dT%H:%M:%f+00:00', '2026-01-01', '+' || (i * 60) || ' seconds'),
                          'WARN', 'API', 'seeded ' || i, '{{}}' FROM n"#,
                incidents - 1
            ),
            format!(
                r#"INSERT INTO "OpsIncidentEvent" ("id","incidentId","createdAt","eventType","message","metadataJson")
                   WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {})
                   SELECT printf('eseed%020d', i), printf('cseed%020d', i % {incidents}),
                          strftime('%Y-%m-%dT%H:%M:%f+00:00', '2026-01-01', '+' || i || ' seconds'),
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
