//! Log files: JSON lines under `LOG_DIR`, a file a day (`opsdoctor.2026-11-23.log`), a new one
//! (`opsdoctor.2026-11-23.1.log`, `.2` …) when a file would pass `LOG_MAX_FILE_BYTES`, and files
//! older than `LOG_KEEP_DAYS` days deleted. tracing-appender rotates by time only, so this is the
//! writer behind its non-blocking worker.
//!
//! Each `write` it gets is one whole line (the scrubbing writer hands over an event at once, and
//! the worker passes each message in one call), and it decides where a line goes before writing
//! it: rotation never splits a line, and never loses one.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, Utc};

const PREFIX: &str = "opsdoctor.";
const SUFFIX: &str = ".log";

/// Where the time comes from; tests move it.
pub type Clock = Box<dyn Fn() -> DateTime<Utc> + Send>;

/// The rotating writer.
pub struct RotatingFile {
    dir: PathBuf,
    max_bytes: u64,
    keep_days: u32,
    clock: Clock,
    file: File,
    date: NaiveDate,
    /// The file's number within its day: 0 is `opsdoctor.<date>.log`.
    index: u32,
    size: u64,
}

impl RotatingFile {
    /// Opens today's latest file in `dir` (creating the directory), appending to it, and
    /// deletes files past the retention.
    pub fn open(dir: &Path, max_bytes: u64, keep_days: u32, clock: Clock) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let date = clock().date_naive();
        let index = existing(dir)
            .into_iter()
            .filter(|(d, _, _)| *d == date)
            .map(|(_, i, _)| i)
            .max()
            .unwrap_or(0);
        let (file, size) = open_file(&path_of(dir, date, index))?;
        let this = Self {
            dir: dir.to_owned(),
            max_bytes,
            keep_days,
            clock,
            file,
            date,
            index,
            size,
        };
        this.prune();
        Ok(this)
    }

    fn rotate(&mut self, date: NaiveDate) -> io::Result<()> {
        if date != self.date {
            self.date = date;
            self.index = 0;
        } else {
            self.index += 1;
        }
        self.file.flush()?;
        let (file, size) = open_file(&path_of(&self.dir, self.date, self.index))?;
        self.file = file;
        self.size = size;
        self.prune();
        Ok(())
    }

    /// Deletes files dated more than `keep_days` days before today.
    fn prune(&self) {
        let Some(oldest) = self.date.checked_sub_days(chrono::Days::new(u64::from(
            self.keep_days.saturating_sub(1),
        ))) else {
            return;
        };
        for (date, _, path) in existing(&self.dir) {
            if date < oldest {
                if let Err(err) = std::fs::remove_file(&path) {
                    eprintln!(
                        "opsdoctor: cannot delete the old log file {}: {err}",
                        path.display()
                    );
                }
            }
        }
    }
}

impl Write for RotatingFile {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let date = (self.clock)().date_naive();
        let full = self.size > 0 && self.size + line.len() as u64 > self.max_bytes;
        if date != self.date || full {
            self.rotate(date)?;
        }
        self.file.write_all(line)?;
        self.size += line.len() as u64;
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

fn path_of(dir: &Path, date: NaiveDate, index: u32) -> PathBuf {
    match index {
        0 => dir.join(format!("{PREFIX}{date}{SUFFIX}")),
        n => dir.join(format!("{PREFIX}{date}.{n}{SUFFIX}")),
    }
}

fn open_file(path: &Path) -> io::Result<(File, u64)> {
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    let size = file.metadata()?.len();
    Ok((file, size))
}

/// Our log files in `dir`: date, number within the day, path.
fn existing(dir: &Path) -> Vec<(NaiveDate, u32, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let middle = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
            let (date, index) = match middle.split_once('.') {
                Some((d, i)) => (d, i.parse().ok()?),
                None => (middle, 0),
            };
            Some((date.parse().ok()?, index, e.path()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::sync::Arc;

    use super::*;

    fn clock_at(days: Arc<AtomicI64>) -> Clock {
        let start: DateTime<Utc> = "2026-11-01T12:00:00Z".parse().unwrap();
        Box::new(move || start + chrono::TimeDelta::days(days.load(Ordering::SeqCst)))
    }

    fn lines_in(dir: &Path) -> Vec<String> {
        let mut files = existing(dir);
        files.sort();
        files
            .iter()
            .flat_map(|(_, _, p)| {
                let text = std::fs::read_to_string(p).unwrap();
                assert!(
                    text.is_empty() || text.ends_with('\n'),
                    "{} ends mid-line",
                    p.display()
                );
                text.lines().map(str::to_owned).collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn rotates_by_size_without_splitting_or_losing_a_line() {
        let dir = tempfile::tempdir().unwrap();
        let days = Arc::new(AtomicI64::new(0));
        let mut w = RotatingFile::open(dir.path(), 100, 7, clock_at(days)).unwrap();
        let written: Vec<String> = (0..50)
            .map(|i| format!(r#"{{"n":{i},"message":"{}"}}"#, "x".repeat(i % 17)))
            .collect();
        for line in &written {
            w.write_all(format!("{line}\n").as_bytes()).unwrap();
        }
        w.flush().unwrap();
        let files = existing(dir.path());
        assert!(files.len() > 5, "rotated by size: {files:?}");
        for (_, _, path) in &files {
            let len = std::fs::metadata(path).unwrap().len();
            assert!(len <= 100, "{} holds {len} bytes", path.display());
        }
        assert_eq!(lines_in(dir.path()), written, "every line, whole, in order");
    }

    #[test]
    fn rotates_daily_and_keeps_seven_days() {
        let dir = tempfile::tempdir().unwrap();
        let days = Arc::new(AtomicI64::new(0));
        let mut w = RotatingFile::open(dir.path(), 1 << 20, 7, clock_at(days.clone())).unwrap();
        for day in 0..10 {
            days.store(day, Ordering::SeqCst);
            w.write_all(format!("{{\"day\":{day}}}\n").as_bytes())
                .unwrap();
        }
        let mut dates: Vec<String> = existing(dir.path())
            .into_iter()
            .map(|(d, _, _)| d.to_string())
            .collect();
        dates.sort();
        assert_eq!(
            dates,
            (4..=10)
                .map(|d| format!("2026-11-{d:02}"))
                .collect::<Vec<_>>(),
            "a file a day, the last 7 days kept"
        );
        // Reopened the same day, the writer appends to that day's file.
        drop(w);
        let mut w = RotatingFile::open(dir.path(), 1 << 20, 7, clock_at(days)).unwrap();
        w.write_all(b"{\"again\":true}\n").unwrap();
        let today = std::fs::read_to_string(dir.path().join("opsdoctor.2026-11-10.log")).unwrap();
        assert_eq!(today, "{\"day\":9}\n{\"again\":true}\n");
    }
}
