//! Structured logging through tracing: readable text on a terminal, JSON lines when asked, JSON
//! lines in rotated files under `LOG_DIR` ([`files`]), and no configured secret in any of them,
//! whoever writes the line.

pub mod files;
pub mod scrub;

use std::io::IsTerminal;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::log_files::LogFilesConfig;
use crate::config::{ConfiguredSecret, LogFormat};
use scrub::{Scrubber, ScrubbingMakeWriter};

/// Keeps the log writers' workers alive; dropped at exit, they flush what is buffered.
pub struct LogGuards(#[allow(dead_code)] Vec<WorkerGuard>);

/// The filter when `RUST_LOG` is unset or empty. Libraries that log what an upstream answered
/// (async-openai logs whole error bodies at WARN and ERROR; hyper and reqwest log connection
/// details at DEBUG and TRACE) are kept quiet; `RUST_LOG` may raise them, and the scrubber still
/// masks every configured secret in what they write.
pub const DEFAULT_FILTER: &str = "info,sqlx=warn,sea_orm=warn,sea_orm_migration=warn,\
    tower_http=info,async_openai=off,hyper=warn,hyper_util=warn,reqwest=warn";

/// Installs the global subscriber, writing to stderr through a non-blocking writer and, with
/// `files`, JSON lines to rotated files through another, with every line scrubbed of `secrets`
/// (from [`crate::config::Config::secrets`]). Configuration is read before this runs, so a
/// configuration error is printed without it; such errors never carry a secret's value. A log
/// directory that cannot be written is said on stderr, and the service logs to stderr alone.
/// Keep the guards alive until exit so buffered lines are flushed.
pub fn init(
    format: LogFormat,
    secrets: &[ConfiguredSecret],
    files: Option<&LogFilesConfig>,
) -> LogGuards {
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    let mut guards = vec![guard];
    let writer = ScrubbingMakeWriter::new(writer, Scrubber::new(secrets));
    let filter = std::env::var(EnvFilter::DEFAULT_ENV)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .and_then(|_| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new(DEFAULT_FILTER));
    let stderr = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_writer(writer)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(writer)
            .boxed(),
    };
    let file_layer = files.and_then(|f| {
        let dir = f.dir.as_ref()?;
        let rotating =
            files::RotatingFile::open(dir, f.max_bytes, f.keep_days, Box::new(chrono::Utc::now))
                .map_err(|err| {
                    eprintln!(
                        "opsdoctor: cannot write log files in {}: {err}; logging to stderr only",
                        dir.display()
                    )
                })
                .ok()?;
        let (writer, guard) = tracing_appender::non_blocking(rotating);
        guards.push(guard);
        let writer = ScrubbingMakeWriter::new(writer, Scrubber::new(secrets));
        Some(
            tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .with_ansi(false)
                .with_writer(writer),
        )
    });
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(file_layer)
        .try_init();
    LogGuards(guards)
}
