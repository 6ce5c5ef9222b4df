//! The deploy plan: one TOML file saying, per environment, which commands carry a release live,
//! which URLs prove it healthy, and every timeout; parsed strictly and validated with errors that
//! name the field and its line.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::command::CommandSpec;

/// The settings PRECHECK requires unless the plan names its own list.
pub const DEFAULT_REQUIRED_SETTINGS: &[&str] = &[
    "DATABASE_URL",
    "STRIPE_SECRET_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "OPENAI_API_KEY",
    "ADMIN_TOKEN",
    "BASE_URL",
    "CLOUDFLARED_METRICS_URL",
];

/// The whole file: environments by name.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanFile {
    pub env: BTreeMap<String, EnvPlan>,
}

/// Everything one environment's deploy does.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvPlan {
    /// Where the live colour and the started processes are remembered between deploys.
    pub state_dir: PathBuf,
    /// Where `deploy-report-*.json|txt` and background processes' output go.
    #[serde(default = "default_logs")]
    pub logs_dir: PathBuf,
    /// The public URL, verified through the tunnel in EXTERNAL_VERIFY.
    #[serde(default)]
    pub public_url: Option<String>,
    /// Checks that must pass in EXTERNAL_VERIFY; the others only make the deploy partial.
    /// Default: the service's `REQUIRED_CHECKS`.
    #[serde(default)]
    pub required_checks: Option<Vec<String>>,
    #[serde(default)]
    pub precheck: Precheck,
    #[serde(default)]
    pub database: Database,
    pub backend: Tier,
    #[serde(default)]
    pub frontend: Option<Tier>,
    /// Moves traffic to `{colour}` / `{port}` (e.g. rewrites an nginx upstream and reloads it).
    pub switch: CommandSpec,
    /// Verified after every switch and switch-back: the entry point that users' traffic takes.
    pub entry_url: String,
    #[serde(default)]
    pub tunnel: Option<Tunnel>,
    /// Run after a switch-back, when the plan has more to undo than the switch (optional).
    #[serde(default)]
    pub rollback: Option<CommandSpec>,
    #[serde(default)]
    pub readiness: Readiness,
    #[serde(default)]
    pub lock: LockPlan,
    /// How long the old colour keeps running after the switch before it is stopped, so requests
    /// in flight finish.
    #[serde(default = "default_drain", with = "humantime_serde")]
    pub drain: Duration,
    /// Whether the previous colour is stopped after a successful deploy.
    #[serde(default = "yes")]
    pub stop_previous: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Precheck {
    /// Settings (environment variables) that must be present and non-empty.
    #[serde(default)]
    pub required_settings: Option<Vec<String>>,
    /// Directories that must be writable (the logs and state directories always are checked).
    #[serde(default)]
    pub writable_dirs: Vec<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    /// The environment variable holding the application's database URL (never the URL itself).
    #[serde(default = "default_db_env")]
    pub url_env: String,
    /// The migration command; runs before anything is started or switched.
    #[serde(default)]
    pub migrate: Option<CommandSpec>,
    /// Tables that must exist once migrations ran.
    #[serde(default)]
    pub tables: Vec<String>,
    /// How long DB_VALIDATE keeps retrying the connection.
    #[serde(default = "default_db_deadline", with = "humantime_serde")]
    pub connect_deadline: Duration,
}

impl Default for Database {
    fn default() -> Self {
        Self {
            url_env: default_db_env(),
            migrate: None,
            tables: Vec::new(),
            connect_deadline: default_db_deadline(),
        }
    }
}

/// A blue-green tier (the backend, or the frontend).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    pub blue_port: u16,
    pub green_port: u16,
    /// Starts the release on `{colour}` / `{port}`; `background = true` keeps it as a child.
    pub start: CommandSpec,
    /// Stops `{colour}`; without it a background start is stopped with SIGTERM.
    #[serde(default)]
    pub stop: Option<CommandSpec>,
    /// Recovery tried once when the readiness gate times out.
    #[serde(default)]
    pub recover: Option<CommandSpec>,
    /// Whether the application has `POST /health/recover` (used when there is no `recover`).
    #[serde(default)]
    pub recover_url: Option<String>,
    /// Health URLs with `{port}`; every one must answer 2xx for a poll to succeed.
    pub health: Health,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    pub liveness: String,
    #[serde(default)]
    pub database: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
}

impl Health {
    pub fn urls(&self) -> Vec<(&'static str, &str)> {
        let mut urls = vec![("liveness", self.liveness.as_str())];
        if let Some(u) = &self.database {
            urls.push(("database", u));
        }
        if let Some(u) = &self.status {
            urls.push(("status", u));
        }
        urls
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tunnel {
    /// Starts or restarts the tunnel (e.g. `systemctl restart cloudflared`).
    pub restart: CommandSpec,
    /// How long to wait for edge connections after a restart.
    #[serde(default = "default_tunnel_wait", with = "humantime_serde")]
    pub wait: Duration,
}

/// The readiness gate: N consecutive successes, polled at an interval, within an overall timeout.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Readiness {
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    #[serde(default = "default_ready_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(default = "default_successes")]
    pub successes: u32,
}

impl Default for Readiness {
    fn default() -> Self {
        Self {
            interval: default_interval(),
            request_timeout: default_request_timeout(),
            timeout: default_ready_timeout(),
            successes: default_successes(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockPlan {
    /// A holder on another host whose heartbeat is older than this is taken over.
    #[serde(default = "default_lease", with = "humantime_serde")]
    pub lease: Duration,
}

impl Default for LockPlan {
    fn default() -> Self {
        Self {
            lease: default_lease(),
        }
    }
}

fn default_logs() -> PathBuf {
    PathBuf::from("logs")
}
fn default_db_env() -> String {
    "DATABASE_URL".to_owned()
}
fn default_db_deadline() -> Duration {
    Duration::from_secs(30)
}
fn default_tunnel_wait() -> Duration {
    Duration::from_secs(30)
}
fn default_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_ready_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_successes() -> u32 {
    2
}
fn default_lease() -> Duration {
    Duration::from_secs(60)
}
fn default_drain() -> Duration {
    Duration::from_secs(2)
}
fn yes() -> bool {
    true
}

/// A plan that cannot be used, naming the field and where it is.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{file}:{line}: {field}: {problem}")]
pub struct PlanError {
    pub file: String,
    pub line: usize,
    pub field: String,
    pub problem: String,
}

/// Reads and validates the plan of one environment.
pub fn load(path: &std::path::Path, env: &str) -> Result<EnvPlan, PlanError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| PlanError {
        file: file.clone(),
        line: 0,
        field: "plan".into(),
        problem: format!("cannot read the plan: {e}"),
    })?;
    parse(&file, &text, env)
}

/// Parses a plan's text (see [`load`]).
pub fn parse(file: &str, text: &str, env: &str) -> Result<EnvPlan, PlanError> {
    let parsed: PlanFile = toml::from_str(text).map_err(|e| {
        let mut line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
            .unwrap_or(0);
        // An unknown key is reported at its table; point at the key itself.
        if let Some(key) = e
            .message()
            .split('`')
            .nth(1)
            .filter(|_| e.message().starts_with("unknown field"))
        {
            if let Some(n) = text
                .lines()
                .enumerate()
                .skip(line.saturating_sub(1))
                .find_map(|(n, l)| {
                    let l = l.trim_start();
                    (l.starts_with(key) && l[key.len()..].trim_start().starts_with('='))
                        .then_some(n + 1)
                })
            {
                line = n;
            }
        }
        PlanError {
            file: file.to_owned(),
            line,
            field: "plan".into(),
            problem: e.message().to_owned(),
        }
    })?;
    let err = |field: &str, problem: String| PlanError {
        file: file.to_owned(),
        line: line_of(text, env, field),
        field: format!("env.{env}.{field}"),
        problem,
    };
    let Some(plan) = parsed.env.get(env).cloned() else {
        let known: Vec<&str> = parsed.env.keys().map(String::as_str).collect();
        return Err(PlanError {
            file: file.to_owned(),
            line: 0,
            field: format!("env.{env}"),
            problem: format!(
                "no such environment in the plan (it has: {})",
                known.join(", ")
            ),
        });
    };
    validate(&plan).map_err(|(field, problem)| err(&field, problem))?;
    Ok(plan)
}

/// Field-level rules serde cannot express.
fn validate(plan: &EnvPlan) -> Result<(), (String, String)> {
    let tiers = std::iter::once(("backend", &plan.backend))
        .chain(plan.frontend.as_ref().map(|f| ("frontend", f)));
    let mut ports = Vec::new();
    for (name, tier) in tiers {
        if tier.blue_port == 0 || tier.green_port == 0 || tier.blue_port == tier.green_port {
            return Err((
                format!("{name}.green_port"),
                "blue_port and green_port must be two different, non-zero ports".into(),
            ));
        }
        ports.extend([tier.blue_port, tier.green_port]);
        for (key, url) in tier.health.urls() {
            url_with_port(url).map_err(|p| (format!("{name}.health.{key}"), p))?;
        }
        if let Some(url) = &tier.recover_url {
            url_with_port(url).map_err(|p| (format!("{name}.recover_url"), p))?;
        }
    }
    ports.sort_unstable();
    if ports.windows(2).any(|w| w[0] == w[1]) {
        return Err((
            "frontend.blue_port".into(),
            "the frontend's ports must differ from the backend's".into(),
        ));
    }
    url::Url::parse(&plan.entry_url)
        .map_err(|e| ("entry_url".into(), format!("not a URL: {e}")))?;
    if let Some(public) = &plan.public_url {
        url::Url::parse(public).map_err(|e| ("public_url".into(), format!("not a URL: {e}")))?;
    }
    let r = &plan.readiness;
    if r.successes == 0 || r.interval.is_zero() || r.request_timeout.is_zero() {
        return Err((
            "readiness.successes".into(),
            "successes, interval and request_timeout must be greater than zero".into(),
        ));
    }
    if r.timeout < r.interval {
        return Err((
            "readiness.timeout".into(),
            "the overall timeout must be at least one interval".into(),
        ));
    }
    if let Some(checks) = &plan.required_checks {
        for name in checks {
            name.parse::<checks::CheckName>().map_err(|_| {
                (
                    "required_checks".into(),
                    format!(
                        "unknown check `{name}` (known: {})",
                        checks::CheckName::ALL
                            .map(checks::CheckName::as_str)
                            .join(", ")
                    ),
                )
            })?;
        }
    }
    if plan.database.url_env.trim().is_empty() {
        return Err((
            "database.url_env".into(),
            "name the environment variable that holds the database URL".into(),
        ));
    }
    for (field, spec) in plan.commands() {
        spec.validate().map_err(|p| (field.to_owned(), p))?;
    }
    Ok(())
}

/// A health URL: absolute, with `{port}` where the colour's port goes.
fn url_with_port(url: &str) -> Result<(), String> {
    if !url.contains("{port}") {
        return Err("must contain `{port}`, where each colour's port goes".into());
    }
    url::Url::parse(&url.replace("{port}", "1"))
        .map(|_| ())
        .map_err(|e| format!("not a URL: {e}"))
}

impl EnvPlan {
    /// Every command of the plan with the field that holds it, in the order they may run.
    pub fn commands(&self) -> Vec<(&'static str, &CommandSpec)> {
        let mut all: Vec<(&'static str, &CommandSpec)> = Vec::new();
        if let Some(m) = &self.database.migrate {
            all.push(("database.migrate", m));
        }
        let tiers = [
            ("backend", Some(&self.backend)),
            ("frontend", self.frontend.as_ref()),
        ];
        for (name, tier) in tiers {
            let Some(t) = tier else { continue };
            let field = |k: &str| -> &'static str {
                match (name, k) {
                    ("backend", "start") => "backend.start",
                    ("backend", "stop") => "backend.stop",
                    ("backend", _) => "backend.recover",
                    ("frontend", "start") => "frontend.start",
                    ("frontend", "stop") => "frontend.stop",
                    _ => "frontend.recover",
                }
            };
            all.push((field("start"), &t.start));
            if let Some(s) = &t.stop {
                all.push((field("stop"), s));
            }
            if let Some(s) = &t.recover {
                all.push((field("recover"), s));
            }
        }
        all.push(("switch", &self.switch));
        if let Some(t) = &self.tunnel {
            all.push(("tunnel.restart", &t.restart));
        }
        if let Some(r) = &self.rollback {
            all.push(("rollback", r));
        }
        all
    }

    /// The checks EXTERNAL_VERIFY requires, or `None` for the service's configured list.
    pub fn required(&self) -> Option<std::collections::BTreeSet<String>> {
        self.required_checks
            .as_ref()
            .map(|v| v.iter().cloned().collect())
    }
}

/// The line of `field` (`backend.start`) within `[env.<env>]`, best effort: the line of the
/// deepest key or table header found, else the environment's header, else 0.
fn line_of(text: &str, env: &str, field: &str) -> usize {
    let parts: Vec<&str> = field.split('.').collect();
    let mut table: Vec<String> = Vec::new();
    let mut best = 0;
    let mut best_depth = 0;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            table = header
                .trim_matches(|c| c == '[' || c == ']')
                .split('.')
                .map(|s| s.trim().trim_matches('"').to_owned())
                .collect();
            if table.len() >= 2 && table[0] == "env" && table[1] == env {
                let depth = 1 + common(&table[2..], &parts);
                if depth > best_depth {
                    best = n + 1;
                    best_depth = depth;
                }
            }
            continue;
        }
        if table.len() < 2 || table[0] != "env" || table[1] != env {
            continue;
        }
        let Some((key, _)) = line.split_once('=') else {
            continue;
        };
        let mut path: Vec<String> = table[2..].to_vec();
        path.extend(
            key.trim()
                .split('.')
                .map(|s| s.trim().trim_matches('"').to_owned()),
        );
        let depth = 1 + common(&path, &parts);
        if depth > best_depth {
            best = n + 1;
            best_depth = depth;
        }
    }
    best
}

fn common(path: &[String], parts: &[&str]) -> usize {
    path.iter()
        .zip(parts)
        .take_while(|(a, b)| a.as_str() == **b)
        .count()
}
