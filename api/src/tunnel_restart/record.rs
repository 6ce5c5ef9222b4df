//! Every restart on the `TUNNEL` incident, through the spool when the database is down:
//! `RECOVERY_ATTEMPTED` before the command runs, then `RECOVERY_SUCCESS` or `RECOVERY_FAILED`,
//! each with `action: "tunnel_restart"` and the restart's id in its metadata. Those events are
//! the shared record the rate limit counts, every host's.
//!
//! Which incident: the newest open `TUNNEL` incident. When none is open the restart opens one:
//! with the tunnel check failing, the incident of that failure exactly as the doctor opens it
//! (its fingerprint, severity and details, so the doctor's later reports extend it and its
//! recovery resolves it); with the check passing (or none configured), a `WARN` incident
//! `tunnel:restart`. An incident the restart opened is resolved by it once the edge connections
//! are back (or, with no tunnel check, once the command succeeded); one that was open already is
//! left to its owner. A restart that fails escalates its incident to CRITICAL.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use entity::{Category, EventType, Severity};
use serde_json::{json, Map, Value};

use super::types::{Recorded, RestartRecord, RestartResult};
use crate::decisions::incident_key;
use crate::resilience::{Applied, Entry, Resilience, Target, Written};
use crate::store::incidents::{IncidentFilter, NewEvent, NewIncident, OpenState, Stamp};

/// The `action` in the metadata of a restart's events.
pub const ACTION: &str = "tunnel_restart";
/// The fingerprint of an incident opened by a restart while the tunnel check passed.
pub const RESTART_FINGERPRINT: &str = "tunnel:restart";

/// Where this restart's events go, and what became of them so far.
pub struct Journal {
    resilience: Arc<Resilience>,
    usable: bool,
    target: Target,
    /// Opened by this restart (so resolved by it once the tunnel is back).
    opened: bool,
    recorded: Recorded,
}

fn object(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}

impl Journal {
    /// Records the attempt (opening the incident if none is open). `usable`: whether the
    /// database answers; without it everything goes straight to the spool.
    pub async fn begin(
        resilience: Arc<Resilience>,
        usable: bool,
        restart: &RestartRecord,
        before: &checks::CheckResult,
        required: bool,
        program: &str,
    ) -> Self {
        let existing = if usable {
            open_tunnel_incident(&resilience).await
        } else {
            None
        };
        let mut journal = Self {
            resilience,
            usable,
            target: Target::Id(String::new()),
            opened: false,
            recorded: Recorded::Spooled,
        };
        match existing {
            Some(id) => {
                journal.recorded = Recorded::Stored {
                    incident_id: id.clone(),
                    opened: false,
                };
                journal.target = Target::Id(id);
            }
            None => {
                let (incident, fingerprint) = new_incident(restart, before, required);
                journal.target = Target::Fingerprint(fingerprint);
                let stamp = stamp_at(restart.at);
                journal.write(Entry::OpenIncident { stamp, incident }).await;
            }
        }
        let message = format!(
            "tunnel restart asked by {} (pid {} on {}): running `{program}`",
            restart.trigger, restart.pid, restart.host
        );
        let metadata = json!({
            "action": ACTION,
            "restartId": restart.id,
            "trigger": restart.trigger,
            "host": restart.host,
            "pid": restart.pid,
            "before": { "status": before.status, "reason": before.reason, "message": before.message },
        });
        journal
            .event(EventType::RecoveryAttempted, message, metadata)
            .await;
        journal
    }

    /// Records how the restart ended: the event, then (by its result) the resolution or the
    /// escalation; gives where it was all recorded.
    pub async fn finish(
        mut self,
        restart: &RestartRecord,
        result: RestartResult,
        message: String,
        mut metadata: Map<String, Value>,
    ) -> Recorded {
        metadata.insert("action".into(), ACTION.into());
        metadata.insert("restartId".into(), restart.id.clone().into());
        metadata.insert("result".into(), result.as_str().into());
        let success = matches!(result, RestartResult::Connected | RestartResult::Unverified);
        let kind = if success {
            EventType::RecoverySuccess
        } else {
            EventType::RecoveryFailed
        };
        self.event(kind, message, Value::Object(metadata)).await;
        if success && self.opened {
            let notes = if result == RestartResult::Connected {
                "resolved automatically: the tunnel restart that opened it brought its edge connections back"
            } else {
                "resolved automatically: the tunnel restart that opened it succeeded (no tunnel check is configured to see more)"
            };
            let entry = Entry::Resolve {
                target: self.target.clone(),
                stamp: Stamp::now(),
                notes: Some(notes.to_owned()),
                metadata: object(json!({ "action": ACTION, "restartId": restart.id })),
            };
            self.write(entry).await;
        }
        if !success {
            self.escalate(restart).await;
        }
        self.recorded
    }

    async fn event(&mut self, event_type: EventType, message: String, metadata: Value) {
        self.event_stamped(Stamp::now(), event_type, message, metadata)
            .await;
    }

    async fn event_stamped(
        &mut self,
        stamp: Stamp,
        event_type: EventType,
        message: String,
        metadata: Value,
    ) {
        let entry = Entry::AppendEvent {
            target: self.target.clone(),
            stamp,
            event: NewEvent {
                event_type,
                message,
                metadata: object(metadata),
            },
        };
        self.write(entry).await;
    }

    /// Escalation is not spooled: it needs the incident's id, and a database that answers.
    async fn escalate(&self, restart: &RestartRecord) {
        let (Target::Id(id), true) = (&self.target, self.usable) else {
            return;
        };
        let message = format!(
            "the tunnel restart asked by {} did not bring the tunnel back; escalated to CRITICAL",
            restart.trigger
        );
        let metadata = object(json!({ "action": ACTION, "restartId": restart.id }));
        let store = &self.resilience.stores.incidents;
        if let Err(err) = store.escalate(id, message, metadata).await {
            tracing::warn!(incident = %id, error = %err, "the tunnel incident could not be escalated");
        }
    }

    /// One write: to the database (or the spool, as [`Resilience::submit`] decides) when it
    /// answers, straight to the spool when it does not.
    async fn write(&mut self, entry: Entry) {
        let entry_kind = entry.kind();
        let written = if self.usable {
            self.resilience.submit(entry).await
        } else {
            self.resilience.queue(&entry)
        };
        match written {
            Ok(Written::Stored(applied)) => {
                if let Applied::Opened(opened) = &applied {
                    self.opened = !opened.deduplicated;
                    self.target = Target::Id(opened.incident.id.clone());
                    self.recorded = Recorded::Stored {
                        incident_id: opened.incident.id.clone(),
                        opened: self.opened,
                    };
                }
            }
            Ok(Written::Queued { .. }) => {
                // A queued report opens its incident at replay, or extends the one open then
                // with its fingerprint; either way this restart's events and resolution follow it.
                if matches!(entry_kind, "open_incident") {
                    self.opened = true;
                }
                if !matches!(self.recorded, Recorded::Failed { .. }) {
                    self.recorded = Recorded::Spooled;
                }
            }
            Err(err) => {
                tracing::error!(error = %err, "a tunnel restart could not be recorded on its incident");
                self.recorded = Recorded::Failed {
                    error: err.to_string(),
                };
            }
        }
    }
}

/// Fresh ids, at the restart's time: its record says when it began, in the database as on the
/// host, so the rate limit reads the same time from either.
fn stamp_at(at: DateTime<Utc>) -> Stamp {
    let mut stamp = Stamp::now();
    stamp.at = at.naive_utc();
    stamp
}

/// The newest open `TUNNEL` incident's id.
async fn open_tunnel_incident(resilience: &Resilience) -> Option<String> {
    let filter = IncidentFilter {
        state: Some(OpenState::Open),
        category: Some(Category::Tunnel),
        ..Default::default()
    };
    let found = tokio::time::timeout(
        resilience.op_timeout(),
        resilience.stores.incidents.list(&filter, 1, None),
    )
    .await;
    match found {
        Ok(Ok(page)) => page.items.into_iter().next().map(|i| i.id),
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "open tunnel incidents cannot be read");
            None
        }
        Err(_) => None,
    }
}

/// The incident a restart opens when none is open, and its fingerprint.
fn new_incident(
    restart: &RestartRecord,
    before: &checks::CheckResult,
    required: bool,
) -> (NewIncident, String) {
    let failing = before.status == checks::Status::Fail;
    let reason = before.reason.map_or("unknown", |r| r.as_str());
    let mut details = Map::new();
    let (severity, summary, fingerprint) = if failing {
        // As the doctor opens it (doctor/incidents.rs), so one failure stays one incident.
        let fingerprint = incident_key(&before.name, before.reason);
        details.insert("source".into(), "doctor".into());
        details.insert("check".into(), before.name.clone().into());
        details.insert("reason".into(), reason.into());
        details.insert("required".into(), required.into());
        details.insert("message".into(), before.message.clone().into());
        details.insert("hint".into(), json!(before.hint));
        details.insert("observed".into(), Value::Object(before.observed.clone()));
        let severity = if required {
            Severity::Critical
        } else {
            Severity::Warn
        };
        let summary = format!(
            "{} check failing ({reason}): {}",
            before.name, before.message
        );
        (severity, summary, fingerprint)
    } else {
        details.insert("source".into(), ACTION.into());
        let summary = format!(
            "the tunnel was restarted (asked by {}) while its check did not fail: {}",
            restart.trigger, before.message
        );
        (Severity::Warn, summary, RESTART_FINGERPRINT.to_owned())
    };
    details.insert("openedBy".into(), ACTION.into());
    details.insert("trigger".into(), restart.trigger.clone().into());
    let incident = NewIncident {
        severity,
        category: Category::Tunnel,
        summary,
        details,
        fingerprint: Some(fingerprint.clone()),
        event_metadata: object(json!({ "action": ACTION, "restartId": restart.id })),
    };
    (incident, fingerprint)
}
