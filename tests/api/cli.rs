//! The command line: configuration errors, `config` masking, `migrate`, `--help`.

use crate::helpers::{run_cli, Backend, TestDb};

#[test]
fn a_bad_setting_stops_startup_with_one_line_naming_it() {
    for (var, value) in [
        ("PORT", "abc"),
        ("DATABASE_URL", "mongodb://db/x"),
        ("DATABASE_URL", "::not a url"),
        ("SHUTDOWN_DRAIN_MS", "-5"),
    ] {
        let (exit, stdout, stderr) = run_cli(None, &[(var, value)], &["serve"]);
        assert_eq!(exit.code(), Some(2), "{var}={value}: {stdout}{stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line: {stderr}");
        assert!(lines[0].contains(var), "{stderr}");
    }
}

#[test]
fn config_prints_every_setting_with_secrets_masked() {
    let token = "PLANTED-admin-token-7f3e9c1b";
    let url = "postgres://opsuser:PLANTED-db-password-55aa@db.internal:5432/prod";
    let (exit, stdout, stderr) = run_cli(
        None,
        &[("ADMIN_TOKEN", token), ("DATABASE_URL", url)],
        &["config", "--json"],
    );
    assert!(exit.success(), "{stderr}");
    assert!(
        !stdout.contains("PLANTED") && !stderr.contains("PLANTED"),
        "{stdout}{stderr}"
    );
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        v["DATABASE_URL"],
        "postgres://opsuser:****@db.internal:5432/prod"
    );
    assert_eq!(v["ADMIN_TOKEN"]["configured"], true);
    assert_eq!(v["PORT"], 8080);

    let (exit, stdout, _) = run_cli(None, &[("ADMIN_TOKEN", token)], &["config"]);
    assert!(exit.success());
    assert!(
        stdout.contains("DATABASE_URL=sqlite://data/opsdoctor.db?mode=rwc"),
        "{stdout}"
    );
    assert!(!stdout.contains("PLANTED"));
}

#[test]
fn help_explains_the_commands() {
    let (exit, stdout, _) = run_cli(None, &[], &["--help"]);
    assert!(exit.success());
    for word in [
        "serve",
        "migrate",
        "config",
        "DATABASE_URL",
        "ADMIN_TOKEN",
        "--port",
    ] {
        assert!(stdout.contains(word), "--help lacks {word}: {stdout}");
    }
}

#[tokio::test]
async fn migrate_up_status_down_and_fresh() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let (_, stdout, _) = run_cli(Some(&db), &[], &["migrate", "status"]);
    assert!(
        stdout.contains("pending  m20261122_000001_ops_incident"),
        "{stdout}"
    );
    let (exit, stdout, _) = run_cli(Some(&db), &[], &["migrate", "up"]);
    assert!(
        exit.success() && stdout.contains("applied m20261122"),
        "{stdout}"
    );
    let (_, stdout, _) = run_cli(Some(&db), &[], &["migrate", "up"]);
    assert!(stdout.contains("up to date"), "{stdout}");
    let (_, stdout, _) = run_cli(Some(&db), &[], &["migrate", "status"]);
    assert!(
        stdout.contains("applied  m20261122_000001_ops_incident"),
        "{stdout}"
    );

    let (exit, _, stderr) = run_cli(Some(&db), &[], &["migrate", "fresh"]);
    assert_eq!(exit.code(), Some(2), "fresh needs --yes: {stderr}");
    let (exit, _, stderr) = run_cli(Some(&db), &[], &["migrate", "fresh", "--yes"]);
    assert!(exit.success(), "{stderr}");

    let tables = |conn: sea_orm::DatabaseConnection| async move {
        use sea_orm::{ConnectionTrait, Statement};
        let rows = conn
            .query_all(Statement::from_string(
                sea_orm::DbBackend::Sqlite,
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'Ops%' ORDER BY name",
            ))
            .await
            .unwrap();
        rows.iter()
            .map(|r| r.try_get::<String>("", "name").unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        tables(db.connect().await).await,
        [
            "OpsDeploy",
            "OpsDoctorRun",
            "OpsGateEvaluation",
            "OpsIncident",
            "OpsIncidentEvent"
        ]
    );
    // The latest migration rewrites SQLite times into Prisma's form: reverting it changes no table.
    let (exit, stdout, stderr) = run_cli(Some(&db), &[], &["migrate", "down"]);
    assert!(exit.success(), "{stdout}{stderr}");
    assert_eq!(tables(db.connect().await).await.len(), 5);
    let (exit, stdout, stderr) = run_cli(Some(&db), &[], &["migrate", "down"]);
    assert!(exit.success(), "{stdout}{stderr}");
    assert_eq!(
        tables(db.connect().await).await,
        ["OpsDoctorRun", "OpsIncident", "OpsIncidentEvent"],
        "down reverts the latest migration"
    );
    let (exit, _, stderr) = run_cli(Some(&db), &[], &["migrate", "down", "--steps", "5"]);
    assert!(exit.success(), "{stderr}");
    assert!(
        tables(db.connect().await).await.is_empty(),
        "down --steps reverts them all"
    );
}
