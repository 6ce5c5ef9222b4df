//! One component's recovery attempt: its `RECOVERY_ATTEMPTED` event, the action (probe the
//! database, restart the tunnel through the coordinator, or run a vendor's check again), the
//! check run once more, and `RECOVERY_SUCCESS` or `RECOVERY_FAILED`; and the escalation of a
//! component whose recoveries keep failing.

use std::collections::BTreeSet;
use std::time::Instant;

use checks::{CheckResult, Status};
use entity::EventType;
use serde_json::{json, Map, Value};

use super::stats::{ActionKind, Attempt, Brief, Outcome, Trigger};
use super::Recovery;
use crate::decisions::incident_key;
use crate::resilience::{
    Applied, Entry, Resilience, Target, WriteError, Written, OUTAGE_FINGERPRINT,
};
use crate::store::incidents::{NewEvent, Stamp, StoreError};
use crate::tunnel_restart::{Recorded, RestartOutcome};

/// How an action itself went, before the check says whether it helped.
enum Acted {
    Done,
    Failed,
    Refused,
}

fn brief(result: &CheckResult) -> Brief {
    Brief {
        status: match result.status {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
            Status::Skipped => "skipped",
        }
        .to_owned(),
        reason: result.reason.map(|r| r.as_str().to_owned()),
        message: result.message.clone(),
    }
}

fn action_of(component: &str) -> ActionKind {
    match component {
        checks::database::NAME => ActionKind::ProbeDatabase,
        "tunnel" => ActionKind::RestartTunnel,
        _ => ActionKind::RerunCheck,
    }
}

fn words(action: ActionKind) -> &'static str {
    match action {
        ActionKind::ProbeDatabase => "probe_database",
        ActionKind::RestartTunnel => "restart_tunnel",
        ActionKind::RerunCheck => "rerun_check",
    }
}

fn outcome_words(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Succeeded => "succeeded",
        Outcome::Failed => "failed",
        Outcome::Refused => "refused",
    }
}

impl Recovery {
    /// The incident a component's failure is on: while the database is down, every failure is
    /// attached to the outage incident; otherwise the doctor's incident for the failure.
    fn target_of(&self, result: &CheckResult) -> Target {
        if !self.resilience.database_usable() {
            return Target::Fingerprint(OUTAGE_FINGERPRINT.to_owned());
        }
        Target::Fingerprint(incident_key(&result.name, result.reason))
    }

    /// Appends one event through the breaker and the spool; the incident's id when it was
    /// stored, and how it was recorded.
    async fn record(&self, target: Target, event: NewEvent) -> (Option<String>, String) {
        let entry = Entry::AppendEvent {
            target,
            stamp: Stamp::now(),
            event,
        };
        match self.resilience.submit(entry).await {
            Ok(Written::Stored(Applied::Event(event))) => {
                (Some(event.incident_id), "stored".to_owned())
            }
            Ok(Written::Stored(_)) => (None, "stored".to_owned()),
            Ok(Written::Queued { .. }) => (None, "queued".to_owned()),
            Err(WriteError::Store(StoreError::NotFound(_))) => {
                (None, "no_open_incident".to_owned())
            }
            Err(err) => {
                tracing::error!(error = %err, "a recovery event could not be recorded");
                (None, format!("not recorded: {err}"))
            }
        }
    }

    /// Tries one failing component and says how it went.
    pub(super) async fn attempt(&self, trigger: Trigger, before: &CheckResult) -> Attempt {
        let at = crate::kernel::timestamp(&chrono::Utc::now().naive_utc());
        let began = Instant::now();
        let component = before.name.clone();
        let action = action_of(&component);
        let trigger_words = match trigger {
            Trigger::Api => "asked for",
            Trigger::Monitor => "the monitor's",
        };
        let metadata = |extra: Value| -> Map<String, Value> {
            let mut map = json!({
                "component": component,
                "action": words(action),
                "trigger": match trigger { Trigger::Api => "api", Trigger::Monitor => "monitor" },
            })
            .as_object()
            .cloned()
            .unwrap_or_default();
            if let Value::Object(extra) = extra {
                map.extend(extra);
            }
            map
        };
        // The outage incident stays open until this attempt's outcome is on it.
        let _hold = Resilience::hold_resolution(&self.resilience);
        let target = self.target_of(before);
        // A restart records itself on the TUNNEL incident (opening one if none is open); only a
        // refused one is recorded here.
        let restarted = match action {
            ActionKind::RestartTunnel => Some(self.tunnel.restart("recovery").await),
            _ => None,
        };
        let (incident_id, recorded) = match &restarted {
            Some(Ok(_)) => (None, String::new()),
            _ => {
                self.record(
                    target.clone(),
                    NewEvent {
                        event_type: EventType::RecoveryAttempted,
                        message: format!(
                            "recovery ({trigger_words}) of {component}: {}",
                            words(action).replace('_', " ")
                        ),
                        metadata: metadata(Value::Null),
                    },
                )
                .await
            }
        };

        let (acted, detail, by_coordinator) = match (action, restarted) {
            (_, Some(Ok(done))) => {
                let acted = if done.succeeded() {
                    Acted::Done
                } else {
                    Acted::Failed
                };
                (
                    acted,
                    restart_words(&done),
                    Some(restart_record(&done.recorded)),
                )
            }
            (_, Some(Err(refused))) => (Acted::Refused, refused.to_string(), None),
            (ActionKind::ProbeDatabase, None) => match self.resilience.probe_now().await {
                Ok(()) => (
                    Acted::Done,
                    "the database takes writes: the breaker is closed and the spool replays"
                        .to_owned(),
                    None,
                ),
                Err(cause) => (
                    Acted::Failed,
                    format!("the database still does not take writes: {cause}"),
                    None,
                ),
            },
            (_, None) => (
                Acted::Done,
                format!("nothing opsdoctor can restart for {component}; its check was run again"),
                None,
            ),
        };

        let only: BTreeSet<String> = [component.clone()].into();
        let after = self
            .observe(&only)
            .await
            .into_iter()
            .next()
            .unwrap_or_else(|| before.clone());
        let outcome = match (after.status, acted) {
            (Status::Pass | Status::Warn, _) => Outcome::Succeeded,
            (_, Acted::Refused) => Outcome::Refused,
            _ => Outcome::Failed,
        };
        let duration_ms = began.elapsed().as_millis() as u64;

        let (incident_id, recorded) = match by_coordinator {
            Some(done) => done,
            None if recorded == "no_open_incident" => (incident_id, recorded),
            None => {
                let target = match &incident_id {
                    Some(id) => Target::Id(id.clone()),
                    None => target,
                };
                let (event_type, message) = match outcome {
                    Outcome::Succeeded => (
                        EventType::RecoverySuccess,
                        format!("{component} passes after the recovery: {}", after.message),
                    ),
                    _ => (
                        EventType::RecoveryFailed,
                        format!("{component} still fails after the recovery: {detail}"),
                    ),
                };
                let extra = json!({
                    "outcome": outcome_words(outcome),
                    "durationMs": duration_ms,
                    "after": brief(&after),
                });
                let event = NewEvent {
                    event_type,
                    message,
                    metadata: metadata(extra),
                };
                (incident_id, self.record(target, event).await.1)
            }
        };
        self.metrics
            .recovery_attempt(&component, words(action), outcome_words(outcome));
        Attempt {
            at,
            trigger,
            component,
            action,
            outcome,
            duration_ms,
            detail,
            before: brief(before),
            after: brief(&after),
            incident_id,
            recorded,
        }
    }
}

/// A restart in words: its result, the command's, and the edge connections.
fn restart_words(done: &RestartOutcome) -> String {
    let command = if done.command.ok() {
        format!(
            "the restart command succeeded in {} ms",
            done.command.duration_ms
        )
    } else {
        done.command.failure()
    };
    let edge = done
        .edge_connections
        .map_or_else(|| "unknown".to_owned(), |n| n.to_string());
    format!(
        "tunnel restart {} {}: {command}; edge connections {edge} after {} ms",
        done.id,
        done.result.as_str(),
        done.wait_ms
    )
}

/// Where the coordinator recorded a restart, as an attempt says it.
fn restart_record(recorded: &Recorded) -> (Option<String>, String) {
    match recorded {
        Recorded::Stored { incident_id, .. } => (Some(incident_id.clone()), "stored".to_owned()),
        Recorded::Spooled => (None, "queued".to_owned()),
        Recorded::Failed { error } => (None, format!("not recorded: {error}")),
    }
}

/// Escalates the component's incident to CRITICAL once its recovery has failed `streak` times
/// in a row (the outage incident is CRITICAL already).
pub(super) async fn escalate(recovery: &Recovery, attempt: &Attempt, streak: u32) {
    let Some(id) = &attempt.incident_id else {
        return;
    };
    if !recovery.resilience.database_usable() {
        return;
    }
    let message = format!(
        "recovery of {} has failed {streak} times in a row; escalated to CRITICAL",
        attempt.component
    );
    let metadata = json!({ "failedRecoveries": streak, "threshold": recovery.escalate_after });
    match recovery
        .resilience
        .stores
        .incidents
        .escalate(
            id,
            message,
            metadata.as_object().cloned().unwrap_or_default(),
        )
        .await
    {
        Ok(Some(_)) => {
            tracing::warn!(component = %attempt.component, incident = %id, "recovery keeps failing: incident escalated")
        }
        Ok(None) => {}
        Err(err) => tracing::error!(error = %err, "escalating after failed recoveries failed"),
    }
}
