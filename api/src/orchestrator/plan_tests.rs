//! The plan parser: the shipped examples parse, defaults are the documented ones, and every
//! problem names the field and its line.

use std::time::Duration;

use super::command::Vars;
use super::plan::{parse, PlanError};

const MINIMAL: &str = r#"
[env.prod]
state_dir = "/tmp/state"
entry_url = "http://127.0.0.1/"
switch = "switch-to {port}"

[env.prod.backend]
blue_port = 3001
green_port = 3002
start = "app --port {port} --release {release}"

[env.prod.backend.health]
liveness = "http://127.0.0.1:{port}/health/live"
"#;

fn error(text: &str) -> PlanError {
    parse("plan.toml", text, "prod").expect_err("the plan is refused")
}

#[test]
fn the_shipped_examples_parse() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).expect("docs/examples") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("example");
        let env = if text.contains("[env.staging]") {
            "staging"
        } else {
            "prod"
        };
        parse(&path.display().to_string(), &text, env)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        seen += 1;
    }
    assert!(
        seen >= 3,
        "the systemd, PM2 and Docker examples are shipped"
    );
}

#[test]
fn defaults_are_those_of_common_deploy_proxies() {
    let plan = parse("plan.toml", MINIMAL, "prod").expect("minimal plan");
    assert_eq!(plan.readiness.interval, Duration::from_secs(1));
    assert_eq!(plan.readiness.request_timeout, Duration::from_secs(5));
    assert_eq!(plan.readiness.timeout, Duration::from_secs(60));
    assert_eq!(plan.readiness.successes, 2);
    assert_eq!(plan.database.url_env, "DATABASE_URL");
    assert!(plan.frontend.is_none() && plan.tunnel.is_none());
    let vars: Vars = [("port", "3002".to_owned()), ("release", "v1 x".to_owned())]
        .into_iter()
        .collect();
    // Without a shell a value is one argument, whatever it holds.
    assert_eq!(
        plan.backend.start.argv(&vars),
        ["app", "--port", "3002", "--release", "v1 x"]
    );
}

#[test]
fn problems_name_the_field_and_its_line() {
    let e = error(&MINIMAL.replace("green_port = 3002", "green_port = 3001"));
    assert_eq!(
        (e.field.as_str(), e.line),
        ("env.prod.backend.green_port", 9)
    );
    let e = error(
        &MINIMAL
            .replace("/health/live", "/health/live-{nope}")
            .replace("{port}/", "1/"),
    );
    assert_eq!(
        (e.field.as_str(), e.line),
        ("env.prod.backend.health.liveness", 13)
    );
    let e = error(&MINIMAL.replace("blue_port", "bleu_port"));
    assert_eq!(e.line, 8);
    assert!(e.problem.contains("bleu_port"), "{e}");
    let e = error(&MINIMAL.replace("\"switch-to {port}\"", "\"switch-to 'unbalanced\""));
    assert_eq!(e.field, "env.prod.switch");
    assert_eq!(e.line, 5);
    let e = error(&MINIMAL.replace("state_dir", "state_dri"));
    assert!(e.to_string().starts_with("plan.toml:3:"), "{e}");
    let e = parse("plan.toml", MINIMAL, "staging").expect_err("no such environment");
    assert!(e.problem.contains("it has: prod"), "{e}");
}
