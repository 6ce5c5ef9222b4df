//! Schemas the derives cannot produce by themselves: the error envelope's reusable responses, and
//! the database enums (defined in `entity/`, which knows nothing of OpenAPI), whose allowed values
//! are read from the enums themselves so they cannot drift.

use std::borrow::Cow;

use entity::{Category, EventType, Severity};
use sea_orm::{ActiveEnum, Iterable};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{PartialSchema, ToSchema};

/// Every error answer: `{"error": {"code", "message", "field"}}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

/// What went wrong, for machines (`code`) and humans (`message`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// A stable machine-readable code (`bad_request`, `invalid_value`, `unauthorized`, …).
    pub code: String,
    /// One line saying what was wrong and how to put it right.
    pub message: String,
    /// The field or parameter at fault, when there is one (`summary`, `detailsJson.a[1]`, `limit`).
    pub field: Option<String>,
}

fn error_response(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorEnvelope")))
                .build(),
        )
        .build()
}

/// Reusable error responses, one per status the service answers with the envelope.
macro_rules! error_responses {
    ($($name:ident => $description:literal,)*) => {$(
        #[doc = $description]
        pub struct $name;

        impl<'s> utoipa::ToResponse<'s> for $name {
            fn response() -> (&'s str, RefOr<Response>) {
                (stringify!($name), RefOr::T(error_response($description)))
            }
        }
    )*};
}

error_responses! {
    BadRequest => "the request could not be read: malformed JSON, or a bad query or path value (the envelope's `field` names it)",
    Unauthorized => "no or a wrong `Authorization: Bearer <ADMIN_TOKEN>` header",
    AdminDisabled => "ADMIN_TOKEN is not configured on this server, so the admin endpoints are disabled",
    NotFound => "the addressed thing does not exist",
    Conflict => "the request conflicts with the current state (e.g. resolving twice)",
    RequestTimeout => "the request ran longer than REQUEST_TIMEOUT_MS",
    PayloadTooLarge => "the body is larger than MAX_BODY_BYTES",
    UnsupportedMediaType => "the body is not `application/json`",
    Invalid => "the body was read but a value is not acceptable (the envelope's `field` names it)",
    RateLimited => "too many requests of this kind; `Retry-After` says when to come back",
    DatabaseUnavailable => "the database is unavailable; `Retry-After` says when to try again",
    SpoolFull => "the database is unavailable and the spool of queued writes is at its cap (SPOOL_MAX_BYTES): the write was not accepted; retry once the database is back",
}

/// A write the database could not take now, kept in the spool (flushed to disk) and stored when
/// the database returns.
pub struct Queued;

impl<'s> utoipa::ToResponse<'s> for Queued {
    fn response() -> (&'s str, RefOr<Response>) {
        let schema = ObjectBuilder::new()
            .property(
                "queued",
                ObjectBuilder::new()
                    .schema_type(Type::Boolean)
                    .description(Some("always true: the write is in the spool, not yet in the database")),
            )
            .required("queued")
            .property(
                "spoolDepth",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .description(Some("writes waiting in the spool, this one included")),
            )
            .required("spoolDepth")
            .description(Some(
                "the ids the write will be stored under (e.g. `incidentId`, `eventId`, `id`), `queued` and `spoolDepth`",
            ))
            .build();
        let response = ResponseBuilder::new()
            .description("accepted while the database is down: kept in the spool (flushed to disk) and stored, in order, when it returns")
            .content("application/json", ContentBuilder::new().schema(Some(schema)).build())
            .build();
        ("Queued", RefOr::T(response))
    }
}

/// A string schema allowing exactly the values of a database enum.
fn enum_schema<E: ActiveEnum<Value = String> + Iterable>(description: &str) -> RefOr<Schema> {
    let values: Vec<String> = E::iter().map(|v| v.to_value()).collect();
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .enum_values(Some(values))
        .into()
}

macro_rules! enum_schemas {
    ($($marker:ident($enum:ty) => $name:literal, $description:literal;)*) => {$(
        #[doc = $description]
        pub struct $marker;

        impl PartialSchema for $marker {
            fn schema() -> RefOr<Schema> {
                enum_schema::<$enum>($description)
            }
        }

        impl ToSchema for $marker {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
        }
    )*};
}

enum_schemas! {
    SeverityName(Severity) => "Severity", "how bad an incident is";
    CategoryName(Category) => "Category", "what part of the system an incident concerns";
    EventTypeName(EventType) => "EventType", "what an incident event records";
}
