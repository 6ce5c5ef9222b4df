//! The commands opsdoctor runs for people (a deploy plan's, the tunnel restart command): parsed
//! into an argument vector (a shell only when asked), run with a timeout in their own process
//! group, their output masked, streamed and kept for the report; or started in the background as
//! a service process with its pid remembered.

use std::collections::{BTreeMap, VecDeque};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use crate::telemetry::scrub::Scrubber;

/// Lines of output kept per command for the report.
const TAIL_LINES: usize = 40;

/// A command as the plan writes it: a string, or a table with options.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(from = "Written", into = "Table")]
pub struct CommandSpec {
    pub run: String,
    pub shell: bool,
    pub timeout: Duration,
    pub background: bool,
    pub env: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Written {
    Line(String),
    Table(Table),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    run: String,
    #[serde(default)]
    shell: bool,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    timeout: Duration,
    #[serde(default)]
    background: bool,
    #[serde(default)]
    env: BTreeMap<String, String>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(120)
}

impl From<Written> for CommandSpec {
    fn from(w: Written) -> Self {
        let t = match w {
            Written::Line(run) => Table {
                run,
                shell: false,
                timeout: default_timeout(),
                background: false,
                env: BTreeMap::new(),
            },
            Written::Table(t) => t,
        };
        Self {
            run: t.run,
            shell: t.shell,
            timeout: t.timeout,
            background: t.background,
            env: t.env,
        }
    }
}

impl From<CommandSpec> for Table {
    fn from(c: CommandSpec) -> Self {
        Table {
            run: c.run,
            shell: c.shell,
            timeout: c.timeout,
            background: c.background,
            env: c.env,
        }
    }
}

/// Values substituted for `{name}` in a command.
pub type Vars = BTreeMap<&'static str, String>;

impl CommandSpec {
    /// Problems a plan author must fix: unparseable quoting, an empty command, a zero timeout.
    pub fn validate(&self) -> Result<(), String> {
        if self.run.trim().is_empty() {
            return Err("the command is empty".into());
        }
        if self.timeout.is_zero() {
            return Err("timeout must be greater than zero".into());
        }
        if !self.shell && shlex::split(&self.run).is_none_or(|v| v.is_empty()) {
            return Err("unbalanced quotes (or set shell = true to run it with sh -c)".into());
        }
        Ok(())
    }

    /// The argument vector with `{name}` placeholders filled in. Without a shell each argument is
    /// filled separately, so a value can never become two arguments.
    pub fn argv(&self, vars: &Vars) -> Vec<String> {
        if self.shell {
            return vec!["sh".into(), "-c".into(), fill(&self.run, vars)];
        }
        shlex::split(&self.run)
            .unwrap_or_default()
            .iter()
            .map(|a| fill(a, vars))
            .collect()
    }

    /// The program looked up on `PATH` by PRECHECK.
    pub fn program(&self) -> String {
        if self.shell {
            return "sh".into();
        }
        shlex::split(&self.run)
            .and_then(|v| v.into_iter().next())
            .unwrap_or_default()
    }
}

pub fn fill(text: &str, vars: &Vars) -> String {
    let mut out = text.to_owned();
    for (k, v) in vars {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

/// One command as the report shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandRun {
    /// What the command is for (`backend.start green`).
    pub purpose: String,
    /// The argument vector, masked.
    pub argv: Vec<String>,
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    pub duration_ms: u64,
    /// The last lines of its output (stdout and stderr interleaved), masked.
    pub output_tail: Vec<String>,
    /// A background process: its pid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
}

impl CommandRun {
    pub fn ok(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out
    }

    /// One line for an error message.
    pub fn failure(&self) -> String {
        let how = if self.timed_out {
            format!("timed out after {} ms", self.duration_ms)
        } else {
            match self.exit_code {
                Some(c) => format!("exited with status {c}"),
                None => "could not be started or was killed by a signal".into(),
            }
        };
        let last = self
            .output_tail
            .last()
            .map(|l| format!(": {l}"))
            .unwrap_or_default();
        format!("`{}` ({}) {how}{last}", self.argv.join(" "), self.purpose)
    }
}

/// Runs commands for one deploy: masks with the configured secrets, streams with a prefix.
#[derive(Clone)]
pub struct Runner {
    scrubber: Arc<Scrubber>,
    /// Whether output is echoed (to stderr) as it arrives.
    pub stream: bool,
}

impl Runner {
    pub fn new(scrubber: Arc<Scrubber>, stream: bool) -> Self {
        Self { scrubber, stream }
    }

    pub fn mask(&self, text: &str) -> String {
        String::from_utf8_lossy(&self.scrubber.scrub(text.as_bytes())).into_owned()
    }

    /// Runs to completion (or its timeout, when its whole process group is killed).
    pub async fn run(&self, purpose: &str, spec: &CommandSpec, vars: &Vars) -> CommandRun {
        let argv = spec.argv(vars);
        let started = Instant::now();
        let masked: Vec<String> = argv.iter().map(|a| self.mask(a)).collect();
        let mut record = CommandRun {
            purpose: purpose.to_owned(),
            argv: masked,
            exit_code: None,
            timed_out: false,
            duration_ms: 0,
            output_tail: Vec::new(),
            pid: None,
        };
        let mut cmd = tokio::process::Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .envs(spec.env.iter().map(|(k, v)| (k, fill(v, vars))))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                record.output_tail = vec![self.mask(&format!("cannot start {}: {e}", argv[0]))];
                return record;
            }
        };
        let pid = child.id();
        let tail = Arc::new(std::sync::Mutex::new(VecDeque::new()));
        let out = child.stdout.take().map(|s| self.pump(s, tail.clone()));
        let err = child.stderr.take().map(|s| self.pump(s, tail.clone()));
        match tokio::time::timeout(spec.timeout, child.wait()).await {
            Ok(Ok(status)) => record.exit_code = status.code(),
            Ok(Err(_)) => {}
            Err(_) => {
                record.timed_out = true;
                if let Some(pid) = pid {
                    kill_group(pid, libc::SIGKILL);
                }
                let _ = child.wait().await;
            }
        }
        // The readers end when every holder of the pipes exits; a grandchild left holding them
        // must not hold the deploy.
        for reader in [out, err].into_iter().flatten() {
            let _ = tokio::time::timeout(Duration::from_secs(2), reader).await;
        }
        record.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        record.output_tail = tail
            .lock()
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default();
        record
    }

    /// Starts a service process in its own session, its output appended to `log`; it outlives
    /// this deploy. The record's exit code is 0 once it is started.
    pub fn spawn_background(
        &self,
        purpose: &str,
        spec: &CommandSpec,
        vars: &Vars,
        log: &Path,
    ) -> CommandRun {
        let argv = spec.argv(vars);
        let mut record = CommandRun {
            purpose: purpose.to_owned(),
            argv: argv.iter().map(|a| self.mask(a)).collect(),
            exit_code: None,
            timed_out: false,
            duration_ms: 0,
            output_tail: Vec::new(),
            pid: None,
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log);
        let (out, err) = match file.and_then(|f| Ok((f.try_clone()?, f))) {
            Ok(pair) => pair,
            Err(e) => {
                record.output_tail = vec![format!("cannot open {}: {e}", log.display())];
                return record;
            }
        };
        let mut cmd = std::process::Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .envs(spec.env.iter().map(|(k, v)| (k, fill(v, vars))))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        match cmd.spawn() {
            Ok(child) => {
                record.pid = Some(child.id());
                record.exit_code = Some(0);
                record.output_tail = vec![format!(
                    "started as pid {}; output in {}",
                    child.id(),
                    log.display()
                )];
                // Reaped by a thread so it never lingers as a zombie while this deploy runs.
                std::thread::spawn(move || {
                    let mut child = child;
                    let _ = child.wait();
                });
            }
            Err(e) => {
                record.output_tail = vec![self.mask(&format!("cannot start {}: {e}", argv[0]))]
            }
        }
        record
    }

    fn pump<R: AsyncRead + Unpin + Send + 'static>(
        &self,
        reader: R,
        tail: Arc<std::sync::Mutex<VecDeque<String>>>,
    ) -> tokio::task::JoinHandle<()> {
        let runner = self.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(reader).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let line = runner.mask(&line);
                if runner.stream {
                    eprintln!("    │ {line}");
                }
                if let Ok(mut t) = tail.lock() {
                    if t.len() == TAIL_LINES {
                        t.pop_front();
                    }
                    t.push_back(line);
                }
            }
        })
    }
}

/// Sends `signal` to a process group.
pub fn kill_group(pgid: u32, signal: i32) {
    if let Ok(pgid) = i32::try_from(pgid) {
        // SAFETY: kill(2) with a negative pid signals a process group; no memory is involved.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}

/// Whether a process with this pid exists.
pub fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Whether `program` can be run: a path that exists, or a name found on `PATH`.
pub fn on_path(program: &str) -> bool {
    if program.contains('/') {
        return Path::new(program).is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}
