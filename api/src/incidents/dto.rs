//! JSON shapes of the incident API, in the Prisma models' camelCase field names.

use crate::kernel::timestamp;
use entity::{
    ops_incident as incident, ops_incident_event as event, Category, EventType, Severity,
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
}

impl From<incident::Model> for IncidentJson {
    fn from(m: incident::Model) -> Self {
        Self {
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
            details_json: m.details_json,
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
}

impl From<event::Model> for EventJson {
    fn from(m: event::Model) -> Self {
        Self {
            id: m.id,
            incident_id: m.incident_id,
            created_at: timestamp(&m.created_at),
            event_type: m.event_type,
            message: m.message,
            metadata_json: m.metadata_json,
        }
    }
}
