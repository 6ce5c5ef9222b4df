//! What a connection is doing, for its idle and header-read timeouts: bytes moving, requests in
//! flight, and when the head of the next request began to arrive.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::ConnectionLimits;
use crate::error::ApiError;
use crate::limits;

/// What a connection has been doing, for its idle and header-read deadlines. Times are
/// milliseconds since the connection was accepted.
pub(super) struct Activity {
    accepted: Instant,
    last_io_ms: AtomicU64,
    head_started_ms: AtomicU64,
    in_flight: AtomicUsize,
}

const NOT_STARTED: u64 = u64::MAX;

impl Activity {
    pub(super) fn new() -> Self {
        Self {
            accepted: Instant::now(),
            last_io_ms: AtomicU64::new(0),
            head_started_ms: AtomicU64::new(NOT_STARTED),
            in_flight: AtomicUsize::new(0),
        }
    }

    pub(super) fn now_ms(&self) -> u64 {
        u64::try_from(self.accepted.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    pub(super) fn on_read(&self) {
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

    pub(super) fn on_write(&self) {
        self.last_io_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Resolves when the connection has had no request in flight and either no bytes for the idle
    /// timeout, or an unfinished request head for the header-read timeout.
    pub(super) async fn expired(&self, limits: ConnectionLimits) {
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

pub(super) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 2)
}

/// Marks a request as in flight until dropped; the connection is idle again from then on.
pub(super) struct InFlight(Arc<Activity>);

impl InFlight {
    pub(super) fn begin(activity: Arc<Activity>) -> Self {
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

/// A TCP stream that records when bytes move, and gives hyper's own error answers our JSON body.
pub(super) struct Tracked {
    pub(super) stream: TcpStream,
    pub(super) activity: Arc<Activity>,
    /// A rewritten answer being written: its bytes, how many are written, and how many bytes of
    /// hyper's original to report once all are.
    pub(super) rewrite: Option<(Vec<u8>, usize, usize)>,
}

/// hyper answers a request it cannot parse at all (bytes that are not HTTP, a head over its
/// buffer, a URI over 64 KiB) by itself, before the service sees it, with an empty body. Such an
/// answer is the only 400, 414 or 431 with `content-length: 0` (every error of the service
/// carries a JSON body), so it is recognised here and given the one error envelope.
fn with_json_body(head: &[u8]) -> Option<Vec<u8>> {
    const EMPTY: &[u8] = b"\r\ncontent-length: 0\r\n";
    // Every write of every answer passes here: decide on the first bytes, and only a head as short
    // as hyper's bare one is searched.
    if head.len() > 256 {
        return None;
    }
    let error = match head.strip_prefix(b"HTTP/1.1 ")?.get(..4)? {
        b"400 " => ApiError::bad_request(None, "the request is not valid HTTP/1.1"),
        b"414 " => ApiError::UriTooLong {
            limit: limits::MAX_URI_BYTES,
        },
        b"431 " => ApiError::HeadersTooLarge {
            limit: limits::MAX_HEADER_BYTES,
        },
        _ => return None,
    };
    let at = head.windows(EMPTY.len()).position(|w| w == EMPTY)?;
    if !head.ends_with(b"\r\n\r\n") {
        return None;
    }
    let body = error.envelope().to_string();
    let mut out = Vec::with_capacity(head.len() + body.len() + 48);
    out.extend_from_slice(&head[..at]);
    out.extend_from_slice(
        format!(
            "\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(&head[at + EMPTY.len()..]);
    out.extend_from_slice(body.as_bytes());
    Some(out)
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
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.rewrite.is_none() {
            this.rewrite = with_json_body(buf).map(|out| (out, 0, buf.len()));
        }
        let Some((out, written, reported)) = &mut this.rewrite else {
            let result = Pin::new(&mut this.stream).poll_write(cx, buf);
            if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
                this.activity.on_write();
            }
            return result;
        };
        // All of the rewritten answer goes out before hyper hears its own was written.
        while *written < out.len() {
            match Pin::new(&mut this.stream).poll_write(cx, &out[*written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    *written += n;
                    this.activity.on_write();
                }
                other => return other,
            }
        }
        let reported = *reported;
        this.rewrite = None;
        Poll::Ready(Ok(reported))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
            if self.rewrite.is_some() || with_json_body(first).is_some() {
                return self.poll_write(cx, first);
            }
        }
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
