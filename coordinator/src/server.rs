//! The coordinator server: the router, and `serve` with graceful shutdown, the liveness monitor,
//! the scheduler and the relay between replicas running beside it, and the limits that protect
//! it from its clients (header-read and idle timeouts, a connection limit).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::{Extension, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

use crate::api;
use crate::app::AppState;
use crate::dashboard;
use crate::liveness;
use crate::pool;
use crate::presence;
use crate::relay;
use crate::scheduler;

/// What the server allows one client: `omoi serve --header-timeout-secs`, `--idle-timeout-secs`,
/// `--max-connections`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// The time a client has to send a request's headers.
    pub header_read_timeout: Duration,
    /// A connection on which no byte moves either way for this long is closed (live streams
    /// send a keep-alive comment every 15 s).
    pub idle_timeout: Duration,
    /// Connections open at once; one more is closed at once.
    pub max_connections: usize,
}

impl Default for ServerLimits {
    fn default() -> ServerLimits {
        ServerLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
        }
    }
}

/// The HTTP routes of the coordinator.
pub fn router(state: AppState) -> Router {
    api::routes().merge(dashboard::routes()).with_state(state)
}

/// Serves `state` on `listener` with the default limits until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_with(listener, state, ServerLimits::default(), shutdown).await
}

/// Serves `state` on `listener` until `shutdown` is cancelled, with the liveness monitor (it
/// reconciles with the provider first) and the scheduler running. Open live streams end at
/// shutdown; sandboxes keep running and are found again by the next start.
pub async fn serve_with(
    listener: TcpListener,
    state: AppState,
    limits: ServerLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let monitor = tokio::spawn(liveness::run(state.clone(), shutdown.clone()));
    let scheduler = tokio::spawn(scheduler::run(state.clone(), shutdown.clone()));
    let relay = tokio::spawn(relay::run(state.clone(), shutdown.clone()));
    let pools = tokio::spawn(pool::run(state.clone(), shutdown.clone()));
    let presence = tokio::spawn(presence::run(state.clone(), shutdown.clone()));
    let stop = state.shutdown.clone();
    let linked = shutdown.clone();
    tokio::spawn(async move {
        linked.cancelled().await;
        stop.cancel();
    });
    let result = accept_loop(listener, router(state.clone()), limits, shutdown).await;
    state.shutdown.cancel();
    let _ = monitor.await;
    let _ = scheduler.await;
    let _ = relay.await;
    let _ = pools.await;
    let _ = presence.await;
    result
}

/// Accepts connections and serves `router` on each, within `limits`, until `shutdown`; then lets
/// the open connections finish their requests and waits for them.
pub async fn accept_loop(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors and the like: wait a moment instead of spinning.
                tracing::warn!(%err, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(
                max = limits.max_connections,
                "connection limit reached; closing a new connection"
            );
            drop(stream);
            continue;
        };
        // Live streams write small SSE messages: they must leave at once, not after a delayed ACK.
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(%err, "cannot set TCP_NODELAY on a connection");
        }
        let (router, shutdown) = (router.clone(), shutdown.clone());
        tokio::spawn(async move {
            // The client's address, for what is limited per address (dashboard sign-in).
            let router = router.layer(Extension(ConnectInfo(peer)));
            serve_connection(stream, router, limits, shutdown).await;
            drop(slot);
        });
    }
    // Every connection holds a slot until it ends: all slots free means all connections ended.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
    Ok(())
}

async fn serve_connection(
    stream: TcpStream,
    router: Router,
    limits: ServerLimits,
    shutdown: CancellationToken,
) {
    let io = TokioIo::new(IdleTimeout::new(stream, limits.idle_timeout));
    let service = TowerToHyperService::new(router);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let connection = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(connection);
    let outcome = tokio::select! {
        outcome = connection.as_mut() => outcome,
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(err) = outcome {
        tracing::debug!(%err, "connection ended with an error");
    }
}

/// A connection that fails its reads and writes once no byte has moved for the idle timeout,
/// which makes hyper close it.
struct IdleTimeout {
    inner: TcpStream,
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl IdleTimeout {
    fn new(inner: TcpStream, timeout: Duration) -> IdleTimeout {
        IdleTimeout {
            inner,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }

    fn moved(&mut self) {
        self.deadline.as_mut().reset(Instant::now() + self.timeout);
    }

    fn expired(&mut self, cx: &mut Context<'_>) -> Option<std::io::Error> {
        self.deadline.as_mut().poll(cx).is_ready().then(|| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, "connection idle for too long")
        })
    }
}

impl AsyncRead for IdleTimeout {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    self.moved();
                }
                Poll::Ready(result)
            }
            Poll::Pending => match self.expired(cx) {
                Some(err) => Poll::Ready(Err(err)),
                None => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for IdleTimeout {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(written)) => {
                if written > 0 {
                    self.moved();
                }
                Poll::Ready(Ok(written))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => match self.expired(cx) {
                Some(err) => Poll::Ready(Err(err)),
                None => Poll::Pending,
            },
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
