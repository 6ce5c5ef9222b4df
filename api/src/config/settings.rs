//! Every setting declared once: its variable, command-line flag, default, meaning, whether it is a
//! secret and how `opsdoctor config` shows it. Parsing, the masked view, the log scrubber's list,
//! `--help` and the README's configuration table all read these declarations.

use checks::CheckName;
use serde_json::{json, Value};

use super::{Config, LogFormat};

/// One environment variable.
pub struct Setting {
    /// The variable, exactly as it is set and named in errors.
    pub name: &'static str,
    /// A command-line flag that overrides it, as written on the command line.
    pub flag: Option<&'static str>,
    /// The value in effect when it is unset, parsed like any other value; `None`: unset.
    pub default: Option<&'static str>,
    /// What it means, in Markdown (the README's "Meaning" column).
    pub doc: &'static str,
    /// `Some` for a secret: its value is listed for the log scrubber, masked this way.
    pub secret: Option<Mask>,
    /// Where `opsdoctor config` shows it.
    pub shown: Shown,
}

/// How a secret value is masked wherever it might be shown.
#[derive(Clone, Copy)]
pub enum Mask {
    /// The value masked by [`checks::mask::mask_secret`], keeping one of these prefixes.
    Token(&'static [&'static str]),
    /// A URL whose password (userinfo or a `password=`-like query value) is the secret.
    UrlPassword,
}

/// Where a setting appears in [`Config::masked`].
pub enum Shown {
    /// Under its own name, as this view of the resolved configuration.
    Value(fn(&Config) -> Value),
    /// Inside `integrations` (see [`super::ChecksConfig::masked`]), grouped by check.
    Integrations,
}

/// Prefixes that may be shown in a masked OpenAI key.
pub const OPENAI_KEY_PREFIXES: &[&str] = &["sk-proj-", "sk-svcacct-", "sk-admin-", "sk-"];

/// The database used when `DATABASE_URL` is not set: a SQLite file under `data/`, created if missing.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/opsdoctor.db?mode=rwc";

/// The database check's own default timeout, shorter than other checks' since readiness waits on it.
pub const DATABASE_CHECK_TIMEOUT_MS: u64 = 2_000;

/// The variable that overrides one check's timeout: `CHECK_TIMEOUT_MS_<NAME>`.
pub fn check_timeout_var(name: CheckName) -> String {
    format!("CHECK_TIMEOUT_MS_{}", name.as_str().to_ascii_uppercase())
}

pub(super) const fn plain(
    name: &'static str,
    default: Option<&'static str>,
    doc: &'static str,
    shown: fn(&Config) -> Value,
) -> Setting {
    Setting {
        name,
        flag: None,
        default,
        doc,
        secret: None,
        shown: Shown::Value(shown),
    }
}

const fn integration(
    name: &'static str,
    default: Option<&'static str>,
    doc: &'static str,
    secret: Option<Mask>,
) -> Setting {
    Setting {
        name,
        flag: None,
        default,
        doc,
        secret,
        shown: Shown::Integrations,
    }
}

fn ms(d: std::time::Duration) -> Value {
    json!(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub static DATABASE_URL: Setting = Setting {
    name: "DATABASE_URL",
    flag: None,
    default: Some(DEFAULT_DATABASE_URL),
    doc: "`sqlite://…` or `postgres://user:pass@host:5432/db`; a SQLite directory is created if missing",
    secret: Some(Mask::UrlPassword),
    shown: Shown::Value(|c| json!(c.database_location())),
};
pub static HOST: Setting = Setting {
    flag: Some("--host"),
    ..plain("HOST", Some("127.0.0.1"), "address to listen on", |c| {
        json!(c.host.to_string())
    })
};
pub static PORT: Setting = Setting {
    flag: Some("--port"),
    ..plain(
        "PORT",
        Some("8080"),
        "port; `0` picks a free one (the bound address is logged)",
        |c| json!(c.port),
    )
};
pub static ADMIN_TOKEN: Setting = Setting {
    name: "ADMIN_TOKEN",
    flag: None,
    default: None,
    doc: "bearer token for `/ops/*` (at least 16 characters); unset, those endpoints answer 403",
    secret: Some(Mask::Token(&[])),
    shown: Shown::Value(|c| json!({ "configured": c.admin_token.is_some() })),
};
pub static LOG_FORMAT: Setting = plain("LOG_FORMAT", Some("text"), "`text` (colour on a terminal) or `json` (one object per line); level from `RUST_LOG` (unset or empty: `info`, with libraries that log upstream bodies quiet; see [Logs](#logs))", |c| json!(match c.log_format { LogFormat::Text => "text", LogFormat::Json => "json" }));
pub static AUTO_MIGRATE: Setting = Setting {
    flag: Some("--no-migrate"),
    ..plain(
        "AUTO_MIGRATE",
        Some("true"),
        "apply pending migrations before serving",
        |c| json!(c.auto_migrate),
    )
};
pub static MAX_BODY_BYTES: Setting = plain(
    "MAX_BODY_BYTES",
    Some("65536"),
    "larger request bodies get 413",
    |c| json!(c.max_body_bytes),
);
pub static REQUEST_TIMEOUT_MS: Setting = plain(
    "REQUEST_TIMEOUT_MS",
    Some("30000"),
    "a request running longer gets 408",
    |c| ms(c.request_timeout),
);
pub static DB_CONNECT_TIMEOUT_MS: Setting = plain(
    "DB_CONNECT_TIMEOUT_MS",
    Some("5000"),
    "opening a database connection",
    |c| ms(c.db_connect_timeout),
);
pub static DB_ACQUIRE_TIMEOUT_MS: Setting = plain(
    "DB_ACQUIRE_TIMEOUT_MS",
    Some("5000"),
    "waiting for a pooled connection",
    |c| ms(c.db_acquire_timeout),
);
pub static DB_MAX_CONNECTIONS: Setting =
    plain("DB_MAX_CONNECTIONS", Some("10"), "pool size", |c| {
        json!(c.db_max_connections)
    });
pub static READY_CACHE_TTL_MS: Setting = plain(
    "READY_CACHE_TTL_MS",
    Some("1000"),
    "readiness reuses a database check this long: probe storms cost one query per TTL",
    |c| ms(c.ready_cache_ttl),
);
pub static READY_EXTERNAL_CACHE_TTL_MS: Setting = plain(
    "READY_EXTERNAL_CACHE_TTL_MS",
    Some("30000"),
    "readiness reuses results of other required checks this long",
    |c| ms(c.ready_external_cache_ttl),
);
pub static REQUIRED_CHECKS: Setting = plain("REQUIRED_CHECKS", Some("database"), "comma-separated checks whose failure fails readiness (and the gate); a required check that is not configured fails `not_configured`", |c| json!(c.checks.required.iter().cloned().collect::<Vec<_>>().join(",")));
pub static CHECK_TIMEOUT_MS: Setting = plain(
    "CHECK_TIMEOUT_MS",
    Some("5000"),
    "every check's timeout unless overridden",
    |c| ms(c.checks.default_timeout),
);
pub static CHECK_TIMEOUT_MS_NAME: Setting = plain("CHECK_TIMEOUT_MS_<NAME>", None, "overrides `CHECK_TIMEOUT_MS` for one check (`CHECK_TIMEOUT_MS_STRIPE`); `CHECK_TIMEOUT_MS_DATABASE` defaults to 2000", |c| {
    let map: serde_json::Map<String, Value> = c.checks.timeouts.iter().map(|(name, d)| (name.as_str().to_ascii_uppercase(), ms(*d))).collect();
    Value::Object(map)
});
pub static DOCTOR_INTERVAL_MS: Setting = plain(
    "DOCTOR_INTERVAL_MS",
    Some("60000"),
    "the background monitor re-runs the suite this often; `0` turns it off",
    |c| ms(c.doctor_interval),
);
pub static DOCTOR_MIN_INTERVAL_MS: Setting = plain("DOCTOR_MIN_INTERVAL_MS", Some("2000"), "`POST /ops/doctor/run` starts at most one new run per interval (429 with `Retry-After` beyond)", |c| ms(c.doctor_min_interval));
pub static DOCTOR_ESCALATE_AFTER_RUNS: Setting = plain(
    "DOCTOR_ESCALATE_AFTER_RUNS",
    Some("3"),
    "a failure seen in this many runs in a row is escalated to CRITICAL",
    |c| json!(c.doctor_escalate_after),
);
// Flap-proof decisions (api/src/decisions.rs): thresholds per check and the one re-try.
pub static CHECK_FAIL_AFTER: Setting = plain("CHECK_FAIL_AFTER", Some("2"), "a check is failing (incidents, readiness, the gate) after this many failing observations in a row with a transient reason (`timeout`, `upstream_error`, …)", |c| json!(c.decisions.policy.default.fail_after));
pub static CHECK_FAIL_AFTER_PERMANENT: Setting = plain("CHECK_FAIL_AFTER_PERMANENT", Some("1"), "the same for reasons waiting cannot fix (`auth`, `forbidden`, `misconfigured`, `token_expired`, …)", |c| json!(c.decisions.policy.default.fail_after_permanent));
pub static CHECK_RECOVER_AFTER: Setting = plain(
    "CHECK_RECOVER_AFTER",
    Some("2"),
    "a failing check has recovered after this many passing (or warning) observations in a row",
    |c| json!(c.decisions.policy.default.recover_after),
);
pub static CHECK_THRESHOLDS_NAME: Setting = plain("CHECK_THRESHOLDS_<NAME>", None, "one check's thresholds as `fail_after,fail_after_permanent,recover_after` (`CHECK_THRESHOLDS_STRIPE=3,1,2`)", |c| {
    let map: serde_json::Map<String, Value> = c.decisions.policy.per_check.iter().map(|(name, t)| (name.as_str().to_ascii_uppercase(), json!(format!("{},{},{}", t.fail_after, t.fail_after_permanent, t.recover_after)))).collect();
    Value::Object(map)
});
pub static CHECK_RETRY_MAX_DELAY_MS: Setting = plain("CHECK_RETRY_MAX_DELAY_MS", Some("250"), "a failure with a transient reason is re-tried once, after a pause between half this and this, within the check's timeout; `0` turns the re-try off", |c| ms(c.decisions.retry_max_delay));

pub static GATE_RETRY_AFTER_S: Setting = plain(
    "GATE_RETRY_AFTER_S",
    Some("5"),
    "the `Retry-After` a non-passing gate verdict carries",
    |c| json!(c.gate_retry_after.as_secs()),
);
pub static OPENAI_API_KEY: Setting = integration(
    "OPENAI_API_KEY",
    None,
    "the `openai` check's API key; set, the check runs",
    Some(Mask::Token(OPENAI_KEY_PREFIXES)),
);
pub static OPENAI_BASE_URL: Setting = integration(
    "OPENAI_BASE_URL",
    Some("https://api.openai.com/v1"),
    "the OpenAI API the `openai` check calls",
    None,
);
pub static STRIPE_SECRET_KEY: Setting = integration(
    "STRIPE_SECRET_KEY",
    None,
    "the `stripe` check's API key; set, the check runs",
    Some(Mask::Token(checks::stripe::KEY_PREFIXES)),
);
pub static STRIPE_WEBHOOK_SECRET: Setting = integration(
    "STRIPE_WEBHOOK_SECRET",
    None,
    "the Stripe webhook signing secret, shown masked",
    Some(Mask::Token(checks::stripe::KEY_PREFIXES)),
);
pub static STRIPE_API_BASE: Setting = integration(
    "STRIPE_API_BASE",
    Some("https://api.stripe.com"),
    "the Stripe API the `stripe` check calls (a gateway's path prefix included)",
    None,
);
pub static CLOUDFLARE_API_TOKEN: Setting = integration("CLOUDFLARE_API_TOKEN", None, "the `cloudflare` check's API token (also used for the tunnel's status via the API); set, the check runs", Some(Mask::Token(&[])));
pub static CLOUDFLARE_ACCOUNT_ID: Setting = integration(
    "CLOUDFLARE_ACCOUNT_ID",
    None,
    "the Cloudflare account the `cloudflare` and `tunnel` checks ask about",
    None,
);
pub static CLOUDFLARE_API_BASE: Setting = integration(
    "CLOUDFLARE_API_BASE",
    Some("https://api.cloudflare.com/client/v4"),
    "the Cloudflare API the `cloudflare` and `tunnel` checks call",
    None,
);
pub static CLOUDFLARED_METRICS_URL: Setting = integration(
    "CLOUDFLARED_METRICS_URL",
    None,
    "the `tunnel` check: cloudflared's metrics server",
    None,
);
pub static BASE_URL: Setting = integration(
    "BASE_URL",
    None,
    "the `tunnel` check: the public URL served through the tunnel",
    None,
);
pub static CLOUDFLARE_TUNNEL_ID: Setting = integration("CLOUDFLARE_TUNNEL_ID", None, "the `tunnel` check: the tunnel's id, for its status from the Cloudflare API (needs `CLOUDFLARE_ACCOUNT_ID` and `CLOUDFLARE_API_TOKEN`)", None);
pub static SHUTDOWN_READY_DELAY_MS: Setting = plain(
    "SHUTDOWN_READY_DELAY_MS",
    Some("0"),
    "after SIGTERM, keep serving with readiness at 503 this long before closing the listener",
    |c| ms(c.shutdown_ready_delay),
);
pub static SHUTDOWN_DRAIN_MS: Setting = plain(
    "SHUTDOWN_DRAIN_MS",
    Some("10000"),
    "time in-flight requests get to finish after the listener closes",
    |c| ms(c.shutdown_drain),
);
pub static HEADER_READ_TIMEOUT_MS: Setting = plain("HEADER_READ_TIMEOUT_MS", Some("10000"), "once a request's first byte arrives, its whole head must arrive within this long, or the connection is closed", |c| ms(c.header_read_timeout));
pub static IDLE_TIMEOUT_MS: Setting = plain("IDLE_TIMEOUT_MS", Some("75000"), "a connection with no request in flight and no bytes moving is closed after this long (above the 60 s idle timeout of common load balancers, so they close first)", |c| ms(c.idle_timeout));
pub static MAX_CONNECTIONS: Setting = plain("MAX_CONNECTIONS", Some("4096"), "connections served at once; more wait in the listen backlog. The soft open-file limit is raised to the hard one at start-up; if that still cannot hold this many, the cap is lowered with a warning", |c| json!(c.max_connections));
// Issue 15: the metrics listener and Flagger's confirm hooks.
pub static METRICS_ADDR: Setting = plain("METRICS_ADDR", None, "`host:port` of a second listener serving `GET /metrics` without a token (for a Prometheus inside the cluster); unset, `/metrics` is served only on the main port, behind `ADMIN_TOKEN`", |c| json!(c.metrics_addr.map(|a| a.to_string())));
pub static FLAGGER_CONFIRM_DEADLINE_S: Setting = plain("FLAGGER_CONFIRM_DEADLINE_S", Some("1800"), "a Flagger `confirm-*` hook held back this long (the gate not passing since its first call) turns `POST /ops/gate/flagger/rollback` to 200, so the canary is rolled back instead of waiting for ever", |c| json!(c.flagger_confirm_deadline.as_secs()));

// --- Status page and notifications (issue 15 part B): declared together, read in
// `config/notify.rs`.
pub static STATUS_PAGE_PUBLIC: Setting = plain("STATUS_PAGE_PUBLIC", Some("true"), "`GET /status` without a token shows component states and incident summaries (never hints, hosts or ids); `false`: only a sign-in form", |c| json!(c.notify.status_public));
pub static STATUS_PAGE_REFRESH_S: Setting = plain(
    "STATUS_PAGE_REFRESH_S",
    Some("30"),
    "the status page reloads itself this often (meta refresh; no JavaScript)",
    |c| json!(c.notify.status_refresh.as_secs()),
);
pub static STATUS_PAGE_URL: Setting = plain("STATUS_PAGE_URL", None, "the status page's address as people reach it (e.g. `https://ops.example.com/status`), linked from every notification", |c| json!(c.notify.status_url));
pub static NOTIFY_SLACK_WEBHOOK_URL: Setting = Setting {
    secret: Some(Mask::Token(&[])),
    ..plain("NOTIFY_SLACK_WEBHOOK_URL", None, "a Slack incoming webhook: incidents opened, escalated and resolved, deploys finished; a secret, shown masked", |c| json!({ "configured": c.notify.slack.is_some() }))
};
pub static NOTIFY_WEBHOOK_URL: Setting = Setting {
    secret: Some(Mask::Token(&[])),
    ..plain("NOTIFY_WEBHOOK_URL", None, "a generic JSON webhook for the same events, signed with `NOTIFY_WEBHOOK_SECRET`; a secret, shown masked", |c| json!({ "configured": c.notify.webhook.is_some() }))
};
pub static NOTIFY_WEBHOOK_SECRET: Setting = Setting {
    secret: Some(Mask::Token(&[])),
    ..plain("NOTIFY_WEBHOOK_SECRET", None, "the HMAC-SHA256 key of `X-Opsdoctor-Signature` (at least 16 characters; required with `NOTIFY_WEBHOOK_URL`)", |c| json!({ "configured": c.notify.webhook.is_some() }))
};
pub static NOTIFY_PAGERDUTY_ROUTING_KEY: Setting = Setting {
    secret: Some(Mask::Token(&[])),
    ..plain("NOTIFY_PAGERDUTY_ROUTING_KEY", None, "a PagerDuty Events API v2 integration key: incidents trigger and resolve alerts (`dedup_key` = the fingerprint), deploys send change events; a secret, shown masked", |c| json!({ "configured": c.notify.pagerduty.is_some() }))
};
pub static NOTIFY_PAGERDUTY_URL: Setting = plain(
    "NOTIFY_PAGERDUTY_URL",
    Some("https://events.pagerduty.com"),
    "the PagerDuty Events API (`/v2/enqueue`, `/v2/change/enqueue` below it)",
    |c| json!(c.notify.pagerduty_url),
);
pub static NOTIFY_DIR: Setting = plain(
    "NOTIFY_DIR",
    Some("data/notify"),
    "where undelivered notifications are kept (an fsynced outbox file), so a restart delivers them",
    |c| json!(c.notify.dir.display().to_string()),
);
pub static NOTIFY_POLL_MS: Setting = plain(
    "NOTIFY_POLL_MS",
    Some("2000"),
    "how often new incident transitions and finished deploys are looked for",
    |c| ms(c.notify.poll),
);
pub static NOTIFY_MIN_INTERVAL_MS: Setting = plain(
    "NOTIFY_MIN_INTERVAL_MS",
    Some("1000"),
    "at most one request per target per interval (Slack allows about one a second)",
    |c| ms(c.notify.min_interval),
);
pub static NOTIFY_RETRY_BASE_MS: Setting = plain(
    "NOTIFY_RETRY_BASE_MS",
    Some("1000"),
    "first wait after a 5xx or a network error, doubled each time (a 429 waits its `Retry-After`)",
    |c| ms(c.notify.retry_base),
);
pub static NOTIFY_RETRY_MAX_MS: Setting = plain(
    "NOTIFY_RETRY_MAX_MS",
    Some("300000"),
    "longest wait between two attempts",
    |c| ms(c.notify.retry_max),
);
pub static NOTIFY_GIVE_UP_AFTER_MS: Setting = plain("NOTIFY_GIVE_UP_AFTER_MS", Some("86400000"), "a notification still undelivered this long after it was queued is dropped, with an error in the log", |c| ms(c.notify.give_up_after));
pub static NOTIFY_TIMEOUT_MS: Setting = plain(
    "NOTIFY_TIMEOUT_MS",
    Some("10000"),
    "one delivery attempt's timeout",
    |c| ms(c.notify.timeout),
);
// --- end of status page and notifications

/// Every setting, in the order the README lists them.
pub static SETTINGS: &[&Setting] = &[
    &DATABASE_URL,
    &HOST,
    &PORT,
    &ADMIN_TOKEN,
    &LOG_FORMAT,
    &AUTO_MIGRATE,
    &MAX_BODY_BYTES,
    &REQUEST_TIMEOUT_MS,
    &DB_CONNECT_TIMEOUT_MS,
    &DB_ACQUIRE_TIMEOUT_MS,
    &DB_MAX_CONNECTIONS,
    &READY_CACHE_TTL_MS,
    &READY_EXTERNAL_CACHE_TTL_MS,
    &REQUIRED_CHECKS,
    &CHECK_TIMEOUT_MS,
    &CHECK_TIMEOUT_MS_NAME,
    &DOCTOR_INTERVAL_MS,
    &DOCTOR_MIN_INTERVAL_MS,
    &DOCTOR_ESCALATE_AFTER_RUNS,
    &CHECK_FAIL_AFTER,
    &CHECK_FAIL_AFTER_PERMANENT,
    &CHECK_RECOVER_AFTER,
    &CHECK_THRESHOLDS_NAME,
    &CHECK_RETRY_MAX_DELAY_MS,
    &GATE_RETRY_AFTER_S,
    &OPENAI_API_KEY,
    &OPENAI_BASE_URL,
    &STRIPE_SECRET_KEY,
    &STRIPE_WEBHOOK_SECRET,
    &STRIPE_API_BASE,
    &CLOUDFLARE_API_TOKEN,
    &CLOUDFLARE_ACCOUNT_ID,
    &CLOUDFLARE_API_BASE,
    &CLOUDFLARED_METRICS_URL,
    &BASE_URL,
    &CLOUDFLARE_TUNNEL_ID,
    &SHUTDOWN_READY_DELAY_MS,
    &SHUTDOWN_DRAIN_MS,
    &HEADER_READ_TIMEOUT_MS,
    &IDLE_TIMEOUT_MS,
    &MAX_CONNECTIONS,
    &METRICS_ADDR,
    &FLAGGER_CONFIRM_DEADLINE_S,
    // Status page and notifications (issue 15 part B).
    &STATUS_PAGE_PUBLIC,
    &STATUS_PAGE_REFRESH_S,
    &STATUS_PAGE_URL,
    &NOTIFY_SLACK_WEBHOOK_URL,
    &NOTIFY_WEBHOOK_URL,
    &NOTIFY_WEBHOOK_SECRET,
    &NOTIFY_PAGERDUTY_ROUTING_KEY,
    &NOTIFY_PAGERDUTY_URL,
    &NOTIFY_DIR,
    &NOTIFY_POLL_MS,
    &NOTIFY_MIN_INTERVAL_MS,
    &NOTIFY_RETRY_BASE_MS,
    &NOTIFY_RETRY_MAX_MS,
    &NOTIFY_GIVE_UP_AFTER_MS,
    &NOTIFY_TIMEOUT_MS,
    // The database circuit breaker and the spool of queued writes (config/resilience.rs).
    &super::resilience::SPOOL_DIR,
    &super::resilience::SPOOL_MAX_BYTES,
    &super::resilience::DB_BREAKER_FAILURES,
    &super::resilience::DB_BREAKER_TIMEOUT_MS,
    &super::resilience::DB_BREAKER_MIN_BACKOFF_MS,
    &super::resilience::DB_BREAKER_MAX_BACKOFF_MS,
    &super::resilience::DB_PROBE_INTERVAL_MS,
    &super::resilience::DB_OUTAGE_EXIT_AFTER_MS,
    // Recovery: its rate limit and the monitor's thresholds (config/recovery.rs).
    &super::recovery::RECOVERY_MIN_INTERVAL_MS,
    &super::recovery::RECOVERY_AFTER_RUNS,
    &super::recovery::RECOVERY_ESCALATE_AFTER,
    // Rotated JSON log files (config/log_files.rs).
    &super::log_files::LOG_DIR,
    &super::log_files::LOG_MAX_FILE_BYTES,
    &super::log_files::LOG_KEEP_DAYS,
    // The tunnel restart coordinator (config/tunnel.rs).
    &super::tunnel::TUNNEL_RESTART_COMMAND,
    &super::tunnel::TUNNEL_RESTART_TIMEOUT,
    &super::tunnel::TUNNEL_RESTART_WAIT,
    &super::tunnel::TUNNEL_RESTART_MIN_INTERVAL,
    &super::tunnel::TUNNEL_RESTARTS_PER_HOUR,
    &super::tunnel::TUNNEL_RESTART_DIR,
];

impl Setting {
    /// Its README row: `` | `NAME` / `--flag` | `default` | meaning | ``.
    pub fn markdown_row(&self) -> String {
        let name = match self.flag {
            Some(flag) => format!("`{}` / `{flag}`", self.name),
            None => format!("`{}`", self.name),
        };
        let default = self
            .default
            .map_or_else(|| "unset".to_owned(), |d| format!("`{d}`"));
        format!("| {name} | {default} | {} |", self.doc)
    }

    /// Its line in `--help`: name, default and meaning, without Markdown.
    fn help_line(&self) -> String {
        let default = self
            .default
            .map_or_else(|| "unset".to_owned(), |d| format!("default {d}"));
        format!(
            "  {:<13} {} ({default})",
            self.name,
            markdown_to_text(self.doc)
        )
    }
}

/// The README's configuration table, header included, one row per setting.
pub fn markdown_table() -> String {
    let mut table = String::from("| Variable | Default | Meaning |\n| --- | --- | --- |\n");
    for setting in SETTINGS {
        table.push_str(&setting.markdown_row());
        table.push('\n');
    }
    table
}

/// The settings `opsdoctor --help` shows after its options.
pub fn help() -> String {
    let mut help = String::from("Common settings (environment):\n");
    for setting in [&DATABASE_URL, &HOST, &PORT, &ADMIN_TOKEN, &LOG_FORMAT] {
        help.push_str(&setting.help_line());
        help.push('\n');
    }
    help.push_str("See the README for every setting.");
    help
}

/// Drops backticks, and keeps a link's text without its target.
fn markdown_to_text(markdown: &str) -> String {
    let mut text = String::with_capacity(markdown.len());
    let mut rest = markdown;
    while let Some(open) = rest.find('[') {
        let Some((label, after)) = rest[open + 1..].split_once("](") else {
            break;
        };
        let Some((_, after)) = after.split_once(')') else {
            break;
        };
        text.push_str(&rest[..open]);
        text.push_str(label);
        rest = after;
    }
    text.push_str(rest);
    text.replace('`', "")
}
