//! The real `opsdoctor` binary as a child process: for tests whose subject is the process itself
//! (exit codes, signals, log output, two processes sharing a database).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::client::{token_from, ApiClient};
use super::{TestDb, ADMIN_TOKEN};

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

/// The binary as an async child in `cwd` with only `env` (and `PATH`), output piped, killed if
/// dropped: for tests that race processes or wait on one while doing something else.
pub fn opsdoctor<'a>(
    cwd: &std::path::Path,
    env: impl IntoIterator<Item = (&'a str, &'a str)>,
    args: &[&str],
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_opsdoctor"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .envs(env)
        .current_dir(cwd)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Runs an [`opsdoctor`] command to its end within `within`: (exit code, stdout, stderr).
pub async fn finish(mut cmd: tokio::process::Command, within: Duration) -> (i32, String, String) {
    let out = tokio::time::timeout(within, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("opsdoctor did not finish within {within:?}"))
        .expect("run opsdoctor");
    (
        out.status.code().unwrap_or(-1),
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
    api: ApiClient,
    child: Child,
    logs: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl std::ops::Deref for TestApp {
    type Target = ApiClient;

    fn deref(&self) -> &ApiClient {
        &self.api
    }
}

impl TestApp {
    pub fn spawn(db: &TestDb) -> Self {
        Self::spawn_with(db, &[], &[])
    }

    /// Starts the binary on port 0 and waits for it to log the address it bound.
    pub fn spawn_with(db: &TestDb, env: &[(&str, &str)], args: &[&str]) -> Self {
        Self::start(Self::command(db, env, args), env)
    }

    /// Like [`Self::spawn`], with the child's soft open-file limit set to `soft` and its hard limit
    /// left as the test's: a service started by a supervisor with a low default limit.
    pub fn spawn_with_soft_nofile(db: &TestDb, soft: u64) -> Self {
        use std::os::unix::process::CommandExt;
        let mut cmd = Self::command(db, &[], &[]);
        let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).expect("open-file limits");
        // SAFETY: between fork and exec this only calls setrlimit, which is async-signal-safe.
        unsafe {
            cmd.pre_exec(move || rlimit::setrlimit(rlimit::Resource::NOFILE, soft, hard));
        }
        Self::start(cmd, &[])
    }

    fn command(db: &TestDb, env: &[(&str, &str)], args: &[&str]) -> Command {
        let mut cmd = base_command(db.dir.path());
        cmd.env("DATABASE_URL", &db.url)
            .env("PORT", "0")
            .env("ADMIN_TOKEN", ADMIN_TOKEN)
            .envs(env.iter().copied())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    fn start(mut cmd: Command, env: &[(&str, &str)]) -> Self {
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
            api: ApiClient::new(format!("http://{addr}"), token_from(env)),
            child,
            logs,
            readers,
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

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        while started.elapsed() < within {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
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
