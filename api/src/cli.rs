//! The `opsdoctor` command line: `serve` (the default), `migrate`, `config`.

use std::net::IpAddr;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use migration::{Migrator, MigratorTrait};

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
#[command(name = "opsdoctor", version, about, long_about = None, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

const AFTER_HELP: &str = "\
Common settings (environment):
  DATABASE_URL   sqlite://data/opsdoctor.db?mode=rwc (default) or postgres://user:pass@host:5432/db
  HOST, PORT     where to listen (default 127.0.0.1:8080; PORT=0 picks a free port)
  ADMIN_TOKEN    bearer token for the /ops/* endpoints (they refuse every call without it)
  LOG_FORMAT     text (default) or json
See the README for every setting.";

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
    /// Print the resolved configuration with every secret masked.
    Config {
        /// Print JSON instead of `NAME=value` lines.
        #[arg(long)]
        json: bool,
    },
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
    let cli = Cli::parse();
    let mut config = match Config::from_env() {
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
            let _guard = telemetry::init(config.log_format);
            migrate(&config, action).await
        }
        Some(Command::Serve(args)) => serve(&mut config, &args).await,
        None => serve(&mut config, &cli.serve).await,
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

async fn serve(config: &mut Config, args: &ServeArgs) -> ExitCode {
    if let Some(host) = args.host {
        config.host = host;
    }
    if let Some(port) = args.port {
        config.port = port;
    }
    let _guard = telemetry::init(config.log_format);
    tracing::info!(version = env!("CARGO_PKG_VERSION"), database = %config.database_location(), "opsdoctor starting");
    let migrate = config.auto_migrate && !args.no_migrate;
    let app = match Application::build(config.clone(), migrate).await {
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
    let conn = match db::connect(config).await {
        Ok(conn) => conn,
        Err(err) => {
            eprintln!(
                "opsdoctor: cannot open the database {}: {err}",
                config.database_location()
            );
            return ExitCode::FAILURE;
        }
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
