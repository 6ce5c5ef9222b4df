//! Structured logging through tracing: readable text on a terminal, JSON lines when asked, and
//! no configured secret in either, whoever writes the line.

pub(crate) mod scrub;

use std::io::IsTerminal;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

use crate::config::{ConfiguredSecret, LogFormat};
use scrub::{Scrubber, ScrubbingMakeWriter};

/// The filter when `RUST_LOG` is unset or empty. Libraries that log what an upstream answered
/// (async-openai logs whole error bodies at WARN and ERROR; hyper and reqwest log connection
/// details at DEBUG and TRACE) are kept quiet; `RUST_LOG` may raise them, and the scrubber still
/// masks every configured secret in what they write.
pub const DEFAULT_FILTER: &str = "info,sqlx=warn,sea_orm=warn,sea_orm_migration=warn,\
    tower_http=info,async_openai=off,hyper=warn,hyper_util=warn,reqwest=warn";

/// Installs the global subscriber, writing to stderr through a non-blocking writer, with every
/// line scrubbed of `secrets` (from [`crate::config::Config::secrets`]). Configuration is read
/// before this runs, so a configuration error is printed without it; such errors never carry a
/// secret's value. Keep the guard alive until exit so buffered lines are flushed.
pub fn init(format: LogFormat, secrets: &[ConfiguredSecret]) -> WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    let writer = ScrubbingMakeWriter::new(writer, Scrubber::new(secrets));
    let filter = std::env::var(EnvFilter::DEFAULT_ENV)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .and_then(|_| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
    guard
}
