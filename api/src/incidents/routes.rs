//! `/ops/incidents` and `/ops/timeline`: the HTTP face of the incident store.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use entity::{Category, EventType, Severity};
use sea_orm::ActiveEnum;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::dto::{
    CreateEvent, CreateIncident, CreatedIncident, EventJson, IncidentBrief, IncidentJson,
    IncidentStatsJson, IncidentWithEvents, OpenStats, PairCount, ResolveIncident, ResolvedIncident,
    ResolvedStats, TimelineItem, MAX_FINGERPRINT_CHARS, MAX_MESSAGE_CHARS, MAX_SUMMARY_CHARS,
};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiQuery, MaybeJson};
use crate::kernel::{timestamp, PageJson};
use crate::openapi::{CategoryName, EventTypeName, SeverityName};
use crate::params::{parse_enum, parse_time, required_text, PageRequest};
use crate::path::ApiPath;
use crate::resilience::{self, Applied, Entry, Target, Written};
use crate::state::AppState;
use crate::store::incidents::{
    IncidentFilter, NewEvent, NewIncident, OpenState, Stamp, StoreError, TimelineFilter,
};
use serde_json::json;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ops/incidents", post(create).get(list))
        .route("/ops/incidents/stats", get(stats))
        .route("/ops/incidents/{id}", get(show))
        .route("/ops/incidents/{id}/events", post(add_event))
        .route("/ops/incidents/{id}/resolve", post(resolve))
        .route("/ops/timeline", get(timeline))
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound(_) => ApiError::NotFound(err.to_string()),
            StoreError::AlreadyResolved { .. }
            | StoreError::Resolved(_)
            | StoreError::DeployFinished { .. } => ApiError::Conflict(err.to_string()),
            StoreError::Db(db) => ApiError::Database(db),
        }
    }
}

/// Opens an incident, or extends the open one with the same fingerprint (200, `deduplicated`).
#[utoipa::path(
    post,
    path = "/ops/incidents",
    tag = "incidents",
    operation_id = "createIncident",
    security(("admin" = [])),
    request_body = CreateIncident,
    responses(
        (status = 201, description = "opened", body = CreatedIncident, headers(("Location" = String, description = "the incident's URL"))),
        (status = 202, response = crate::openapi::Queued),
        (status = 507, response = crate::openapi::SpoolFull),
        (status = 200, description = "an open incident with this fingerprint was extended", body = CreatedIncident, headers(("Location" = String, description = "the incident's URL"))),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 422, response = crate::openapi::Invalid),
    )
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateIncident>,
) -> ApiResult<Response> {
    let summary = required_text("summary", body.summary, MAX_SUMMARY_CHARS)?;
    let fingerprint = match body.fingerprint {
        Some(fp) => Some(required_text("fingerprint", fp, MAX_FINGERPRINT_CHARS)?),
        None => None,
    };
    let mut details = body.details_json.unwrap_or_default();
    if let Some(Value::String(old)) = details.get("fingerprint") {
        if fingerprint.as_deref() != Some(old.as_str()) {
            return Err(ApiError::invalid(
                "detailsJson.fingerprint",
                "`fingerprint` is reserved for the top-level `fingerprint` field; set that instead",
            ));
        }
    }
    details.remove("fingerprint");
    let stamp = Stamp::now();
    let entry = Entry::OpenIncident {
        stamp: stamp.clone(),
        incident: NewIncident {
            severity: body.severity,
            category: body.category,
            summary,
            details,
            fingerprint: fingerprint.clone(),
            event_metadata: Map::new(),
        },
    };
    let opened = match state.resilience.submit(entry).await? {
        Written::Stored(Applied::Opened(opened)) => opened,
        Written::Queued { depth } => {
            // With a fingerprint, replay may extend an incident already open instead.
            let body = json!({
                "incidentId": stamp.incident_id,
                "eventId": stamp.event_id,
                "fingerprint": fingerprint,
                "reportedAt": timestamp(&stamp.at),
            });
            return Ok(resilience::routes::queued(body, depth));
        }
        Written::Stored(other) => return Err(unexpected(other)),
    };
    let status = if opened.deduplicated {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let location = format!("/ops/incidents/{}", opened.incident.id);
    let body = CreatedIncident {
        incident: IncidentJson::from(opened.incident),
        event: EventJson::from(opened.event),
        deduplicated: opened.deduplicated,
        queued: false,
    };
    Ok((status, [(header::LOCATION, location)], Json(body)).into_response())
}

/// Appends an event to an open incident's timeline.
#[utoipa::path(
    post,
    path = "/ops/incidents/{id}/events",
    tag = "incidents",
    operation_id = "addIncidentEvent",
    security(("admin" = [])),
    params(("id" = String, Path, description = "the incident's id")),
    request_body = CreateEvent,
    responses(
        (status = 201, description = "appended", body = EventJson),
        (status = 202, response = crate::openapi::Queued),
        (status = 507, response = crate::openapi::SpoolFull),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 404, response = crate::openapi::NotFound),
        (status = 409, response = crate::openapi::Conflict),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 422, response = crate::openapi::Invalid),
    )
)]
pub(crate) async fn add_event(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<CreateEvent>,
) -> ApiResult<Response> {
    let id = incident_id(id)?;
    if body.event_type == EventType::Resolved {
        return Err(ApiError::invalid(
            "eventType",
            format!("RESOLVED is recorded by POST /ops/incidents/{id}/resolve, which also sets resolvedAt"),
        ));
    }
    let message = required_text("message", body.message, MAX_MESSAGE_CHARS)?;
    let stamp = Stamp::now();
    let entry = Entry::AppendEvent {
        target: Target::Id(id.clone()),
        stamp: stamp.clone(),
        event: NewEvent {
            event_type: body.event_type,
            message,
            metadata: body.metadata_json.unwrap_or_default(),
        },
    };
    match state.resilience.submit(entry).await? {
        Written::Stored(Applied::Event(event)) => {
            let mut body = serde_json::to_value(EventJson::from(event)).unwrap_or_default();
            body["queued"] = json!(false);
            Ok((StatusCode::CREATED, Json(body)).into_response())
        }
        Written::Queued { depth } => Ok(resilience::routes::queued(
            json!({ "incidentId": id, "eventId": stamp.event_id, "createdAt": timestamp(&stamp.at) }),
            depth,
        )),
        Written::Stored(other) => Err(unexpected(other)),
    }
}

/// Resolves an incident; the body is optional.
#[utoipa::path(
    post,
    path = "/ops/incidents/{id}/resolve",
    tag = "incidents",
    operation_id = "resolveIncident",
    security(("admin" = [])),
    params(("id" = String, Path, description = "the incident's id")),
    request_body(content = Option<ResolveIncident>, description = "optional notes and metadata"),
    responses(
        (status = 200, description = "resolved", body = ResolvedIncident),
        (status = 202, response = crate::openapi::Queued),
        (status = 507, response = crate::openapi::SpoolFull),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 404, response = crate::openapi::NotFound),
        (status = 409, response = crate::openapi::Conflict),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 422, response = crate::openapi::Invalid),
    )
)]
pub(crate) async fn resolve(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    MaybeJson(body): MaybeJson<ResolveIncident>,
) -> ApiResult<Response> {
    let id = incident_id(id)?;
    let body = body.unwrap_or_default();
    let notes = match body.resolution_notes {
        Some(n) => Some(required_text("resolutionNotes", n, MAX_MESSAGE_CHARS)?),
        None => None,
    };
    let stamp = Stamp::now();
    let entry = Entry::Resolve {
        target: Target::Id(id.clone()),
        stamp: stamp.clone(),
        notes,
        metadata: body.metadata_json.unwrap_or_default(),
    };
    match state.resilience.submit(entry).await? {
        Written::Stored(Applied::Resolved(incident, event)) => Ok(Json(ResolvedIncident {
            incident: IncidentJson::from(incident),
            event: EventJson::from(event),
            queued: false,
        })
        .into_response()),
        Written::Queued { depth } => Ok(resilience::routes::queued(
            json!({ "incidentId": id, "eventId": stamp.event_id, "resolvedAt": timestamp(&stamp.at) }),
            depth,
        )),
        Written::Stored(other) => Err(unexpected(other)),
    }
}

/// A write stored as something other than what it asked for: a bug, not the client's doing.
fn unexpected(applied: Applied) -> ApiError {
    ApiError::Internal(format!("a write was stored as {applied:?}"))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ShowQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

/// The incident with its timeline, oldest event first; long timelines page with `cursor`.
#[utoipa::path(
    get,
    path = "/ops/incidents/{id}",
    tag = "incidents",
    operation_id = "showIncident",
    security(("admin" = [])),
    params(("id" = String, Path, description = "the incident's id"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "page size (default 50)"),
        ("cursor" = Option<String>, Query, description = "`nextCursor` of the previous page, passed back as is"),
    ),
    responses(
        (status = 200, description = "the incident and one page of its timeline", body = IncidentWithEvents),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 404, response = crate::openapi::NotFound),
    )
)]
pub(crate) async fn show(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ShowQuery>,
) -> ApiResult<Json<IncidentWithEvents>> {
    let id = incident_id(id)?;
    let page = PageRequest::parse(q.limit.as_deref(), q.cursor.as_deref())?;
    let incident = state
        .incidents
        .get(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("incident `{id}` does not exist")))?;
    let page = state
        .incidents
        .events(&id, page.limit, page.cursor.as_ref())
        .await?;
    let mut incident = IncidentJson::from(incident);
    // Events this version cannot read are named here, and the timeline stands.
    incident.warnings.extend(page.skipped);
    Ok(Json(IncidentWithEvents {
        incident,
        events: page.items.into_iter().map(EventJson::from).collect(),
        next_cursor: page.next.map(|c| c.encode()),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListQuery {
    status: Option<String>,
    category: Option<String>,
    severity: Option<String>,
    since: Option<String>,
    until: Option<String>,
    fingerprint: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// Incidents, newest first.
#[utoipa::path(
    get,
    path = "/ops/incidents",
    tag = "incidents",
    operation_id = "listIncidents",
    security(("admin" = [])),
    params(
        ("status" = Option<String>, Query, description = "`open`, `resolved` or `all` (default)"),
        ("category" = Option<CategoryName>, Query),
        ("severity" = Option<SeverityName>, Query),
        ("since" = Option<String>, Query, description = "an RFC 3339 time (`2026-11-22T03:00:00Z`); empty: no bound"),
        ("until" = Option<String>, Query, description = "an RFC 3339 time (`2026-11-22T03:00:00Z`); empty: no bound"),
        ("fingerprint" = Option<String>, Query),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "page size (default 50)"),
        ("cursor" = Option<String>, Query, description = "`nextCursor` of the previous page, passed back as is"),
    ),
    responses(
        (status = 200, description = "one page of incidents", body = PageJson<IncidentJson>),
        (status = 400, response = crate::openapi::BadRequest),
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<PageJson<IncidentJson>>> {
    let filter = IncidentFilter {
        state: match q.status.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("") | Some("all") => None,
            Some("open") => Some(OpenState::Open),
            Some("resolved") => Some(OpenState::Resolved),
            Some(other) => {
                return Err(ApiError::bad_request(
                    Some("status".into()),
                    format!("status: unknown value `{other}`; expected one of open, resolved, all"),
                ))
            }
        },
        category: parse_enum::<Category>("category", q.category.as_deref())?,
        severity: parse_enum::<Severity>("severity", q.severity.as_deref())?,
        since: parse_time("since", q.since.as_deref())?,
        until: parse_time("until", q.until.as_deref())?,
        fingerprint: q.fingerprint.filter(|f| !f.is_empty()),
    };
    let page = PageRequest::parse(q.limit.as_deref(), q.cursor.as_deref())?;
    let found = state
        .incidents
        .list(&filter, page.limit, page.cursor.as_ref())
        .await?;
    Ok(Json(found.into_json(IncidentJson::from)))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TimelineQuery {
    since: Option<String>,
    until: Option<String>,
    event_type: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// Events across incidents, oldest first, each with a short view of its incident.
#[utoipa::path(
    get,
    path = "/ops/timeline",
    tag = "incidents",
    operation_id = "timeline",
    security(("admin" = [])),
    params(
        ("since" = Option<String>, Query, description = "an RFC 3339 time (`2026-11-22T03:00:00Z`); empty: no bound"),
        ("until" = Option<String>, Query, description = "an RFC 3339 time (`2026-11-22T03:00:00Z`); empty: no bound"),
        ("eventType" = Option<EventTypeName>, Query),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "page size (default 50)"),
        ("cursor" = Option<String>, Query, description = "`nextCursor` of the previous page, passed back as is"),
    ),
    responses(
        (status = 200, description = "one page of events, each with a short view of its incident", body = PageJson<TimelineItem>),
        (status = 400, response = crate::openapi::BadRequest),
    )
)]
pub(crate) async fn timeline(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<TimelineQuery>,
) -> ApiResult<Json<PageJson<TimelineItem>>> {
    let filter = TimelineFilter {
        since: parse_time("since", q.since.as_deref())?,
        until: parse_time("until", q.until.as_deref())?,
        event_type: parse_enum::<EventType>("eventType", q.event_type.as_deref())?,
    };
    let page = PageRequest::parse(q.limit.as_deref(), q.cursor.as_deref())?;
    let (page, incidents) = state
        .incidents
        .timeline(&filter, page.limit, page.cursor.as_ref())
        .await?;
    Ok(Json(page.into_json(|e| TimelineItem {
        incident: incidents.get(&e.incident_id).map(|i| IncidentBrief {
            id: i.id.clone(),
            summary: i.summary.clone(),
            category: i.category,
            severity: i.severity,
            status: if i.resolved_at.is_some() {
                "resolved"
            } else {
                "open"
            },
        }),
        event: EventJson::from(e),
    })))
}

#[derive(Debug, Deserialize)]
pub(crate) struct StatsQuery {
    since: Option<String>,
}

/// Open incidents by category and severity; resolved count and mean time to resolve.
#[utoipa::path(
    get,
    path = "/ops/incidents/stats",
    tag = "incidents",
    operation_id = "incidentStats",
    security(("admin" = [])),
    params(("since" = Option<String>, Query, description = "an RFC 3339 time: resolved figures from this time on; empty: all")),
    responses(
        (status = 200, description = "the figures", body = IncidentStatsJson),
        (status = 400, response = crate::openapi::BadRequest),
    )
)]
pub(crate) async fn stats(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<StatsQuery>,
) -> ApiResult<Json<IncidentStatsJson>> {
    let since = parse_time("since", q.since.as_deref())?;
    let s = state.incidents.stats(since).await?;
    Ok(Json(IncidentStatsJson {
        open: OpenStats {
            total: s.open_total,
            by_category: s
                .open_by_category
                .iter()
                .map(|(k, v)| (k.to_value(), *v))
                .collect(),
            by_severity: s
                .open_by_severity
                .iter()
                .map(|(k, v)| (k.to_value(), *v))
                .collect(),
            by_category_and_severity: s
                .open_by_category_and_severity
                .iter()
                .map(|(category, severity, count)| PairCount {
                    category: *category,
                    severity: *severity,
                    count: *count,
                })
                .collect(),
        },
        resolved: ResolvedStats {
            total: s.resolved_total,
            mean_time_to_resolve_seconds: s.mean_time_to_resolve_seconds,
            since: since.as_ref().map(crate::kernel::timestamp),
        },
    }))
}

/// Ids are CUIDs; anything else cannot name an incident, so it is a 404 without a query.
fn incident_id(id: String) -> ApiResult<String> {
    let plausible = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if plausible {
        Ok(id)
    } else {
        Err(ApiError::NotFound("no incident has that id".to_owned()))
    }
}
