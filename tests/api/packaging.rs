//! `deploy/`: the systemd unit checked by `systemd-analyze` (verify, and its hardening scored
//! offline), the Dockerfile linted by `hadolint`, the compose file resolved by `docker-compose`,
//! and `opsdoctor healthcheck`, which the image's HEALTHCHECK runs. No Docker engine runs here:
//! the image itself is not built by the tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::helpers::{run_cli, Backend, InProcessApp, TestDb};

fn deploy_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(name)
}

/// Runs `tool` if it is installed: `None` (after saying so) locally, a failure in CI.
fn run_tool(tool: &str, args: &[&str], env: &[(&str, &str)], install: &str) -> Option<Output> {
    let mut command = Command::new(tool);
    command.args(args).envs(env.iter().copied());
    match command.output() {
        Ok(out) => Some(out),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            if std::env::var_os("CI").is_some() {
                panic!("{tool} is not installed: {install} installs it in CI");
            }
            eprintln!("SKIPPED ({tool} not installed; {install} installs it)");
            None
        }
        Err(err) => panic!("running {tool}: {err}"),
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let unit = std::fs::read_to_string(deploy_file("opsdoctor.service")).unwrap();
    for line in [
        "Restart=on-failure",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
    ] {
        assert!(unit.lines().any(|l| l == line), "the unit sets {line}");
    }
    // `verify` checks that ExecStart's binary exists: point it at the one just built.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("opsdoctor.service");
    let unit = unit.replace("/usr/local/bin/opsdoctor", env!("CARGO_BIN_EXE_opsdoctor"));
    std::fs::write(&copy, unit).unwrap();
    let copy = copy.to_str().unwrap();
    let install = ".ci/install/45-deploy-linters.sh";
    let Some(out) = run_tool("systemd-analyze", &["verify", copy], &[], install) else {
        return;
    };
    assert!(
        out.status.success(),
        "systemd-analyze verify: {}",
        text(&out)
    );
    assert_eq!(
        text(&out).trim(),
        "",
        "no warnings from systemd-analyze verify"
    );
    // Exposure 0.0 (locked down) to 10.0 (exposed); the threshold is in tenths.
    let out = run_tool(
        "systemd-analyze",
        &["security", "--offline=true", "--threshold=20", copy],
        &[],
        install,
    )
    .unwrap();
    assert!(out.status.success(), "exposure above 2.0: {}", text(&out));
}

#[test]
fn the_dockerfile_and_the_compose_file_pass_their_linters() {
    let dockerfile = std::fs::read_to_string(deploy_file("Dockerfile")).unwrap();
    let stages: Vec<&str> = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert!(stages.len() >= 2, "multi-stage: {stages:?}");
    assert!(
        stages.last().unwrap().contains("distroless"),
        "a small runtime image"
    );
    let last_stage = dockerfile.rsplit("\nFROM ").next().unwrap();
    assert!(
        last_stage.contains("\nUSER 65532:65532"),
        "the runtime stage runs as non-root"
    );
    assert!(last_stage.contains(r#"CMD ["/usr/local/bin/opsdoctor", "healthcheck""#));

    let install = ".ci/install/45-deploy-linters.sh";
    let path = deploy_file("Dockerfile");
    if let Some(out) = run_tool("hadolint", &[path.to_str().unwrap()], &[], install) {
        assert!(out.status.success(), "hadolint: {}", text(&out));
    }
    let compose = deploy_file("docker-compose.yml");
    let compose = compose.to_str().unwrap();
    let secrets = [
        ("POSTGRES_PASSWORD", "0123456789abcdef0123"),
        ("ADMIN_TOKEN", "compose-admin-token-0123456789"),
    ];
    let Some(out) = run_tool(
        "docker-compose",
        &["-f", compose, "config"],
        &secrets,
        install,
    ) else {
        return;
    };
    assert!(
        out.status.success(),
        "docker-compose config: {}",
        text(&out)
    );
    let resolved = String::from_utf8_lossy(&out.stdout);
    assert!(resolved.contains("postgres://opsdoctor:0123456789abcdef0123@postgres:5432/opsdoctor"));
    assert!(resolved.contains("condition: service_healthy"));
    let out = run_tool("docker-compose", &["-f", compose, "config"], &[], install).unwrap();
    assert!(
        !out.status.success(),
        "the secrets are required, not defaulted"
    );
    assert!(text(&out).contains("POSTGRES_PASSWORD"), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_exits_0_for_a_live_service_and_1_otherwise() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let app = InProcessApp::spawn(&db).await;
    let base = app.base.clone();
    let (status, _, err) =
        tokio::task::spawn_blocking(move || run_cli(None, &[], &["healthcheck", "--url", &base]))
            .await
            .unwrap();
    assert!(status.success(), "{err}");
    let port = app.base.rsplit(':').next().unwrap().to_owned();
    let (status, _, err) = tokio::task::spawn_blocking(move || {
        run_cli(
            None,
            &[("PORT", port.as_str())],
            &["healthcheck", "--probe", "ready"],
        )
    })
    .await
    .unwrap();
    assert!(status.success(), "PORT is the default target: {err}");
    app.stop().await;
    let refused = testkit::refused_url();
    let (status, _, err) = tokio::task::spawn_blocking(move || {
        run_cli(None, &[], &["healthcheck", "--url", &refused])
    })
    .await
    .unwrap();
    assert_eq!(status.code(), Some(1));
    assert!(err.contains("could not connect"), "{err}");
}
