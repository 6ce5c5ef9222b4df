//! The deploy store, owner of `OpsDeploy`: deploys started and finished (a failed or rolled-back
//! one opens a `DEPLOY` incident, in the same transaction), listed, and looked up by release for
//! the gate, with the short-lived cache of those lookups that its own writes clear.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use entity::{ops_deploy as deploy, Category, Severity, Timestamp};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbErr,
    EntityTrait, QueryFilter, QueryOrder, TransactionTrait,
};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::evaluations::EvaluationStore;
use super::incidents::{IncidentStore, NewIncident, Stamp, StoreError, MAX_SUMMARY_CHARS};
use crate::kernel::{new_id, newest_first, now, timestamp, Cursor, Page};

mod progress;

/// A deploy's `status` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeployStatus {
    Running,
    Finished(FinishStatus),
}

impl DeployStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeployStatus::Running => "running",
            DeployStatus::Finished(f) => f.as_str(),
        }
    }
}

/// How a deploy ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FinishStatus {
    Succeeded,
    Failed,
    RolledBack,
    Canceled,
}

impl FinishStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishStatus::Succeeded => "succeeded",
            FinishStatus::Failed => "failed",
            FinishStatus::RolledBack => "rolled_back",
            FinishStatus::Canceled => "canceled",
        }
    }
}

/// A deploy as started.
#[derive(Debug, Clone, serde::Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewDeploy {
    pub environment: String,
    pub version: String,
    pub git_sha: Option<String>,
    pub strategy: Option<String>,
    pub started_by: Option<String>,
    pub external_ids: Map<String, Value>,
}

/// At most `max` characters, with an ellipsis when cut (the full reason stays in `detailsJson`).
fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Running-deploy lookups by `(environment, release)`, with when they were made.
type RunningCache = HashMap<(String, String), (Instant, Option<String>)>;

/// How long a running-deploy lookup is reused: the gate asks many times a second, and a deploy
/// starts or ends rarely (and every start or finish here clears the cache).
const RUNNING_CACHE_TTL: Duration = Duration::from_secs(1);

/// Cheap to clone: handles and a shared cache.
#[derive(Clone)]
pub struct DeployStore {
    db: DatabaseConnection,
    incidents: IncidentStore,
    evaluations: EvaluationStore,
    running: Arc<Mutex<RunningCache>>,
}

impl DeployStore {
    pub fn new(incidents: IncidentStore, evaluations: EvaluationStore) -> Self {
        Self {
            db: incidents.connection().clone(),
            incidents,
            evaluations,
            running: Arc::default(),
        }
    }

    pub async fn start(&self, new: NewDeploy) -> Result<deploy::Model, DbErr> {
        self.start_stamped(new, new_id(), now(), false).await
    }

    /// [`Self::start`] with the deploy's id and time given; with `replay`, a deploy already
    /// stored is returned as it is.
    pub async fn start_stamped(
        &self,
        new: NewDeploy,
        id: String,
        at: chrono::NaiveDateTime,
        replay: bool,
    ) -> Result<deploy::Model, DbErr> {
        if replay {
            if let Some(found) = self.get(&id).await? {
                return Ok(found);
            }
        }
        let model = deploy::ActiveModel {
            id: Set(id),
            created_at: Set(Timestamp::new(at, self.db.get_database_backend())),
            environment: Set(new.environment),
            version: Set(new.version),
            git_sha: Set(new.git_sha),
            strategy: Set(new.strategy),
            started_by: Set(new.started_by),
            external_ids_json: Set(Value::Object(new.external_ids)),
            status: Set(DeployStatus::Running.as_str().to_owned()),
            finished_at: Set(None),
            reason: Set(None),
            report_json: Set(None),
            incident_id: Set(None),
        };
        let outcome = deploy::Entity::insert(model)
            .exec_with_returning(&self.db)
            .await;
        self.incidents.write_health().observe(&outcome);
        self.forget_running();
        outcome
    }

    /// Closes a running deploy. A failed or rolled-back deploy opens a CRITICAL `DEPLOY` incident
    /// whose `DETECTED` event links the deploy's gate evaluations; the status, the incident and
    /// the link commit together or not at all, so a retry after a failure finds the deploy
    /// still running.
    #[tracing::instrument(skip_all, fields(deploy_id = %id, status = status.as_str()))]
    pub async fn finish(
        &self,
        id: &str,
        status: FinishStatus,
        reason: Option<String>,
        report: Option<Value>,
    ) -> Result<deploy::Model, StoreError> {
        self.finish_stamped(id, status, reason, report, Stamp::now())
            .await
    }

    /// [`Self::finish`] at the stamp's time, its incident with the stamp's ids; with
    /// `stamp.replay`, a deploy that this very finish closed already is returned as it is.
    pub async fn finish_stamped(
        &self,
        id: &str,
        status: FinishStatus,
        reason: Option<String>,
        report: Option<Value>,
        stamp: Stamp,
    ) -> Result<deploy::Model, StoreError> {
        if stamp.replay {
            if let Some(found) = self.get(id).await? {
                let same = found.status == status.as_str()
                    && found.finished_at.map(|t| t.at()) == Some(stamp.at);
                if same {
                    return Ok(found);
                }
            }
        }
        let at = stamp.at;
        let opens_incident = matches!(status, FinishStatus::Failed | FinishStatus::RolledBack);
        let gates: Vec<Value> = if opens_incident {
            self.evaluations
                .for_deploy(id)
                .await?
                .iter()
                .map(|g| json!({ "gateId": g.id, "verdict": g.verdict, "summary": g.summary, "createdAt": timestamp(&g.created_at) }))
                .collect()
        } else {
            Vec::new()
        };
        let outcome = async {
            let _guard = self.incidents.write_guard().await;
            let txn = self.db.begin().await?;
            let updated = deploy::Entity::update_many()
                .col_expr(deploy::Column::Status, status.as_str().into())
                .col_expr(
                    deploy::Column::FinishedAt,
                    Timestamp::new(at, txn.get_database_backend()).into(),
                )
                .col_expr(deploy::Column::Reason, reason.clone().into())
                .col_expr(deploy::Column::ReportJson, report.into())
                .filter(deploy::Column::Id.eq(id))
                .filter(deploy::Column::Status.eq(DeployStatus::Running.as_str()))
                .exec(&txn)
                .await?;
            let found = deploy::Entity::find_by_id(id)
                .one(&txn)
                .await?
                .ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
            if updated.rows_affected == 0 {
                return Err(StoreError::DeployFinished {
                    id: id.to_owned(),
                    status: found.status,
                });
            }
            if !opens_incident {
                txn.commit().await?;
                return Ok(found);
            }
            let opened = self
                .incidents
                .open_in_stamped(
                    &txn,
                    deploy_incident(&found, status, reason.as_deref(), gates),
                    stamp,
                )
                .await?;
            deploy::Entity::update_many()
                .col_expr(
                    deploy::Column::IncidentId,
                    opened.incident.id.clone().into(),
                )
                .filter(deploy::Column::Id.eq(id))
                .exec(&txn)
                .await?;
            txn.commit().await?;
            Ok(deploy::Model {
                incident_id: Some(opened.incident.id),
                ..found
            })
        }
        .await;
        self.incidents.write_health().observe(&outcome);
        self.forget_running();
        outcome
    }

    pub async fn get(&self, id: &str) -> Result<Option<deploy::Model>, DbErr> {
        deploy::Entity::find_by_id(id).one(&self.db).await
    }

    /// Deploys that finished at or after `from`, in the order they finished, at most `limit`
    /// (the notifier's feed of finished deploys).
    pub async fn finished_from(
        &self,
        from: chrono::NaiveDateTime,
        limit: u64,
    ) -> Result<Vec<deploy::Model>, DbErr> {
        use sea_orm::QuerySelect;
        deploy::Entity::find()
            .filter(
                deploy::Column::FinishedAt
                    .gte(entity::Timestamp::new(from, self.db.get_database_backend())),
            )
            .order_by_asc(deploy::Column::FinishedAt)
            .order_by_asc(deploy::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await
    }

    /// Deploys, newest first, optionally of one environment.
    pub async fn list(
        &self,
        environment: Option<&str>,
        limit: u64,
        before: Option<&Cursor>,
    ) -> Result<Page<deploy::Model>, DbErr> {
        use deploy::Column as C;
        let mut query = deploy::Entity::find();
        if let Some(env) = environment {
            query = query.filter(C::Environment.eq(env));
        }
        newest_first(&self.db, query, (C::CreatedAt, C::Id), limit, before, |r| {
            Cursor {
                created_at: r.created_at.at(),
                id: r.id.clone(),
            }
        })
        .await
    }

    /// The running deploy of this release (by version or git sha) in this environment, if any;
    /// served from a cache for [`RUNNING_CACHE_TTL`].
    pub async fn running(&self, environment: &str, release: &str) -> Result<Option<String>, DbErr> {
        let key = (environment.to_owned(), release.to_owned());
        if let Some((at, id)) = self.running.lock().ok().and_then(|c| c.get(&key).cloned()) {
            if at.elapsed() < RUNNING_CACHE_TTL {
                return Ok(id);
            }
        }
        let id = deploy::Entity::find()
            .filter(deploy::Column::Environment.eq(environment))
            .filter(deploy::Column::Status.eq(DeployStatus::Running.as_str()))
            .filter(
                Condition::any()
                    .add(deploy::Column::Version.eq(release))
                    .add(deploy::Column::GitSha.eq(release)),
            )
            .order_by_desc(deploy::Column::CreatedAt)
            .one(&self.db)
            .await?
            .map(|d| d.id);
        if let Ok(mut cache) = self.running.lock() {
            if cache.len() >= 1024 {
                cache.clear();
            }
            cache.insert(key, (Instant::now(), id.clone()));
        }
        Ok(id)
    }

    fn forget_running(&self) {
        if let Ok(mut cache) = self.running.lock() {
            cache.clear();
        }
    }
}

/// The `DEPLOY` incident a failed or rolled-back deploy opens.
fn deploy_incident(
    found: &deploy::Model,
    status: FinishStatus,
    reason: Option<&str>,
    gates: Vec<Value>,
) -> NewIncident {
    let what = if status == FinishStatus::Failed {
        "failed"
    } else {
        "was rolled back"
    };
    let mut details = Map::new();
    details.insert("deployId".into(), found.id.clone().into());
    details.insert("environment".into(), found.environment.clone().into());
    details.insert("version".into(), found.version.clone().into());
    details.insert("gitSha".into(), json!(found.git_sha));
    details.insert("status".into(), status.as_str().into());
    details.insert("reason".into(), json!(reason));
    let mut event_metadata = Map::new();
    event_metadata.insert("deployId".into(), found.id.clone().into());
    event_metadata.insert("gateEvaluations".into(), Value::Array(gates));
    NewIncident {
        severity: Severity::Critical,
        category: Category::Deploy,
        summary: truncate(
            &format!(
                "deploy of {} to {} {what}{}",
                found.version,
                found.environment,
                reason.map(|r| format!(": {r}")).unwrap_or_default()
            ),
            MAX_SUMMARY_CHARS,
        ),
        details,
        fingerprint: Some(format!("deploy:{}", found.id)),
        event_metadata,
    }
}
