//! `JsonDoc`: a Prisma `Json` column's value, read as leniently as Prisma allows it to be written.
//!
//! A Prisma `Json` field holds any JSON value, scalars included. On SQLite the column is declared
//! `JSONB`, which gives it numeric affinity: the text `42` a Prisma client writes comes back as the
//! INTEGER 42, `4.5` as a REAL. opsdoctor reads those as the JSON numbers they were. Text that is
//! not JSON at all (written by hand, or by a tool that bypassed Prisma) is kept as a JSON string
//! and flagged, so that the row is still shown, with a warning, instead of failing its page.

use std::ops::Deref;

use sea_orm::sea_query::{ArrayType, ColumnType, Nullable, ValueType, ValueTypeErr};
use sea_orm::sqlx::{Decode, Row, Sqlite, TypeInfo, ValueRef};
use sea_orm::{ColIdx, DbErr, QueryResult, TryGetError, TryGetable, Value};

/// The value of a `Json` column.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonDoc {
    pub value: serde_json::Value,
    /// The stored text was not JSON; `value` holds it as a JSON string.
    pub not_json: bool,
}

impl JsonDoc {
    pub fn into_value(self) -> serde_json::Value {
        self.value
    }
}

impl From<serde_json::Value> for JsonDoc {
    fn from(value: serde_json::Value) -> Self {
        Self {
            value,
            not_json: false,
        }
    }
}

impl Deref for JsonDoc {
    type Target = serde_json::Value;
    fn deref(&self) -> &serde_json::Value {
        &self.value
    }
}

impl From<JsonDoc> for Value {
    fn from(doc: JsonDoc) -> Self {
        Value::Json(Some(Box::new(doc.value)))
    }
}

impl Nullable for JsonDoc {
    fn null() -> Value {
        Value::Json(None)
    }
}

impl ValueType for JsonDoc {
    fn try_from(v: Value) -> Result<Self, ValueTypeErr> {
        match v {
            Value::Json(Some(value)) => Ok((*value).into()),
            _ => Err(ValueTypeErr),
        }
    }

    fn type_name() -> String {
        "JsonDoc".to_owned()
    }

    fn array_type() -> ArrayType {
        ArrayType::Json
    }

    fn column_type() -> ColumnType {
        ColumnType::JsonBinary
    }
}

impl TryGetable for JsonDoc {
    fn try_get_by<I: ColIdx>(res: &QueryResult, idx: I) -> Result<Self, TryGetError> {
        let Some(row) = res.try_as_sqlite_row() else {
            return serde_json::Value::try_get_by(res, idx).map(Into::into);
        };
        let raw = row
            .try_get_raw(idx.as_sqlx_sqlite_index())
            .map_err(|e| TryGetError::DbErr(DbErr::Custom(e.to_string())))?;
        if raw.is_null() {
            return Err(TryGetError::Null(format!("{idx:?}")));
        }
        let decoded = match raw.type_info().name() {
            "INTEGER" => <i64 as Decode<Sqlite>>::decode(raw)
                .map(|n| JsonDoc::from(serde_json::Value::from(n))),
            "REAL" => <f64 as Decode<Sqlite>>::decode(raw).map(|f| {
                serde_json::Number::from_f64(f)
                    .map(|n| JsonDoc::from(serde_json::Value::Number(n)))
                    .unwrap_or_else(|| not_json(f.to_string()))
            }),
            "BLOB" => <&[u8] as Decode<Sqlite>>::decode(raw).map(|bytes| {
                serde_json::from_slice::<serde_json::Value>(bytes)
                    .map(JsonDoc::from)
                    .unwrap_or_else(|_| not_json(String::from_utf8_lossy(bytes).into_owned()))
            }),
            _ => <&str as Decode<Sqlite>>::decode(raw).map(|text| {
                serde_json::from_str::<serde_json::Value>(text)
                    .map(JsonDoc::from)
                    .unwrap_or_else(|_| not_json(text.to_owned()))
            }),
        };
        decoded.map_err(|e| TryGetError::DbErr(DbErr::Type(e.to_string())))
    }
}

fn not_json(text: String) -> JsonDoc {
    JsonDoc {
        value: serde_json::Value::String(text),
        not_json: true,
    }
}
