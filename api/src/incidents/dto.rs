//! JSON shapes of the incident API, in the Prisma models' camelCase field names.

use crate::kernel::timestamp;
use entity::{
    ops_incident as incident, ops_incident_event as event, Category, EventType, JsonDoc, Severity,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use crate::store::incidents::{MAX_FINGERPRINT_CHARS, MAX_MESSAGE_CHARS, MAX_SUMMARY_CHARS};

/// `POST /ops/incidents`
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateIncident {
    pub severity: Severity,
    pub category: Category,
    pub summary: String,
    #[serde(default)]
    pub details_json: Option<Map<String, Value>>,
    #[serde(default)]
    pub fingerprint: Option<String>,
}

/// `POST /ops/incidents/{id}/events`
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateEvent {
    pub event_type: EventType,
    pub message: String,
    #[serde(default)]
    pub metadata_json: Option<Map<String, Value>>,
}

/// `POST /ops/incidents/{id}/resolve`; the body is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResolveIncident {
    #[serde(default)]
    pub resolution_notes: Option<String>,
    #[serde(default)]
    pub metadata_json: Option<Map<String, Value>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IncidentJson {
    pub id: String,
    pub created_at: String,
    pub severity: Severity,
    pub category: Category,
    pub summary: String,
    pub details_json: Value,
    pub resolved_at: Option<String>,
    pub resolution_notes: Option<String>,
    /// `open` or `resolved`, derived from `resolvedAt`.
    pub status: &'static str,
    /// What could not be read as stored (a row another writer left); absent when all was read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl From<incident::Model> for IncidentJson {
    fn from(m: incident::Model) -> Self {
        let warnings = unreadable("OpsIncident", &m.id, "detailsJson", &m.details_json);
        Self {
            warnings,
            status: if m.resolved_at.is_some() {
                "resolved"
            } else {
                "open"
            },
            id: m.id,
            created_at: timestamp(&m.created_at),
            severity: m.severity,
            category: m.category,
            summary: m.summary,
            details_json: m.details_json.into_value(),
            resolved_at: m.resolved_at.as_ref().map(timestamp),
            resolution_notes: m.resolution_notes,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventJson {
    pub id: String,
    pub incident_id: String,
    pub created_at: String,
    pub event_type: EventType,
    pub message: String,
    pub metadata_json: Value,
    /// What could not be read as stored; absent when all was read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl From<event::Model> for EventJson {
    fn from(m: event::Model) -> Self {
        let warnings = unreadable("OpsIncidentEvent", &m.id, "metadataJson", &m.metadata_json);
        Self {
            warnings,
            id: m.id,
            incident_id: m.incident_id,
            created_at: timestamp(&m.created_at),
            event_type: m.event_type,
            message: m.message,
            metadata_json: m.metadata_json.into_value(),
        }
    }
}

/// The warning for a JSON column whose stored text is not JSON (shown as a string), logged
/// once per answer that shows it.
fn unreadable(table: &str, id: &str, column: &str, doc: &JsonDoc) -> Vec<String> {
    if !doc.not_json {
        return Vec::new();
    }
    tracing::warn!(
        table,
        id,
        column,
        "stored value is not JSON; served as text"
    );
    vec![format!("{column} is not JSON as stored; shown as text")]
}
