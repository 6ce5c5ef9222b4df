//! Keyset pages on `(createdAt, id)`: the opaque cursor a client passes back, the conditions
//! that seek to it, and the `{"items", "nextCursor"}` envelope. Every listing pages this way.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, NaiveDateTime};
use entity::Timestamp;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbBackend, DbErr, EntityTrait, FromQueryResult,
    IdenStatic, QueryFilter, QueryOrder, QueryResult, QuerySelect, QueryTrait, Select,
};
use serde::{Deserialize, Serialize};

/// One page of a keyset-paginated listing.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<Cursor>,
    /// Rows of the page that could not be read (a value another writer stored that this
    /// version does not know), each named by its id with why: left out, never failing the page.
    pub skipped: Vec<String>,
}

impl<T> Page<T> {
    /// The page as its JSON envelope, each item mapped.
    pub fn into_json<J>(self, item: impl FnMut(T) -> J) -> PageJson<J> {
        PageJson {
            items: self.items.into_iter().map(item).collect(),
            next_cursor: self.next.map(|c| c.encode()),
            warnings: self.skipped,
        }
    }
}

/// A page as JSON: `{"items": [...], "nextCursor": "…" | null}`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PageJson<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
    /// Rows left out of this page because they could not be read, each named by its id with
    /// why (absent when there are none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Trims the look-ahead row (queries ask for `limit + 1`) and derives the next cursor from the
/// last row kept.
pub fn paginate<T>(mut rows: Vec<T>, limit: u64, key: impl Fn(&T) -> Cursor) -> Page<T> {
    let more = rows.len() as u64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next = if more { rows.last().map(key) } else { None };
    Page {
        items: rows,
        next,
        skipped: Vec::new(),
    }
}

/// One page of `query`, newest first by `(createdAt, id)`, starting after `before`: the keyset
/// listing every store's `list` is.
pub async fn newest_first<E: EntityTrait>(
    db: &impl ConnectionTrait,
    query: Select<E>,
    (created, id): (E::Column, E::Column),
    limit: u64,
    before: Option<&Cursor>,
    key: impl Fn(&E::Model) -> Cursor,
) -> Result<Page<E::Model>, DbErr> {
    let query = match before {
        Some(c) => query.filter(before_cond(created, id, c, db.get_database_backend())),
        None => query,
    };
    let backend = db.get_database_backend();
    let statement = query
        .order_by_desc(created)
        .order_by_desc(id)
        .limit(limit + 1)
        .build(backend);
    let rows = db.query_all(statement).await?;
    Ok(page_of(rows, limit, (created.as_str(), id.as_str()), key))
}

/// The page of `rows` (queried with `limit + 1` for the look-ahead), read row by row: a row this
/// version cannot read (an enum value or a time another writer stored) is left out and named in
/// [`Page::skipped`] instead of failing the whole page, and the page goes on after it.
pub fn page_of<M: FromQueryResult>(
    rows: Vec<QueryResult>,
    limit: u64,
    (created, id): (&str, &str),
    key: impl Fn(&M) -> Cursor,
) -> Page<M> {
    let more = rows.len() as u64 > limit;
    let keep = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut page = Page {
        items: Vec::new(),
        next: None,
        skipped: Vec::new(),
    };
    let mut last = None;
    for row in rows.into_iter().take(keep) {
        match M::from_query_result(&row, "") {
            Ok(model) => {
                last = Some(key(&model));
                page.items.push(model);
            }
            Err(err) => {
                let row_id = row.try_get::<String>("", id).unwrap_or_default();
                tracing::warn!(id = %row_id, error = %err, "a row could not be read; it is left out of the page");
                page.skipped.push(format!(
                    "row `{row_id}` could not be read and is left out: {err}"
                ));
                if let Ok(at) = row.try_get::<Timestamp>("", created) {
                    last = Some(Cursor {
                        created_at: at.at(),
                        id: row_id,
                    });
                }
            }
        }
    }
    if more {
        page.next = last;
    }
    page
}

/// Rows strictly after the cursor in ascending `(createdAt, id)` order. The redundant
/// `createdAt >= c` lets an index on `createdAt` seek to the cursor instead of scanning to it.
/// The time is bound in the form `backend` stores (see [`Timestamp`]), so that the comparison
/// is one of instants on SQLite too.
pub fn after_cond<T: ColumnTrait>(created: T, id: T, c: &Cursor, backend: DbBackend) -> Condition {
    let at = Timestamp::new(c.created_at, backend);
    Condition::all().add(created.gte(at)).add(
        Condition::any().add(created.gt(at)).add(
            Condition::all()
                .add(created.eq(at))
                .add(id.gt(c.id.as_str())),
        ),
    )
}

/// Rows strictly before the cursor in descending `(createdAt, id)` order (with the same
/// redundant bound as [`after_cond`]).
pub fn before_cond<T: ColumnTrait>(created: T, id: T, c: &Cursor, backend: DbBackend) -> Condition {
    let at = Timestamp::new(c.created_at, backend);
    Condition::all().add(created.lte(at)).add(
        Condition::any().add(created.lt(at)).add(
            Condition::all()
                .add(created.eq(at))
                .add(id.lt(c.id.as_str())),
        ),
    )
}

/// A position in an ordering by `(createdAt, id)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: NaiveDateTime,
    pub id: String,
}

const VERSION: &str = "v1";

impl Cursor {
    pub fn encode(&self) -> String {
        let raw = format!(
            "{VERSION}|{}|{}",
            self.created_at.and_utc().timestamp_millis(),
            self.id
        );
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Decodes a cursor a client sent back; `None` when it is not one of ours.
    pub fn decode(text: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(text.trim()).ok()?;
        let raw = String::from_utf8(bytes).ok()?;
        let mut parts = raw.splitn(3, '|');
        if parts.next()? != VERSION {
            return None;
        }
        let millis: i64 = parts.next()?.parse().ok()?;
        // 1970-01-01 to 9999-12-31: beyond that no database stores the time.
        if !(0..=253_402_300_799_999).contains(&millis) {
            return None;
        }
        let id = parts.next()?;
        if id.is_empty()
            || id.len() > 64
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return None;
        }
        let created_at = DateTime::from_timestamp_millis(millis)?.naive_utc();
        Some(Self {
            created_at,
            id: id.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let c = Cursor {
            created_at: DateTime::from_timestamp_millis(1_790_000_000_123)
                .unwrap()
                .naive_utc(),
            id: "cmabc123".into(),
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        assert_eq!(Cursor::decode("nope"), None);
        assert_eq!(Cursor::decode(&URL_SAFE_NO_PAD.encode("v1|abc|x")), None);
        assert_eq!(
            Cursor::decode(&URL_SAFE_NO_PAD.encode("v1|1|x'; drop")),
            None
        );
    }
}
