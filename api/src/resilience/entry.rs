//! What a spooled write is, and how it is applied: every acknowledged write (incident reports,
//! events, resolves, gate verdicts, doctor runs, deploy records) as one value carrying its ids
//! and original time, applied through the stores live or on replay. On replay each kind first
//! looks for its own ids, so a replay after a crash never doubles a row or an event, and an
//! incident report meets fingerprint dedupe as the database stands at replay time.

use chrono::NaiveDateTime;
use entity::{ops_deploy as deploy, ops_doctor_run as run_row, ops_gate_evaluation as evaluation};
use entity::{ops_incident as incident, ops_incident_event as event};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::store::deploys::{FinishStatus, NewDeploy};
use crate::store::incidents::{
    IncidentFilter, NewEvent, NewIncident, OpenState, Opened, Stamp, StoreError,
};
use crate::store::{DeployStore, EvaluationStore, IncidentStore, RunStore};

/// The incident a write is aimed at: by id, or the open incident with a fingerprint (the
/// database outage's, whose id is known only once its report is stored).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Target {
    Id(String),
    Fingerprint(String),
}

/// One acknowledged write.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    OpenIncident {
        stamp: Stamp,
        incident: NewIncident,
    },
    AppendEvent {
        target: Target,
        stamp: Stamp,
        event: NewEvent,
    },
    Resolve {
        target: Target,
        stamp: Stamp,
        notes: Option<String>,
        metadata: Map<String, Value>,
    },
    Evaluations {
        rows: Vec<EvaluationRow>,
    },
    Run {
        row: RunRow,
    },
    DeployStart {
        id: String,
        at: NaiveDateTime,
        deploy: NewDeploy,
    },
    DeployFinish {
        id: String,
        status: FinishStatus,
        reason: Option<String>,
        report: Option<Value>,
        stamp: Stamp,
    },
}

impl Entry {
    /// A short name for logs and counts.
    pub fn kind(&self) -> &'static str {
        match self {
            Entry::OpenIncident { .. } => "open_incident",
            Entry::AppendEvent { .. } => "append_event",
            Entry::Resolve { .. } => "resolve",
            Entry::Evaluations { .. } => "evaluations",
            Entry::Run { .. } => "run",
            Entry::DeployStart { .. } => "deploy_start",
            Entry::DeployFinish { .. } => "deploy_finish",
        }
    }

    fn mark_replay(&mut self) {
        match self {
            Entry::OpenIncident { stamp, .. }
            | Entry::AppendEvent { stamp, .. }
            | Entry::Resolve { stamp, .. }
            | Entry::DeployFinish { stamp, .. } => stamp.replay = true,
            Entry::Evaluations { .. } | Entry::Run { .. } | Entry::DeployStart { .. } => {}
        }
    }
}

/// What applying a write stored.
#[derive(Debug)]
pub enum Applied {
    Opened(Opened),
    Event(event::Model),
    Resolved(incident::Model, event::Model),
    Deploy(deploy::Model),
    Stored,
}

/// The stores a write may go to.
#[derive(Clone)]
pub struct Stores {
    pub incidents: IncidentStore,
    pub runs: RunStore,
    pub deploys: DeployStore,
    pub evaluations: EvaluationStore,
}

impl Stores {
    /// Applies a write; with `replay`, one that is stored already is not applied again.
    pub async fn apply(&self, entry: Entry, replay: bool) -> Result<Applied, StoreError> {
        let mut entry = entry;
        if replay {
            entry.mark_replay();
        }
        match entry {
            Entry::OpenIncident { stamp, incident } => self
                .incidents
                .open_stamped(incident, stamp)
                .await
                .map(Applied::Opened),
            Entry::AppendEvent {
                target,
                stamp,
                event,
            } => {
                let id = self.target(&target).await?;
                self.incidents
                    .append_event_stamped(&id, event, stamp)
                    .await
                    .map(Applied::Event)
            }
            Entry::Resolve {
                target,
                stamp,
                notes,
                metadata,
            } => {
                let id = self.target(&target).await?;
                self.incidents
                    .resolve_stamped(&id, notes, metadata, stamp)
                    .await
                    .map(|(i, e)| Applied::Resolved(i, e))
            }
            Entry::Evaluations { rows } => {
                let backend = self.runs.backend();
                let rows = rows.into_iter().map(|r| r.into_model(backend)).collect();
                self.evaluations.insert_replayed(rows).await?;
                Ok(Applied::Stored)
            }
            Entry::Run { row } => {
                let backend = self.runs.backend();
                self.runs.insert_row(row.into_model(backend)).await?;
                Ok(Applied::Stored)
            }
            Entry::DeployStart { id, at, deploy } => self
                .deploys
                .start_stamped(deploy, id, at, replay)
                .await
                .map(Applied::Deploy)
                .map_err(StoreError::from),
            Entry::DeployFinish {
                id,
                status,
                reason,
                report,
                stamp,
            } => self
                .deploys
                .finish_stamped(&id, status, reason, report, stamp)
                .await
                .map(Applied::Deploy),
        }
    }

    async fn target(&self, target: &Target) -> Result<String, StoreError> {
        match target {
            Target::Id(id) => Ok(id.clone()),
            Target::Fingerprint(fp) => {
                let filter = IncidentFilter {
                    state: Some(OpenState::Open),
                    fingerprint: Some(fp.clone()),
                    ..Default::default()
                };
                let page = self.incidents.list(&filter, 1, None).await?;
                page.items
                    .into_iter()
                    .next()
                    .map(|i| i.id)
                    .ok_or_else(|| StoreError::NotFound(format!("open incident `{fp}`")))
            }
        }
    }
}

/// A gate evaluation row as the spool keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvaluationRow {
    pub id: String,
    pub created_at: NaiveDateTime,
    pub environment: String,
    pub release: String,
    pub verdict: String,
    pub summary: String,
    pub source: String,
    pub checks_json: Value,
    pub deploy_id: Option<String>,
}

impl From<evaluation::Model> for EvaluationRow {
    fn from(m: evaluation::Model) -> Self {
        Self {
            id: m.id,
            created_at: m.created_at.at(),
            environment: m.environment,
            release: m.release,
            verdict: m.verdict,
            summary: m.summary,
            source: m.source,
            checks_json: m.checks_json,
            deploy_id: m.deploy_id,
        }
    }
}

impl EvaluationRow {
    /// The row as the store writes it on `backend`.
    pub fn into_model(self, backend: sea_orm::DbBackend) -> evaluation::Model {
        let r = self;
        evaluation::Model {
            id: r.id,
            created_at: entity::Timestamp::new(r.created_at, backend),
            environment: r.environment,
            release: r.release,
            verdict: r.verdict,
            summary: r.summary,
            source: r.source,
            checks_json: r.checks_json,
            deploy_id: r.deploy_id,
        }
    }
}

/// A doctor run row as the spool keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRow {
    pub id: String,
    pub created_at: NaiveDateTime,
    pub finished_at: NaiveDateTime,
    pub trigger: String,
    pub status: String,
    pub duration_ms: i32,
    pub results_json: Value,
}

impl From<run_row::Model> for RunRow {
    fn from(m: run_row::Model) -> Self {
        Self {
            id: m.id,
            created_at: m.created_at.at(),
            finished_at: m.finished_at.at(),
            trigger: m.trigger,
            status: m.status,
            duration_ms: m.duration_ms,
            results_json: m.results_json,
        }
    }
}

impl RunRow {
    /// The row as the store writes it on `backend`.
    pub fn into_model(self, backend: sea_orm::DbBackend) -> run_row::Model {
        let r = self;
        run_row::Model {
            id: r.id,
            created_at: entity::Timestamp::new(r.created_at, backend),
            finished_at: entity::Timestamp::new(r.finished_at, backend),
            trigger: r.trigger,
            status: r.status,
            duration_ms: r.duration_ms,
            results_json: r.results_json,
        }
    }
}
