//! The `opsdoctor` command line: `serve` (the default), `migrate`, `config`, the clients of a
//! running service (`gate`, `deploys`, `healthcheck`), and the commands that work beside it on
//! the same database (`deploy`, `tunnel`).

use std::net::IpAddr;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use migration::{Migrator, MigratorTrait};

use crate::config::settings::{self, Setting};
use crate::config::Config;
use crate::server::{shutdown_signal, Application};
use crate::{db, telemetry};

/// opsdoctor: health, incident and deploy-gate authority for a production web stack.
///
/// Configuration comes from environment variables (and a `.env` file in the working directory);
/// run `opsdoctor config` to see what is in effect, with every secret masked. With no command,
/// opsdoctor serves: `cargo run --release` starts it on 127.0.0.1:8080 with a SQLite database
/// under data/.
#[derive(Debug, Parser)]
#[command(name = "opsdoctor", version, about, long_about = None, after_help = settings::help())]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP service (the default when no command is given).
    Serve(ServeArgs),
    /// Apply, revert or inspect database migrations.
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
    },
    /// Run the check suite now, without the server, and print the results.
    ///
    /// Exit status: 0 when every required check passes, 1 when a required check fails,
    /// 2 when only optional checks fail.
    Doctor {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Run only these checks (comma-separated: database,tunnel,openai,stripe,cloudflare).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
    /// Ask a running opsdoctor whether a release may go live, waiting until it may or the
    /// timeout passes. Exit status: 0 pass, 1 fail, 2 partial, 3 could not evaluate. The admin
    /// token is read from OPSDOCTOR_TOKEN (or ADMIN_TOKEN), never from an argument.
    Gate(GateCommand),
    /// Record deploys in a running opsdoctor (start, finish, list), for deploy scripts.
    Deploys {
        /// The service's base URL.
        #[arg(long, env = "OPSDOCTOR_URL", default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "text", global = true)]
        format: crate::gate::cli::Format,
        #[command(subcommand)]
        action: crate::deploys::cli::DeploysAction,
    },
    /// Ask the opsdoctor running on this host whether it is alive (or ready): exit 0 or 1.
    /// For a container's HEALTHCHECK; reads PORT when --url is not given.
    Healthcheck {
        /// The service's base URL (default http://127.0.0.1:$PORT).
        #[arg(long)]
        url: Option<String>,
        /// Which probe to ask.
        #[arg(long, value_enum, default_value = "live")]
        probe: crate::healthcheck::Probe,
        /// Give up after this long.
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Carry a release live from a plan file (blue-green, verified, rolled back on failure).
    /// Exit status: 0 success, 1 failure (rolled back or nothing changed), 2 partial, 3 could not
    /// start. `deploy lock status|release`, `deploy report <id>`, `deploy why <id>` for people.
    Deploy(crate::orchestrator::cli::DeployCommand),
    /// Restart the tunnel through the restart coordinator shared with the service, deploys and
    /// other hosts, or show its state. Exit status: `tunnel restart --help`, `tunnel status --help`.
    Tunnel {
        #[command(subcommand)]
        action: crate::tunnel_restart::cli::TunnelAction,
    },
    /// Print the resolved configuration with every secret masked.
    Config {
        /// Print JSON instead of `NAME=value` lines.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
struct GateCommand {
    /// The service's base URL.
    #[arg(long, env = "OPSDOCTOR_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The environment being deployed to (e.g. prod).
    #[arg(long)]
    env: String,
    /// The release: version or git sha.
    #[arg(long)]
    release: String,
    /// Required checks (comma-separated); default: the service's REQUIRED_CHECKS.
    #[arg(long, value_delimiter = ',')]
    require: Vec<String>,
    /// Reuse check results younger than this.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    max_age: std::time::Duration,
    /// Give up after this long.
    #[arg(long, default_value = "300s", value_parser = humantime::parse_duration)]
    timeout: std::time::Duration,
    /// Time between attempts (longer when the service says Retry-After).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    interval: std::time::Duration,
    /// During this time a failure that waiting cannot fix does not end the wait.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    start_period: std::time::Duration,
    /// Passing verdicts needed in a row.
    #[arg(long, default_value_t = 1)]
    consecutive_successes: u32,
    /// Accept a partial verdict (required checks pass, optional ones do not).
    #[arg(long)]
    allow_partial: bool,
    /// Output format of the final verdict on stdout.
    #[arg(long, value_enum, default_value = "text")]
    format: crate::gate::cli::Format,
}

#[derive(Debug, Args, Default)]
struct ServeArgs {
    /// Address to listen on (overrides HOST).
    #[arg(long)]
    host: Option<IpAddr>,
    /// Port to listen on; 0 picks a free one (overrides PORT).
    #[arg(long)]
    port: Option<u16>,
    /// Do not apply pending migrations at start; readiness reports them until applied.
    #[arg(long)]
    no_migrate: bool,
}

impl ServeArgs {
    /// The flags as the settings they override, fed to the lookup before the config is built.
    fn overrides(&self) -> Vec<(&'static Setting, String)> {
        let mut overrides = Vec::new();
        if let Some(host) = self.host {
            overrides.push((&settings::HOST, host.to_string()));
        }
        if let Some(port) = self.port {
            overrides.push((&settings::PORT, port.to_string()));
        }
        if self.no_migrate {
            overrides.push((&settings::AUTO_MIGRATE, "false".to_owned()));
        }
        overrides
    }
}

#[derive(Debug, Subcommand)]
enum MigrateAction {
    /// Apply all pending migrations.
    Up,
    /// Revert the most recent migrations.
    Down {
        /// How many migrations to revert.
        #[arg(long, default_value_t = 1)]
        steps: u32,
    },
    /// List every migration and whether it is applied.
    Status,
    /// Drop every table and re-apply all migrations. Destroys all data.
    Fresh {
        /// Confirm that all data in the database may be destroyed.
        #[arg(long)]
        yes: bool,
    },
}

/// Parses the command line, runs the command, and says how the process should exit.
pub async fn run() -> ExitCode {
    // The one place `.env` is loaded: before parsing, so every command and every `env =` default
    // of an argument sees it. Variables already set win over the file.
    let _ = dotenvy::dotenv();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            // `opsdoctor gate` promises 3 for bad arguments; other commands use clap's 2.
            let gate = std::env::args()
                .nth(1)
                .is_some_and(|a| matches!(a.as_str(), "gate" | "deploys" | "deploy" | "tunnel"));
            return match (err.use_stderr(), gate) {
                (false, _) => ExitCode::SUCCESS,
                (true, true) => ExitCode::from(crate::remote::EXIT_UNUSABLE),
                (true, false) => ExitCode::from(2),
            };
        }
    };
    // Client commands talk to a running service; its server configuration does not apply.
    match cli.command {
        Some(Command::Gate(g)) => {
            return crate::gate::cli::run(crate::gate::cli::GateArgs {
                url: g.url,
                env: g.env,
                release: g.release,
                require: g.require,
                max_age: g.max_age,
                timeout: g.timeout,
                interval: g.interval,
                start_period: g.start_period,
                consecutive_successes: g.consecutive_successes,
                allow_partial: g.allow_partial,
                format: g.format,
            })
            .await;
        }
        Some(Command::Deploys {
            url,
            format,
            action,
        }) => {
            return crate::deploys::cli::run(&url, format, action).await;
        }
        Some(Command::Healthcheck {
            url,
            probe,
            timeout,
        }) => {
            return crate::healthcheck::run(url, probe, timeout).await;
        }
        Some(Command::Deploy(d)) => return crate::orchestrator::cli::run(d).await,
        Some(Command::Tunnel { action }) => return crate::tunnel_restart::cli::run(action).await,
        _ => {}
    }
    // Flags of `serve` (also accepted with no command) override their settings; other commands
    // read the settings alone.
    let overrides = match &cli.command {
        Some(Command::Serve(args)) => args.overrides(),
        None => cli.serve.overrides(),
        Some(_) => Vec::new(),
    };
    let config = match Config::from_env(&overrides) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("opsdoctor: {err}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Some(Command::Config { json }) => print_config(&config, json),
        Some(Command::Doctor { json, only }) => crate::doctor::cli::run(&config, json, &only).await,
        Some(Command::Migrate { action }) => {
            let _guard = telemetry::init(config.log_format, &config.secrets(), None);
            migrate(&config, action).await
        }
        Some(Command::Serve(_)) | None => serve(&config).await,
        Some(
            Command::Gate(_)
            | Command::Deploys { .. }
            | Command::Healthcheck { .. }
            | Command::Deploy(_)
            | Command::Tunnel { .. },
        ) => ExitCode::SUCCESS,
    }
}

fn print_config(config: &Config, json: bool) -> ExitCode {
    let masked = config.masked();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&masked).unwrap_or_default()
        );
    } else if let Some(map) = masked.as_object() {
        for (key, value) in map {
            let shown = match value {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            println!("{key}={shown}");
        }
    }
    ExitCode::SUCCESS
}

async fn serve(config: &Config) -> ExitCode {
    let _guard = telemetry::init(
        config.log_format,
        &config.secrets(),
        Some(&config.log_files),
    );
    tracing::info!(version = env!("CARGO_PKG_VERSION"), database = %config.database_location(), "opsdoctor starting");
    let app = match Application::build(config.clone(), config.auto_migrate).await {
        Ok(app) => app,
        Err(err) => {
            tracing::error!(error = %err, "start-up failed");
            eprintln!("opsdoctor: {err}");
            return ExitCode::FAILURE;
        }
    };
    match app.run_until_stopped(shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "server failed");
            ExitCode::FAILURE
        }
    }
}

async fn migrate(config: &Config, action: MigrateAction) -> ExitCode {
    let Some(conn) = db::connect_for_command(config).await else {
        return ExitCode::FAILURE;
    };
    let result = match action {
        MigrateAction::Up => db::migrate_up(&conn).await.map(|applied| {
            if applied.is_empty() {
                println!("nothing to apply: schema is up to date");
            }
            for name in applied {
                println!("applied {name}");
            }
        }),
        MigrateAction::Down { steps } => Migrator::down(&conn, Some(steps))
            .await
            .map(|()| println!("reverted {steps} migration(s)")),
        MigrateAction::Status => {
            Migrator::get_migration_with_status(&conn)
                .await
                .map(|migrations| {
                    for m in migrations {
                        println!("{:<8} {}", m.status().to_string().to_lowercase(), m.name());
                    }
                })
        }
        MigrateAction::Fresh { yes: false } => {
            eprintln!(
                "opsdoctor: `migrate fresh` drops every table in {}; add --yes to confirm",
                config.database_location()
            );
            return ExitCode::from(2);
        }
        MigrateAction::Fresh { yes: true } => Migrator::fresh(&conn)
            .await
            .map(|()| println!("dropped all tables and re-applied every migration")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("opsdoctor: migration failed: {err}");
            ExitCode::FAILURE
        }
    }
}
