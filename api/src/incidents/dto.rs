//! JSON shapes of the incident API, in the Prisma models' camelCase field names.

use crate::kernel::timestamp;
use entity::{
    ops_incident as incident, ops_incident_event as event, Category, EventType, JsonDoc, Severity,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::openapi::{CategoryName, EventTypeName, SeverityName};
use serde_json::{Map, Value};

pub use crate::store::incidents::{MAX_FINGERPRINT_CHARS, MAX_MESSAGE_CHARS, MAX_SUMMARY_CHARS};

/// `POST /ops/incidents`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateIncident {
    #[schema(value_type = SeverityName)]
    pub severity: Severity,
    #[schema(value_type = CategoryName)]
    pub category: Category,
    /// Not blank; at most 1,000 characters once trimmed.
    #[schema(min_length = 1, pattern = "\\S")]
    pub summary: String,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub details_json: Option<Map<String, Value>>,
    /// Reports with the fingerprint of an open incident extend it instead of opening another.
    #[serde(default)]
    #[schema(min_length = 1, pattern = "\\S")]
    pub fingerprint: Option<String>,
}

/// `POST /ops/incidents/{id}/events`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateEvent {
    /// Any type but `RESOLVED` (which `POST /ops/incidents/{id}/resolve` records).
    #[schema(value_type = EventTypeName)]
    pub event_type: EventType,
    #[schema(min_length = 1, pattern = "\\S")]
    pub message: String,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata_json: Option<Map<String, Value>>,
}

/// `POST /ops/incidents/{id}/resolve`; the body is optional.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResolveIncident {
    #[serde(default)]
    #[schema(min_length = 1, pattern = "\\S")]
    pub resolution_notes: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata_json: Option<Map<String, Value>>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IncidentJson {
    pub id: String,
    pub created_at: String,
    #[schema(value_type = SeverityName)]
    pub severity: Severity,
    #[schema(value_type = CategoryName)]
    pub category: Category,
    pub summary: String,
    #[schema(value_type = Object)]
    pub details_json: Value,
    pub resolved_at: Option<String>,
    pub resolution_notes: Option<String>,
    /// `open` or `resolved`, derived from `resolvedAt`.
    #[schema(value_type = String, pattern = "^(open|resolved)$")]
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

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventJson {
    pub id: String,
    pub incident_id: String,
    pub created_at: String,
    #[schema(value_type = EventTypeName)]
    pub event_type: EventType,
    pub message: String,
    #[schema(value_type = Object)]
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

/// `POST /ops/incidents`: the incident and the event the report added.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedIncident {
    pub incident: IncidentJson,
    pub event: EventJson,
    /// True when an open incident with the same fingerprint was extended.
    pub deduplicated: bool,
    /// False: committed to the database (a write the database cannot take is answered 202
    /// with `queued: true` instead).
    pub queued: bool,
}

/// `POST /ops/incidents/{id}/resolve`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResolvedIncident {
    pub incident: IncidentJson,
    pub event: EventJson,
    /// False: committed to the database.
    pub queued: bool,
}

/// `GET /ops/incidents/{id}`: the incident with one page of its timeline, oldest event first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IncidentWithEvents {
    #[serde(flatten)]
    pub incident: IncidentJson,
    pub events: Vec<EventJson>,
    pub next_cursor: Option<String>,
}

/// `GET /ops/timeline`: an event with a short view of its incident.
#[derive(Debug, Serialize, ToSchema)]
pub struct TimelineItem {
    #[serde(flatten)]
    pub event: EventJson,
    pub incident: Option<IncidentBrief>,
}

/// An incident in one line, as the timeline shows it beside each event.
#[derive(Debug, Serialize, ToSchema)]
pub struct IncidentBrief {
    pub id: String,
    pub summary: String,
    #[schema(value_type = CategoryName)]
    pub category: Category,
    #[schema(value_type = SeverityName)]
    pub severity: Severity,
    /// `open` or `resolved`.
    #[schema(value_type = String, pattern = "^(open|resolved)$")]
    pub status: &'static str,
}

/// `GET /ops/incidents/stats`.
#[derive(Debug, Serialize, ToSchema)]
pub struct IncidentStatsJson {
    pub open: OpenStats,
    pub resolved: ResolvedStats,
}

/// Open incidents, counted three ways.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OpenStats {
    pub total: u64,
    /// Category → count, for the categories with open incidents.
    #[schema(value_type = std::collections::HashMap<String, u64>)]
    pub by_category: std::collections::BTreeMap<String, u64>,
    /// Severity → count.
    #[schema(value_type = std::collections::HashMap<String, u64>)]
    pub by_severity: std::collections::BTreeMap<String, u64>,
    pub by_category_and_severity: Vec<PairCount>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PairCount {
    #[schema(value_type = CategoryName)]
    pub category: Category,
    #[schema(value_type = SeverityName)]
    pub severity: Severity,
    pub count: u64,
}

/// Resolved incidents since `since` (or ever).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedStats {
    pub total: u64,
    pub mean_time_to_resolve_seconds: Option<f64>,
    pub since: Option<String>,
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
