//! The outbox: notifications queued for delivery, kept on disk so that a restart delivers what
//! was queued, and remembering what was queued so that a transition is delivered once.
//!
//! [`Outbox`] is the small interface the notifier needs; [`FileOutbox`] implements it with one
//! append-only journal of JSON lines, each append flushed with `fsync` before it counts. A torn
//! last line (a crash mid-write) is skipped on replay. The journal is rewritten (to a temporary
//! file, fsynced, renamed) once it holds many settled entries.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

use super::transition::Transition;

/// Where a notification goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Slack,
    Webhook,
    PagerDuty,
}

impl Target {
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Slack => "slack",
            Target::Webhook => "webhook",
            Target::PagerDuty => "pagerduty",
        }
    }
}

/// One transition for one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// `<transition key>@<target>`: the same transition for the same target is queued once.
    pub id: String,
    pub target: Target,
    pub transition: Transition,
    pub queued_at: DateTime<Utc>,
}

impl Delivery {
    pub fn new(target: Target, transition: Transition) -> Self {
        Self {
            id: format!("{}@{}", transition.key, target.as_str()),
            target,
            transition,
            queued_at: Utc::now(),
        }
    }
}

/// What the notifier needs of durable storage. Every method that changes it returns only once
/// the change would survive a crash.
pub trait Outbox: Send + Sync + 'static {
    /// Records these deliveries and, with them, the feed position to resume from; deliveries
    /// whose id was ever recorded (settled or not) are skipped. Returns those recorded now.
    fn enqueue(
        &self,
        deliveries: Vec<Delivery>,
        cursor: NaiveDateTime,
    ) -> io::Result<Vec<Delivery>>;
    /// Records that a delivery needs no further attempt (delivered, refused or given up).
    fn settle(&self, id: &str) -> io::Result<()>;
    /// Deliveries recorded and not settled, in the order they were recorded.
    fn pending(&self) -> Vec<Delivery>;
    /// The feed position recorded last.
    fn cursor(&self) -> Option<NaiveDateTime>;
}

/// One line of the journal.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
enum Entry {
    Enqueue(Box<Delivery>),
    Settle { id: String, at: DateTime<Utc> },
    Cursor(NaiveDateTime),
}

/// Settled ids are remembered this long, so a re-read of the feed never queues them again.
const REMEMBER_SETTLED_DAYS: i64 = 7;
/// The journal is compacted once it holds this many more lines than it needs.
const COMPACT_AFTER_LINES: usize = 5_000;

struct State {
    file: File,
    pending: Vec<Delivery>,
    settled: HashMap<String, DateTime<Utc>>,
    cursor: Option<NaiveDateTime>,
    lines: usize,
}

/// [`Outbox`] as a journal file, `outbox.jsonl`, in its own directory, locked against a second
/// process using the same directory.
pub struct FileOutbox {
    path: PathBuf,
    state: Mutex<State>,
}

impl FileOutbox {
    /// Opens (creating it if needed) the journal in `dir` and replays it. Fails when another
    /// process holds the directory's outbox.
    pub fn open(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("outbox.jsonl");
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)?;
        lock_exclusive(&file)?;
        let mut state = State {
            file,
            pending: Vec::new(),
            settled: HashMap::new(),
            cursor: None,
            lines: 0,
        };
        replay(&path, &mut state)?;
        let outbox = Self {
            path,
            state: Mutex::new(state),
        };
        outbox.compact_if_needed()?;
        Ok(outbox)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn compact_if_needed(&self) -> io::Result<()> {
        let mut state = self.lock();
        let horizon = Utc::now() - chrono::TimeDelta::days(REMEMBER_SETTLED_DAYS);
        state.settled.retain(|_, at| *at > horizon);
        let needed = state.pending.len() + state.settled.len() + 1;
        if state.lines < needed + COMPACT_AFTER_LINES {
            return Ok(());
        }
        let tmp = self.path.with_extension("jsonl.tmp");
        let mut out = File::create(&tmp)?;
        let mut lines = 0;
        let mut write = |entry: &Entry| -> io::Result<()> {
            lines += 1;
            writeln!(out, "{}", serde_json::to_string(entry)?)
        };
        for (id, at) in &state.settled {
            write(&Entry::Settle {
                id: id.clone(),
                at: *at,
            })?;
        }
        for delivery in &state.pending {
            write(&Entry::Enqueue(Box::new(delivery.clone())))?;
        }
        if let Some(cursor) = state.cursor {
            write(&Entry::Cursor(cursor))?;
        }
        out.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&self.path)?;
        lock_exclusive(&file)?;
        state.file = file;
        state.lines = lines;
        Ok(())
    }
}

fn lock_exclusive(file: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor this function's caller owns; no memory is shared.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            "another opsdoctor process holds this notification outbox (NOTIFY_DIR)",
        ))
    }
}

fn replay(path: &Path, state: &mut State) -> io::Result<()> {
    let reader = BufReader::new(File::open(path)?);
    let mut pending: Vec<Delivery> = Vec::new();
    for line in reader.lines() {
        let line = line?;
        state.lines += 1;
        match serde_json::from_str::<Entry>(&line) {
            Ok(Entry::Enqueue(d)) => pending.push(*d),
            Ok(Entry::Settle { id, at }) => {
                state.settled.insert(id, at);
            }
            Ok(Entry::Cursor(at)) => state.cursor = Some(at),
            Err(_) => tracing::warn!(
                outbox = %path.display(),
                "skipping an unreadable outbox line (a write cut short by a crash)"
            ),
        }
    }
    state.pending = pending
        .into_iter()
        .filter(|d| !state.settled.contains_key(&d.id))
        .collect();
    Ok(())
}

fn append(state: &mut State, entries: &[Entry]) -> io::Result<()> {
    let mut buf = Vec::new();
    for entry in entries {
        serde_json::to_writer(&mut buf, entry)?;
        buf.push(b'\n');
    }
    state.file.write_all(&buf)?;
    state.file.sync_data()?;
    state.lines += entries.len();
    Ok(())
}

impl Outbox for FileOutbox {
    fn enqueue(
        &self,
        deliveries: Vec<Delivery>,
        cursor: NaiveDateTime,
    ) -> io::Result<Vec<Delivery>> {
        let mut state = self.lock();
        let known: HashSet<&str> = state
            .pending
            .iter()
            .map(|d| d.id.as_str())
            .chain(state.settled.keys().map(String::as_str))
            .collect();
        let mut fresh: Vec<Delivery> = Vec::new();
        for d in deliveries {
            if !known.contains(d.id.as_str()) && !fresh.iter().any(|f| f.id == d.id) {
                fresh.push(d);
            }
        }
        if fresh.is_empty() && state.cursor.is_some_and(|c| c >= cursor) {
            return Ok(fresh);
        }
        let mut entries: Vec<Entry> = fresh
            .iter()
            .map(|d| Entry::Enqueue(Box::new(d.clone())))
            .collect();
        entries.push(Entry::Cursor(cursor));
        append(&mut state, &entries)?;
        state.pending.extend(fresh.iter().cloned());
        state.cursor = Some(cursor);
        drop(state);
        // A quiet feed still moves the cursor: the journal is kept short here too.
        self.compact_if_needed()?;
        Ok(fresh)
    }

    fn settle(&self, id: &str) -> io::Result<()> {
        {
            let mut state = self.lock();
            let at = Utc::now();
            append(
                &mut state,
                &[Entry::Settle {
                    id: id.to_owned(),
                    at,
                }],
            )?;
            state.pending.retain(|d| d.id != id);
            state.settled.insert(id.to_owned(), at);
        }
        self.compact_if_needed()
    }

    fn pending(&self) -> Vec<Delivery> {
        self.lock().pending.clone()
    }

    fn cursor(&self) -> Option<NaiveDateTime> {
        self.lock().cursor
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::transition::Kind;

    fn delivery(key: &str, target: Target) -> Delivery {
        Delivery::new(
            target,
            Transition {
                key: key.to_owned(),
                kind: Kind::Opened,
                at: "2026-01-01T00:00:00.000Z".to_owned(),
                incident: None,
                deploy: None,
            },
        )
    }

    fn at(s: u32) -> NaiveDateTime {
        chrono::NaiveDate::from_ymd_opt(2026, 1, 1)
            .and_then(|d| d.and_hms_opt(0, 0, s))
            .expect("a valid time")
    }

    #[test]
    fn what_was_queued_survives_a_reopen_and_is_queued_once() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = FileOutbox::open(dir.path()).unwrap();
        let a = delivery("incident:a:opened", Target::Slack);
        let b = delivery("incident:a:opened", Target::PagerDuty);
        let fresh = outbox.enqueue(vec![a.clone(), b.clone()], at(1)).unwrap();
        assert_eq!(fresh.len(), 2);
        assert!(outbox.enqueue(vec![a.clone()], at(2)).unwrap().is_empty());
        outbox.settle(&a.id).unwrap();
        drop(outbox);

        let reopened = FileOutbox::open(dir.path()).unwrap();
        assert_eq!(reopened.pending(), vec![b.clone()]);
        assert_eq!(reopened.cursor(), Some(at(2)));
        assert!(
            reopened.enqueue(vec![a, b], at(3)).unwrap().is_empty(),
            "settled and pending ids are never queued again"
        );
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_a_second_process_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = FileOutbox::open(dir.path()).unwrap();
        let a = delivery("deploy:d:finished", Target::Webhook);
        outbox.enqueue(vec![a.clone()], at(1)).unwrap();
        assert!(
            FileOutbox::open(dir.path()).is_err(),
            "the directory is locked"
        );
        drop(outbox);
        let mut file = OpenOptions::new()
            .append(true)
            .open(dir.path().join("outbox.jsonl"))
            .unwrap();
        file.write_all(b"{\"enqueue\":{\"id\":\"cut sh").unwrap();
        drop(file);
        let reopened = FileOutbox::open(dir.path()).unwrap();
        assert_eq!(reopened.pending(), vec![a]);
    }

    #[test]
    fn a_cursor_that_keeps_moving_does_not_grow_the_journal_without_bound() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = FileOutbox::open(dir.path()).unwrap();
        let mut last = at(0);
        for n in 0..(COMPACT_AFTER_LINES as i64 + 100) {
            last = at(0) + chrono::TimeDelta::milliseconds(n);
            assert!(outbox.enqueue(Vec::new(), last).unwrap().is_empty());
        }
        let lines = std::fs::read_to_string(dir.path().join("outbox.jsonl"))
            .unwrap()
            .lines()
            .count();
        assert!(lines <= COMPACT_AFTER_LINES + 1, "{lines} lines");
        drop(outbox);
        assert_eq!(FileOutbox::open(dir.path()).unwrap().cursor(), Some(last));
    }

    #[test]
    fn compaction_keeps_pending_settled_and_the_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = FileOutbox::open(dir.path()).unwrap();
        let keep = delivery("incident:keep:opened", Target::Slack);
        outbox.enqueue(vec![keep.clone()], at(1)).unwrap();
        for n in 0..(COMPACT_AFTER_LINES / 2 + 10) {
            let d = delivery(&format!("incident:{n}:opened"), Target::Slack);
            outbox.enqueue(vec![d.clone()], at(2)).unwrap();
            outbox.settle(&d.id).unwrap();
        }
        let lines = std::fs::read_to_string(dir.path().join("outbox.jsonl"))
            .unwrap()
            .lines()
            .count();
        assert!(lines < COMPACT_AFTER_LINES, "compacted to {lines} lines");
        drop(outbox);
        let reopened = FileOutbox::open(dir.path()).unwrap();
        assert_eq!(reopened.pending(), vec![keep]);
        assert_eq!(reopened.cursor(), Some(at(2)));
        let again = delivery("incident:3:opened", Target::Slack);
        assert!(reopened.enqueue(vec![again], at(3)).unwrap().is_empty());
    }
}
