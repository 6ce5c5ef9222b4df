//! The durable spool: an append-only file of JSON lines, each a write the service acknowledged
//! while the database could not take it. A line is flushed to disk (`fdatasync`) before the write
//! is answered, so it survives `kill -9` and a power cut; a line cut short by a crash was never
//! acknowledged and is dropped when the spool is opened again.
//!
//! The spool knows nothing of what the lines mean (see `entry.rs`); it keeps them in order, says
//! how many wait and how many bytes they take, refuses a line that would pass its size cap, and
//! drops the ones replay has written.
//!
//! Several processes may share one spool directory (the service, and `opsdoctor deploy` or
//! `opsdoctor tunnel restart` on the same host): every operation holds an OS lock on
//! `spool.lock`, finds the file again when another process has replaced it, and replay drops
//! only the lines it replayed, by their content, so that two replayers never drop a line neither
//! has written.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The file of pending lines inside the spool directory.
const PENDING: &str = "pending.jsonl";
/// The lock every process using the directory takes around each operation.
const LOCK: &str = "spool.lock";
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
    /// The inode `pending` is open on, to see when another process has replaced the file.
    inode: u64,
    bytes: u64,
    depth: usize,
    lock: File,
}

/// The files, held under this process's mutex and the directory's OS lock.
struct Locked<'a> {
    files: std::sync::MutexGuard<'a, Files>,
}

impl std::ops::Deref for Locked<'_> {
    type Target = Files;

    fn deref(&self) -> &Files {
        &self.files
    }
}

impl std::ops::DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut Files {
        &mut self.files
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        let _ = fs4::fs_std::FileExt::unlock(&self.files.lock);
    }
}

/// A pending line: its bytes as stored, and the entry read from them (`None`: unreadable).
pub struct Line<T> {
    pub raw: Vec<u8>,
    pub entry: Option<T>,
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
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK))?;
        let spool = Self {
            dir: dir.to_owned(),
            cap,
            files: Arc::new(Mutex::new(Files {
                pending: open_pending(&dir.join(PENDING))?,
                inode: u64::MAX,
                bytes: 0,
                depth: 0,
                lock,
            })),
        };
        let files = spool.locked()?;
        if files.depth > 0 {
            tracing::warn!(
                depth = files.depth,
                "the spool holds writes from an earlier run; they will be replayed"
            );
        }
        drop(files);
        Ok(spool)
    }

    /// Takes this process's mutex and the directory's OS lock, and catches up with what other
    /// processes did to the file meanwhile.
    fn locked(&self) -> io::Result<Locked<'_>> {
        let files = self.files.lock().unwrap_or_else(PoisonError::into_inner);
        fs4::fs_std::FileExt::lock_exclusive(&files.lock)?;
        let mut locked = Locked { files };
        let path = self.dir.join(PENDING);
        let inode = std::os::unix::fs::MetadataExt::ino(
            &std::fs::metadata(&path)
                .or_else(|_| open_pending(&path).and_then(|f| f.metadata()))?,
        );
        let mut changed = false;
        if inode != locked.inode {
            locked.pending = open_pending(&path)?;
            locked.inode = inode;
            changed = true;
        }
        let len = locked.pending.metadata()?.len();
        if changed || len != locked.bytes {
            let (complete, depth) = complete_prefix(&locked.pending)?;
            if complete < len {
                // Under the lock no one is writing: the tail is a line a crash cut short, never
                // acknowledged. Appending after it would spoil the next line too.
                tracing::warn!(
                    "the spool ends with a line cut short by a crash; that write was never acknowledged and is dropped"
                );
                locked.pending.set_len(complete)?;
                locked.pending.sync_all()?;
            }
            locked.bytes = complete;
            locked.depth = depth;
        }
        Ok(locked)
    }

    /// Appends one line and flushes it to disk; returns the depth after it.
    pub fn append<T: Serialize>(&self, entry: &T) -> Result<usize, SpoolError> {
        let mut line = serde_json::to_vec(entry).map_err(io::Error::other)?;
        line.push(b'\n');
        let mut files = self.locked()?;
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
    /// version, say) is set aside in the rejected file and kept with the rest (its `entry` is
    /// `None`), so that [`Self::remove_replayed`] drops it too.
    pub fn pending<T: DeserializeOwned>(&self) -> io::Result<Vec<Line<T>>> {
        let files = self.locked()?;
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
            let entry = match serde_json::from_slice::<T>(&line) {
                Ok(entry) => Some(entry),
                Err(err) => {
                    tracing::error!(error = %err, "a spooled line cannot be read; it is kept in the rejected file");
                    self.keep_rejected_raw(&line, &err.to_string());
                    None
                }
            };
            out.push(Line { raw: line, entry });
        }
        Ok(out)
    }

    /// Drops the lines replay has written (`done`, oldest first, as [`Self::pending`] gave
    /// them), keeping any appended meanwhile; the rest is written to a new file that replaces the
    /// old one atomically. Lines another process replayed and dropped first are not looked for
    /// again, so two replayers never drop a line that neither has written.
    pub fn remove_replayed(&self, done: &[Vec<u8>]) -> io::Result<()> {
        if done.is_empty() {
            return Ok(());
        }
        let mut files = self.locked()?;
        let path = self.dir.join(PENDING);
        let mut reader = BufReader::new(files.pending.try_clone()?);
        reader.seek(SeekFrom::Start(0))?;
        let mut lines = Vec::new();
        loop {
            let mut line = Vec::new();
            if reader.read_until(b'\n', &mut line)? == 0 {
                break;
            }
            lines.push(line);
        }
        let bare = |l: &[u8]| {
            l.strip_suffix(b"\n")
                .map(<[u8]>::to_vec)
                .unwrap_or_else(|| l.to_vec())
        };
        // The file starts with the first replayed line not dropped yet (if any): drop from there
        // while the file and `done` agree.
        let first = lines.first().map(|l| bare(l));
        let start = first.and_then(|f| done.iter().position(|d| *d == f));
        let skipped = match start {
            Some(start) => lines
                .iter()
                .zip(&done[start..])
                .take_while(|(line, d)| bare(line) == **d)
                .count(),
            None => 0,
        };
        if skipped == 0 {
            return Ok(());
        }
        let rest: Vec<u8> = lines[skipped..].concat();
        let tmp = self
            .dir
            .join(format!("{PENDING}.{}.tmp", std::process::id()));
        {
            let mut out = File::create(&tmp)?;
            out.write_all(&rest)?;
            out.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        if let Ok(dir) = File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        files.pending = open_pending(&path)?;
        files.inode = std::os::unix::fs::MetadataExt::ino(&files.pending.metadata()?);
        let (complete, depth) = complete_prefix(&files.pending)?;
        files.bytes = complete;
        files.depth = depth;
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

    /// How many lines wait, in this directory (any process's); 0 when the spool cannot be
    /// read (the error is logged).
    /// How many lines wait in this directory, any process's; 0 when the spool cannot be read
    /// (the error is logged). Takes the OS lock: what a write decides on.
    pub fn depth(&self) -> usize {
        match self.locked() {
            Ok(files) => files.depth,
            Err(err) => {
                tracing::error!(error = %err, "the spool cannot be read");
                self.files
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .depth
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.depth() == 0
    }

    /// What the spool held when this process last looked (every write, and the replay loop at
    /// least once a second while the database answers): for readiness and the bundle, which are
    /// answered many times a second and take no lock and make no system call for it.
    pub fn view(&self) -> SpoolView {
        let files = self.files.lock().unwrap_or_else(PoisonError::into_inner);
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

/// Opens (creating) the file of pending lines for reading and appending.
fn open_pending(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)
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
#[path = "spool_tests.rs"]
mod tests;
