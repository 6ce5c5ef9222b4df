//! The `opsdoctor deploy` command line: a deploy, `--dry-run`, and the commands for people
//! (`lock status|release`, `report <id>`, `why <id>`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::EXIT_UNUSABLE;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DeployCommand {
    #[command(subcommand)]
    pub action: Option<DeployAction>,
    #[command(flatten)]
    pub deploy: DeployArgs,
}

#[derive(Debug, Args, Clone)]
pub struct DeployArgs {
    /// The plan file (TOML).
    #[arg(long)]
    pub plan: Option<PathBuf>,
    /// The environment of the plan to deploy to.
    #[arg(long)]
    pub env: Option<String>,
    /// The release: a version or a git sha.
    #[arg(long)]
    pub release: Option<String>,
    /// Print the states and commands that would run, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Wait this long for a deploy holding the lock (default: exit 3 at once, naming it).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub lock_wait: Option<Duration>,
}

#[derive(Debug, Subcommand)]
pub enum DeployAction {
    /// Who holds an environment's deploy lock, or release a dead holder's lock.
    Lock {
        #[command(subcommand)]
        action: LockAction,
    },
    /// Print a stored deploy report as text.
    Report {
        /// The deploy's id.
        id: String,
        /// Print the stored JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Why did this deploy fail? A few lines from its record, report, verdicts and incidents.
    Why {
        /// The deploy's id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum LockAction {
    /// Show the holder of the lock.
    Status(LockArgs),
    /// Release a lock whose holder is dead (or, with --force, ask a live holder to stop).
    Release {
        #[command(flatten)]
        args: LockArgs,
        /// Send SIGTERM to a live holder on this host; it rolls back and releases the lock.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Args)]
pub struct LockArgs {
    #[arg(long)]
    pub plan: PathBuf,
    #[arg(long)]
    pub env: String,
}

/// Runs `opsdoctor deploy …`.
pub async fn run(cmd: DeployCommand) -> ExitCode {
    match cmd.action {
        Some(DeployAction::Lock { action }) => super::people::lock(action).await,
        Some(DeployAction::Report { id, json }) => super::people::report(&id, json).await,
        Some(DeployAction::Why { id }) => super::people::why(&id).await,
        None => {
            let a = cmd.deploy;
            let (Some(plan), Some(env), Some(release)) = (a.plan, a.env, a.release) else {
                eprintln!("opsdoctor deploy: --plan, --env and --release are required");
                return ExitCode::from(EXIT_UNUSABLE);
            };
            if let Err(problem) = valid_release(&release) {
                eprintln!("opsdoctor deploy: --release: {problem}");
                return ExitCode::from(EXIT_UNUSABLE);
            }
            ExitCode::from(super::run::deploy(&plan, &env, &release, a.dry_run, a.lock_wait).await)
        }
    }
}

/// A release is a version or a sha: it goes into commands and file names, so it is kept plain.
fn valid_release(release: &str) -> Result<(), String> {
    if release.is_empty() || release.len() > 128 {
        return Err("must be 1 to 128 characters".into());
    }
    if !release
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'))
    {
        return Err(format!(
            "`{release}` may hold only letters, digits and . - _ +"
        ));
    }
    Ok(())
}
