//! The coordinator server: the router, and `serve` with graceful shutdown and the liveness
//! monitor and the scheduler running beside it.

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api;
use crate::app::AppState;
use crate::dashboard;
use crate::liveness;
use crate::scheduler;

/// The HTTP routes of the coordinator.
pub fn router(state: AppState) -> Router {
    api::routes().merge(dashboard::routes()).with_state(state)
}

/// Serves `state` on `listener` until `shutdown` is cancelled, with the liveness monitor (it
/// reconciles with the provider first) and the scheduler running. Open live streams end at
/// shutdown; sandboxes keep running and are found again by the next start.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let monitor = tokio::spawn(liveness::run(state.clone(), shutdown.clone()));
    let scheduler = tokio::spawn(scheduler::run(state.clone(), shutdown.clone()));
    let stop = state.shutdown.clone();
    let linked = shutdown.clone();
    tokio::spawn(async move {
        linked.cancelled().await;
        stop.cancel();
    });
    // Live streams write small SSE messages: they must leave at once, not after a delayed ACK.
    let listener = axum::serve::ListenerExt::tap_io(listener, |stream| {
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(%err, "cannot set TCP_NODELAY on a connection");
        }
    });
    let result = axum::serve(listener, router(state.clone()))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    state.shutdown.cancel();
    let _ = monitor.await;
    let _ = scheduler.await;
    result
}
