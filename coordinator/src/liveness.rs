//! Liveness and recovery (DESIGN §5.5): finds lost sandboxes — silent for three heartbeats, or
//! exited without a terminal event — stops them and starts a replacement at the phase after the
//! last checkpoint (a lost task sandbox ends its attempt; the scheduler retries the task);
//! reconciles with the provider on start.
//!
//! Invariant: after each pass, no spec is `executing` without a live sandbox.
//!
//! Several replicas: every replica watches every sandbox. A provider's "exited" counts wherever
//! it is heard; its "not found" only on the replica that spawned the sandbox (another replica's
//! provider may not know it, as with local processes), elsewhere the silence decides. Each
//! decision is a compare-and-set in the store (`end_sandbox`, the recovery claim), so of the
//! replicas that see one loss, one acts.

use std::collections::{BTreeMap, HashSet};

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::app::AppState;
use crate::error::Result;
use crate::execution::{recover, recover_seen, stop_sandbox};
use crate::model::{SandboxStatus, SpecStatus};
use crate::sandbox::{OWNER, OWNER_LABEL, ProviderStatus, SANDBOX_LABEL, SandboxHandle};
use crate::scheduler;

/// Reconciles once, then checks every `monitor_interval` until `shutdown`.
pub async fn run(state: AppState, shutdown: CancellationToken) {
    let started = Utc::now();
    if let Err(e) = reconcile(&state, started).await {
        tracing::error!(error = %e, "reconciling with the sandbox provider failed");
    }
    let mut tick = tokio::time::interval(state.settings.monitor_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = check(&state, started).await {
            tracing::error!(error = %e, "liveness check failed");
        }
    }
}

/// Stops the provider's sandboxes of this coordinator that the store does not consider live
/// (left over from an earlier run), then runs a [`check`] (which finds the stored live sandboxes
/// the provider no longer runs).
pub async fn reconcile(state: &AppState, started: DateTime<Utc>) -> Result<()> {
    let labels = BTreeMap::from([(OWNER_LABEL.to_string(), OWNER.to_string())]);
    let listed = state.provider.list(&labels).await?;
    let live: HashSet<String> = state
        .store
        .live_sandboxes()
        .await?
        .into_iter()
        .filter_map(|s| s.handle)
        .collect();
    // Warm pools' standbys not delivered yet, by handle or (one whose handle is not stored
    // yet) by its sandbox label: the pools' upkeep keeps them.
    let standbys: HashSet<String> = state.store.live_standby_keys().await?.into_iter().collect();
    for sandbox in listed {
        let standby = standbys.contains(&sandbox.handle.0)
            || sandbox
                .labels
                .get(SANDBOX_LABEL)
                .is_some_and(|id| standbys.contains(id));
        if sandbox.status == ProviderStatus::Running
            && !live.contains(&sandbox.handle.0)
            && !standby
        {
            tracing::warn!(handle = %sandbox.handle.0, "stopping a sandbox nothing waits for");
            state.provider.terminate(&sandbox.handle).await?;
        }
    }
    check(state, started).await
}

/// One pass: ends lost sandboxes and recovers their specs; recovers executing specs that have no
/// live sandbox at all. Silence counts from `started` at the earliest (when this coordinator
/// started watching), so workers that outlived a restart get time to reach it again.
pub async fn check(state: &AppState, started: DateTime<Utc>) -> Result<()> {
    let lost_after = state.settings.lost_after();
    let now = Utc::now();
    let own = state
        .store
        .live_sandboxes_of_replica(&state.settings.replica_id)
        .await?;
    for sandbox in state.store.live_sandboxes().await? {
        let reason = match &sandbox.handle {
            Some(handle) => match state.provider.status(&SandboxHandle(handle.clone())).await {
                Ok(ProviderStatus::Running) => None,
                Ok(ProviderStatus::NotFound) if !own.contains(&sandbox.id) => None,
                Ok(ProviderStatus::Lost { reason }) => Some(format!("the sandbox {reason}")),
                Ok(
                    status @ (ProviderStatus::Exited { .. }
                    | ProviderStatus::OutOfMemory { .. }
                    | ProviderStatus::NotFound),
                ) => Some(format!("the worker {status} without a terminal event")),
                Err(e) => {
                    tracing::warn!(sandbox = %sandbox.id, error = %e, "sandbox status unknown");
                    None
                }
            },
            // Still being spawned (the workspace is being prepared): give it longer.
            None if silent_for(now, sandbox.last_seen_at.max(started)) >= lost_after * 10 => {
                Some("the sandbox never started".to_string())
            }
            None => continue,
        };
        let silent = silent_for(now, sandbox.last_seen_at.max(started)) >= lost_after;
        let reason = reason.or_else(|| {
            silent.then(|| format!("no event or heartbeat for {} s", lost_after.as_secs()))
        });
        let Some(reason) = reason else { continue };
        tracing::warn!(sandbox = %sandbox.id, %reason, "sandbox lost");
        if stop_sandbox(state, &sandbox, SandboxStatus::Lost, &reason).await? {
            state.metrics.sandbox_lost();
            match (&sandbox.spec_id, &sandbox.task_id) {
                // A task's attempt is retried by the scheduler.
                (Some(spec_id), Some(task_id)) => {
                    scheduler::attempt_lost(state, spec_id, task_id, &sandbox.id, &reason).await?;
                }
                (Some(spec_id), None) => recover(state, spec_id, &reason).await?,
                (None, _) => {}
            }
        }
    }

    // Task sandboxes do not count: a spec's own sandbox runs its phases.
    let live_specs: HashSet<String> = state
        .store
        .live_sandboxes()
        .await?
        .into_iter()
        .filter(|s| s.task_id.is_none())
        .filter_map(|s| s.spec_id)
        .collect();
    for spec in state.store.specs_with_status(SpecStatus::Executing).await? {
        // A spec claimed a moment ago may not have its sandbox recorded yet.
        if !live_specs.contains(&spec.id)
            && silent_for(now, spec.updated_at.max(started)) >= lost_after
        {
            recover_seen(state, &spec, "the spec had no live sandbox").await?;
        }
    }
    Ok(())
}

fn silent_for(now: DateTime<Utc>, since: DateTime<Utc>) -> Duration {
    (now - since).to_std().unwrap_or(Duration::ZERO)
}
