//! Accepting and serving connections: the connection cap, the idle and header-read timeouts,
//! back-off on accept errors, `Connection: close` once shutdown has begun, and the graceful drain.
//!
//! `axum::serve` has none of the limits, so a few hundred idle or half-sent connections used to
//! stay open for ever and could exhaust the process's file descriptors.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderValue, Request, Response};
use axum::response::IntoResponse;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::Service;

mod activity;
mod heap;

use activity::{Activity, InFlight, Tracked};
use heap::StormTrim;

use crate::config::Config;
use crate::lifecycle::Lifecycle;
use crate::limits;

/// File descriptors kept free for everything that is not a client connection: the database
/// pool, log files, outbound check requests.
const RESERVED_FDS: u64 = 256;

/// How limits on connections are set for one server.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// See `HEADER_READ_TIMEOUT_MS`.
    pub header_read_timeout: Duration,
    /// See `IDLE_TIMEOUT_MS`.
    pub idle_timeout: Duration,
    /// See `MAX_CONNECTIONS`, after [`ConnectionLimits::fit_to_fd_limit`].
    pub max_connections: usize,
}

impl ConnectionLimits {
    pub fn from_config(config: &Config) -> Self {
        Self {
            header_read_timeout: config.header_read_timeout,
            idle_timeout: config.idle_timeout,
            max_connections: config.max_connections,
        }
    }

    /// Raises the soft open-file limit to the hard one, and lowers the connection cap if even that
    /// cannot hold it, so that the cap (not `accept` failing with EMFILE) is what holds clients back.
    pub fn fit_to_fd_limit(mut self) -> Self {
        let wanted = self.max_connections as u64 + RESERVED_FDS;
        match rlimit::increase_nofile_limit(wanted) {
            Ok(limit) if limit < wanted => {
                let cap = limit.saturating_sub(RESERVED_FDS).max(1);
                tracing::warn!(
                    open_file_limit = limit,
                    max_connections = self.max_connections,
                    lowered_to = cap,
                    "the open-file limit cannot hold MAX_CONNECTIONS; serving fewer at once"
                );
                self.max_connections = usize::try_from(cap).unwrap_or(1);
            }
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(error = %err, "cannot read or raise the open-file limit")
            }
        }
        self
    }
}

/// Serves `app` on `listener` until `close` resolves, then stops accepting and waits for open
/// connections to finish their requests (the caller bounds that wait).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    lifecycle: Lifecycle,
    close: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    // Our watchdog applies the header-read timeout from a head's first byte; hyper's own timer
    // starts when the connection begins waiting, so it bounds the sum of both as a backstop.
    builder
        .http1()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(limits.idle_timeout + limits.header_read_timeout);
    let builder = Arc::new(builder);
    let mut backoff = AcceptBackoff::default();
    let storms = Arc::new(StormTrim::default());
    tokio::pin!(close);
    loop {
        let permit = tokio::select! {
            biased;
            () = &mut close => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            biased;
            () = &mut close => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    backoff.reset();
                    stream
                }
                Err(err) if is_connection_error(&err) => continue,
                Err(err) => {
                    let delay = backoff.next();
                    tracing::warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "accept failed; backing off");
                    tokio::select! {
                        () = &mut close => break,
                        () = tokio::time::sleep(delay) => continue,
                    }
                }
            },
        };
        storms.opened(limits.max_connections - permits.available_permits());
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::new());
        let service = RequestService {
            app: app.clone(),
            activity: activity.clone(),
            lifecycle: lifecycle.clone(),
        };
        let io = TokioIo::new(Tracked {
            stream,
            activity: activity.clone(),
            rewrite: None,
        });
        let conn = builder
            .serve_connection(io, hyper::service::service_fn(move |req| service.call(req)))
            .into_owned();
        let conn = graceful.watch(conn);
        let storms = storms.clone();
        let permits = permits.clone();
        tokio::spawn(async move {
            tokio::select! {
                result = conn => {
                    if let Err(err) = result {
                        tracing::debug!(error = %err, "connection ended with an error");
                    }
                }
                () = activity.expired(limits) => {
                    tracing::debug!("closing an idle or stalled connection");
                }
            }
            drop(permit);
            storms.closed(limits.max_connections - permits.available_permits());
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Hands memory back to the system after a connection storm has passed.
///
/// Errors that concern one connection only (the client went away before it was accepted).
fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Doubling delay between failed accepts (EMFILE, ENOBUFS), so a full fd table is not a busy loop.
struct AcceptBackoff(Duration);

impl Default for AcceptBackoff {
    fn default() -> Self {
        Self(Duration::from_millis(10))
    }
}

impl AcceptBackoff {
    fn next(&mut self) -> Duration {
        let delay = self.0;
        self.0 = (self.0 * 2).min(Duration::from_secs(1));
        delay
    }

    fn reset(&mut self) {
        *self = Self::default();
    }
}

/// One request through the router, with the connection-level rules around it.
#[derive(Clone)]
struct RequestService {
    app: Router,
    activity: Arc<Activity>,
    lifecycle: Lifecycle,
}

impl RequestService {
    fn call(
        &self,
        req: Request<Incoming>,
    ) -> impl Future<Output = Result<Response<axum::body::Body>, Infallible>> + Send + 'static {
        let in_flight = InFlight::begin(self.activity.clone());
        let refused = limits::oversized_head(&req);
        let mut app = self.app.clone();
        let lifecycle = self.lifecycle.clone();
        async move {
            let mut response = match refused {
                Some(err) => err.into_response(),
                None => app.call(req).await?,
            };
            // Once shutdown has begun, a keep-alive client must not send another request onto
            // this connection: hyper closes it after this response.
            if lifecycle.is_shutting_down() {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            drop(in_flight);
            Ok(response)
        }
    }
}
