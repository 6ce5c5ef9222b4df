//! What is worth telling someone about: an incident opened, escalated or resolved, a deploy
//! finished. Each transition has a key that names it uniquely, so it is queued once however often
//! the feed shows it.

use entity::{ops_deploy as deploy, ops_incident as incident, ops_incident_event as event};
use entity::{EventType, Severity};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::kernel::timestamp;

/// The kind of a transition, as receivers see it (`type` of the webhook body).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    #[serde(rename = "incident.opened")]
    Opened,
    #[serde(rename = "incident.escalated")]
    Escalated,
    #[serde(rename = "incident.resolved")]
    Resolved,
    #[serde(rename = "deploy.finished")]
    DeployFinished,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Opened => "incident.opened",
            Kind::Escalated => "incident.escalated",
            Kind::Resolved => "incident.resolved",
            Kind::DeployFinished => "deploy.finished",
        }
    }
}

/// The facts about an incident a notification shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IncidentFacts {
    pub id: String,
    /// `INFO`, `WARN` or `CRITICAL` as of the transition (an escalation is `CRITICAL`).
    pub severity: String,
    pub category: String,
    pub summary: String,
    /// The failing check, for incidents the doctor opened.
    pub component: Option<String>,
    pub reason: Option<String>,
    pub hint: Option<String>,
    /// The incident's fingerprint, or `incident:<id>` when it has none: PagerDuty's `dedup_key`.
    pub fingerprint: String,
    /// The timeline event's message (why it escalated, how it was resolved).
    pub message: String,
    pub opened_at: String,
}

/// The facts about a finished deploy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeployFacts {
    pub id: String,
    pub environment: String,
    pub version: String,
    pub git_sha: Option<String>,
    /// `succeeded`, `failed`, `rolled_back` or `canceled`.
    pub status: String,
    pub reason: Option<String>,
    pub started_at: String,
    pub incident_id: Option<String>,
}

/// One transition, as queued in the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Transition {
    /// Unique per transition: `incident:<id>:opened`, `deploy:<id>:finished`.
    pub key: String,
    pub kind: Kind,
    /// When it happened (RFC 3339, UTC).
    pub at: String,
    pub incident: Option<IncidentFacts>,
    pub deploy: Option<DeployFacts>,
}

/// An enum's name as stored (`CRITICAL`, `DB`), from its serde form.
fn label<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(s)) => s,
        _ => String::new(),
    }
}

fn text(details: &Value, key: &str) -> Option<String> {
    details[key]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

impl Transition {
    /// The transition a timeline event records, if it is one: a `DETECTED` that opened its
    /// incident (not a repeat), an `ESCALATED`, a `RESOLVED`.
    pub fn from_event(event: &event::Model, incident: &incident::Model) -> Option<Self> {
        let (kind, suffix) = match event.event_type {
            EventType::Detected if event.metadata_json["repeat"] != Value::Bool(true) => {
                (Kind::Opened, "opened")
            }
            EventType::Escalated => (Kind::Escalated, "escalated"),
            EventType::Resolved => (Kind::Resolved, "resolved"),
            _ => return None,
        };
        let details = &incident.details_json;
        let severity = if kind == Kind::Escalated {
            Severity::Critical
        } else {
            incident.severity
        };
        Some(Self {
            key: format!("incident:{}:{suffix}", incident.id),
            kind,
            at: timestamp(&event.created_at),
            incident: Some(IncidentFacts {
                id: incident.id.clone(),
                severity: label(&severity),
                category: label(&incident.category),
                summary: incident.summary.clone(),
                component: text(details, "check"),
                reason: text(details, "reason"),
                hint: text(details, "hint"),
                fingerprint: text(details, "fingerprint")
                    .unwrap_or_else(|| format!("incident:{}", incident.id)),
                message: event.message.clone(),
                opened_at: timestamp(&incident.created_at),
            }),
            deploy: None,
        })
    }

    /// A finished deploy's transition; `None` for one still running.
    pub fn from_deploy(row: &deploy::Model) -> Option<Self> {
        let finished = row.finished_at?;
        Some(Self {
            key: format!("deploy:{}:finished", row.id),
            kind: Kind::DeployFinished,
            at: timestamp(&finished),
            incident: None,
            deploy: Some(DeployFacts {
                id: row.id.clone(),
                environment: row.environment.clone(),
                version: row.version.clone(),
                git_sha: row.git_sha.clone(),
                status: row.status.clone(),
                reason: row.reason.clone(),
                started_at: timestamp(&row.created_at),
                incident_id: row.incident_id.clone(),
            }),
        })
    }

    /// One line saying what happened, for a chat message or an alert summary.
    pub fn headline(&self) -> String {
        if let Some(d) = &self.deploy {
            return format!(
                "Deploy {} to {} {}",
                d.version,
                d.environment,
                d.status.replace('_', " ")
            );
        }
        let Some(i) = &self.incident else {
            return self.kind.as_str().to_owned();
        };
        match self.kind {
            Kind::Opened => format!("[{}] Incident opened: {}", i.severity, i.summary),
            Kind::Escalated => format!("[CRITICAL] Incident escalated: {}", i.summary),
            Kind::Resolved => format!("[RESOLVED] {}", i.summary),
            Kind::DeployFinished => i.summary.clone(),
        }
    }
}
