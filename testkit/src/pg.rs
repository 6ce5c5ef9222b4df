//! Scratch PostgreSQL databases: one per test or bench phase, created from an admin URL and
//! dropped (connections and all) when the handle is dropped.

use std::sync::atomic::{AtomicU32, Ordering};

use sea_orm::{ConnectionTrait, Database, DbErr};

/// PostgreSQL truncates identifiers longer than this, so names are cut to fit before use.
const MAX_IDENTIFIER: usize = 63;

/// Makes names unique within a process; the process id makes them unique across processes.
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A database of its own on a PostgreSQL server, dropped `WITH (FORCE)` when this is dropped,
/// so a server process still connected to it cannot keep it alive.
pub struct ScratchDatabase {
    /// The new database's URL: the admin URL with its database name replaced (query kept).
    pub url: String,
    /// The database's name, unique per process and call.
    pub name: String,
    admin_url: String,
}

impl ScratchDatabase {
    /// Creates `<prefix>_<pid>_<n>` through `admin_url`, whose user may create databases.
    /// The prefix is shortened when the name would pass PostgreSQL's identifier limit.
    pub async fn create(admin_url: &str, prefix: &str) -> Result<Self, DbErr> {
        let suffix = format!(
            "_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let prefix: String = prefix
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(MAX_IDENTIFIER - suffix.len())
            .collect();
        let name = format!("{prefix}{suffix}");
        let admin = Database::connect(admin_url).await?;
        let created = admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await;
        admin.close().await.ok();
        created?;
        Ok(Self {
            url: with_database(admin_url, &name),
            name,
            admin_url: admin_url.to_owned(),
        })
    }
}

impl Drop for ScratchDatabase {
    /// Drops the database from a thread of its own, so this works inside and outside a Tokio
    /// runtime alike; a failure is ignored (the database is scratch, named to be found).
    fn drop(&mut self) {
        let admin_url = std::mem::take(&mut self.admin_url);
        let name = std::mem::take(&mut self.name);
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let admin = Database::connect(&admin_url).await.ok()?;
                let _ = admin
                    .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .await;
                admin.close().await.ok()
            })
        })
        .join();
    }
}

/// `url` with its database name (the last path segment) replaced by `name`, query kept.
pub fn with_database(url: &str, name: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (url, None),
    };
    let base = head.rsplit_once('/').map(|(b, _)| b).unwrap_or(head);
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn replaces_only_the_database_name() {
        assert_eq!(
            with_database("postgres://u@h:5432/test", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            with_database("postgres://u@h/test?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
    }
}
