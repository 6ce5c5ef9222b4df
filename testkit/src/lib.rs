//! Local fake servers that answer like the external services opsdoctor checks, failure modes included.
//!
//! Each fake binds `127.0.0.1:0`, serves on a background task, counts its requests and remembers
//! the last `Authorization` header, and can be switched to another behaviour while it runs with
//! [`Fake::set`]. Response shapes follow `shared/reference/external-apis.md`; error bodies that
//! really echo a (masked) key here echo the *full* presented token, so tests can prove the service
//! never passes it on.
//!
//! [`receivers`] stands in for where notifications go: Slack, PagerDuty and a generic webhook.
//! [`Fake::set_noise`] makes a healthy fake misbehave now and then ([`noise::Noise`]): rare 5xx,
//! 429 or dropped connections at a set rate, for measuring false alarms.
//!
//! [`pg::ScratchDatabase`] gives a test or a bench phase a PostgreSQL database of its own;
//! [`proxy::TcpProxy`] stands between the service and it, and is cut to make it disappear.
//!
//! The transport helpers ([`refused_url`], [`unresolvable_url`], [`tls_mismatch_url`]) give the
//! failures that need no server at all; [`hang_up::HangUp`] is a peer that closes mid-request.

pub mod cloudflare;
pub mod cloudflared;
pub mod hang_up;
pub mod hostname;
pub mod noise;
pub mod openai;
pub mod pg;
pub mod proxy;
pub mod receivers;
mod reply;
pub mod stripe;

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::Request;
use axum::http::header::{AUTHORIZATION, HOST};
use axum::response::Response;
use axum::Router;
use tokio::sync::oneshot;

pub use noise::{Fault, Noise};
use tokio::task::JoinHandle;

/// A running fake: its mode can be switched while it runs.
///
/// Dropping it stops the server: the listener closes (new connections are refused) and idle
/// keep-alive connections are closed.
pub struct Fake<M> {
    shared: Arc<Shared<M>>,
    addr: SocketAddr,
    task: JoinHandle<()>,
    /// Dropped with the fake; that completes axum's graceful-shutdown signal, which closes the
    /// connections a pooling client keeps open (aborting the accept loop alone would not).
    _stop: oneshot::Sender<()>,
}

impl<M> Fake<M> {
    /// Requests received so far, counted on arrival (a request still sleeping in `Slow` counts).
    pub fn hits(&self) -> usize {
        self.shared.hits.load(Ordering::SeqCst)
    }

    /// The bound address, always on 127.0.0.1.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests answered with an injected fault so far (see [`Fake::set_noise`]).
    pub fn faults(&self) -> usize {
        self.shared.faults.load(Ordering::SeqCst)
    }

    /// The `Authorization` header of the latest request, verbatim; `None` if that request had none
    /// (or if no request came yet).
    pub fn last_authorization(&self) -> Option<String> {
        lock(&self.shared.last_authorization).clone()
    }
}

impl<M: Clone + Send + Sync + 'static> Fake<M> {
    /// Switches the behaviour; the next request is answered in the new mode.
    pub fn set(&self, mode: M) {
        *lock(&self.shared.mode) = mode;
    }

    /// Injects rare faults into the answers from now on (`None`: none).
    pub fn set_noise(&self, noise: Option<Noise<M>>) {
        *lock(&self.shared.noise) = noise;
    }
}

impl<M> Drop for Fake<M> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A URL on 127.0.0.1 where nothing listens: a port just bound and released, so a connection
/// attempt is refused.
pub fn refused_url() -> String {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .expect("testkit: bind 127.0.0.1:0 to find a free port");
    let addr = listener
        .local_addr()
        .expect("testkit: read the address of a bound listener");
    drop(listener);
    format!("http://{addr}")
}

/// A URL whose host cannot resolve: `.invalid` is reserved never to exist (RFC 2606).
pub fn unresolvable_url() -> String {
    "http://opsdoctor-fake.invalid".to_owned()
}

/// The fake's host and port with `https://`: the server speaks plain HTTP, so the TLS handshake
/// fails.
pub fn tls_mismatch_url<M>(fake: &Fake<M>) -> String {
    format!("https://{}", fake.addr)
}

/// What a fake's answer may depend on besides its mode.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub(crate) method: String,
    pub(crate) path: String,
    /// The `Authorization` header value, verbatim.
    pub(crate) authorization: Option<String>,
    pub(crate) host: Option<String>,
    /// This request's number, from 1.
    pub(crate) hit: usize,
}

impl Call {
    /// The presented credential: what follows `Bearer `, else the whole header, else "".
    pub(crate) fn token(&self) -> &str {
        let Some(value) = self.authorization.as_deref() else {
            return "";
        };
        match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => value,
        }
    }
}

struct Shared<M> {
    mode: Mutex<M>,
    noise: Mutex<Option<Noise<M>>>,
    faults: AtomicUsize,
    hits: AtomicUsize,
    last_authorization: Mutex<Option<String>>,
}

impl<M: Clone> Shared<M> {
    /// Counts the request, remembers its credential and returns what the answer needs: the mode
    /// to answer in, or a reset.
    fn record(&self, request: &Request) -> (Option<M>, Call) {
        let header = |name| {
            request
                .headers()
                .get(name)
                .map(|v: &axum::http::HeaderValue| {
                    String::from_utf8_lossy(v.as_bytes()).into_owned()
                })
        };
        let authorization = header(AUTHORIZATION);
        *lock(&self.last_authorization) = authorization.clone();
        let hit = self.hits.fetch_add(1, Ordering::SeqCst) + 1;
        let call = Call {
            method: request.method().as_str().to_owned(),
            path: request.uri().path().to_owned(),
            authorization,
            host: header(HOST),
            hit,
        };
        let fault = lock(&self.noise).as_mut().and_then(|n| n.pick(hit));
        if fault.is_some() {
            self.faults.fetch_add(1, Ordering::SeqCst);
        }
        let mode = match fault {
            Some(Fault::Reset) => None,
            Some(Fault::Answer(mode)) => Some(mode),
            None => Some(lock(&self.mode).clone()),
        };
        (mode, call)
    }
}

/// A panic elsewhere must not turn every later assertion into a poison error.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Binds 127.0.0.1:0 and answers every request with `answer(current mode, call)`.
pub(crate) async fn serve<M, H, Fut>(mode: M, answer: H) -> Fake<M>
where
    M: Clone + Send + Sync + 'static,
    H: Fn(M, Call) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response> + Send + 'static,
{
    let shared = Arc::new(Shared {
        mode: Mutex::new(mode),
        noise: Mutex::new(None),
        faults: AtomicUsize::new(0),
        hits: AtomicUsize::new(0),
        last_authorization: Mutex::new(None),
    });
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("testkit: bind 127.0.0.1:0 for a fake server");
    let addr = listener
        .local_addr()
        .expect("testkit: read the address of a fake's listener");

    let state = Arc::clone(&shared);
    let app = Router::new().fallback(move |request: Request| {
        let (mode, call) = state.record(&request);
        let answer = answer.clone();
        async move {
            match mode {
                Some(mode) => answer(mode, call).await,
                None => noise::reset(),
            }
        }
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        // An accept error ends a fake early; the test then sees refused connections.
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await;
    });
    Fake {
        shared,
        addr,
        task,
        _stop: stop,
    }
}
