//! The three Prisma enums of the incident contract, as SeaORM active enums.
//!
//! On PostgreSQL they are native enum types (`"OpsIncidentSeverity"` …); on SQLite plain `TEXT`.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// Severity of an operational incident (`OpsIncidentSeverity`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    EnumIter,
    DeriveActiveEnum,
    Serialize,
    Deserialize,
)]
#[sea_orm(
    rs_type = "String",
    db_type = "Enum",
    enum_name = "OpsIncidentSeverity"
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Severity {
    #[sea_orm(string_value = "INFO")]
    Info,
    #[sea_orm(string_value = "WARN")]
    Warn,
    #[sea_orm(string_value = "CRITICAL")]
    Critical,
}

/// What part of the system an incident concerns (`OpsIncidentCategory`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    EnumIter,
    DeriveActiveEnum,
    Serialize,
    Deserialize,
)]
#[sea_orm(
    rs_type = "String",
    db_type = "Enum",
    enum_name = "OpsIncidentCategory"
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Category {
    #[sea_orm(string_value = "DB")]
    Db,
    #[sea_orm(string_value = "TUNNEL")]
    Tunnel,
    #[sea_orm(string_value = "API")]
    Api,
    #[sea_orm(string_value = "DEPLOY")]
    Deploy,
    #[sea_orm(string_value = "OTHER")]
    Other,
}

/// One step of an incident's timeline (`OpsIncidentEventType`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    EnumIter,
    DeriveActiveEnum,
    Serialize,
    Deserialize,
)]
#[sea_orm(
    rs_type = "String",
    db_type = "Enum",
    enum_name = "OpsIncidentEventType"
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventType {
    #[sea_orm(string_value = "DETECTED")]
    Detected,
    #[sea_orm(string_value = "RECOVERY_ATTEMPTED")]
    RecoveryAttempted,
    #[sea_orm(string_value = "RECOVERY_SUCCESS")]
    RecoverySuccess,
    #[sea_orm(string_value = "RECOVERY_FAILED")]
    RecoveryFailed,
    #[sea_orm(string_value = "ESCALATED")]
    Escalated,
    #[sea_orm(string_value = "RESOLVED")]
    Resolved,
}
