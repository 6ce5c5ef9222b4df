//! `opsdoctor tunnel restart` and `opsdoctor tunnel status`: the coordinator from a shell, for
//! people and for an external monitor script, which then cooperates with the service's own
//! restarts (and every other host's) instead of duelling with them.

use std::process::ExitCode;
use std::time::Duration;

use chrono::SecondsFormat;
use clap::Subcommand;

use super::types::{
    CrossHost, Recorded, RestartOutcome, RestartRefused, RestartResult, RestartStatus,
};
use crate::config::Config;
use crate::state::AppState;
use crate::{db, telemetry};

/// Restarted, and the edge connections are back (`status`: the tunnel holds edge connections).
pub const EXIT_OK: u8 = 0;
/// The restart failed, or no edge connection came back in time (`status`: none now).
pub const EXIT_FAILED: u8 = 1;
/// Restarted, but no tunnel check is configured to see the connections.
pub const EXIT_UNVERIFIED: u8 = 2;
/// Refused (another restart holds the lock, rate-limited, no command configured), or could not
/// start (bad configuration or arguments).
pub const EXIT_REFUSED: u8 = 3;

#[derive(Debug, Subcommand)]
pub enum TunnelAction {
    /// Restart cloudflared with TUNNEL_RESTART_COMMAND, under the restart lock and the rate limit
    /// shared with the service, deploys and every other host; returns once the tunnel check sees
    /// edge connections again or TUNNEL_RESTART_WAIT has passed.
    ///
    /// Exit status: 0 restarted and the edge connections are back; 1 the command failed, or no
    /// edge connection came back in time; 2 restarted, but no tunnel check is configured to see
    /// the connections; 3 refused without running anything (another restart holds the lock —
    /// it is named —, rate-limited — the next allowed time is given —, or no command configured),
    /// or could not start.
    Restart {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Who asks, as recorded on the incident (a monitor script: `--trigger monitor`).
        #[arg(long, default_value = "cli")]
        trigger: String,
    },
    /// Show who holds the restart lock, the restarts of the last day, when the next is allowed,
    /// and the edge connections now.
    ///
    /// Exit status: 0 the tunnel holds edge connections; 1 it does not (or no tunnel check is
    /// configured); 3 could not start. A monitor can run
    /// `opsdoctor tunnel status || opsdoctor tunnel restart --trigger monitor`.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `opsdoctor tunnel …`.
pub async fn run(action: TunnelAction) -> ExitCode {
    let Some(app) = app().await else {
        return ExitCode::from(EXIT_REFUSED);
    };
    let restarter = app.tunnel_restarts.clone();
    match action {
        TunnelAction::Restart { json, trigger } => {
            let answer = restarter.restart(&trigger).await;
            ExitCode::from(print_restart(&answer, json))
        }
        TunnelAction::Status { json } => {
            let status = restarter.status().await;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&status).unwrap_or_default()
                );
            } else {
                print!("{}", status_text(&status));
            }
            ExitCode::from(if super::edge::connected(&status.tunnel) {
                EXIT_OK
            } else {
                EXIT_FAILED
            })
        }
    }
}

async fn app() -> Option<AppState> {
    let config = Config::from_env(&[])
        .map_err(|e| eprintln!("opsdoctor tunnel: {e}"))
        .ok()?;
    let _log = telemetry::init(config.log_format, &config.secrets(), None);
    let conn = db::connect_for_command(&config).await?;
    // The tables may be missing on a first run; the restart works without them all the same.
    let answers = tokio::time::timeout(Duration::from_secs(2), conn.ping()).await;
    if config.auto_migrate && answers.is_ok_and(|a| a.is_ok()) {
        if let Err(e) = db::migrate_up(&conn).await {
            eprintln!("opsdoctor tunnel: cannot migrate opsdoctor's tables: {e}");
        }
    }
    Some(AppState::new(config, conn))
}

/// Prints what the restart did (stdout) or why it was refused (stderr); gives the exit status.
fn print_restart(answer: &Result<RestartOutcome, RestartRefused>, json: bool) -> u8 {
    match answer {
        Ok(outcome) if json => {
            println!(
                "{}",
                serde_json::to_string_pretty(outcome).unwrap_or_default()
            );
        }
        Ok(outcome) => print!("{}", outcome_text(outcome)),
        Err(refused) if json => {
            let mut value = serde_json::to_value(refused).unwrap_or_default();
            if let Some(map) = value.as_object_mut() {
                map.insert("message".into(), refused.to_string().into());
            }
            println!(
                "{}",
                serde_json::to_string_pretty(&value).unwrap_or_default()
            );
        }
        Err(refused) => eprintln!("opsdoctor tunnel restart: refused: {refused}"),
    }
    match answer {
        Ok(o) => match o.result {
            RestartResult::Connected => EXIT_OK,
            RestartResult::Unverified => EXIT_UNVERIFIED,
            RestartResult::StillDown | RestartResult::CommandFailed => EXIT_FAILED,
        },
        Err(_) => EXIT_REFUSED,
    }
}

fn outcome_text(o: &RestartOutcome) -> String {
    let edge = o
        .edge_connections
        .map_or_else(String::new, |n| format!("{n} edge connection(s); "));
    let mut out = format!(
        "tunnel restart {} by {}: {}\n",
        o.id,
        o.holder.describe(),
        o.result.as_str()
    );
    out.push_str(&format!("  command: {}\n", command_line(o)));
    out.push_str(&format!(
        "  tunnel:  {edge}{} (after waiting {} ms)\n",
        o.tunnel.message, o.wait_ms
    ));
    let recorded = match &o.recorded {
        Recorded::Stored {
            incident_id,
            opened: true,
        } => format!("on incident {incident_id} (opened by this restart)"),
        Recorded::Stored { incident_id, .. } => format!("on incident {incident_id}"),
        Recorded::Spooled => {
            "spooled: the database is unavailable; it is stored when the spool is replayed"
                .to_owned()
        }
        Recorded::Failed { error } => {
            format!("NOT on the incident ({error}); in this host's record only")
        }
    };
    out.push_str(&format!("  recorded: {recorded}\n"));
    let lock = match &o.cross_host_lock {
        CrossHost::Held => "this host's and the database's (every host's)".to_owned(),
        CrossHost::NotNeeded => "this host's (SQLite: one host)".to_owned(),
        CrossHost::Unavailable { error } => {
            format!("this host's only: the database's could not be taken ({error})")
        }
    };
    out.push_str(&format!("  lock:    {lock}\n"));
    out
}

fn command_line(o: &RestartOutcome) -> String {
    let c = &o.command;
    if c.ok() {
        return format!("`{}` exited 0 in {} ms", c.argv.join(" "), c.duration_ms);
    }
    c.failure()
}

fn status_text(s: &RestartStatus) -> String {
    let time = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    let mut out = String::new();
    let configured = if s.configured {
        "configured"
    } else {
        "not configured (set TUNNEL_RESTART_COMMAND)"
    };
    out.push_str(&format!("restart command: {configured}\n"));
    let lock = s.holder.as_ref().map_or_else(
        || "free".to_owned(),
        |h| format!("held by {}", h.describe()),
    );
    out.push_str(&format!("lock:            {lock}\n"));
    let edge = s
        .edge_connections
        .map_or_else(String::new, |n| format!(", {n} edge connection(s)"));
    out.push_str(&format!(
        "tunnel:          {}{edge}: {}\n",
        s.tunnel.status.as_str(),
        s.tunnel.message
    ));
    let next = s
        .next_allowed
        .map_or_else(|| "now".to_owned(), |t| format!("at {}", time(t)));
    out.push_str(&format!("next restart:    allowed {next}\n"));
    let record = if s.history == "shared" {
        "every host's"
    } else {
        "this host's only: the database does not answer"
    };
    out.push_str(&format!(
        "rate limit:      at least {} apart, at most {} an hour (record: {record})\n",
        humantime::format_duration(Duration::from_secs(s.min_interval_s)),
        s.per_hour
    ));
    if s.recent.is_empty() {
        out.push_str("recent restarts: none in the last 24 hours\n");
    } else {
        out.push_str("recent restarts (last 24 hours, newest first):\n");
    }
    for r in &s.recent {
        out.push_str(&format!(
            "  {}  {:<9} pid {} on {}  {}\n",
            time(r.at),
            r.trigger,
            r.pid,
            r.host,
            r.result.map_or("unfinished", RestartResult::as_str)
        ));
    }
    out
}
