//! Opaque keyset cursors: the (createdAt, id) of the last row a page returned.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, NaiveDateTime};

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
