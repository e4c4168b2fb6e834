//! The scheduler (DESIGN §5.4): claims ready tasks within the limits and spawns a sandbox for
//! each; ends the attempts whose sandbox is gone (they are retried with backoff); and, when every
//! task of a spec completed, opens the spec's pull request or reports its branch.
//!
//! It runs every `scheduler_interval` and whenever an ingest may have changed a task. Every
//! decision is a conditional statement in the store, so several coordinators on one PostgreSQL
//! may run it at once.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::app::AppState;
use crate::error::{Error, Result};
use crate::execution::{fail, refresh_status};
use crate::launch::spawn_for_task;
use crate::model::{Project, SandboxStatus, Spec};
use crate::pool::Started;
use crate::pull_request::{Published, publish};
use crate::store::{AttemptEnd, ClaimLimits, ClaimedTask, PublishCandidate, now_ms};
use crate::task_context::{spec_record, task_context};

/// How long one coordinator holds the right to publish a spec.
const PUBLISH_LEASE: Duration = Duration::from_secs(120);
/// The most tasks one claim takes (one transaction); their sandboxes are spawned concurrently.
const CLAIM_BATCH: usize = 32;
/// Tries to open a pull request (on errors worth a retry) before the spec fails.
const MAX_PUBLISH_ATTEMPTS: u32 = 5;

/// Runs passes until `shutdown`: a full pass every `scheduler_interval`, and one without the
/// orphan sweep whenever an ingest may have changed a task (the sweep looks for attempts that
/// went quiet for a while, which a wake-up cannot cause).
pub async fn run(state: AppState, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(state.settings.scheduler_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let sweep = tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => true,
            () = state.scheduler_wake.notified() => false,
        };
        let result = if sweep {
            pass(&state).await
        } else {
            publish_and_dispatch(&state).await
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "scheduler pass failed");
        }
    }
}

/// One pass: ends orphaned attempts, publishes finished specs, starts ready tasks. Returns how
/// many task sandboxes it started.
pub async fn pass(state: &AppState) -> Result<usize> {
    end_orphaned_attempts(state).await?;
    publish_and_dispatch(state).await
}

/// Publishes finished specs and starts ready tasks; how many task sandboxes it started.
async fn publish_and_dispatch(state: &AppState) -> Result<usize> {
    for candidate in state.store.publish_candidates().await? {
        if state
            .store
            .lease_publish(&candidate.spec_id, PUBLISH_LEASE)
            .await?
        {
            // The GitHub call may take a while; tasks of other specs start meanwhile.
            let state = state.clone();
            tokio::spawn(async move {
                let spec_id = candidate.spec_id.clone();
                if let Err(e) = publish_spec(&state, candidate).await {
                    tracing::error!(spec = %spec_id, error = %e, "publishing the spec failed");
                }
            });
        }
    }
    dispatch(state).await
}

/// Claims and starts ready tasks until none is ready or a limit is reached: up to
/// [`CLAIM_BATCH`] tasks per claim, whose sandboxes are spawned concurrently.
async fn dispatch(state: &AppState) -> Result<usize> {
    let limits = ClaimLimits {
        total: state.settings.max_running_tasks,
        per_project: state.settings.max_running_tasks_per_project,
    };
    if limits.total == 0 || limits.per_project == 0 {
        return Ok(0);
    }
    let mut started = 0;
    loop {
        let claimed = state
            .store
            .claim_tasks(limits, CLAIM_BATCH, state.provider.name())
            .await?;
        if claimed.is_empty() {
            return Ok(started);
        }
        let parents = parents(state, &claimed).await?;
        let spawns = claimed.iter().map(|task| start(state, &parents, task));
        let outcomes = futures_util::future::join_all(spawns).await;
        // Per replica that spawned them: a warm sandbox is the spawner's of its standby.
        let mut handles: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        let mut failed = Vec::new();
        for (task, outcome) in claimed.iter().zip(outcomes) {
            match outcome {
                Ok(Started {
                    handle, replica_id, ..
                }) => handles
                    .entry(replica_id)
                    .or_default()
                    .push((task.sandbox.id.clone(), handle.0)),
                Err(e) => failed.push((task, e)),
            }
        }
        for (replica_id, handles) in &handles {
            started += handles.len();
            state.store.set_sandbox_handles(handles, replica_id).await?;
        }
        for (task, e) in failed {
            // The sandbox keeps the provider's own words; the attempt says what failed.
            let cause = match &e {
                Error::Sandbox(provider) => provider.to_string(),
                other => other.to_string(),
            };
            state
                .store
                .end_sandbox(&task.sandbox.id, SandboxStatus::Failed, Some(&cause))
                .await?;
            let reason = format!("could not start a sandbox: {e}");
            tracing::error!(task = %task.id, %reason);
            let end = state
                .store
                .fail_task_attempt(
                    &task.id,
                    Some(&task.sandbox.id),
                    &reason,
                    &state.settings.task_policy,
                )
                .await?;
            after_attempt(state, &task.spec_id, &end).await?;
        }
    }
}

/// The spec and project of each spec that claimed tasks belong to (read once per claim, not
/// per task), or why they could not be read.
type Parents = HashMap<String, std::result::Result<(Spec, Project), String>>;

async fn parents(state: &AppState, claimed: &[ClaimedTask]) -> Result<Parents> {
    let mut parents = Parents::new();
    for task in claimed {
        if parents.contains_key(&task.spec_id) {
            continue;
        }
        let found = match state.store.spec_by_id(&task.spec_id).await? {
            None => Err(format!("no spec {}", task.spec_id)),
            Some(spec) => match state.store.project_by_id(&spec.project_id).await? {
                None => Err(format!("no project {}", spec.project_id)),
                Some(project) => Ok((spec, project)),
            },
        };
        parents.insert(task.spec_id.clone(), found);
    }
    Ok(parents)
}

/// Spawns the sandbox of a claimed task (or takes a warm one); how it started.
async fn start(state: &AppState, parents: &Parents, claimed: &ClaimedTask) -> Result<Started> {
    let (spec, project) = match parents.get(&claimed.spec_id) {
        Some(Ok(found)) => found,
        Some(Err(missing)) => return Err(Error::NotFound(missing.clone())),
        None => return Err(Error::NotFound(format!("no spec {}", claimed.spec_id))),
    };
    let slice = state.store.spec_slice(claimed).await?;
    // A task that depends on no other may land first: it records the final spec in the
    // repository; every other task starts from a branch where one of those landed.
    let record = if claimed.task.depends_on.is_empty() {
        let final_spec = state
            .store
            .final_spec(&claimed.spec_id)
            .await?
            .ok_or_else(|| {
                Error::Corrupt(format!(
                    "spec {} has tasks but no final spec",
                    claimed.spec_id
                ))
            })?;
        let record = spec_record(spec, &final_spec);
        if record.is_none() {
            tracing::warn!(
                spec = %spec.id, task = %claimed.task.id,
                "the final spec is too large to hand to a task: it is not recorded in the \
                 repository"
            );
        }
        record
    } else {
        None
    };
    let context = task_context(spec, project, slice, &claimed.task, record);
    tracing::info!(
        spec = %spec.id, task = %claimed.task.id, attempt = claimed.attempts,
        max_attempts = claimed.max_attempts, "starting a task"
    );
    spawn_for_task(state, spec, project, claimed, &context).await
}

/// Ends the attempt of a task whose sandbox was lost (the liveness monitor found it silent or
/// exited without a terminal event): retried after the backoff, or the spec fails.
pub async fn attempt_lost(
    state: &AppState,
    spec_id: &str,
    task_id: &str,
    sandbox_id: &str,
    reason: &str,
) -> Result<()> {
    let end = state
        .store
        .fail_task_attempt(
            task_id,
            Some(sandbox_id),
            &format!("the sandbox was lost: {reason}"),
            &state.settings.task_policy,
        )
        .await?;
    after_attempt(state, spec_id, &end).await?;
    state.scheduler_wake.notify_one();
    Ok(())
}

/// Ends running attempts that no live sandbox works on any more.
async fn end_orphaned_attempts(state: &AppState) -> Result<()> {
    // A claim without a sandbox gets as long as a sandbox being spawned does; an ended sandbox
    // leaves its ender (ingest, the liveness monitor) time to end the attempt with the reason.
    let lost_after = state.settings.lost_after();
    let before = |wait: Duration| {
        now_ms().saturating_sub(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX))
    };
    let orphans = state
        .store
        .orphaned_tasks(before(lost_after.saturating_mul(10)), before(lost_after))
        .await?;
    for (task_id, sandbox_id) in orphans {
        let reason = match &sandbox_id {
            Some(id) => format!("its sandbox {id} ended without reporting the task"),
            None => "no sandbox was started for it".to_string(),
        };
        tracing::warn!(task = %task_id, %reason, "ending an orphaned task attempt");
        let end = state
            .store
            .fail_task_attempt(
                &task_id,
                sandbox_id.as_deref(),
                &reason,
                &state.settings.task_policy,
            )
            .await?;
        if let Some(task) = state.store.task_by_id(&task_id).await? {
            after_attempt(state, &task.spec_id, &end).await?;
        }
    }
    Ok(())
}

/// Tells the spec's watchers when a failed attempt failed the spec.
async fn after_attempt(state: &AppState, spec_id: &str, end: &AttemptEnd) -> Result<()> {
    match end {
        AttemptEnd::Failed { spec_failed: true } => refresh_status(state, spec_id).await,
        AttemptEnd::Retry { after } => {
            tracing::info!(spec = %spec_id, after_ms = after.as_millis(), "task will be retried");
            Ok(())
        }
        AttemptEnd::Failed { spec_failed: false } | AttemptEnd::Ignored => Ok(()),
    }
}

/// Opens the pull request of a spec whose tasks all completed (or reports its branch) and
/// completes the spec; a failure worth a retry is tried again later, others fail the spec.
async fn publish_spec(state: &AppState, candidate: PublishCandidate) -> Result<()> {
    let spec_id = &candidate.spec_id;
    if candidate.tasks == 0 {
        return fail(state, spec_id, "the spec has no tasks to implement").await;
    }
    let Some(spec) = state.store.spec_by_id(spec_id).await? else {
        return Ok(());
    };
    let project = state
        .store
        .project_by_id(&spec.project_id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no project {}", spec.project_id)))?;
    let final_spec = state
        .store
        .final_spec(spec_id)
        .await?
        .ok_or_else(|| Error::Corrupt(format!("spec {spec_id} has tasks but no final spec")))?;
    let tasks = state.store.tasks_of_spec(spec_id).await?;
    match publish(&spec, &project, &final_spec, &tasks).await {
        Ok(published) => {
            let pull_request = match &published {
                Published::PullRequest(pr) => Some(pr),
                Published::Branch => None,
            };
            if state.store.complete_spec(spec_id, pull_request).await? {
                tracing::info!(spec = %spec_id, ?published, "spec completed");
            }
            refresh_status(state, spec_id).await
        }
        Err(e) if e.is_retryable() => {
            let retry_after = state.settings.task_policy.backoff(candidate.attempts + 1);
            let attempts = state.store.publish_failed(spec_id, retry_after).await?;
            if attempts >= MAX_PUBLISH_ATTEMPTS {
                let reason = format!("opening the pull request failed {attempts} times; last: {e}");
                return fail(state, spec_id, &reason).await;
            }
            tracing::warn!(spec = %spec_id, error = %e, attempts, "opening the pull request failed; will retry");
            Ok(())
        }
        Err(e) => {
            fail(
                state,
                spec_id,
                &format!("opening the pull request failed: {e}"),
            )
            .await
        }
    }
}
