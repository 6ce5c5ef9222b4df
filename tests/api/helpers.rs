//! Test harness: a fresh database per test and the real `opsdoctor` binary on a random port.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use serde_json::Value;
use tempfile::TempDir;
use testkit::pg::ScratchDatabase;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef";

/// Where PostgreSQL tests create their databases; `.ci/run` exports it.
pub const POSTGRES_ENV: &str = "OPSDOCTOR_TEST_POSTGRES_URL";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database of its own for one test, removed when the test ends.
pub struct TestDb {
    pub url: String,
    pub backend: Backend,
    /// Working directory for spawned processes (and the SQLite file).
    pub dir: TempDir,
    /// The PostgreSQL database, held only to be dropped with this.
    _postgres: Option<ScratchDatabase>,
}

impl TestDb {
    /// A fresh, empty database; `None` (after saying so) when PostgreSQL is not configured locally.
    pub async fn new(backend: Backend) -> Option<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        match backend {
            Backend::Sqlite => {
                let url = format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display());
                Some(Self {
                    url,
                    backend,
                    dir,
                    _postgres: None,
                })
            }
            Backend::Postgres => {
                let Some(admin_url) = std::env::var(POSTGRES_ENV).ok().filter(|u| !u.is_empty())
                else {
                    if std::env::var_os("CI").is_some() {
                        panic!("{POSTGRES_ENV} is not set: in CI the PostgreSQL tests must run");
                    }
                    eprintln!("SKIPPED (PostgreSQL): set {POSTGRES_ENV}=postgres://postgres@127.0.0.1:5432/test to run");
                    return None;
                };
                let base = admin_url
                    .rsplit('/')
                    .next()
                    .unwrap_or("test")
                    .split('?')
                    .next()
                    .unwrap_or("test")
                    .to_owned();
                let db = ScratchDatabase::create(&admin_url, &format!("{base}_t"))
                    .await
                    .expect("create test database");
                Some(Self {
                    url: db.url.clone(),
                    backend,
                    dir,
                    _postgres: Some(db),
                })
            }
        }
    }

    pub async fn connect(&self) -> DatabaseConnection {
        Database::connect(&self.url)
            .await
            .expect("connect to test database")
    }

    /// Runs a `;`-separated SQL script statement by statement.
    pub async fn run_script(&self, sql: &str) {
        let db = self.connect().await;
        for statement in sql.split(";\n").map(str::trim).filter(|s| {
            s.lines()
                .any(|l| !l.trim().is_empty() && !l.trim().starts_with("--"))
        }) {
            db.execute(Statement::from_string(
                db.get_database_backend(),
                statement.to_owned(),
            ))
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
        }
        db.close().await.ok();
    }

    /// A second database on the same server (for comparisons); SQLite: another file.
    pub async fn sibling(&self) -> Self {
        Self::new(self.backend).await.expect("sibling database")
    }
}

/// Runs the binary to completion (for CLI commands) with only the given environment.
pub fn run_cli(
    db: Option<&TestDb>,
    env: &[(&str, &str)],
    args: &[&str],
) -> (ExitStatus, String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cmd = base_command(db.map(|d| d.dir.path()).unwrap_or(dir.path()));
    if let Some(db) = db {
        cmd.env("DATABASE_URL", &db.url);
    }
    cmd.envs(env.iter().copied()).args(args);
    let out = cmd.output().expect("run opsdoctor");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn base_command(cwd: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_opsdoctor"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .env("DOCTOR_INTERVAL_MS", "0")
        .current_dir(cwd)
        .stdin(Stdio::null());
    cmd
}

/// A running `opsdoctor serve` process.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    child: Child,
    logs: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
    token: Option<String>,
}

impl TestApp {
    pub fn spawn(db: &TestDb) -> Self {
        Self::spawn_with(db, &[], &[])
    }

    /// Starts the binary on port 0 and waits for it to log the address it bound.
    pub fn spawn_with(db: &TestDb, env: &[(&str, &str)], args: &[&str]) -> Self {
        let mut cmd = base_command(db.dir.path());
        cmd.env("DATABASE_URL", &db.url)
            .env("PORT", "0")
            .env("ADMIN_TOKEN", ADMIN_TOKEN)
            .envs(env.iter().copied())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let token = env
            .iter()
            .find(|(k, _)| *k == "ADMIN_TOKEN")
            .map(|(_, v)| (*v).to_owned())
            .or_else(|| Some(ADMIN_TOKEN.to_owned()))
            .filter(|t| !t.is_empty());
        let mut child = cmd.spawn().expect("start opsdoctor");
        let logs = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let mut readers = Vec::new();
        for stream in [
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let logs = logs.clone();
            let tx = tx.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Some(addr) = listening_addr(&line) {
                        let _ = tx.send(addr);
                    }
                    let mut logs = logs.lock().unwrap();
                    logs.push_str(&line);
                    logs.push('\n');
                }
            }));
        }
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                let _ = child.kill();
                panic!("opsdoctor did not start; logs:\n{}", logs.lock().unwrap());
            });
        Self {
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
            child,
            logs,
            readers,
            token,
        }
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// Stops the process with SIGTERM and returns everything it wrote, to the last line.
    pub fn stop(mut self) -> String {
        assert!(
            self.terminate(Duration::from_secs(30)).is_some(),
            "opsdoctor did not exit after SIGTERM"
        );
        for reader in std::mem::take(&mut self.readers) {
            let _ = reader.join();
        }
        self.logs()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn authed(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let resp = self
            .authed(self.client.get(format!("{}{path}", self.base)))
            .send()
            .await
            .expect("GET");
        decode(resp).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let resp = self
            .authed(self.client.post(format!("{}{path}", self.base)))
            .json(&body)
            .send()
            .await
            .expect("POST");
        decode(resp).await
    }

    /// A raw request with the admin token, for bad-input tests.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.authed(self.client.request(method, format!("{}{path}", self.base)))
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(&mut self, within: Duration) -> Option<ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let started = Instant::now();
        while started.elapsed() < within {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The bound address from the "opsdoctor listening" line, in either log format.
fn listening_addr(line: &str) -> Option<String> {
    if let Ok(v) = serde_json::from_str::<Value>(line) {
        return (v["message"] == "opsdoctor listening")
            .then(|| v["addr"].as_str().unwrap_or_default().to_owned());
    }
    let (_, fields) = line.split_once("opsdoctor listening")?;
    let addr = fields
        .split_whitespace()
        .find_map(|f| f.strip_prefix("addr="))?;
    Some(addr.to_owned())
}

pub async fn decode(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, value)
}

/// Declares a scenario `async fn name(backend: Backend)` as one test per backend.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::helpers::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::helpers::Backend::Postgres).await
            }
        }
    )*};
}
