//! Failures open or extend incidents; a failure that persists is escalated; a check that passes
//! again records `RECOVERY_SUCCESS` and resolves its incidents. Each step acts on the check's
//! decision (see [`crate::decisions`]), not on one observation: a blip opens nothing, and a
//! failure another check's failure explains opens no incident of its own.

use checks::{CheckResult, Registry, Status};
use entity::{Category, EventType, Severity};
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::decisions::{incident_key, Decided, Decision};
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

/// What a result and its decision call for.
fn step(result: &CheckResult, decision: &Decision) -> Step {
    match (result.status, decision.state) {
        (Status::Skipped, _) => Step::Nothing,
        (Status::Fail, Decided::Failing) if decision.consequence_of.is_some() => Step::Nothing,
        (Status::Fail, Decided::Failing) => Step::Failure,
        (Status::Pass | Status::Warn, Decided::Passing) => Step::Recovery,
        // A failure not yet confirmed, or a pass not yet confirmed: wait for the next one.
        _ => Step::Nothing,
    }
}

enum Step {
    Failure,
    Recovery,
    Nothing,
}

/// Applies a run's results, with their decisions (in the same order), to the incident store;
/// returns the actions and how many failed.
pub async fn apply(
    store: &IncidentStore,
    registry: &Registry,
    results: &[CheckResult],
    decisions: &[Decision],
    escalate_after: u32,
) -> (Vec<IncidentAction>, usize) {
    let mut actions = Vec::new();
    let mut failed = 0;
    for (result, decision) in results.iter().zip(decisions) {
        let outcome = match step(result, decision) {
            Step::Failure => {
                on_failure(
                    store,
                    registry.is_required(&result.name),
                    result,
                    escalate_after,
                )
                .await
            }
            Step::Recovery => on_recovery(store, result).await,
            Step::Nothing => Ok(Vec::new()),
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
    let fingerprint = incident_key(&result.name, result.reason);
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
        let decisions = [Decision {
            check: "openai".into(),
            state: Decided::Failing,
            failing_streak: 2,
            passing_streak: 0,
            threshold: 2,
            changed: false,
            consequence_of: None,
        }];
        let (actions, failed) = apply(store, registry, &results, &decisions, 3).await;
        assert_eq!(failed, 0);
        actions.into_iter().map(|a| a.action).collect()
    }

    /// Runs `results` through the decisions as a doctor run does.
    async fn run(
        store: &IncidentStore,
        registry: &Registry,
        latest: &crate::suite::LatestResults,
        results: &[CheckResult],
    ) -> Vec<(String, Action, String)> {
        let decisions = latest.record(results);
        let (actions, failed) = apply(store, registry, results, &decisions, 3).await;
        assert_eq!(failed, 0);
        actions
            .into_iter()
            .map(|a| (a.check, a.action, a.fingerprint))
            .collect()
    }

    #[tokio::test]
    async fn a_blip_opens_nothing_and_recovery_waits_for_two_passes() {
        let (store, registry) = (store().await, registry());
        let latest = crate::suite::LatestResults::default();
        let pass = || CheckResult::pass("stripe", "ok");
        let blip = || CheckResult::fail("stripe", Reason::UpstreamError, "503", "wait");
        assert!(run(&store, &registry, &latest, &[pass()]).await.is_empty());
        assert!(
            run(&store, &registry, &latest, &[blip()]).await.is_empty(),
            "one blip"
        );
        assert!(run(&store, &registry, &latest, &[pass()]).await.is_empty());
        assert!(run(&store, &registry, &latest, &[blip()]).await.is_empty());
        let opened = run(&store, &registry, &latest, &[blip()]).await;
        assert_eq!(opened[0].1, Action::Opened, "two in a row");
        assert!(
            run(&store, &registry, &latest, &[pass()]).await.is_empty(),
            "one pass"
        );
        let resolved = run(&store, &registry, &latest, &[pass()]).await;
        assert_eq!(resolved[0].1, Action::Resolved);
        // A reason waiting cannot fix opens at once.
        let auth = CheckResult::fail("stripe", Reason::Auth, "401", "new key");
        assert_eq!(
            run(&store, &registry, &latest, &[auth]).await[0].1,
            Action::Opened
        );
    }

    #[tokio::test]
    async fn consequences_open_no_incident_and_a_disconnected_tunnel_is_one() {
        let (store, registry) = (store().await, registry());
        let latest = crate::suite::LatestResults::default();
        let mut origin = CheckResult::fail("tunnel", Reason::UpstreamError, "503", "wait");
        origin
            .observed
            .insert("public_http_status".into(), 503.into());
        let db_down = CheckResult::fail("database", Reason::ConnectionRefused, "down", "start it");
        let actions = run(&store, &registry, &latest, &[db_down, origin]).await;
        assert_eq!(
            actions.iter().map(|a| a.0.as_str()).collect::<Vec<_>>(),
            ["database"],
            "the origin's 503 is the database's consequence: {actions:?}"
        );

        let latest = crate::suite::LatestResults::default();
        let tunnel = |r| CheckResult::fail("tunnel", r, "down", "start cloudflared");
        let first = run(&store, &registry, &latest, &[tunnel(Reason::ProcessDown)]).await;
        let then = run(&store, &registry, &latest, &[tunnel(Reason::NotRouting)]).await;
        assert_eq!(first[0].1, Action::Opened);
        assert_eq!(then[0].1, Action::Extended, "the same TUNNEL incident");
        assert_eq!(then[0].2, "check:tunnel:not_connected");
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
