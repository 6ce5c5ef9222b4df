//! The connection-storm figure: resident memory after 2,000 idle connections have come and gone.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::procs::Server;

/// Idle connections opened in each round of the storm.
const CONNECTIONS: usize = 2_000;
/// Rounds of the storm; memory that is not given back grows from one round to the next.
const ROUNDS: usize = 3;

/// What the storm found: RSS before, while held (worst round) and after, in MiB.
pub struct Storm {
    pub idle_mib: f64,
    pub held_mib: f64,
    pub after_mib: f64,
    pub live_ok: usize,
}

/// Opens [`CONNECTIONS`] keep-alive connections that each send one liveness request and then stay
/// idle, checks liveness on a fresh connection while they are held, closes them and waits.
/// Bounded: every connect and read has a timeout, and the whole storm a deadline.
pub async fn run(server: &Server) -> Storm {
    let idle_mib = server.rss_mib();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut held_mib: f64 = 0.0;
    let mut live_ok = 0;
    for _ in 0..ROUNDS {
        let mut held = Vec::with_capacity(CONNECTIONS);
        while held.len() < CONNECTIONS && Instant::now() < deadline {
            if let Ok(Ok(mut stream)) =
                tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(server.addr)).await
            {
                if stream
                    .write_all(b"GET /health/live HTTP/1.1\r\nHost: bench\r\n\r\n")
                    .await
                    .is_ok()
                {
                    held.push(stream);
                }
            }
        }
        for stream in &mut held {
            let mut buf = [0u8; 512];
            let _ = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await;
        }
        if live(server).await {
            live_ok += 1;
        }
        held_mib = held_mib.max(server.rss_mib());
        drop(held);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    Storm {
        idle_mib,
        held_mib,
        after_mib: server.rss_mib(),
        live_ok,
    }
}

async fn live(server: &Server) -> bool {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    client
        .get(format!("http://{}/health/live", server.addr))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}
