//! What every feature uses and that knows no feature: ids, the clock, RFC 3339 times and keyset
//! pages. Nothing here touches a table of its own.

pub mod page;

use chrono::{NaiveDateTime, SubsecRound, Utc};

pub use page::{after_cond, before_cond, newest_first, page_of, paginate, Cursor, Page, PageJson};

/// Now, at the millisecond precision the schema stores (`TIMESTAMP(3)`).
pub fn now() -> NaiveDateTime {
    Utc::now().naive_utc().trunc_subsecs(3)
}

/// A new Prisma-compatible id (CUID v1, as Prisma's `cuid()` makes).
pub fn new_id() -> String {
    cuid::cuid1()
}

/// RFC 3339 in UTC with milliseconds, as stored: of a `NaiveDateTime` or a stored
/// [`entity::Timestamp`].
pub fn timestamp<T: Copy + Into<NaiveDateTime>>(t: &T) -> String {
    let t: NaiveDateTime = (*t).into();
    t.and_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
