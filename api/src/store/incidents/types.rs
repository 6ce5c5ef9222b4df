//! What the incident store takes and gives: new incidents and events, what reporting one did,
//! why an operation did not happen, and the limits on what a row may hold.

use checks::write_health::AsDbErr;
use chrono::NaiveDateTime;
use entity::{
    ops_incident as incident, ops_incident_event as event, Category, EventType, Severity,
};
use sea_orm::DbErr;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Longest accepted `summary`, in characters.
pub const MAX_SUMMARY_CHARS: usize = 1_000;
/// Longest accepted event `message` or `resolutionNotes`, in characters.
pub const MAX_MESSAGE_CHARS: usize = 10_000;
/// Longest accepted `fingerprint`, in characters.
pub const MAX_FINGERPRINT_CHARS: usize = 200;

/// Why a store operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("incident `{0}` does not exist")]
    NotFound(String),
    #[error("incident `{id}` was already resolved at {resolved_at}")]
    AlreadyResolved { id: String, resolved_at: String },
    #[error("incident `{0}` is resolved; report a new incident instead of extending it")]
    Resolved(String),
    #[error("deploy `{id}` already finished as {status}")]
    DeployFinished { id: String, status: String },
    #[error(transparent)]
    Db(#[from] DbErr),
}

impl AsDbErr for StoreError {
    fn as_db_err(&self) -> Option<&DbErr> {
        match self {
            Self::Db(err) => Some(err),
            _ => None,
        }
    }
}

/// A new incident as reported.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewIncident {
    pub severity: Severity,
    pub category: Category,
    pub summary: String,
    pub details: Map<String, Value>,
    /// Reports with the same fingerprint extend one open incident instead of opening another.
    pub fingerprint: Option<String>,
    /// Extra metadata for the `DETECTED` event (links to related records, say).
    pub event_metadata: Map<String, Value>,
}

/// A timeline event to append.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewEvent {
    pub event_type: EventType,
    pub message: String,
    pub metadata: Map<String, Value>,
}

/// What reporting an incident did.
#[derive(Debug, Clone)]
pub struct Opened {
    pub incident: incident::Model,
    pub event: event::Model,
    /// True when an open incident with the same fingerprint was extended instead.
    pub deduplicated: bool,
}

/// The ids and time a write takes: made when the write is answered, so that a write kept in the
/// spool and replayed later stores the same ids and the time it was reported, and a replay
/// after a crash finds it stored already instead of writing it twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stamp {
    /// The id a new incident gets (a report extending an open incident does not use it).
    pub incident_id: String,
    /// The id of the event the write appends.
    pub event_id: String,
    pub at: NaiveDateTime,
    /// Set on replay: look for the event first, and do nothing when it is stored.
    #[serde(skip)]
    pub replay: bool,
}

impl Stamp {
    /// Fresh ids and now.
    pub fn now() -> Self {
        Self {
            incident_id: crate::kernel::new_id(),
            event_id: crate::kernel::new_id(),
            at: crate::kernel::now(),
            replay: false,
        }
    }
}
