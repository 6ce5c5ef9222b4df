//! Accepting and serving connections: the connection cap, the idle and header-read timeouts,
//! back-off on accept errors, `Connection: close` once shutdown has begun, and the graceful drain.
//!
//! `axum::serve` has none of the limits, so a few hundred idle or half-sent connections used to
//! stay open for ever and could exhaust the process's file descriptors.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::http::{header, HeaderValue, Request, Response};
use axum::response::IntoResponse;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::Service;

use crate::config::Config;
use crate::limits;
use crate::state::Lifecycle;

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
/// Each connection's buffers are freed when it closes, but glibc keeps freed memory in its
/// per-thread arenas: after 2,000 connections RSS stayed 80 MiB above its baseline for good.
/// `malloc_trim` returns those free pages; it runs once the open connections fall to a quarter of
/// a peak of at least [`StormTrim::PEAK`], so ordinary traffic never pays for it.
#[derive(Default)]
struct StormTrim {
    peak: AtomicUsize,
}

impl StormTrim {
    const PEAK: usize = 256;

    fn opened(&self, open: usize) {
        self.peak.fetch_max(open, Ordering::Relaxed);
    }

    fn closed(&self, open: usize) {
        let peak = self.peak.load(Ordering::Relaxed);
        if peak >= Self::PEAK
            && open <= peak / 4
            && self
                .peak
                .compare_exchange(peak, open, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tokio::task::spawn_blocking(trim_heap);
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_heap() {
    // SAFETY: malloc_trim only walks glibc's own heap structures under their locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_heap() {}

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

/// What a connection has been doing, for its idle and header-read deadlines. Times are
/// milliseconds since the connection was accepted.
struct Activity {
    accepted: Instant,
    last_io_ms: AtomicU64,
    head_started_ms: AtomicU64,
    in_flight: AtomicUsize,
}

const NOT_STARTED: u64 = u64::MAX;

impl Activity {
    fn new() -> Self {
        Self {
            accepted: Instant::now(),
            last_io_ms: AtomicU64::new(0),
            head_started_ms: AtomicU64::new(NOT_STARTED),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.accepted.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    fn on_read(&self) {
        let now = self.now_ms();
        self.last_io_ms.store(now, Ordering::Relaxed);
        if self.in_flight.load(Ordering::Relaxed) == 0 {
            let _ = self.head_started_ms.compare_exchange(
                NOT_STARTED,
                now,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    fn on_write(&self) {
        self.last_io_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Resolves when the connection has had no request in flight and either no bytes for the idle
    /// timeout, or an unfinished request head for the header-read timeout.
    async fn expired(&self, limits: ConnectionLimits) {
        let header_read = ms(limits.header_read_timeout);
        let idle = ms(limits.idle_timeout);
        loop {
            let now = self.now_ms();
            let wake = if self.in_flight.load(Ordering::Relaxed) > 0 {
                // A request is being served: its own timeout applies; look again later.
                now + header_read.min(idle)
            } else {
                match self.head_started_ms.load(Ordering::Relaxed) {
                    NOT_STARTED => {
                        let idle_at = self.last_io_ms.load(Ordering::Relaxed) + idle;
                        if now >= idle_at {
                            return;
                        }
                        // A head may start meanwhile: look again within its timeout.
                        idle_at.min(now + header_read)
                    }
                    started => {
                        let header_at = started + header_read;
                        if now >= header_at {
                            return;
                        }
                        header_at
                    }
                }
            };
            tokio::time::sleep(Duration::from_millis(wake - now)).await;
        }
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 2)
}

/// Marks a request as in flight until dropped; the connection is idle again from then on.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn begin(activity: Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        activity
            .head_started_ms
            .store(NOT_STARTED, Ordering::Relaxed);
        Self(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.on_write();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A TCP stream that records when bytes move.
struct Tracked {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.on_read();
        }
        result
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.stream).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.on_write();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.on_write();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
