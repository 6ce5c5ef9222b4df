//! `opsdoctor deploys start|finish|list`: deploy records from shell scripts.

use std::process::ExitCode;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Map, Value};

use super::routes::DeployJson;
use crate::gate::cli::Format;
use crate::kernel::PageJson;
use crate::remote::{error_message, Remote, EXIT_UNUSABLE};

#[derive(Debug, Clone, clap::Subcommand)]
pub enum DeploysAction {
    /// Record the start of a deploy; prints its id (or the record with --format json).
    Start {
        #[arg(long)]
        env: String,
        /// The release being deployed.
        #[arg(long)]
        version: String,
        #[arg(long)]
        git_sha: Option<String>,
        /// e.g. blue-green, canary, rolling.
        #[arg(long)]
        strategy: Option<String>,
        #[arg(long)]
        started_by: Option<String>,
        /// An external id as key=value (CI run id, Argo analysis run …); repeatable.
        #[arg(long = "external-id", value_parser = parse_pair)]
        external_ids: Vec<(String, String)>,
    },
    /// Close a deploy with its outcome.
    Finish {
        /// The id `deploys start` printed.
        id: String,
        /// succeeded, failed, rolled_back or canceled.
        #[arg(long)]
        status: String,
        #[arg(long)]
        reason: Option<String>,
        /// A JSON file with the deploy report.
        #[arg(long)]
        report_file: Option<std::path::PathBuf>,
    },
    /// List deploys, newest first.
    List {
        #[arg(long)]
        env: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

fn parse_pair(raw: &str) -> Result<(String, String), String> {
    raw.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("`{raw}` is not key=value"))
}

pub async fn run(url: &str, format: Format, action: DeploysAction) -> ExitCode {
    let remote = match Remote::new(url, Duration::from_secs(30)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("opsdoctor deploys: {e}");
            return ExitCode::from(EXIT_UNUSABLE);
        }
    };
    let (method, path, body) = match &action {
        DeploysAction::Start {
            env,
            version,
            git_sha,
            strategy,
            started_by,
            external_ids,
        } => {
            let ids: Map<String, Value> = external_ids
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            let body = json!({
                "environment": env, "version": version, "gitSha": git_sha, "strategy": strategy,
                "startedBy": started_by, "externalIds": ids,
            });
            (Method::POST, "/ops/deploys".to_owned(), Some(body))
        }
        DeploysAction::Finish {
            id,
            status,
            reason,
            report_file,
        } => {
            let report = match report_file {
                Some(path) => match std::fs::read_to_string(path)
                    .map_err(|e| e.to_string())
                    .and_then(|t| serde_json::from_str::<Value>(&t).map_err(|e| e.to_string()))
                {
                    Ok(v) => Some(v),
                    Err(e) => {
                        eprintln!(
                            "opsdoctor deploys: cannot read --report-file {}: {e}",
                            path.display()
                        );
                        return ExitCode::from(EXIT_UNUSABLE);
                    }
                },
                None => None,
            };
            let body = json!({ "status": status, "reason": reason, "reportJson": report });
            let id: String = url::form_urlencoded::byte_serialize(id.as_bytes()).collect();
            (
                Method::POST,
                format!("/ops/deploys/{id}/finish"),
                Some(body),
            )
        }
        DeploysAction::List { env, limit } => {
            let mut path = format!("/ops/deploys?limit={limit}");
            if let Some(env) = env {
                path.push_str(&format!(
                    "&env={}",
                    url::form_urlencoded::byte_serialize(env.as_bytes()).collect::<String>()
                ));
            }
            (Method::GET, path, None)
        }
    };
    let answer = match remote.send(method, &path, body.as_ref()).await {
        Ok(a) => a,
        Err(problem) => {
            eprintln!("opsdoctor deploys: {problem}");
            return ExitCode::from(EXIT_UNUSABLE);
        }
    };
    if !answer.status.is_success() {
        eprintln!("opsdoctor deploys: {}", error_message(&answer));
        let unusable = matches!(answer.status.as_u16(), 401 | 403);
        return ExitCode::from(if unusable { EXIT_UNUSABLE } else { 1 });
    }
    if format == Format::Json {
        println!("{}", answer.body);
        return ExitCode::SUCCESS;
    }
    let read = |body: Value| serde_json::from_value::<DeployJson>(body).ok();
    match action {
        DeploysAction::Start { .. } => {
            println!("{}", read(answer.body).map(|d| d.id).unwrap_or_default())
        }
        DeploysAction::Finish { .. } => {
            if let Some(d) = read(answer.body) {
                let incident = d
                    .incident_id
                    .map(|i| format!(" (incident {i})"))
                    .unwrap_or_default();
                println!("{} {}{incident}", d.id, d.status);
            }
        }
        DeploysAction::List { .. } => {
            let page: PageJson<DeployJson> =
                serde_json::from_value(answer.body).unwrap_or(PageJson {
                    items: Vec::new(),
                    next_cursor: None,
                    warnings: Vec::new(),
                });
            for d in page.items {
                println!(
                    "{}  {:<12} {:<12} {:<24} {}",
                    d.started_at, d.environment, d.status, d.version, d.id
                );
            }
        }
    }
    ExitCode::SUCCESS
}
