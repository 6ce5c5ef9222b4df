//! What the status page shows, gathered from the stores and the latest check results, and cut
//! down to what the public may see: component states and incident summaries, never a hint, a
//! host, a message or an id.

use std::collections::BTreeSet;

use checks::{overall, CheckResult, Status};
use chrono::{DateTime, NaiveDateTime, Utc};
use entity::{ops_deploy as deploy, ops_gate_evaluation as evaluation, ops_incident as incident};
use entity::{ops_incident_event as event, Category};
use serde_json::Value;

use crate::state::AppState;
use crate::store::incidents::{IncidentFilter, OpenState};

/// Open incidents shown, newest first.
const INCIDENTS: u64 = 20;
/// Timeline events shown per incident.
const EVENTS: u64 = 30;
/// Deploys and gate verdicts shown.
const DEPLOYS: u64 = 10;

/// One check as a component of the stack.
pub struct Component {
    pub name: String,
    pub status: Status,
    pub required: bool,
    /// Full view only.
    pub reason: Option<String>,
    pub message: Option<String>,
    pub hint: Option<String>,
    /// Failing: when its open incident opened; passing: when its last incident resolved.
    pub since: Option<NaiveDateTime>,
}

pub struct IncidentView {
    pub severity: String,
    pub category: String,
    /// The public view's summary, built from fields that cannot hold a host or a secret.
    pub headline: String,
    pub opened_at: NaiveDateTime,
    /// Full view only: id, the reporter's summary and the timeline.
    pub id: Option<String>,
    pub summary: Option<String>,
    /// The reporter's or the check's recommended action (`detailsJson.hint`).
    pub hint: Option<String>,
    pub timeline: Vec<(NaiveDateTime, String, String)>,
}

pub struct DeployView {
    pub environment: String,
    pub version: String,
    pub status: String,
    pub started_at: NaiveDateTime,
    pub finished_at: Option<NaiveDateTime>,
    pub reason: Option<String>,
}

pub struct VerdictView {
    pub environment: String,
    pub release: String,
    pub verdict: String,
    pub summary: String,
    pub at: NaiveDateTime,
}

/// Everything one rendering of the page needs.
pub struct StatusData {
    pub full: bool,
    pub overall: Option<Status>,
    pub checked_at: Option<DateTime<Utc>>,
    pub components: Vec<Component>,
    pub incidents: Vec<IncidentView>,
    pub deploys: Vec<DeployView>,
    pub verdicts: Vec<VerdictView>,
    /// What could not be read (the causes are logged, not shown).
    pub problems: Vec<String>,
}

fn label<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(s)) => s,
        _ => String::new(),
    }
}

fn category_name(category: Category) -> &'static str {
    match category {
        Category::Db => "Database",
        Category::Tunnel => "Tunnel",
        Category::Api => "API",
        Category::Deploy => "Deploy",
        Category::Other => "Other",
    }
}

/// A summary safe for anyone: the check and its reason code for the doctor's incidents, the
/// category otherwise (a reporter's summary may name hosts).
fn public_headline(row: &incident::Model) -> String {
    let details = &row.details_json;
    match details["check"].as_str() {
        Some(check) if details["source"] == "doctor" => format!("{check} is failing"),
        _ => format!("{} incident", category_name(row.category)),
    }
}

/// The latest results: this process's last run or the last stored one, whichever is newer.
async fn latest_results(state: &AppState) -> Option<(DateTime<Utc>, Vec<CheckResult>)> {
    let here = state
        .doctor
        .latest_in_process()
        .await
        .map(|r| (r.run.finished_at, r.run.results.clone()));
    let stored = match state.doctor.latest_run().await {
        Ok(Some(row)) => serde_json::from_value::<Vec<CheckResult>>(row.results_json)
            .ok()
            .map(|results| (row.finished_at.at().and_utc(), results)),
        Ok(None) => None,
        Err(err) => {
            tracing::warn!(error = %err, "status page: reading the latest run failed");
            None
        }
    };
    match (here, stored) {
        (Some(a), Some(b)) => Some(if a.0 >= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

pub async fn gather(state: &AppState, full: bool) -> StatusData {
    let mut problems = Vec::new();
    let latest = latest_results(state).await;
    let open = state
        .incidents
        .list(
            &IncidentFilter {
                state: Some(OpenState::Open),
                ..Default::default()
            },
            INCIDENTS,
            None,
        )
        .await;
    let open = match open {
        Ok(page) => page.items,
        Err(err) => {
            tracing::warn!(error = %err, "status page: listing open incidents failed");
            problems.push("Open incidents could not be read: the database is unavailable.".into());
            Vec::new()
        }
    };
    let resolved = state
        .incidents
        .list(
            &IncidentFilter {
                state: Some(OpenState::Resolved),
                ..Default::default()
            },
            50,
            None,
        )
        .await
        .map(|p| p.items)
        .unwrap_or_default();

    let registry = state.doctor.registry();
    let (checked_at, results) = latest.unzip();
    let results = results.unwrap_or_default();
    let required: BTreeSet<String> = registry.policy().required.clone();
    let overall = (!results.is_empty()).then(|| overall(&results, &required));
    let components = results
        .iter()
        .filter(|r| r.status != Status::Skipped)
        .map(|r| component(r, registry.is_required(&r.name), &open, &resolved, full))
        .collect();

    let mut incidents = Vec::new();
    for row in open {
        incidents.push(incident_view(state, row, full).await);
    }
    let (deploys, verdicts) = if full {
        recent_deploys(state, &mut problems).await
    } else {
        (Vec::new(), Vec::new())
    };
    StatusData {
        full,
        overall,
        checked_at,
        components,
        incidents,
        deploys,
        verdicts,
        problems,
    }
}

fn component(
    r: &CheckResult,
    required: bool,
    open: &[incident::Model],
    resolved: &[incident::Model],
    full: bool,
) -> Component {
    let of_check = |i: &&incident::Model| {
        i.details_json["source"] == "doctor" && i.details_json["check"] == r.name.as_str()
    };
    let since = if r.status == Status::Fail {
        open.iter()
            .filter(of_check)
            .map(|i| i.created_at.at())
            .min()
    } else {
        resolved
            .iter()
            .filter(of_check)
            .filter_map(|i| i.resolved_at.map(|t| t.at()))
            .max()
    };
    Component {
        name: r.name.clone(),
        status: r.status,
        required,
        reason: full.then(|| r.reason.map(|x| label(&x))).flatten(),
        message: full.then(|| r.message.clone()),
        hint: full.then(|| r.hint.clone()).flatten(),
        since,
    }
}

async fn incident_view(state: &AppState, row: incident::Model, full: bool) -> IncidentView {
    let timeline: Vec<event::Model> = if full {
        match state.incidents.events(&row.id, EVENTS, None).await {
            Ok(page) => page.items,
            Err(err) => {
                tracing::warn!(error = %err, "status page: reading a timeline failed");
                Vec::new()
            }
        }
    } else {
        Vec::new()
    };
    IncidentView {
        severity: label(&row.severity),
        category: category_name(row.category).to_owned(),
        headline: public_headline(&row),
        opened_at: row.created_at.at(),
        id: full.then(|| row.id.clone()),
        summary: full.then(|| row.summary.clone()),
        hint: full
            .then(|| row.details_json["hint"].as_str().map(str::to_owned))
            .flatten(),
        timeline: timeline
            .into_iter()
            .map(|e| (e.created_at.at(), label(&e.event_type), e.message))
            .collect(),
    }
}

async fn recent_deploys(
    state: &AppState,
    problems: &mut Vec<String>,
) -> (Vec<DeployView>, Vec<VerdictView>) {
    let deploys: Vec<deploy::Model> = match state.deploys.list(None, DEPLOYS, None).await {
        Ok(page) => page.items,
        Err(err) => {
            tracing::warn!(error = %err, "status page: listing deploys failed");
            problems.push("Deploys could not be read: the database is unavailable.".into());
            Vec::new()
        }
    };
    let verdicts: Vec<evaluation::Model> =
        match state.evaluations.list(None, None, DEPLOYS, None).await {
            Ok(page) => page.items,
            Err(err) => {
                tracing::warn!(error = %err, "status page: listing gate verdicts failed");
                Vec::new()
            }
        };
    (
        deploys
            .into_iter()
            .map(|d| DeployView {
                environment: d.environment,
                version: d.version,
                status: d.status,
                started_at: d.created_at.at(),
                finished_at: d.finished_at.map(|t| t.at()),
                reason: d.reason,
            })
            .collect(),
        verdicts
            .into_iter()
            .map(|v| VerdictView {
                environment: v.environment,
                release: v.release,
                verdict: v.verdict,
                summary: v.summary,
                at: v.created_at.at(),
            })
            .collect(),
    )
}
