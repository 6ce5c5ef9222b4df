//! The durable spool: an append-only file of JSON lines, each a write the service acknowledged
//! while the database could not take it. A line is flushed to disk (`fdatasync`) before the write
//! is answered, so it survives `kill -9` and a power cut; a line cut short by a crash was never
//! acknowledged and is dropped when the spool is opened again.
//!
//! The spool knows nothing of what the lines mean (see `entry.rs`); it keeps them in order, says
//! how many wait and how many bytes they take, refuses a line that would pass its size cap, and
//! drops the ones replay has written.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The file of pending lines inside the spool directory.
const PENDING: &str = "pending.jsonl";
/// Lines replay could not apply (the database refused them for what they hold), kept for an
/// operator instead of dropped.
const REJECTED: &str = "rejected.jsonl";

/// Why a line was not spooled.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("the spool is full: {bytes} of {cap} bytes used; raise SPOOL_MAX_BYTES or restore the database")]
    Full { bytes: u64, cap: u64 },
    #[error("the spool cannot be written: {0}")]
    Io(#[from] io::Error),
}

struct Files {
    pending: File,
    bytes: u64,
    depth: usize,
}

/// The spool of one process. Cheap to clone.
#[derive(Clone)]
pub struct Spool {
    dir: PathBuf,
    cap: u64,
    files: Arc<Mutex<Files>>,
}

/// What the spool holds, for readiness and the bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SpoolView {
    pub depth: usize,
    pub bytes: u64,
    pub max_bytes: u64,
}

impl Spool {
    /// Opens (creating) the spool in `dir`, keeping every complete line a previous process left.
    pub fn open(dir: &Path, cap: u64) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(PENDING);
        let mut pending = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)?;
        let (complete, depth) = complete_prefix(&pending)?;
        if complete < pending.metadata()?.len() {
            tracing::warn!(
                "the spool ends with a line cut short by a crash; that write was never acknowledged and is dropped"
            );
            pending.set_len(complete)?;
            pending.sync_all()?;
        }
        pending.seek(SeekFrom::End(0))?;
        if depth > 0 {
            tracing::warn!(
                depth,
                "the spool holds writes from an earlier run; they will be replayed"
            );
        }
        Ok(Self {
            dir: dir.to_owned(),
            cap,
            files: Arc::new(Mutex::new(Files {
                pending,
                bytes: complete,
                depth,
            })),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Files> {
        self.files.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends one line and flushes it to disk; returns the depth after it.
    pub fn append<T: Serialize>(&self, entry: &T) -> Result<usize, SpoolError> {
        let mut line = serde_json::to_vec(entry).map_err(io::Error::other)?;
        line.push(b'\n');
        let mut files = self.lock();
        let bytes = files.bytes + line.len() as u64;
        if bytes > self.cap {
            return Err(SpoolError::Full {
                bytes: files.bytes,
                cap: self.cap,
            });
        }
        files.pending.write_all(&line)?;
        files.pending.sync_data()?;
        files.bytes = bytes;
        files.depth += 1;
        Ok(files.depth)
    }

    /// Every pending line, oldest first. A line that cannot be read as `T` (written by another
    /// version, say) is set aside in the rejected file and counted with the rest, so that
    /// [`Self::remove_first`] keeps its place.
    pub fn pending<T: DeserializeOwned>(&self) -> io::Result<Vec<Option<T>>> {
        let files = self.lock();
        let mut reader = BufReader::new(files.pending.try_clone()?);
        reader.seek(SeekFrom::Start(0))?;
        let mut out = Vec::with_capacity(files.depth);
        let mut read = 0u64;
        for line in reader.split(b'\n') {
            let line = line?;
            read += line.len() as u64 + 1;
            if read > files.bytes {
                break;
            }
            match serde_json::from_slice::<T>(&line) {
                Ok(entry) => out.push(Some(entry)),
                Err(err) => {
                    tracing::error!(error = %err, "a spooled line cannot be read; it is kept in the rejected file");
                    self.keep_rejected_raw(&line, &err.to_string());
                    out.push(None);
                }
            }
        }
        Ok(out)
    }

    /// Drops the first `n` lines (replayed), keeping any appended meanwhile. The rest is
    /// written to a new file that replaces the old one atomically.
    pub fn remove_first(&self, n: usize) -> io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        let mut files = self.lock();
        let path = self.dir.join(PENDING);
        let mut reader = BufReader::new(files.pending.try_clone()?);
        reader.seek(SeekFrom::Start(0))?;
        let mut rest = Vec::new();
        let mut skipped = 0;
        let mut line = Vec::new();
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line)? == 0 {
                break;
            }
            if skipped < n {
                skipped += 1;
            } else {
                rest.extend_from_slice(&line);
            }
        }
        let tmp = self.dir.join(format!("{PENDING}.tmp"));
        {
            let mut out = File::create(&tmp)?;
            out.write_all(&rest)?;
            out.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        if let Ok(dir) = File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        files.pending = OpenOptions::new().read(true).append(true).open(&path)?;
        files.bytes = rest.len() as u64;
        files.depth = files.depth.saturating_sub(skipped);
        Ok(())
    }

    /// Keeps a line replay could not apply, with why, in the rejected file.
    pub fn keep_rejected<T: Serialize>(&self, entry: &T, reason: &str) {
        match serde_json::to_vec(entry) {
            Ok(line) => self.keep_rejected_raw(&line, reason),
            Err(err) => tracing::error!(error = %err, "a rejected spool line cannot be written"),
        }
    }

    fn keep_rejected_raw(&self, line: &[u8], reason: &str) {
        let record = serde_json::json!({
            "at": crate::kernel::timestamp(&crate::kernel::now()),
            "reason": reason,
            "line": String::from_utf8_lossy(line),
        });
        let written = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(REJECTED))
            .and_then(|mut f| {
                writeln!(f, "{record}")?;
                f.sync_data()
            });
        if let Err(err) = written {
            tracing::error!(error = %err, "the spool's rejected file cannot be written");
        }
    }

    pub fn depth(&self) -> usize {
        self.lock().depth
    }

    pub fn is_empty(&self) -> bool {
        self.depth() == 0
    }

    pub fn view(&self) -> SpoolView {
        let files = self.lock();
        SpoolView {
            depth: files.depth,
            bytes: files.bytes,
            max_bytes: self.cap,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The length of the file's complete lines and how many there are.
fn complete_prefix(file: &File) -> io::Result<(u64, usize)> {
    let mut reader = BufReader::new(file.try_clone()?);
    reader.seek(SeekFrom::Start(0))?;
    let (mut complete, mut depth) = (0u64, 0usize);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 || line.last() != Some(&b'\n') {
            break;
        }
        complete += n as u64;
        depth += 1;
    }
    Ok((complete, depth))
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    #[test]
    fn keeps_order_survives_reopening_and_drops_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        for i in 0..5 {
            assert_eq!(spool.append(&json!({ "n": i })).unwrap(), i + 1);
        }
        drop(spool);
        // A crash in the middle of a write leaves a line without its newline.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join(PENDING))
            .unwrap();
        f.write_all(br#"{"n": 99"#).unwrap();
        drop(f);

        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(spool.depth(), 5);
        spool.append(&json!({ "n": 5 })).unwrap();
        let got: Vec<Value> = spool
            .pending::<Value>()
            .unwrap()
            .into_iter()
            .flatten()
            .collect();
        assert_eq!(got, (0..6).map(|n| json!({ "n": n })).collect::<Vec<_>>());

        spool.remove_first(4).unwrap();
        spool.append(&json!({ "n": 6 })).unwrap();
        let got: Vec<Value> = spool
            .pending::<Value>()
            .unwrap()
            .into_iter()
            .flatten()
            .collect();
        assert_eq!(got, vec![json!({"n": 4}), json!({"n": 5}), json!({"n": 6})]);
        assert_eq!(spool.depth(), 3);
        spool.remove_first(3).unwrap();
        assert!(spool.is_empty());
        assert_eq!(spool.view().bytes, 0);
    }

    #[test]
    fn refuses_a_line_past_the_cap_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 30).unwrap();
        spool.append(&json!({ "n": "0123456789" })).unwrap();
        let err = spool.append(&json!({ "n": "0123456789" })).unwrap_err();
        assert!(matches!(err, SpoolError::Full { cap: 30, .. }), "{err}");
        assert_eq!(spool.depth(), 1, "the refused line is not kept");
    }
}
