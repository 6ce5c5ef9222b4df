//! The deploy lock and interruptions: two deploys racing, a lock left by a killed deploy taken
//! over, and Ctrl-C in the middle of BACKEND_READY_GATE; plus what exits 3 before anything runs.

use std::time::{Duration, Instant};

use entity::ops_deploy;
use sea_orm::EntityTrait;

use super::{states, Scene, Traffic};
use crate::helpers::{Backend, TestDb};
use crate::on_both_backends;

async fn scene(backend: Backend) -> Option<Scene> {
    Scene::new(TestDb::new(backend).await?).await
}

/// Waits until the running deploy has written its holder into the lock file, and the new colour
/// answers on its port (so it is in BACKEND_READY_GATE).
async fn wait_in_gate(scene: &Scene, port: u16) {
    let lock = scene.path("state").join("deploy-test.lock");
    let started = Instant::now();
    loop {
        let holder = std::fs::read_to_string(&lock).unwrap_or_default();
        if holder.contains("\"pid\"")
            && tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the deploy never reached its readiness gate"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

on_both_backends!(
    two_deploys_race_for_the_lock,
    a_lock_left_by_a_killed_deploy_is_taken_over,
    ctrl_c_in_the_readiness_gate_leaves_the_live_colour_serving,
    bad_plans_and_arguments_exit_3_and_dry_run_changes_nothing,
);

async fn two_deploys_race_for_the_lock(backend: Backend) {
    let Some(scene) = scene(backend).await else {
        return;
    };
    let plan = scene.plan(&Scene::migrate_ok());
    assert_eq!(scene.deploy(&plan, "v1", &[]).await.0, 0);
    scene.mode("v2", "slow:2500");
    let p = plan.display().to_string();
    let first = scene
        .command(&["deploy", "--plan", &p, "--env", "test", "--release", "v2"])
        .spawn()
        .expect("first deploy");
    let first_pid = first.id().expect("pid");
    wait_in_gate(&scene, scene.green).await;

    let started = Instant::now();
    let (code, _, err) = scene.deploy(&plan, "v3", &[]).await;
    assert_eq!(code, 3, "a second deploy exits at once: {err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        err.contains(&format!("pid {first_pid}")) && err.contains("deploying v2"),
        "names the holder: {err}"
    );
    let (code, status, _) = scene
        .run(&["deploy", "lock", "status", "--plan", &p, "--env", "test"])
        .await;
    assert_eq!(code, 0);
    assert!(
        status.contains("held by") && status.contains(&format!("pid {first_pid}")),
        "{status}"
    );

    // With --lock-wait the third waits for the first and then deploys.
    let (code, _, err) = scene.deploy(&plan, "v3", &["--lock-wait", "60s"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("waiting up to"), "{err}");
    let out = first.wait_with_output().await.expect("first deploy");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(scene.serving().await.contains("release v3"));
}

async fn a_lock_left_by_a_killed_deploy_is_taken_over(backend: Backend) {
    let Some(scene) = scene(backend).await else {
        return;
    };
    let plan = scene.plan(&Scene::migrate_ok());
    assert_eq!(scene.deploy(&plan, "v1", &[]).await.0, 0);
    scene.mode("v2", "slow:60000");
    let p = plan.display().to_string();
    let mut killed = scene
        .command(&["deploy", "--plan", &p, "--env", "test", "--release", "v2"])
        .spawn()
        .expect("deploy");
    let killed_pid = killed.id().expect("pid");
    wait_in_gate(&scene, scene.green).await;
    signal(killed_pid, "KILL");
    let _ = killed.wait().await;
    assert!(
        scene.serving().await.contains("release v1"),
        "the live colour never stopped serving"
    );

    let (_, status, _) = scene
        .run(&["deploy", "lock", "status", "--plan", &p, "--env", "test"])
        .await;
    assert!(status.contains("died without releasing it"), "{status}");
    let traffic = Traffic::start(scene.nginx.entry());
    let (code, _, err) = scene.deploy(&plan, "v3", &[]).await;
    traffic.assert_no_failure().await;
    assert_eq!(code, 0, "{err}");
    let report = scene.latest_report();
    assert_eq!(
        report["lock"]["tookOver"]["pid"], killed_pid,
        "the takeover is in the report"
    );
    assert!(report["notes"]
        .to_string()
        .contains("left running by a dead holder"));
    assert!(scene.serving().await.contains("release v3"));
    let conn = scene.db.connect().await;
    let abandoned: Vec<ops_deploy::Model> = ops_deploy::Entity::find()
        .all(&conn)
        .await
        .expect("deploys")
        .into_iter()
        .filter(|d| d.version == "v2")
        .collect();
    assert_eq!(abandoned.len(), 1);
    assert_eq!(abandoned[0].status, "failed");
    assert!(abandoned[0]
        .reason
        .as_deref()
        .unwrap_or("")
        .contains("abandoned"));
}

async fn ctrl_c_in_the_readiness_gate_leaves_the_live_colour_serving(backend: Backend) {
    let Some(scene) = scene(backend).await else {
        return;
    };
    let plan = scene.plan(&Scene::migrate_ok());
    assert_eq!(scene.deploy(&plan, "v1", &[]).await.0, 0);
    scene.mode("v2", "slow:60000");
    let p = plan.display().to_string();
    let traffic = Traffic::start(scene.nginx.entry());
    let child = scene
        .command(&["deploy", "--plan", &p, "--env", "test", "--release", "v2"])
        .spawn()
        .expect("deploy");
    wait_in_gate(&scene, scene.green).await;
    signal(child.id().expect("pid"), "INT");
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("ends soon")
        .expect("deploy");
    traffic.assert_no_failure().await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = scene.latest_report();
    assert_eq!(report["outcome"], "canceled");
    let ran = states(&report);
    assert!(
        ran.contains(&("BACKEND_READY_GATE".into(), "canceled".into())),
        "{ran:?}"
    );
    assert_eq!(ran.last(), Some(&("FAILURE_ROLLBACK".into(), "ok".into())));
    assert!(scene.serving().await.contains("release v1"));
    assert!(
        std::net::TcpListener::bind(("127.0.0.1", scene.green)).is_ok(),
        "the new colour was stopped"
    );
    let (_, status, _) = scene
        .run(&["deploy", "lock", "status", "--plan", &p, "--env", "test"])
        .await;
    assert!(
        status.contains("test: free"),
        "the lock is released: {status}"
    );
}

async fn bad_plans_and_arguments_exit_3_and_dry_run_changes_nothing(backend: Backend) {
    let Some(scene) = scene(backend).await else {
        return;
    };
    let plan = scene.plan(&Scene::migrate_ok());
    let text = std::fs::read_to_string(&plan).expect("plan");
    let bad = scene.path("bad.toml");
    std::fs::write(&bad, text.replace("successes = 2", "successes = 0")).expect("bad plan");
    let (code, _, err) = scene.deploy(&bad, "v1", &[]).await;
    assert_eq!(code, 3, "{err}");
    let line = text
        .lines()
        .position(|l| l.starts_with("successes"))
        .expect("line")
        + 1;
    assert!(
        err.contains(&format!("bad.toml:{line}: env.test.readiness.successes")),
        "names the field and line: {err}"
    );
    std::fs::write(&bad, text.replace("blue_port", "bleu_port")).expect("bad plan");
    let (code, _, err) = scene.deploy(&bad, "v1", &[]).await;
    assert_eq!(code, 3);
    assert!(err.contains("bleu_port"), "{err}");
    let (code, _, err) = scene.deploy(&plan, "v1; rm -rf /", &[]).await;
    assert_eq!(code, 3, "{err}");
    let (code, _, _) = scene
        .run(&[
            "deploy",
            "--plan",
            &plan.display().to_string(),
            "--env",
            "nope",
            "--release",
            "v1",
        ])
        .await;
    assert_eq!(code, 3);

    let (code, out, err) = scene.deploy(&plan, "v1", &["--dry-run"]).await;
    assert_eq!(code, 0, "{err}");
    for state in [
        "PRECHECK",
        "DB_VALIDATE",
        "BACKEND_READY_GATE",
        "EXTERNAL_VERIFY",
        "FAILURE_ROLLBACK",
    ] {
        assert!(out.contains(state), "{out}");
    }
    assert!(
        out.contains(&format!("--port {} --release v1", scene.blue)),
        "{out}"
    );
    assert!(!scene.path("logs").exists(), "a dry run writes nothing");
    assert!(
        std::net::TcpListener::bind(("127.0.0.1", scene.blue)).is_ok(),
        "and starts nothing"
    );
}
