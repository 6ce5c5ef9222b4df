//! The deploy store: usable without HTTP, like the incident store it opens incidents through.

use entity::{ops_deploy as deploy, ops_gate_evaluation as evaluation, Category, Severity};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::gate::Recorder;
use crate::incidents::cursor::Cursor;
use crate::incidents::store::{before_cond, new_id, now, paginate, NewIncident, Page};
use crate::incidents::{IncidentStore, StoreError};

/// How a deploy ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
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
#[derive(Debug, Clone)]
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

#[derive(Clone)]
pub struct DeployStore {
    db: DatabaseConnection,
    incidents: IncidentStore,
    /// Gate evaluations are written in the background; reading a deploy's flushes them first.
    recorder: Recorder,
}

impl DeployStore {
    pub fn new(incidents: IncidentStore, recorder: Recorder) -> Self {
        Self {
            db: incidents.connection().clone(),
            incidents,
            recorder,
        }
    }

    pub async fn start(&self, new: NewDeploy) -> Result<deploy::Model, DbErr> {
        let model = deploy::ActiveModel {
            id: Set(new_id()),
            created_at: Set(now()),
            environment: Set(new.environment),
            version: Set(new.version),
            git_sha: Set(new.git_sha),
            strategy: Set(new.strategy),
            started_by: Set(new.started_by),
            external_ids_json: Set(Value::Object(new.external_ids)),
            status: Set("running".to_owned()),
            finished_at: Set(None),
            reason: Set(None),
            report_json: Set(None),
            incident_id: Set(None),
        };
        let outcome = deploy::Entity::insert(model)
            .exec_with_returning(&self.db)
            .await;
        self.incidents.write_health().observe(&outcome);
        outcome
    }

    /// Closes a running deploy. A failed or rolled-back deploy opens a CRITICAL `DEPLOY` incident
    /// whose `DETECTED` event links the deploy's gate evaluations.
    #[tracing::instrument(skip_all, fields(deploy_id = %id, status = status.as_str()))]
    pub async fn finish(
        &self,
        id: &str,
        status: FinishStatus,
        reason: Option<String>,
        report: Option<Value>,
    ) -> Result<deploy::Model, StoreError> {
        let updated = deploy::Entity::update_many()
            .col_expr(deploy::Column::Status, status.as_str().into())
            .col_expr(deploy::Column::FinishedAt, now().into())
            .col_expr(deploy::Column::Reason, reason.clone().into())
            .col_expr(deploy::Column::ReportJson, report.into())
            .filter(deploy::Column::Id.eq(id))
            .filter(deploy::Column::Status.eq("running"))
            .exec(&self.db)
            .await;
        self.incidents.write_health().observe(&updated);
        let updated = updated?;
        let found = self
            .get(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
        if updated.rows_affected == 0 {
            return Err(StoreError::DeployFinished {
                id: id.to_owned(),
                status: found.status,
            });
        }
        if !matches!(status, FinishStatus::Failed | FinishStatus::RolledBack) {
            return Ok(found);
        }
        let gates: Vec<Value> = self
            .gates(id)
            .await?
            .iter()
            .map(|g| json!({ "gateId": g.id, "verdict": g.verdict, "summary": g.summary, "createdAt": crate::incidents::dto::timestamp(&g.created_at) }))
            .collect();
        let what = if status == FinishStatus::Failed {
            "failed"
        } else {
            "was rolled back"
        };
        let mut details = Map::new();
        details.insert("deployId".into(), id.into());
        details.insert("environment".into(), found.environment.clone().into());
        details.insert("version".into(), found.version.clone().into());
        details.insert("gitSha".into(), json!(found.git_sha));
        details.insert("status".into(), status.as_str().into());
        details.insert("reason".into(), json!(reason));
        let mut event_metadata = Map::new();
        event_metadata.insert("deployId".into(), id.into());
        event_metadata.insert("gateEvaluations".into(), Value::Array(gates));
        let opened = self
            .incidents
            .open(NewIncident {
                severity: Severity::Critical,
                category: Category::Deploy,
                summary: truncate(
                    &format!(
                        "deploy of {} to {} {what}{}",
                        found.version,
                        found.environment,
                        reason
                            .as_deref()
                            .map(|r| format!(": {r}"))
                            .unwrap_or_default()
                    ),
                    crate::incidents::dto::MAX_SUMMARY_CHARS,
                ),
                details,
                fingerprint: Some(format!("deploy:{id}")),
                event_metadata,
            })
            .await?;
        let linked = deploy::Entity::update_many()
            .col_expr(
                deploy::Column::IncidentId,
                opened.incident.id.clone().into(),
            )
            .filter(deploy::Column::Id.eq(id))
            .exec(&self.db)
            .await;
        self.incidents.write_health().observe(&linked);
        linked?;
        Ok(deploy::Model {
            incident_id: Some(opened.incident.id),
            ..found
        })
    }

    pub async fn get(&self, id: &str) -> Result<Option<deploy::Model>, DbErr> {
        deploy::Entity::find_by_id(id).one(&self.db).await
    }

    /// A deploy's gate evaluations, oldest first.
    pub async fn gates(&self, id: &str) -> Result<Vec<evaluation::Model>, DbErr> {
        self.recorder.flush().await;
        evaluation::Entity::find()
            .filter(evaluation::Column::DeployId.eq(id))
            .order_by_asc(evaluation::Column::CreatedAt)
            .order_by_asc(evaluation::Column::Id)
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
        if let Some(c) = before {
            query = query.filter(before_cond(C::CreatedAt, C::Id, c));
        }
        let rows = query
            .order_by_desc(C::CreatedAt)
            .order_by_desc(C::Id)
            .limit(limit + 1)
            .all(&self.db)
            .await?;
        Ok(paginate(rows, limit, |r| Cursor {
            created_at: r.created_at,
            id: r.id.clone(),
        }))
    }
}
