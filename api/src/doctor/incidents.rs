//! Failures open or extend incidents; a failure that persists is escalated; a check that passes
//! again records `RECOVERY_SUCCESS` and resolves its incidents.

use checks::{CheckResult, Registry, Status};
use entity::{Category, EventType, Severity};
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::store::incidents::{NewEvent, NewIncident, StoreError};
use crate::store::IncidentStore;

/// Marks the incidents the doctor manages, so recovery resolves only its own.
const SOURCE: &str = "doctor";

/// What a run did to one incident.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IncidentAction {
    pub check: String,
    pub action: Action,
    pub incident_id: String,
    pub fingerprint: String,
}

/// The kind of change a run made to an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Opened,
    /// A `DETECTED` event on the incident already open for the same failure.
    Extended,
    Escalated,
    Resolved,
}

fn category(check: &str) -> Category {
    match check {
        "database" => Category::Db,
        "tunnel" => Category::Tunnel,
        _ => Category::Api,
    }
}

/// Applies a run's results to the incident store; returns the actions and how many failed.
pub async fn apply(
    store: &IncidentStore,
    registry: &Registry,
    results: &[CheckResult],
    escalate_after: u32,
) -> (Vec<IncidentAction>, usize) {
    let mut actions = Vec::new();
    let mut failed = 0;
    for result in results {
        let outcome = match result.status {
            Status::Fail => {
                on_failure(
                    store,
                    registry.is_required(&result.name),
                    result,
                    escalate_after,
                )
                .await
            }
            Status::Pass | Status::Warn => on_recovery(store, result).await,
            Status::Skipped => Ok(Vec::new()),
        };
        match outcome {
            Ok(done) => actions.extend(done),
            Err(err) => {
                failed += 1;
                tracing::error!(check = %result.name, error = %err, "recording the check's incident failed");
            }
        }
    }
    (actions, failed)
}

fn reason_text(result: &CheckResult) -> String {
    result.reason.map_or("unknown", |r| r.as_str()).to_owned()
}

async fn on_failure(
    store: &IncidentStore,
    required: bool,
    result: &CheckResult,
    escalate_after: u32,
) -> Result<Vec<IncidentAction>, StoreError> {
    let reason = reason_text(result);
    let fingerprint = format!("check:{}:{reason}", result.name);
    let mut details = Map::new();
    details.insert("source".into(), SOURCE.into());
    details.insert("check".into(), result.name.clone().into());
    details.insert("reason".into(), reason.clone().into());
    details.insert("required".into(), required.into());
    details.insert("message".into(), result.message.clone().into());
    details.insert("hint".into(), json!(result.hint));
    details.insert("observed".into(), Value::Object(result.observed.clone()));
    let opened = store
        .open(NewIncident {
            severity: if required {
                Severity::Critical
            } else {
                Severity::Warn
            },
            category: category(&result.name),
            summary: format!(
                "{} check failing ({reason}): {}",
                result.name, result.message
            ),
            details,
            fingerprint: Some(fingerprint.clone()),
            event_metadata: Map::new(),
        })
        .await?;
    let id = opened.incident.id.clone();
    let mut actions = vec![IncidentAction {
        check: result.name.clone(),
        action: if opened.deduplicated {
            Action::Extended
        } else {
            Action::Opened
        },
        incident_id: id.clone(),
        fingerprint: fingerprint.clone(),
    }];
    if opened.deduplicated {
        let seen = store.detections_since_recovery(&id).await?;
        if seen >= u64::from(escalate_after) {
            let message = format!(
                "{} has failed in {seen} runs in a row; escalated to CRITICAL",
                result.name
            );
            let metadata = json!({ "consecutiveRuns": seen, "threshold": escalate_after });
            let escalated = store
                .escalate(
                    &id,
                    message,
                    metadata.as_object().cloned().unwrap_or_default(),
                )
                .await?;
            // `None`: escalated already, by an earlier run or another process.
            if escalated.is_some() {
                actions.push(IncidentAction {
                    check: result.name.clone(),
                    action: Action::Escalated,
                    incident_id: id,
                    fingerprint,
                });
            }
        }
    }
    Ok(actions)
}

async fn on_recovery(
    store: &IncidentStore,
    result: &CheckResult,
) -> Result<Vec<IncidentAction>, StoreError> {
    let open = store
        .open_with_details(&[("source", SOURCE), ("check", &result.name)])
        .await?;
    let mut actions = Vec::new();
    for incident in open {
        let fingerprint = incident.details_json["fingerprint"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let metadata = json!({ "status": result.status, "latencyMs": result.latency_ms });
        let metadata = metadata.as_object().cloned().unwrap_or_default();
        store
            .append_event(
                &incident.id,
                NewEvent {
                    event_type: EventType::RecoverySuccess,
                    message: format!("{} check passes again: {}", result.name, result.message),
                    metadata: metadata.clone(),
                },
            )
            .await?;
        let note = format!(
            "resolved automatically: the {} check passed again",
            result.name
        );
        match store.resolve(&incident.id, Some(note), metadata).await {
            Ok(_) | Err(StoreError::AlreadyResolved { .. }) => {}
            Err(err) => return Err(err),
        }
        actions.push(IncidentAction {
            check: result.name.clone(),
            action: Action::Resolved,
            incident_id: incident.id,
            fingerprint,
        });
    }
    Ok(actions)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use checks::{Reason, RegistryPolicy};
    use migration::{Migrator, MigratorTrait};
    use sea_orm::{ConnectOptions, Database};

    use super::*;
    use crate::store::incidents::WriteHealth;

    async fn store() -> IncidentStore {
        // One connection: each connection to `sqlite::memory:` is a database of its own.
        let mut options = ConnectOptions::new("sqlite::memory:");
        options.max_connections(1).sqlx_logging(false);
        let db = Database::connect(options).await.unwrap();
        Migrator::up(&db, None).await.unwrap();
        IncidentStore::new(db, WriteHealth::default())
    }

    fn registry() -> Registry {
        Registry::new(
            Vec::new(),
            RegistryPolicy {
                default_timeout: Duration::from_secs(1),
                timeouts: Default::default(),
                required: Default::default(),
            },
        )
    }

    async fn failing_run(store: &IncidentStore, registry: &Registry) -> Vec<Action> {
        let results = [CheckResult::fail(
            "openai",
            Reason::Timeout,
            "no answer",
            "check this host's egress",
        )];
        let (actions, failed) = apply(store, registry, &results, 3).await;
        assert_eq!(failed, 0);
        actions.into_iter().map(|a| a.action).collect()
    }

    #[tokio::test]
    async fn only_failures_since_the_last_recovery_count_towards_escalation() {
        let (store, registry) = (store().await, registry());
        assert_eq!(failing_run(&store, &registry).await, [Action::Opened]);
        assert_eq!(failing_run(&store, &registry).await, [Action::Extended]);
        let open = store
            .open_with_details(&[("source", SOURCE), ("check", "openai")])
            .await
            .unwrap();
        let id = open[0].id.clone();
        // A passing run recorded its recovery, but its resolve did not land.
        store
            .append_event(
                &id,
                NewEvent {
                    event_type: EventType::RecoverySuccess,
                    message: "openai check passes again".to_owned(),
                    metadata: Map::new(),
                },
            )
            .await
            .unwrap();

        assert_eq!(failing_run(&store, &registry).await, [Action::Extended]);
        assert_eq!(failing_run(&store, &registry).await, [Action::Extended]);
        assert_eq!(
            failing_run(&store, &registry).await,
            [Action::Extended, Action::Escalated],
            "three failing runs in a row since the recovery"
        );
        assert_eq!(
            failing_run(&store, &registry).await,
            [Action::Extended],
            "escalated once only"
        );
        let found = store.get(&id).await.unwrap().unwrap();
        assert_eq!(found.severity, Severity::Critical);
    }
}
