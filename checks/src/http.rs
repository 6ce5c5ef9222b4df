//! Classifying HTTP answers and transport failures into check reasons, without echoing secrets.

use std::error::Error as _;
use std::time::Duration;

use reqwest::StatusCode;

use crate::{CheckResult, Reason};

/// A client for probes: its own timeout, no redirects followed (a redirect is an answer), and a
/// user agent that names us in upstream logs.
pub fn probe_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("opsdoctor/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

/// What went wrong below HTTP, as a reason and a hint.
pub fn transport_reason(err: &reqwest::Error) -> Reason {
    if err.is_timeout() {
        return Reason::Timeout;
    }
    let chain = error_chain(err).to_ascii_lowercase();
    let mut source = err.source();
    while let Some(inner) = source {
        if let Some(io) = inner.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return Reason::ConnectionRefused;
            }
            if io.kind() == std::io::ErrorKind::TimedOut {
                return Reason::Timeout;
            }
        }
        source = inner.source();
    }
    if chain.contains("dns error")
        || chain.contains("failed to lookup")
        || chain.contains("name or service not known")
    {
        Reason::Dns
    } else if chain.contains("invalidcontenttype")
        || chain.contains("certificate")
        || chain.contains("tls")
        || chain.contains("handshake")
        || chain.contains("invalid peer")
    {
        Reason::Tls
    } else if chain.contains("refused") {
        Reason::ConnectionRefused
    } else if chain.contains("timed out") {
        Reason::Timeout
    } else {
        Reason::Unreachable
    }
}

fn error_chain(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&format!("{inner:?}"));
        source = inner.source();
    }
    text
}

/// A failure result for a transport error talking to `what` (e.g. "api.openai.com").
pub fn transport_failure(name: &str, what: &str, err: &reqwest::Error) -> CheckResult {
    failure_for(name, what, transport_reason(err))
}

/// A failure result for a reason found below HTTP.
pub fn failure_for(name: &str, what: &str, reason: Reason) -> CheckResult {
    let (message, hint) = match reason {
        Reason::Timeout => (format!("{what} did not answer in time"), "it may be overloaded or unreachable: check its status page and this host's egress".to_owned()),
        Reason::ConnectionRefused => (format!("{what} refused the connection"), "nothing listens at that address: check the service is running and the configured URL's host and port".to_owned()),
        Reason::Dns => (format!("{what}: the host name does not resolve"), "check the configured URL for typos and this host's DNS resolver".to_owned()),
        Reason::Tls => (format!("{what}: the TLS handshake failed"), "check the URL's scheme (https vs http), the certificate and any TLS-intercepting proxy".to_owned()),
        _ => (format!("{what} could not be reached"), "check network egress from this host and the configured URL".to_owned()),
    };
    CheckResult::fail(name, reason, message, hint).observe("target", what)
}

/// The reason an HTTP error status stands for, when the body says nothing more specific.
pub fn status_reason(status: StatusCode) -> Reason {
    match status.as_u16() {
        401 => Reason::Auth,
        403 => Reason::Forbidden,
        429 => Reason::RateLimited,
        500..=599 => Reason::UpstreamError,
        _ => Reason::BadResponse,
    }
}

/// A result for an HTTP error status from `what`, with the status as an observed value.
pub fn status_failure(name: &str, what: &str, status: StatusCode, hint: &str) -> CheckResult {
    let reason = status_reason(status);
    let result = CheckResult::fail(
        name,
        reason,
        format!("{what} answered HTTP {}", status.as_u16()),
        hint,
    )
    .observe("http_status", status.as_u16());
    if reason == Reason::RateLimited {
        result.with_status(crate::Status::Warn)
    } else {
        result
    }
}

/// Appends a path to a base URL, whether or not the base ends with a slash.
pub fn join(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}
