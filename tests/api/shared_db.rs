//! Sharing the database with a Prisma app, from opsdoctor's side: tables Prisma created first are
//! adopted (or refused, naming each difference), times of every form a Prisma client or an older
//! opsdoctor leaves order as instants, and rows with JSON scalars or non-JSON text never fail a
//! page. `tests/api/prisma.rs` proves the same with the real Prisma client.

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use serde_json::Value;

use crate::helpers::{run_cli, Backend, InProcessApp, TestDb, ADMIN_TOKEN};
use crate::on_both_backends;
use crate::schema::contract;

on_both_backends!(
    tables_prisma_created_are_adopted,
    tables_that_differ_from_the_contract_are_refused,
    json_scalars_and_unreadable_json_never_fail_a_page,
    rows_this_version_cannot_read_never_fail_a_list,
);

async fn sql(db: &DatabaseConnection, statement: &str) {
    db.execute(Statement::from_string(
        db.get_database_backend(),
        statement.to_owned(),
    ))
    .await
    .unwrap_or_else(|e| panic!("{statement}: {e}"));
}

async fn versions(db: &DatabaseConnection) -> Vec<String> {
    let rows = db
        .query_all(Statement::from_string(
            db.get_database_backend(),
            r#"SELECT "version" FROM "seaql_migrations" ORDER BY "version""#.to_owned(),
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|r| r.try_get::<String>("", "version").unwrap())
        .collect()
}

/// The database as the Prisma app's own migration of `docs/schema.prisma` leaves it.
async fn prisma_first(backend: Backend) -> Option<TestDb> {
    let db = TestDb::new(backend).await?;
    for script in contract(backend) {
        db.run_script(&script).await;
    }
    Some(db)
}

async fn tables_prisma_created_are_adopted(backend: Backend) {
    let Some(db) = prisma_first(backend).await else {
        return;
    };
    let conn = db.connect().await;
    sql(
        &conn,
        r#"INSERT INTO "OpsIncident" ("id", "severity", "category", "summary", "detailsJson") VALUES ('cprisma0000000000000000001', 'WARN', 'API', 'written by the app', '{"k": 1}')"#,
    )
    .await;

    let (exit, stdout, stderr) = run_cli(Some(&db), &[], &["migrate", "up"]);
    assert!(exit.success(), "{stdout}{stderr}");
    assert_eq!(versions(&conn).await, migration::migration_names());
    assert!(
        Migrator::get_pending_migrations(&conn)
            .await
            .unwrap()
            .is_empty(),
        "nothing is left pending"
    );

    // The service starts on the adopted tables and reads what the app wrote.
    let app = InProcessApp::spawn_with(&db, &[("ADMIN_TOKEN", ADMIN_TOKEN)], &[]).await;
    let (status, got) = app.get("/ops/incidents/cprisma0000000000000000001").await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["summary"], "written by the app");
    // A second start changes nothing.
    let (exit, stdout, stderr) = run_cli(Some(&db), &[], &["migrate", "up"]);
    assert!(exit.success(), "{stdout}{stderr}");
    assert_eq!(versions(&conn).await, migration::migration_names());
    app.stop().await;
}

async fn tables_that_differ_from_the_contract_are_refused(backend: Backend) {
    let Some(db) = prisma_first(backend).await else {
        return;
    };
    let conn = db.connect().await;
    sql(&conn, r#"DROP INDEX "OpsIncident_category_resolvedAt_idx""#).await;
    sql(&conn, r#"ALTER TABLE "OpsDeploy" ADD COLUMN "team" TEXT"#).await;

    let (exit, stdout, stderr) = run_cli(Some(&db), &[], &["migrate", "up"]);
    assert!(!exit.success(), "{stdout}{stderr}");
    let said = format!("{stdout}{stderr}");
    for named in ["OpsIncident_category_resolvedAt_idx", "team"] {
        assert!(said.contains(named), "the refusal names {named}: {said}");
    }
    // Nothing of the user's was dropped or altered, and nothing was recorded.
    sql(&conn, r#"SELECT "team" FROM "OpsDeploy""#).await;
    assert!(
        versions(&conn).await.is_empty(),
        "{:?} {said}",
        versions(&conn).await
    );
}

async fn json_scalars_and_unreadable_json_never_fail_a_page(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let app = InProcessApp::spawn_with(&db, &[("ADMIN_TOKEN", ADMIN_TOKEN)], &[]).await;
    let conn = db.connect().await;
    let cast = if backend == Backend::Postgres {
        "::jsonb"
    } else {
        ""
    };
    let details = [
        ("c01", "42"),
        ("c02", "4.5"),
        ("c03", "true"),
        ("c04", r#""text""#),
        ("c05", "null"),
        ("c06", "[1, 2]"),
    ];
    for (id, json) in details {
        sql(&conn, &format!(r#"INSERT INTO "OpsIncident" ("id", "severity", "category", "summary", "detailsJson") VALUES ('{id}', 'INFO', 'OTHER', 'scalar', '{json}'{cast})"#)).await;
    }
    if backend == Backend::Sqlite {
        // Only SQLite lets text that is not JSON into a JSONB column.
        sql(&conn, r#"INSERT INTO "OpsIncident" ("id", "severity", "category", "summary", "detailsJson") VALUES ('c07', 'INFO', 'OTHER', 'not json', 'hello {')"#).await;
    }
    let (status, page) = app.get("/ops/incidents?limit=100").await;
    assert_eq!(status, 200, "{page}");
    let items = page["items"].as_array().unwrap();
    let by_id = |id: &str| items.iter().find(|i| i["id"] == id).cloned().unwrap();
    for (id, json) in details {
        let want: Value = serde_json::from_str(json).unwrap();
        assert_eq!(by_id(id)["detailsJson"], want, "{id}");
        assert!(by_id(id).get("warnings").is_none());
    }
    if backend == Backend::Sqlite {
        let odd = by_id("c07");
        assert_eq!(odd["detailsJson"], "hello {");
        assert!(odd["warnings"][0].as_str().unwrap().contains("detailsJson"));
        let (status, one) = app.get("/ops/incidents/c07").await;
        assert_eq!(status, 200, "{one}");
    }
    app.stop().await;
}

/// SQLite: rows of every time form (an older opsdoctor's text, Prisma's ISO text, Prisma's
/// `unixepoch-ms` integers, `CURRENT_TIMESTAMP`) are rewritten in place by `migrate up` and then
/// list, filter and page in time order together with rows written after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_times_of_every_form_order_as_instants() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let conn = db.connect().await;
    Migrator::up(&conn, Some(3)).await.unwrap();
    // Same day, interleaved writers: a, c old opsdoctor text; b, d Prisma text; e, f integer ms.
    let rows = [
        ("ca", "'2026-11-23 14:26:27.738'"),
        ("cb", "'2026-11-23T14:26:28.566+00:00'"),
        ("cc", "'2026-11-23 14:26:29.001'"),
        ("cd", "'2026-11-23T14:26:30.000+00:00'"),
        ("ce", "1795443991500"),
        ("cf", "'2026-11-23T15:26:32.250+01:00'"),
    ];
    for (id, at) in rows {
        sql(&conn, &format!(r#"INSERT INTO "OpsIncident" ("id", "createdAt", "severity", "category", "summary", "detailsJson") VALUES ('{id}', {at}, 'INFO', 'OTHER', '{id}', '{{}}')"#)).await;
        sql(&conn, &format!(r#"INSERT INTO "OpsIncidentEvent" ("id", "incidentId", "createdAt", "eventType", "message", "metadataJson") VALUES ('e{id}', '{id}', {at}, 'DETECTED', 'm', '{{}}')"#)).await;
    }
    let (exit, stdout, stderr) = run_cli(Some(&db), &[], &["migrate", "up"]);
    assert!(exit.success(), "{stdout}{stderr}");
    let stored: Vec<String> = conn
        .query_all(Statement::from_string(
            sea_orm::DbBackend::Sqlite,
            r#"SELECT "createdAt" AS t FROM "OpsIncident" ORDER BY "createdAt""#.to_owned(),
        ))
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get::<String>("", "t").unwrap())
        .collect();
    assert_eq!(
        stored,
        [
            "2026-11-23T14:26:27.738+00:00",
            "2026-11-23T14:26:28.566+00:00",
            "2026-11-23T14:26:29.001+00:00",
            "2026-11-23T14:26:30.000+00:00",
            "2026-11-23T14:26:31.500+00:00",
            "2026-11-23T14:26:32.250+00:00",
        ]
    );

    let app = InProcessApp::spawn_with(&db, &[("ADMIN_TOKEN", ADMIN_TOKEN)], &[]).await;
    // Newest first, one per page: every incident once, in time order.
    let mut seen = Vec::new();
    let mut path = "/ops/incidents?limit=1".to_owned();
    for _ in 0..20 {
        let (status, page) = app.get(&path).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_owned()),
        );
        match page["nextCursor"].as_str() {
            Some(c) => path = format!("/ops/incidents?limit=1&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, ["cf", "ce", "cd", "cc", "cb", "ca"]);

    let (_, window) = app
        .get("/ops/incidents?since=2026-11-23T14:26:28.566Z&until=2026-11-23T14:26:31.500Z")
        .await;
    let ids: Vec<&str> = window["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["cd", "cc", "cb"]);
    assert_eq!(
        window["items"][0]["createdAt"], "2026-11-23T14:26:30.000Z",
        "times are shown as RFC 3339 UTC"
    );

    // The timeline, oldest first, two per page: no repeat, no skip, and it ends.
    let mut events = Vec::new();
    let mut path = "/ops/timeline?limit=2".to_owned();
    for _ in 0..20 {
        let (status, page) = app.get(&path).await;
        assert_eq!(status, 200, "{page}");
        events.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_owned()),
        );
        match page["nextCursor"].as_str() {
            Some(c) => path = format!("/ops/timeline?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(events, ["eca", "ecb", "ecc", "ecd", "ece", "ecf"]);

    // A row opsdoctor writes now is stored as Prisma writes it.
    let (status, created) = app
        .post(
            "/ops/incidents",
            serde_json::json!({"severity": "INFO", "category": "OTHER", "summary": "new"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["incident"]["id"]
        .as_str()
        .or(created["id"].as_str())
        .unwrap()
        .to_owned();
    let text: String = conn
        .query_one(Statement::from_string(
            sea_orm::DbBackend::Sqlite,
            format!(r#"SELECT "createdAt" AS t FROM "OpsIncident" WHERE "id" = '{id}'"#),
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "t")
        .unwrap();
    assert!(
        text.len() == 29 && text.as_bytes()[10] == b'T' && text.ends_with("+00:00"),
        "{text}"
    );
    app.stop().await;
}

/// A newer Prisma app stores an enum value this version does not know (on PostgreSQL after
/// `ALTER TYPE … ADD VALUE`; SQLite keeps enums as text) or, on SQLite, a time no form reads:
/// lists and timelines leave such a row out and name it in `warnings`; pages across it go on.
async fn rows_this_version_cannot_read_never_fail_a_list(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let app = InProcessApp::spawn_with(&db, &[("ADMIN_TOKEN", ADMIN_TOKEN)], &[]).await;
    let conn = db.connect().await;
    if backend == Backend::Postgres {
        sql(
            &conn,
            r#"ALTER TYPE "OpsIncidentCategory" ADD VALUE 'BILLING'"#,
        )
        .await;
        sql(
            &conn,
            r#"ALTER TYPE "OpsIncidentEventType" ADD VALUE 'ACKNOWLEDGED'"#,
        )
        .await;
    }
    for n in 1..=4 {
        sql(&conn, &format!(r#"INSERT INTO "OpsIncident" ("id", "createdAt", "severity", "category", "summary", "detailsJson") VALUES ('ok{n}', '2026-11-0{n}T10:00:00.000+00:00'{cast}, 'INFO', 'OTHER', 'fine', '{{}}')"#, cast = if backend == Backend::Postgres { "::timestamptz" } else { "" })).await;
    }
    sql(&conn, &format!(r#"INSERT INTO "OpsIncident" ("id", "createdAt", "severity", "category", "summary", "detailsJson") VALUES ('odd', '2026-11-02T12:00:00.000+00:00'{cast}, 'WARN', 'BILLING', 'newer app', '{{}}')"#, cast = if backend == Backend::Postgres { "::timestamptz" } else { "" })).await;
    sql(&conn, r#"INSERT INTO "OpsIncidentEvent" ("id", "incidentId", "eventType", "message", "metadataJson") VALUES ('e1', 'ok1', 'DETECTED', 'seen', '{}')"#).await;
    sql(&conn, r#"INSERT INTO "OpsIncidentEvent" ("id", "incidentId", "eventType", "message", "metadataJson") VALUES ('e2', 'ok1', 'ACKNOWLEDGED', 'by a newer app', '{}')"#).await;
    if backend == Backend::Sqlite {
        sql(&conn, r#"INSERT INTO "OpsIncident" ("id", "createdAt", "severity", "category", "summary", "detailsJson") VALUES ('badtime', 'yesterday-ish', 'INFO', 'OTHER', 'odd time', '{}')"#).await;
    }

    // Two at a time, newest first: the odd row is left out and named, and every other row is
    // listed exactly once across the pages.
    let (mut seen, mut warnings, mut cursor) = (Vec::new(), Vec::new(), None::<String>);
    for _ in 0..10 {
        let path = match &cursor {
            Some(c) => format!("/ops/incidents?limit=2&cursor={c}"),
            None => "/ops/incidents?limit=2".to_owned(),
        };
        let (status, page) = app.get(&path).await;
        assert_eq!(status, 200, "{page}");
        for item in page["items"].as_array().unwrap() {
            seen.push(item["id"].as_str().unwrap().to_owned());
        }
        for w in page["warnings"].as_array().into_iter().flatten() {
            warnings.push(w.as_str().unwrap().to_owned());
        }
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ["ok4", "ok3", "ok2", "ok1"], "{warnings:?}");
    assert!(
        warnings.iter().any(|w| w.contains("`odd`")),
        "the odd row is named: {warnings:?}"
    );
    if backend == Backend::Sqlite {
        assert!(
            warnings.iter().any(|w| w.contains("`badtime`")),
            "{warnings:?}"
        );
    }

    // An incident's timeline and the global one keep the events they can read.
    let (status, one) = app.get("/ops/incidents/ok1").await;
    assert_eq!(status, 200, "{one}");
    let events: Vec<&str> = one["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["e1"], "{one}");
    assert!(
        one["warnings"][0].as_str().unwrap().contains("`e2`"),
        "{one}"
    );
    let (status, timeline) = app.get("/ops/timeline").await;
    assert_eq!(status, 200, "{timeline}");
    app.stop().await;
}
