//! Replica presence: each coordinator records that it is alive (`replicas`), and takes over the
//! waiting standbys of a replica unseen for `Settings::replica_lost_after`.
//!
//! A live replica whose provider has the lost one's scope (`Provider::scope`: it can watch and
//! stop those sandboxes) and keeps warm pools adopts them: they become its own, watched and
//! claimed as the ones it spawned, and their pools are its pools from then on. Every other
//! waiting standby of the lost replica is ended (its worker hears 409 at its next poll and
//! exits; this replica's provider stops it too when it can), and its pool joins the pools of a
//! replica that keeps pools, which refills it. Each standby is taken by one statement, so once
//! whatever the number of replicas.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::app::AppState;
use crate::error::Result;
use crate::pool;
use crate::sandbox::SandboxHandle;
use crate::store::{Presence, Standby, now_ms};

/// What one pass took over.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Takeover {
    /// Standbys of lost replicas that are this replica's now.
    pub adopted: Vec<String>,
    /// Standbys of lost replicas that were ended.
    pub ended: Vec<String>,
}

/// How often a replica records that it is alive (and looks for lost ones): six times within the
/// silence after which it counts as lost (every 5 s by default), at most every 100 ms.
pub fn beat_interval(settings: &crate::app::Settings) -> Duration {
    (settings.replica_lost_after / 6).max(Duration::from_millis(100))
}

/// Records this replica's presence and takes over lost replicas' standbys until `shutdown`.
pub async fn run(state: AppState, shutdown: CancellationToken) {
    let started_ms = now_ms();
    let scope = state.provider_scope.clone();
    let interval = beat_interval(&state.settings);
    loop {
        if let Err(e) = pass(&state, started_ms, scope.as_deref()).await {
            tracing::warn!(error = %e, "recording this replica's presence failed");
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

/// One heartbeat and takeover; `started_ms` is when this process started, `scope` its
/// provider's.
pub async fn pass(state: &AppState, started_ms: i64, scope: Option<&str>) -> Result<Takeover> {
    let now = now_ms();
    let presence = Presence {
        replica_id: &state.settings.replica_id,
        provider: state.provider.name(),
        scope,
        started_ms,
        now_ms: now,
    };
    state.store.replica_heartbeat(presence).await?;
    let lost_after = i64::try_from(state.settings.replica_lost_after.as_millis()).unwrap_or(0);
    let unseen_since = now.saturating_sub(lost_after);
    let keeps_pools = pool::keeps_pools(state);
    let adopted = if keeps_pools {
        state.store.adopt_standbys(presence, unseen_since).await?
    } else {
        Vec::new()
    };
    let ended = state
        .store
        .end_standbys_of_lost_replicas(&state.settings.replica_id, unseen_since)
        .await?;
    for standby in &adopted {
        tracing::info!(standby = %standby.id, pool = %standby.pool, "standby of a lost replica adopted");
        pool::remember_pool(state, &standby.pool);
    }
    if keeps_pools {
        for standby in &ended {
            pool::remember_pool(state, &standby.pool);
        }
    }
    futures_util::future::join_all(ended.iter().map(|standby| stop(state, standby))).await;
    state.store.forget_lost_replicas(unseen_since).await?;
    if !adopted.is_empty() || !ended.is_empty() {
        state.pool_wake.notify_one();
    }
    Ok(Takeover {
        adopted: adopted.into_iter().map(|s| s.id).collect(),
        ended: ended.into_iter().map(|s| s.id).collect(),
    })
}

/// Stops an ended standby of a lost replica when this replica's provider is of its kind (a
/// handle it does not know is no error: the worker then exits at its next poll, refused).
async fn stop(state: &AppState, standby: &Standby) {
    tracing::info!(standby = %standby.id, replica = %standby.replica_id, "standby of a lost replica ended");
    let Some(handle) = standby
        .handle
        .clone()
        .filter(|_| standby.provider == state.provider.name())
    else {
        return;
    };
    if let Err(e) = state.provider.terminate(&SandboxHandle(handle)).await {
        tracing::warn!(standby = %standby.id, error = %e, "stopping a lost replica's standby failed");
    }
}
