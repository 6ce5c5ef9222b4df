//! `GET /openapi.json`: the OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]`
//! annotations and the JSON types' `ToSchema` derives, so it cannot drift from the code.
//!
//! [`ApiDoc`]'s `paths(...)` is the one list of documented operations: a new route is added there
//! (and its handler annotated), or `tests/api/openapi.rs`, which compares it with the routes the
//! router serves, fails.

mod schemas;

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, RefOr};
use utoipa::{Modify, OpenApi};

pub use schemas::{
    AdminDisabled, BadRequest, CategoryName, Conflict, DatabaseUnavailable, ErrorBody,
    ErrorEnvelope, EventTypeName, Invalid, NotFound, PayloadTooLarge, Queued, RateLimited,
    RequestTimeout, SeverityName, SpoolFull, Unauthorized, UnsupportedMediaType,
};

use crate::state::AppState;
use crate::{deploys, doctor, gate, health, incidents, metrics, recovery, status_page};

/// The name of the admin bearer scheme in the document.
pub const ADMIN_SCHEME: &str = "admin";

/// Paths served by the same handler as another documented path: `(alias, documented)`.
pub const ALIASES: &[(&str, &str)] = &[("/health", "/health/live"), ("/ready", "/health/ready")];

#[derive(OpenApi)]
#[openapi(
    info(
        title = "opsdoctor",
        description = "Health, incident and deploy-gate authority for a production web stack. \
            `/health/*`, `/ready` and `/version` are open; everything under `/ops` (and `/metrics` \
            on the main port) needs `Authorization: Bearer <ADMIN_TOKEN>`. Every error answers \
            with the same JSON envelope, naming the field at fault."
    ),
    paths(
        health::live,
        health::ready,
        health::db,
        health::version,
        doctor::routes::status,
        doctor::routes::run,
        doctor::routes::bundle,
        incidents::routes::create,
        incidents::routes::list,
        incidents::routes::stats,
        incidents::routes::show,
        incidents::routes::add_event,
        incidents::routes::resolve,
        incidents::routes::timeline,
        gate::routes::gate,
        gate::routes::list,
        gate::flagger::flagger,
        gate::flagger::confirm,
        gate::flagger::rollback,
        deploys::routes::start,
        deploys::routes::list,
        deploys::routes::show,
        deploys::routes::finish,
        metrics::routes::metrics,
        recovery::routes::recover,
        recovery::routes::recovery_stats,
        status_page::status,
        status_page::login,
        status_page::logout,
        openapi_json,
    ),
    components(
        schemas(ErrorEnvelope, ErrorBody, SeverityName, CategoryName, EventTypeName),
        responses(
            BadRequest,
            Unauthorized,
            AdminDisabled,
            NotFound,
            Conflict,
            RequestTimeout,
            PayloadTooLarge,
            UnsupportedMediaType,
            Invalid,
            RateLimited,
            DatabaseUnavailable,
            Queued,
            SpoolFull
        )
    ),
    modifiers(&AdminBearer, &AdminErrors, &Aliases),
    tags(
        (name = "probes", description = "liveness, readiness and health for load balancers and Kubernetes"),
        (name = "doctor", description = "the check suite: runs, the diagnostic bundle"),
        (name = "incidents", description = "incidents and their timelines"),
        (name = "gate", description = "the deploy gate, for CI, Argo Rollouts and Flagger"),
        (name = "deploys", description = "deploy records"),
        (name = "metrics", description = "Prometheus metrics"),
        (name = "status", description = "the status page for people (HTML)"),
        (name = "meta", description = "this document"),
    )
)]
pub struct ApiDoc;

/// The document as served (built once per call; it is small and rarely asked for).
pub fn document() -> Document {
    ApiDoc::openapi()
}

pub fn router() -> Router<AppState> {
    Router::new().route("/openapi.json", get(openapi_json))
}

/// This OpenAPI document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    operation_id = "openapi",
    responses((status = 200, description = "the OpenAPI 3.1 document of this service", content_type = "application/json", body = Object))
)]
pub(crate) async fn openapi_json() -> Response {
    match document().to_json() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            text,
        )
            .into_response(),
        Err(err) => {
            crate::error::ApiError::Internal(format!("serialising the OpenAPI document: {err}"))
                .into_response()
        }
    }
}

/// Declares the admin bearer scheme that `security(("admin" = []))` refers to.
struct AdminBearer;

impl Modify for AdminBearer {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        let mut http = Http::new(HttpAuthScheme::Bearer);
        http.description = Some("`Authorization: Bearer <ADMIN_TOKEN>`".to_owned());
        components.add_security_scheme(ADMIN_SCHEME, SecurityScheme::Http(http));
    }
}

/// Every admin operation can also meet the admin layer's own answers: no or a wrong token (401),
/// no token configured (403), a declared body over the limit (413), the request timeout (408) and
/// the database down (503). Added here once rather than on every handler.
struct AdminErrors;

impl Modify for AdminErrors {
    fn modify(&self, doc: &mut Document) {
        let common: [(&str, &str); 5] = [
            ("401", "Unauthorized"),
            ("403", "AdminDisabled"),
            ("408", "RequestTimeout"),
            ("413", "PayloadTooLarge"),
            ("503", "DatabaseUnavailable"),
        ];
        for item in doc.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                // Admin only: some requirement, and none of them the empty (anonymous) one.
                let admin = op.security.as_ref().is_some_and(|s| {
                    !s.is_empty()
                        && s.iter().all(|r| {
                            serde_json::to_value(r).is_ok_and(|v| v != serde_json::json!({}))
                        })
                });
                if !admin {
                    continue;
                }
                for (status, name) in common {
                    op.responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| {
                            RefOr::Ref(utoipa::openapi::Ref::from_response_name(name))
                        });
                }
            }
        }
    }
}

/// Documents each alias with its target's operations (under their own operation ids).
struct Aliases;

impl Modify for Aliases {
    fn modify(&self, doc: &mut Document) {
        for (alias, target) in ALIASES {
            let Some(mut item) = doc.paths.paths.get(*target).cloned() else {
                continue;
            };
            for op in [&mut item.get, &mut item.head].into_iter().flatten() {
                if let Some(id) = &op.operation_id {
                    op.operation_id = Some(format!("{id}Alias{}", alias.replace('/', "_")));
                }
            }
            doc.paths.paths.insert((*alias).to_owned(), item);
        }
    }
}
