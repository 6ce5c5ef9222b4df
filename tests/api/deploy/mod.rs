//! `opsdoctor deploy` end to end: the real binary deploys the test application (`deploy-app`,
//! built from testkit) as blue and green on two loopback ports behind a real nginx that the test
//! starts with its own configuration and the plan switches with `nginx -s reload`.

mod after_switch;
mod flows;
mod lock;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::helpers::{finish, opsdoctor, Stack, TestDb, ADMIN_TOKEN};

/// nginx's binary, or `None` after a visible skip (a failure in CI, where it must be installed).
pub fn nginx() -> Option<PathBuf> {
    let found = ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file());
    if found.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!(
                "nginx is not installed: in CI the deploy tests must run (.ci/install/30-nginx.sh)"
            );
        }
        eprintln!("SKIPPED (deploy): nginx is not installed; run .ci/install/30-nginx.sh");
    }
    found
}

/// The test application's binary, built once per test run.
pub fn deploy_app() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().expect("test binary path");
            let dir = exe
                .parent()
                .and_then(Path::parent)
                .expect("target dir")
                .to_path_buf();
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = std::process::Command::new(cargo)
                .args(["build", "--quiet", "-p", "testkit", "--bin", "deploy-app"])
                .status()
                .expect("run cargo build for deploy-app");
            assert!(status.success(), "building deploy-app failed");
            dir.join("deploy-app")
        })
        .clone()
}

/// A port that binds now, never handed out twice in this run: taken below the kernel's ephemeral
/// range, so the port-0 listeners of other tests (and their outgoing connections) never take it
/// between this call and the deploy binding it.
pub fn free_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let base = 15_000 + (std::process::id() % 1_000) as u16 * 15;
    loop {
        let offset = NEXT.fetch_add(1, Ordering::SeqCst) % 15_000;
        let port = 15_000 + (base - 15_000 + offset) % 15_000;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A real nginx on a loopback port, proxying to the port written in `upstream.conf`.
pub struct Nginx {
    pub bin: PathBuf,
    pub dir: PathBuf,
    pub port: u16,
    child: std::process::Child,
}

impl Nginx {
    pub fn start(bin: PathBuf, dir: &Path, upstream: u16) -> Self {
        let dir = dir.join("nginx");
        std::fs::create_dir_all(dir.join("tmp")).expect("nginx dir");
        std::fs::write(
            dir.join("upstream.conf"),
            format!("server 127.0.0.1:{upstream};\n"),
        )
        .expect("upstream");
        let port = free_port();
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc_geteuid() } == 0;
        let d = dir.display();
        let conf = format!(
            "{user}daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 512; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/tmp/body;\n  proxy_temp_path {d}/tmp/proxy;\n  fastcgi_temp_path {d}/tmp/fastcgi;\n  uwsgi_temp_path {d}/tmp/uwsgi;\n  scgi_temp_path {d}/tmp/scgi;\n\
             \x20 upstream app {{ include {d}/upstream.conf; }}\n\
             \x20 server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://app; proxy_next_upstream off; }} }}\n}}\n",
            user = if root { "user root;\n" } else { "" },
        );
        std::fs::write(dir.join("nginx.conf"), conf).expect("nginx.conf");
        let child = std::process::Command::new(&bin)
            .args(["-p", &d.to_string(), "-c", &format!("{d}/nginx.conf")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "nginx did not start: {}",
                std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            bin,
            dir,
            port,
            child,
        }
    }

    /// The plan's switch command: rewrite the upstream, reload nginx.
    pub fn switch_command(&self) -> String {
        let d = self.dir.display();
        format!(
            "printf 'server 127.0.0.1:%s;\\n' {{port}} > {d}/upstream.conf && {} -p {d} -c {d}/nginx.conf -s reload",
            self.bin.display()
        )
    }

    pub fn entry(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }
}

impl Drop for Nginx {
    /// SIGTERM, so the master stops its workers too (SIGKILL would leave them running).
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// One deploy scenario: a database, the stand-ins, nginx, the control directory, the plan.
pub struct Scene {
    pub db: TestDb,
    /// The stand-ins of OpenAI, Stripe, Cloudflare, cloudflared and the public hostname.
    pub stack: Stack,
    pub nginx: Nginx,
    pub dir: TempDir,
    pub blue: u16,
    pub green: u16,
    pub extra_plan: String,
    pub env: Vec<(String, String)>,
}

impl Scene {
    pub async fn new(db: TestDb) -> Option<Self> {
        let bin = nginx()?;
        let stack = Stack::healthy().await;
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("control")).expect("control dir");
        let (blue, green) = (free_port(), free_port());
        let nginx = Nginx::start(bin, dir.path(), blue);
        let mut env = stack.env();
        env.extend([
            ("DATABASE_URL".to_owned(), db.url.clone()),
            ("APP_DATABASE_URL".to_owned(), db.url.clone()),
            ("ADMIN_TOKEN".to_owned(), ADMIN_TOKEN.to_owned()),
            ("REQUIRED_CHECKS".to_owned(), "database,stripe".to_owned()),
            ("CI".to_owned(), "true".to_owned()),
        ]);
        Some(Self {
            db,
            stack,
            nginx,
            dir,
            blue,
            green,
            extra_plan: String::new(),
            env,
        })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Tells release `release` of the application how to behave (`ok`, `fail`, `hang`, ...).
    pub fn mode(&self, release: &str, mode: &str) {
        std::fs::write(self.path("control").join(format!("{release}.mode")), mode).expect("mode");
    }

    pub fn plan(&self, migrate: &str) -> PathBuf {
        let d = self.dir.path().display();
        let plan = format!(
            r#"[env.test]
state_dir = "{d}/state"
logs_dir = "{d}/logs"
entry_url = "{entry}"
drain = "300ms"
required_checks = ["database", "stripe"]

[env.test.precheck]
required_settings = ["DATABASE_URL", "APP_DATABASE_URL", "ADMIN_TOKEN"]

[env.test.database]
url_env = "APP_DATABASE_URL"
migrate = {migrate}
tables = ["OpsDeploy", "OpsIncident"]
connect_deadline = "2s"

[env.test.backend]
blue_port = {blue}
green_port = {green}
start = {{ run = "{app} --port {{port}} --release {{release}} --control {d}/control", background = true }}
recover_url = "http://127.0.0.1:{{port}}/health/recover"

[env.test.backend.health]
liveness = "http://127.0.0.1:{{port}}/health/live"
database = "http://127.0.0.1:{{port}}/health/db"
status = "http://127.0.0.1:{{port}}/health/status"

[env.test.readiness]
interval = "200ms"
request_timeout = "1s"
timeout = "3s"
successes = 2

[env.test.switch]
run = "{switch}"
shell = true
timeout = "10s"
{extra}
"#,
            entry = self.nginx.entry(),
            blue = self.blue,
            green = self.green,
            app = deploy_app().display(),
            switch = self
                .nginx
                .switch_command()
                .replace('\\', "\\\\")
                .replace('"', "\\\""),
            extra = self.extra_plan,
        );
        let path = self.path("deploy.toml");
        std::fs::write(&path, plan).expect("plan");
        path
    }

    /// The migration command the plan runs by default: opsdoctor's own `migrate up`.
    pub fn migrate_ok() -> String {
        format!("\"{} migrate up\"", env!("CARGO_BIN_EXE_opsdoctor"))
    }

    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let env = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        opsdoctor(self.dir.path(), env, args)
    }

    /// Runs `opsdoctor deploy` to the end: (exit code, stdout, stderr).
    pub async fn deploy(&self, plan: &Path, release: &str, more: &[&str]) -> (i32, String, String) {
        let plan = plan.display().to_string();
        let mut args = vec![
            "deploy",
            "--plan",
            &plan,
            "--env",
            "test",
            "--release",
            release,
        ];
        args.extend_from_slice(more);
        self.run(&args).await
    }

    pub async fn run(&self, args: &[&str]) -> (i32, String, String) {
        finish(self.command(args), Duration::from_secs(120)).await
    }

    /// The newest report written into the logs directory.
    pub fn latest_report(&self) -> Value {
        let mut reports: Vec<PathBuf> = std::fs::read_dir(self.path("logs"))
            .expect("logs dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().is_some_and(|x| x == "json")
                    && p.to_string_lossy().contains("deploy-report-")
            })
            .collect();
        reports.sort();
        let last = reports.last().expect("a report was written");
        assert!(
            last.with_extension("txt").is_file(),
            "the text report is written beside the JSON"
        );
        serde_json::from_str(&std::fs::read_to_string(last).expect("report")).expect("report JSON")
    }

    /// With `UPDATE_DEPLOY_DOCS=1`, copies the newest text report to `docs/reports/<name>.txt`,
    /// the real reports `docs/deploy.md` shows (temporary paths shortened).
    pub fn keep_report_for_docs(&self, name: &str) {
        if std::env::var_os("UPDATE_DEPLOY_DOCS").is_none() {
            return;
        }
        let json = self.latest_report();
        let mut texts: Vec<PathBuf> = std::fs::read_dir(self.path("logs"))
            .expect("logs dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "txt"))
            .collect();
        texts.sort();
        let text = std::fs::read_to_string(texts.last().expect("a text report")).expect("report");
        let bin = format!("{}/target/debug/", env!("CARGO_MANIFEST_DIR"));
        let text = text
            .replace(&self.dir.path().display().to_string(), "/srv/app")
            .replace(&bin, "/usr/local/bin/");
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/reports");
        std::fs::create_dir_all(&docs).expect("docs/reports");
        std::fs::write(docs.join(format!("{name}.txt")), text).expect("write report");
        std::fs::write(
            docs.join(format!("{name}.json")),
            serde_json::to_string_pretty(&json)
                .unwrap_or_default()
                .replace(&self.dir.path().display().to_string(), "/srv/app"),
        )
        .expect("write report");
    }

    /// What the entry point answers now.
    pub async fn serving(&self) -> String {
        reqwest::get(self.nginx.entry())
            .await
            .expect("entry answers")
            .text()
            .await
            .unwrap_or_default()
    }
}

impl Drop for Scene {
    /// Stops what the deploys left running (each process group the plan started).
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir(self.path("state")) else {
            return;
        };
        for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
            if path.extension().is_some_and(|x| x == "pid") {
                if let Ok(pid) = std::fs::read_to_string(&path) {
                    let group = format!("-{}", pid.trim());
                    let _ = std::process::Command::new("kill")
                        .args(["-KILL", "--", &group])
                        .status();
                }
            }
        }
    }
}

/// Outcomes of each state of a report: `[("PRECHECK", "ok"), ...]`.
pub fn states(report: &Value) -> Vec<(String, String)> {
    report["states"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    (
                        s["state"].as_str().unwrap_or("").to_owned(),
                        s["outcome"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A bounded loop of requests through nginx; counts what failed.
pub struct Traffic {
    stop: Arc<AtomicBool>,
    pub sent: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<Vec<String>>,
}

impl Traffic {
    pub fn start(url: String) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let (s, n, f) = (stop.clone(), sent.clone(), failed.clone());
        let task = tokio::spawn(async move {
            // A new connection per request: at a reload nginx closes its idle keep-alive client
            // connections, which a client may be writing to at that moment (browsers retry
            // those); what is measured here is whether a request nginx accepted fails.
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .pool_max_idle_per_host(0)
                .build()
                .expect("client");
            let started = Instant::now();
            let mut errors = Vec::new();
            while !s.load(Ordering::SeqCst)
                && n.load(Ordering::SeqCst) < 20_000
                && started.elapsed() < Duration::from_secs(90)
            {
                n.fetch_add(1, Ordering::SeqCst);
                match client.get(&url).send().await {
                    Ok(r) if r.status().is_success() => {}
                    Ok(r) => {
                        f.fetch_add(1, Ordering::SeqCst);
                        errors.push(format!("HTTP {}", r.status()));
                    }
                    Err(e) => {
                        f.fetch_add(1, Ordering::SeqCst);
                        errors.push(e.to_string());
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            errors
        });
        Self {
            stop,
            sent,
            failed,
            task,
        }
    }

    /// Stops the loop; asserts it sent requests and none failed.
    pub async fn assert_no_failure(self) {
        self.stop.store(true, Ordering::SeqCst);
        let failed = self.failed.load(Ordering::SeqCst);
        let errors = self.task.await.expect("traffic loop");
        let sent = self.sent.load(Ordering::SeqCst);
        assert!(sent > 10, "the traffic loop sent only {sent} requests");
        assert!(
            failed == 0 && errors.is_empty(),
            "{} of {sent} requests through nginx failed: {:?}",
            errors.len(),
            &errors[..errors.len().min(5)]
        );
    }
}
