//! A loopback peer that takes each request and closes the connection without a word: the
//! transport failure that is neither refused, nor DNS, nor TLS, nor a timeout.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Accepts connections on 127.0.0.1, reads the request's first bytes and hangs up.
/// Dropping it stops the server.
pub struct HangUp {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl HangUp {
    pub async fn start() -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("testkit: bind 127.0.0.1:0 for a hang-up server");
        let addr = listener
            .local_addr()
            .expect("testkit: read the address of a hang-up server");
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&hits);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let counted = Arc::clone(&counted);
                tokio::spawn(async move {
                    // Wait for the request to start arriving, so the client is mid-request when
                    // the connection closes (not refused, not still connecting).
                    let mut head = [0u8; 1024];
                    while stream.readable().await.is_ok() {
                        match stream.try_read(&mut head) {
                            Ok(0) => break,
                            Ok(_) => {
                                counted.fetch_add(1, Ordering::SeqCst);
                                break;
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                            Err(_) => break,
                        }
                    }
                    drop(stream);
                });
            }
        });
        Self { addr, hits, task }
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests that started to arrive before the hang-up.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for HangUp {
    fn drop(&mut self) {
        self.task.abort();
    }
}
