//! Running a spec: execute (or resume after the last checkpoint, or restart the failed tasks of a
//! spec already written), recover after a lost sandbox, cancel. Shared by the API and the
//! liveness monitor.

use omoi_protocol::phase::Phase;

use crate::app::AppState;
use crate::error::{Error, Result};
use crate::hub::{Notice, StatusNotice, StreamItem};
use crate::launch::spawn_for_phase;
use crate::model::{Sandbox, SandboxStatus, Spec, SpecStatus};
use crate::sandbox::SandboxHandle;
use crate::store::ExecutionClaim;

/// Why an execution starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// A user's execute, launch or resume: the spec must not be executing.
    User { stop_after: Option<Phase> },
    /// A replacement for a lost sandbox: the spec must still be executing.
    Recovery,
}

/// Starts a sandbox for `spec` at the phase after its last checkpoint; for a spec that was
/// written and bridged already, a user's start restarts its failed tasks instead (no sandbox
/// here: the scheduler starts them). 409 when it is running (or, for a recovery, no longer
/// executing) or already completed.
pub async fn execute(state: &AppState, spec: &Spec, start: Start) -> Result<Option<Sandbox>> {
    let project = state
        .store
        .project_by_id(&spec.project_id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no project {}", spec.project_id)))?;
    let (context, phase) = state.store.checkpoint_context(spec).await?;
    let claimed = match start {
        Start::User { stop_after } => {
            if spec.status == SpecStatus::Completed {
                return Err(Error::Conflict(format!(
                    "spec {} is already completed",
                    spec.id
                )));
            }
            if spec.status == SpecStatus::Implementing {
                return Err(Error::Conflict(format!(
                    "spec {} is already implementing its tasks",
                    spec.id
                )));
            }
            if state.store.final_spec(&spec.id).await?.is_some() {
                if !state.store.restart_tasks(&spec.id).await? {
                    return Err(Error::Conflict(format!(
                        "spec {} is already executing",
                        spec.id
                    )));
                }
                refresh_status(state, &spec.id).await?;
                state.scheduler_wake.notify_one();
                return Ok(None);
            }
            state
                .store
                .claim_execution(&spec.id, phase, stop_after, ExecutionClaim::Start)
                .await?
        }
        Start::Recovery => {
            state
                .store
                .claim_execution(
                    &spec.id,
                    phase,
                    spec.stop_after,
                    ExecutionClaim::Recovery {
                        seen: spec.recoveries,
                    },
                )
                .await?
        }
    };
    if !claimed {
        return Err(Error::Conflict(format!(
            "spec {} is already executing",
            spec.id
        )));
    }
    let spec = state
        .store
        .spec_by_id(&spec.id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no spec {}", spec.id)))?;
    publish_status(state, &spec).await?;
    match spawn_for_phase(state, &spec, &project, phase, context).await {
        Ok(sandbox) => Ok(Some(sandbox)),
        Err(e) => {
            let reason = format!("could not start a sandbox: {e}");
            tracing::error!(spec = %spec.id, %reason);
            fail(state, &spec.id, &reason).await?;
            Err(Error::SandboxUnavailable {
                spec_id: spec.id.clone(),
            })
        }
    }
}

/// Cancels a spec: terminates its live sandboxes; status `cancelled`. 409 when it already ended.
pub async fn cancel(state: &AppState, spec: &Spec) -> Result<()> {
    if !state
        .store
        .finish_spec(
            &spec.id,
            SpecStatus::Cancelled,
            Some("cancelled by the user"),
        )
        .await?
    {
        return Err(Error::Conflict(format!(
            "spec {} already ended ({})",
            spec.id, spec.status
        )));
    }
    for sandbox in state.store.sandboxes_of_spec(&spec.id).await? {
        if sandbox.status.is_live() {
            stop_sandbox(
                state,
                &sandbox,
                SandboxStatus::Terminated,
                "the spec was cancelled",
            )
            .await?;
        }
    }
    refresh_status(state, &spec.id).await
}

/// Replaces the lost sandbox of an executing spec, or fails the spec once it has been replaced
/// `max_recoveries` times.
pub async fn recover(state: &AppState, spec_id: &str, reason: &str) -> Result<()> {
    match state.store.spec_by_id(spec_id).await? {
        Some(spec) => recover_seen(state, &spec, reason).await,
        None => Ok(()),
    }
}

/// [`recover`] as decided from `spec` as the caller read it: the recovery claim holds only if
/// nobody recovered the spec since (so of several replicas that saw it, one acts).
pub async fn recover_seen(state: &AppState, spec: &Spec, reason: &str) -> Result<()> {
    let spec_id = spec.id.as_str();
    if spec.status != SpecStatus::Executing {
        return Ok(());
    }
    if spec.recoveries >= state.settings.max_recoveries {
        let reason = format!(
            "the sandbox was lost {} times; last: {reason}",
            spec.recoveries + 1
        );
        return fail(state, spec_id, &reason).await;
    }
    tracing::warn!(spec = %spec_id, %reason, "replacing a lost sandbox");
    match execute(state, spec, Start::Recovery).await {
        Ok(_) | Err(Error::Conflict(_)) => Ok(()),
        // `execute` failed the spec already.
        Err(Error::Sandbox(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Ends a live sandbox (once) and asks the provider to stop it.
pub async fn stop_sandbox(
    state: &AppState,
    sandbox: &Sandbox,
    status: SandboxStatus,
    reason: &str,
) -> Result<bool> {
    if !state
        .store
        .end_sandbox(&sandbox.id, status, Some(reason))
        .await?
    {
        return Ok(false);
    }
    if let Some(handle) = &sandbox.handle {
        if let Err(e) = state
            .provider
            .terminate(&SandboxHandle(handle.clone()))
            .await
        {
            tracing::warn!(sandbox = %sandbox.id, error = %e, "terminating the sandbox failed");
        }
    }
    Ok(true)
}

/// Fails a spec with `reason` (unless it already ended) and tells its watchers.
pub async fn fail(state: &AppState, spec_id: &str, reason: &str) -> Result<()> {
    state
        .store
        .finish_spec(spec_id, SpecStatus::Failed, Some(reason))
        .await?;
    refresh_status(state, spec_id).await
}

/// Sends the spec's current status to its watchers.
pub async fn refresh_status(state: &AppState, spec_id: &str) -> Result<()> {
    if let Some(spec) = state.store.spec_by_id(spec_id).await? {
        publish_status(state, &spec).await?;
    }
    Ok(())
}

/// Sends a spec's status to this replica's streams and tells the other replicas.
async fn publish_status(state: &AppState, spec: &Spec) -> Result<()> {
    state
        .hub
        .publish(&spec.id, StreamItem::Status(StatusNotice::from(spec)));
    state
        .store
        .notify(&Notice::Status {
            spec_id: spec.id.clone(),
            replica: state.settings.replica_id.clone(),
        })
        .await
}
