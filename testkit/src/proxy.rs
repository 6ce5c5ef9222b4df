//! A TCP proxy on 127.0.0.1 between the service and a real server (PostgreSQL), that a test cuts
//! to make the server disappear and restores to make it come back, without touching the server.
//!
//! Cut, every open connection is closed at once and each new one is handled as the mode says:
//! refused (the listener is closed, so the port refuses), reset (accepted and closed) or
//! black-holed (accepted and never answered, like a dropped route).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How the proxy treats connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// Forwards every byte both ways.
    Pass,
    /// Nothing listens on the port: connecting is refused.
    Refuse,
    /// Accepts and closes at once.
    Reset,
    /// Accepts and never answers.
    BlackHole,
}

/// A running proxy; dropping it stops it and closes every connection.
pub struct TcpProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    mode: watch::Sender<ProxyMode>,
    accept: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl TcpProxy {
    /// Starts forwarding 127.0.0.1:<free port> to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("testkit: bind 127.0.0.1:0 for the proxy");
        let addr = listener.local_addr().expect("testkit: the proxy's address");
        let (mode, _) = watch::channel(ProxyMode::Pass);
        let proxy = Self {
            addr,
            upstream,
            mode,
            accept: Arc::new(Mutex::new(None)),
        };
        proxy.listen(listener);
        proxy
    }

    /// The address to connect to instead of the server.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `url` with its `host:port` replaced by the proxy's (e.g. a PostgreSQL URL).
    pub fn url_for(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").expect("testkit: a URL with a scheme");
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let userinfo = authority
            .rsplit_once('@')
            .map(|(u, _)| format!("{u}@"))
            .unwrap_or_default();
        format!("{scheme}://{userinfo}{}{path}", self.addr)
    }

    /// Cuts every connection and handles new ones as `mode` says.
    pub async fn cut(&self, mode: ProxyMode) {
        assert_ne!(
            mode,
            ProxyMode::Pass,
            "testkit: use restore() to pass again"
        );
        self.mode.send_replace(mode);
        if mode == ProxyMode::Refuse {
            let task = lock(&self.accept).take();
            if let Some(task) = task {
                task.abort();
                let _ = task.await;
            }
        }
    }

    /// Forwards again (on the same port).
    pub async fn restore(&self) {
        self.mode.send_replace(ProxyMode::Pass);
        if lock(&self.accept).is_none() {
            let listener = loop {
                // The port was just released; rebinding may race the kernel for a moment.
                match TcpListener::bind(self.addr).await {
                    Ok(l) => break l,
                    Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
                }
            };
            self.listen(listener);
        }
    }

    fn listen(&self, listener: TcpListener) {
        let modes = self.mode.subscribe();
        let upstream = self.upstream;
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let mut modes = modes.clone();
                let mode = *modes.borrow_and_update();
                tokio::spawn(async move {
                    match mode {
                        ProxyMode::Pass => forward(client, upstream, &mut modes).await,
                        ProxyMode::BlackHole => {
                            // Held open, unanswered, until the proxy passes again or stops.
                            let _ = modes.wait_for(|m| *m == ProxyMode::Pass).await;
                        }
                        ProxyMode::Reset | ProxyMode::Refuse => drop(client),
                    }
                });
            }
        });
        *lock(&self.accept) = Some(task);
    }
}

/// Forwards until either side closes or the proxy is cut.
async fn forward(
    mut client: TcpStream,
    upstream: SocketAddr,
    modes: &mut watch::Receiver<ProxyMode>,
) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    tokio::select! {
        _ = copy_bidirectional(&mut client, &mut server) => {}
        _ = modes.wait_for(|m| *m != ProxyMode::Pass) => {}
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.mode.send_replace(ProxyMode::Refuse);
        if let Some(task) = lock(&self.accept).take() {
            task.abort();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// An echo server standing for the database.
    async fn echo() -> SocketAddr {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn round_trip(addr: SocketAddr) -> std::io::Result<Vec<u8>> {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await?;
        Ok(buf.to_vec())
    }

    #[tokio::test]
    async fn cuts_open_connections_refuses_new_ones_and_comes_back() {
        let proxy = TcpProxy::start(echo().await).await;
        assert_eq!(round_trip(proxy.addr()).await.unwrap(), b"ping");
        let mut open = TcpStream::connect(proxy.addr()).await.unwrap();
        open.write_all(b"a").await.unwrap();
        let mut one = [0u8; 1];
        open.read_exact(&mut one).await.unwrap();

        proxy.cut(ProxyMode::Refuse).await;
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            open.read_to_end(&mut rest),
        )
        .await;
        assert!(
            matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
            "an open connection is cut"
        );
        let refused = TcpStream::connect(proxy.addr()).await.unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);

        proxy.restore().await;
        assert_eq!(round_trip(proxy.addr()).await.unwrap(), b"ping");

        proxy.cut(ProxyMode::BlackHole).await;
        let hung = tokio::time::timeout(
            std::time::Duration::from_millis(200),
            round_trip(proxy.addr()),
        )
        .await;
        assert!(hung.is_err(), "a black-holed connection is never answered");
        proxy.restore().await;
        assert_eq!(round_trip(proxy.addr()).await.unwrap(), b"ping");
    }
}
