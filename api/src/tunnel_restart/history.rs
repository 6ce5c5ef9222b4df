//! The record of restarts: the shared one (every host's restart events on the `TUNNEL`
//! incidents, see [`super::record`]), and this host's own, a small file beside the lock that
//! keeps the rate limit when the database does not answer; joined by restart id.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::EventType;

use super::limit::chrono;
use super::record::ACTION;
use super::types::{RestartRecord, RestartResult};
use crate::resilience::Resilience;
use crate::store::StoreError;

/// How long the records are kept, and how far back `status` looks.
pub const KEPT: Duration = Duration::from_secs(24 * 3600);
/// At most this many records in this host's file.
const KEPT_RECORDS: usize = 100;

/// The records of restarts with the same id joined (an end found in either completes it), newest
/// first.
pub fn merge(shared: Vec<RestartRecord>, local: Vec<RestartRecord>) -> Vec<RestartRecord> {
    let mut all: Vec<RestartRecord> = Vec::with_capacity(shared.len() + local.len());
    for record in shared.into_iter().chain(local) {
        match all.iter_mut().find(|r| r.id == record.id) {
            Some(known) => {
                known.result = known.result.or(record.result);
            }
            None => all.push(record),
        }
    }
    all.sort_by(|a, b| b.at.cmp(&a.at).then_with(|| b.id.cmp(&a.id)));
    all
}

/// This host's record of restarts: `tunnel-restarts.json` in the coordinator's directory,
/// written only by the holder of the restart lock.
pub struct HostHistory {
    path: PathBuf,
}

impl HostHistory {
    pub fn new(dir: &Path) -> Self {
        Self {
            path: dir.join("tunnel-restarts.json"),
        }
    }

    /// The records kept; none when the file is missing or unreadable (said in the log).
    pub fn read(&self) -> Vec<RestartRecord> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "this host's record of tunnel restarts cannot be read");
                return Vec::new();
            }
        };
        serde_json::from_str(&text).unwrap_or_else(|e| {
            tracing::warn!(path = %self.path.display(), error = %e, "this host's record of tunnel restarts is not valid JSON; it is ignored");
            Vec::new()
        })
    }

    /// Adds a record, or replaces the one with its id; keeps a day's records (at most 100).
    /// Written to a temporary file, flushed and renamed, so a crash leaves the old or the new.
    pub fn put(&self, record: &RestartRecord) -> Result<(), String> {
        let mut records = self.read();
        records.retain(|r| r.id != record.id);
        records.push(record.clone());
        let oldest = Utc::now() - chrono(KEPT);
        records.retain(|r| r.at > oldest);
        records.sort_by_key(|r| std::cmp::Reverse(r.at));
        records.truncate(KEPT_RECORDS);
        let text = serde_json::to_string_pretty(&records).unwrap_or_default();
        let temporary = self.path.with_extension("json.tmp");
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut file = std::fs::File::create(&temporary)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&temporary, &self.path)
        };
        write().map_err(|e| format!("{}: {e}", self.path.display()))
    }
}

/// The restarts recorded in the database since `since`, every host's, newest first.
pub async fn shared_history(
    resilience: &Resilience,
    since: DateTime<Utc>,
) -> Result<Vec<RestartRecord>, StoreError> {
    let kinds = [
        EventType::RecoveryAttempted,
        EventType::RecoverySuccess,
        EventType::RecoveryFailed,
    ];
    let events = resilience
        .stores
        .incidents
        .events_from(&kinds, since.naive_utc(), None, 5_000)
        .await?;
    let mut records: Vec<RestartRecord> = Vec::new();
    let mut ends: Vec<(String, RestartResult)> = Vec::new();
    for (event, _) in events {
        let meta = &*event.metadata_json;
        if meta["action"] != ACTION {
            continue;
        }
        let Some(id) = meta["restartId"].as_str().map(str::to_owned) else {
            continue;
        };
        if event.event_type == EventType::RecoveryAttempted {
            records.push(RestartRecord {
                id,
                at: event.created_at.at().and_utc(),
                host: meta["host"].as_str().unwrap_or("?").to_owned(),
                pid: meta["pid"]
                    .as_u64()
                    .and_then(|p| u32::try_from(p).ok())
                    .unwrap_or(0),
                trigger: meta["trigger"].as_str().unwrap_or("?").to_owned(),
                result: None,
            });
        } else if let Ok(result) = serde_json::from_value(meta["result"].clone()) {
            ends.push((id, result));
        }
    }
    for (id, result) in ends {
        if let Some(record) = records.iter_mut().find(|r| r.id == id) {
            record.result = Some(result);
        }
    }
    Ok(merge(records, Vec::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ago(now: DateTime<Utc>, minutes: i64) -> DateTime<Utc> {
        now - chrono::Duration::minutes(minutes)
    }

    fn record(id: &str, at: DateTime<Utc>, result: Option<RestartResult>) -> RestartRecord {
        RestartRecord {
            id: id.into(),
            at,
            host: "h".into(),
            pid: 1,
            trigger: "cli".into(),
            result,
        }
    }

    #[test]
    fn merge_joins_by_id_keeps_an_end_from_either_and_sorts_newest_first() {
        let now = Utc::now();
        let shared = vec![
            record("a", ago(now, 30), None),
            record("b", ago(now, 10), Some(RestartResult::Connected)),
        ];
        let local = vec![
            record("a", ago(now, 30), Some(RestartResult::StillDown)),
            record("c", ago(now, 20), None),
        ];
        let merged = merge(shared, local);
        let ids: Vec<&str> = merged.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["b", "c", "a"]);
        assert_eq!(merged[2].result, Some(RestartResult::StillDown));
    }

    #[test]
    fn the_host_file_replaces_by_id_and_forgets_what_is_a_day_old() {
        let dir = tempfile::tempdir().unwrap();
        let history = HostHistory::new(dir.path());
        assert!(history.read().is_empty(), "no file yet");
        let now = Utc::now();
        history
            .put(&record("old", now - chrono::Duration::hours(25), None))
            .unwrap();
        history.put(&record("x", ago(now, 1), None)).unwrap();
        history
            .put(&record("x", ago(now, 1), Some(RestartResult::Connected)))
            .unwrap();
        let kept = history.read();
        assert_eq!(kept.len(), 1, "{kept:?}");
        assert_eq!(kept[0].result, Some(RestartResult::Connected));
        std::fs::write(dir.path().join("tunnel-restarts.json"), "{not json").unwrap();
        assert!(
            history.read().is_empty(),
            "a broken file is ignored, not fatal"
        );
    }
}
