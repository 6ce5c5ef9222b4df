//! Reading and validating request parameters, each error naming the parameter at fault.

use chrono::{DateTime, NaiveDateTime};
use sea_orm::ActiveEnum;

use crate::error::{ApiError, ApiResult};
use crate::kernel::Cursor;

/// Page size when `limit` is not given.
pub const DEFAULT_LIMIT: u64 = 50;
/// Largest page a client may ask for.
pub const MAX_LIMIT: u64 = 500;

pub fn required_text(field: &str, value: String, max_chars: usize) -> ApiResult<String> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(ApiError::invalid(
            field,
            format!("{field}: must not be empty"),
        ));
    }
    if trimmed.chars().count() > max_chars {
        return Err(ApiError::invalid(
            field,
            format!("{field}: longer than {max_chars} characters"),
        ));
    }
    Ok(trimmed.to_owned())
}

fn parse_limit(raw: Option<&str>, max: u64) -> ApiResult<u64> {
    match raw {
        None => Ok(DEFAULT_LIMIT.min(max)),
        Some(v) => match v.parse::<u64>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::bad_request(
                Some("limit".into()),
                format!("limit: `{v}` is not a whole number from 1 to {max}"),
            )),
        },
    }
}

/// `limit` and `cursor` of a listing, read and checked together.
#[derive(Debug, Clone)]
pub struct PageRequest {
    pub limit: u64,
    pub cursor: Option<Cursor>,
}

impl PageRequest {
    pub fn parse(limit: Option<&str>, cursor: Option<&str>) -> ApiResult<Self> {
        Ok(Self {
            limit: parse_limit(limit, MAX_LIMIT)?,
            cursor: parse_cursor(cursor)?,
        })
    }
}

fn parse_cursor(raw: Option<&str>) -> ApiResult<Option<Cursor>> {
    match raw {
        None | Some("") => Ok(None),
        Some(v) => Cursor::decode(v).map(Some).ok_or_else(|| {
            ApiError::bad_request(
                Some("cursor".into()),
                "cursor: not a cursor this server issued; pass back `nextCursor` as is",
            )
        }),
    }
}

/// A filter given with no value (`?severity=`): a mistake to name, not "no filter".
fn empty(field: &str) -> ApiError {
    ApiError::bad_request(
        Some(field.into()),
        format!("{field}: empty; leave the parameter out to not filter by it"),
    )
}

pub fn parse_time(field: &str, raw: Option<&str>) -> ApiResult<Option<NaiveDateTime>> {
    match raw {
        None => Ok(None),
        Some("") => Err(empty(field)),
        Some(v) => DateTime::parse_from_rfc3339(v)
            .map(|t| Some(t.naive_utc()))
            .map_err(|_| {
                ApiError::bad_request(
                    Some(field.into()),
                    format!("{field}: `{v}` is not an RFC 3339 time (e.g. 2026-11-22T03:00:00Z)"),
                )
            }),
    }
}

pub fn parse_enum<T: ActiveEnum<Value = String>>(
    field: &str,
    raw: Option<&str>,
) -> ApiResult<Option<T>> {
    match raw {
        None => Ok(None),
        Some("") => Err(empty(field)),
        Some(v) => T::try_from_value(&v.to_ascii_uppercase())
            .map(Some)
            .map_err(|_| {
                let allowed: Vec<String> = T::values();
                ApiError::bad_request(
                    Some(field.into()),
                    format!(
                        "{field}: unknown value `{v}`; expected one of {}",
                        allowed.join(", ")
                    ),
                )
            }),
    }
}

/// A short identifier-like value (environment, release): required, at most `max` characters,
/// printable and without spaces.
pub fn parse_label(field: &str, raw: Option<&str>, max: usize) -> ApiResult<String> {
    let value = raw.map(str::trim).unwrap_or_default();
    if value.is_empty() {
        return Err(ApiError::bad_request(
            Some(field.into()),
            format!("{field}: required"),
        ));
    }
    if value.chars().count() > max || !value.chars().all(|c| c.is_ascii_graphic()) {
        return Err(ApiError::bad_request(
            Some(field.into()),
            format!("{field}: at most {max} printable characters without spaces"),
        ));
    }
    Ok(value.to_owned())
}

/// `1`, `true`, `yes` or `0`, `false`, `no`; absent is `false`.
pub fn parse_flag(field: &str, raw: Option<&str>) -> ApiResult<bool> {
    match raw.map(str::to_ascii_lowercase).as_deref() {
        None | Some("") | Some("0") | Some("false") | Some("no") => Ok(false),
        Some("1") | Some("true") | Some("yes") => Ok(true),
        Some(other) => Err(ApiError::bad_request(
            Some(field.into()),
            format!("{field}: `{other}` is not 1/0 or true/false"),
        )),
    }
}

#[cfg(test)]
mod empty_filters {
    use super::*;
    use axum::response::IntoResponse;
    use entity::Severity;

    #[test]
    fn an_empty_filter_is_refused_naming_it_and_an_absent_one_is_no_filter() {
        for err in [
            parse_enum::<Severity>("severity", Some("")).unwrap_err(),
            parse_time("since", Some("")).map(|_| ()).unwrap_err(),
        ] {
            assert_eq!(
                err.into_response().status(),
                axum::http::StatusCode::BAD_REQUEST
            );
        }
        assert_eq!(parse_enum::<Severity>("severity", None).unwrap(), None);
        assert_eq!(parse_time("since", None).unwrap(), None);
        assert_eq!(
            parse_enum::<Severity>("severity", Some("critical")).unwrap(),
            Some(Severity::Critical)
        );
    }
}
