//! The server protects itself: silent connections and slow headers are closed, connections
//! beyond the limit are refused.

use std::time::Duration;

use omoi_coordinator::server::{ServerLimits, accept_loop, router};
use omoi_coordinator::store::Store;
use omoi_coordinator::{AppState, Settings};
use pretty_assertions::assert_eq;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::common::{FakeProvider, TestDb, sqlite};

/// A server with `limits` on a fresh SQLite database; answers its address, its stop token and
/// the database (kept for the test's length).
async fn start(limits: ServerLimits) -> (std::net::SocketAddr, CancellationToken, TestDb) {
    let db = sqlite();
    let store = Store::open(&db.url).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = AppState::new(
        store,
        FakeProvider::new(),
        Settings::new(format!("http://{addr}")),
    );
    let shutdown = CancellationToken::new();
    tokio::spawn(accept_loop(
        listener,
        router(state),
        limits,
        shutdown.clone(),
    ));
    (addr, shutdown, db)
}

/// What the server sends until it closes the connection, or `None` if it keeps it open for
/// `wait`.
async fn read_until_closed(stream: &mut TcpStream, wait: Duration) -> Option<String> {
    let mut seen = Vec::new();
    let read = tokio::time::timeout(wait, stream.read_to_end(&mut seen)).await;
    match read {
        Ok(_) => Some(String::from_utf8_lossy(&seen).into_owned()),
        Err(_) => None,
    }
}

const HEALTH: &[u8] = b"GET /healthz HTTP/1.1\r\nhost: omoi\r\n\r\n";

#[tokio::test]
async fn idle_connections_and_slow_headers_are_closed() {
    let (addr, shutdown, _db) = start(ServerLimits {
        header_read_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(1),
        max_connections: 16,
    })
    .await;
    let mut silent = TcpStream::connect(addr).await.unwrap();
    assert_eq!(
        read_until_closed(&mut silent, Duration::from_secs(5)).await,
        Some(String::new())
    );
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nhost: om")
        .await
        .unwrap();
    let answer = read_until_closed(&mut slow, Duration::from_secs(5)).await;
    assert!(
        answer
            .as_deref()
            .is_some_and(|a| a.is_empty() || a.starts_with("HTTP/1.1 408")),
        "{answer:?}"
    );
    // A kept-alive connection that goes quiet after its answer is closed too.
    let mut kept = TcpStream::connect(addr).await.unwrap();
    kept.write_all(HEALTH).await.unwrap();
    let answer = read_until_closed(&mut kept, Duration::from_secs(5)).await;
    assert!(
        answer
            .as_deref()
            .is_some_and(|a| a.starts_with("HTTP/1.1 200 OK")),
        "{answer:?}"
    );
    shutdown.cancel();
}

#[tokio::test]
async fn connections_beyond_the_limit_are_closed_on_arrival() {
    let (addr, shutdown, _db) = start(ServerLimits {
        header_read_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(30),
        max_connections: 2,
    })
    .await;
    let first = TcpStream::connect(addr).await.unwrap();
    let _second = TcpStream::connect(addr).await.unwrap();
    // Let the server accept both before the third arrives.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut third = TcpStream::connect(addr).await.unwrap();
    third.write_all(HEALTH).await.ok();
    assert_eq!(
        read_until_closed(&mut third, Duration::from_secs(5)).await,
        Some(String::new())
    );
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut fourth = TcpStream::connect(addr).await.unwrap();
    fourth.write_all(HEALTH).await.unwrap();
    let mut head = [0u8; 15];
    fourth.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200 OK");
    shutdown.cancel();
}
