//! `Timestamp`: a `DateTime` column's value, stored the way a Prisma client stores it on each
//! backend, and read back from every form a Prisma app (or an older opsdoctor) can leave.
//!
//! PostgreSQL has a real `TIMESTAMP(3)` type, so nothing is to choose there. SQLite has no time
//! type: a `DATETIME` column holds whatever a writer put in it, and SQLite compares text as text.
//! Prisma's SQLite driver adapter writes `2026-11-23T14:26:28.566+00:00` (always three fraction
//! digits, always `+00:00`), or integer milliseconds with `timestampFormat: 'unixepoch-ms'`.
//! Fixed-width text in one zone sorts in time order, so opsdoctor writes exactly Prisma's text and
//! every comparison on the column (`ORDER BY`, `since`/`until`, cursors) compares instants while
//! still using the contract's indexes. `migration` rewrites rows of other forms in place.

use std::cmp::Ordering;
use std::hash::{Hash, Hasher};

use chrono::{DateTime, NaiveDateTime, SubsecRound};
use sea_orm::sea_query::{ArrayType, ColumnType, Nullable, ValueType, ValueTypeErr};
use sea_orm::sqlx::{Decode, Row, Sqlite, TypeInfo, ValueRef};
use sea_orm::{ColIdx, DbBackend, DbErr, QueryResult, TryGetError, TryGetable, Value};

/// The `strftime` pattern of Prisma's SQLite text (`Date.toISOString()` with `Z` as `+00:00`).
pub const SQLITE_TEXT_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.3f+00:00";

/// How a timestamp is bound when written or compared: decided by the backend it goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeForm {
    /// PostgreSQL's `TIMESTAMP(3)`, bound as a native timestamp.
    Native,
    /// SQLite: Prisma's ISO-8601 text, [`SQLITE_TEXT_FORMAT`].
    SqliteText,
}

impl TimeForm {
    pub fn of(backend: DbBackend) -> Self {
        match backend {
            DbBackend::Sqlite => Self::SqliteText,
            _ => Self::Native,
        }
    }
}

/// A UTC instant at millisecond precision, with the form its backend stores it in. Equality,
/// order and hashing look at the instant only.
#[derive(Debug, Clone, Copy)]
pub struct Timestamp {
    at: NaiveDateTime,
    form: TimeForm,
}

impl Timestamp {
    /// `at` (UTC, truncated to milliseconds as the schema stores it) for `backend`.
    pub fn new(at: NaiveDateTime, backend: DbBackend) -> Self {
        Self {
            at: at.trunc_subsecs(3),
            form: TimeForm::of(backend),
        }
    }

    /// The instant, in UTC.
    pub fn at(&self) -> NaiveDateTime {
        self.at
    }

    /// The text SQLite stores for this instant.
    pub fn sqlite_text(&self) -> String {
        self.at.format(SQLITE_TEXT_FORMAT).to_string()
    }
}

impl PartialEq for Timestamp {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}
impl Eq for Timestamp {}
impl PartialOrd for Timestamp {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Timestamp {
    fn cmp(&self, other: &Self) -> Ordering {
        self.at.cmp(&other.at)
    }
}
impl Hash for Timestamp {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.at.hash(state);
    }
}

impl From<Timestamp> for NaiveDateTime {
    fn from(t: Timestamp) -> Self {
        t.at
    }
}

impl From<Timestamp> for Value {
    fn from(t: Timestamp) -> Self {
        match t.form {
            TimeForm::Native => Value::ChronoDateTime(Some(Box::new(t.at))),
            TimeForm::SqliteText => Value::String(Some(Box::new(t.sqlite_text()))),
        }
    }
}

impl Nullable for Timestamp {
    fn null() -> Value {
        Value::ChronoDateTime(None)
    }
}

impl ValueType for Timestamp {
    fn try_from(v: Value) -> Result<Self, ValueTypeErr> {
        match v {
            Value::ChronoDateTime(Some(at)) => Ok(Self {
                at: *at,
                form: TimeForm::Native,
            }),
            Value::String(Some(text)) => parse_text(&text)
                .map(|at| Self {
                    at,
                    form: TimeForm::SqliteText,
                })
                .ok_or(ValueTypeErr),
            _ => Err(ValueTypeErr),
        }
    }

    fn type_name() -> String {
        "Timestamp".to_owned()
    }

    fn array_type() -> ArrayType {
        ArrayType::ChronoDateTime
    }

    fn column_type() -> ColumnType {
        ColumnType::DateTime
    }
}

impl TryGetable for Timestamp {
    fn try_get_by<I: ColIdx>(res: &QueryResult, idx: I) -> Result<Self, TryGetError> {
        let Some(row) = res.try_as_sqlite_row() else {
            return NaiveDateTime::try_get_by(res, idx).map(|at| Self {
                at,
                form: TimeForm::Native,
            });
        };
        let raw = row
            .try_get_raw(idx.as_sqlx_sqlite_index())
            .map_err(|e| TryGetError::DbErr(DbErr::Custom(e.to_string())))?;
        if raw.is_null() {
            return Err(TryGetError::Null(format!("{idx:?}")));
        }
        let at = match raw.type_info().name() {
            "INTEGER" => <i64 as Decode<Sqlite>>::decode(raw)
                .ok()
                .and_then(from_millis),
            "REAL" => <f64 as Decode<Sqlite>>::decode(raw)
                .ok()
                .filter(|f| f.is_finite())
                .and_then(|f| from_millis(f.round() as i64)),
            _ => <&str as Decode<Sqlite>>::decode(raw)
                .ok()
                .and_then(parse_text),
        };
        at.map(|at| Self {
            at,
            form: TimeForm::SqliteText,
        })
        .ok_or_else(|| {
            TryGetError::DbErr(DbErr::Type(format!(
                "column {idx:?} holds no time opsdoctor or Prisma writes"
            )))
        })
    }
}

/// Milliseconds since the Unix epoch (Prisma's `unixepoch-ms`).
pub fn from_millis(ms: i64) -> Option<NaiveDateTime> {
    DateTime::from_timestamp_millis(ms).map(|t| t.naive_utc())
}

/// Every text form a `DATETIME` column of a shared SQLite file may hold: Prisma's ISO-8601 with
/// an offset or `Z`, ISO-8601 without a zone, and the `YYYY-MM-DD HH:MM:SS[.fff]` form of older
/// opsdoctor versions and of SQLite's own `CURRENT_TIMESTAMP` (UTC).
pub fn parse_text(text: &str) -> Option<NaiveDateTime> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.naive_utc().trunc_subsecs(3));
    }
    ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
        .map(|t| t.trunc_subsecs(3))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> NaiveDateTime {
        from_millis(ms).unwrap()
    }

    #[test]
    fn reads_every_form_as_one_instant() {
        let want = at(1_795_443_987_738);
        for text in [
            "2026-11-23T14:26:27.738+00:00",
            "2026-11-23T14:26:27.738Z",
            "2026-11-23T15:26:27.738+01:00",
            "2026-11-23 14:26:27.738",
            "2026-11-23T14:26:27.738",
        ] {
            assert_eq!(parse_text(text), Some(want), "{text}");
        }
        assert_eq!(
            parse_text("2026-11-23 14:26:27"),
            Some(at(1_795_443_987_000))
        );
        assert_eq!(parse_text("yesterday"), None);
    }

    #[test]
    fn writes_prisma_text_on_sqlite_and_a_native_time_on_postgres() {
        let zero_ms = Timestamp::new(at(1_795_443_987_000), DbBackend::Sqlite);
        assert_eq!(
            Value::from(zero_ms),
            Value::String(Some(Box::new("2026-11-23T14:26:27.000+00:00".into())))
        );
        let pg = Timestamp::new(at(1_795_443_987_738), DbBackend::Postgres);
        assert_eq!(
            Value::from(pg),
            Value::ChronoDateTime(Some(Box::new(at(1_795_443_987_738))))
        );
    }

    #[test]
    fn prisma_text_sorts_in_time_order() {
        let mut texts: Vec<String> = [1_795_443_987_000, 1_795_443_986_999, 1_795_443_987_001]
            .into_iter()
            .map(|ms| Timestamp::new(at(ms), DbBackend::Sqlite).sqlite_text())
            .collect();
        texts.sort();
        let back: Vec<_> = texts.iter().map(|t| parse_text(t).unwrap()).collect();
        let mut sorted = back.clone();
        sorted.sort();
        assert_eq!(back, sorted);
    }
}
