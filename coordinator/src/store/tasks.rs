//! The bridged tasks at run time (DESIGN §5.4, second half): the claim of a ready task in one
//! statement, what task events and lost sandboxes do to a task, retries with backoff, failure
//! that blocks the dependents and fails the spec, and the end of a spec (pull request or branch).
//!
//! A task is `pending` until every dependency completed, then `ready`; a claim makes it
//! `running` and counts an attempt; it ends `completed` (with its commit) or, when an attempt
//! fails, goes back to `ready` after a backoff until its attempts run out, then `failed`, and
//! its dependents (transitively) `blocked`.

use std::time::Duration;

use omoi_protocol::artifact::SpecTask;
use sqlx::{Any, Row, Transaction};

use super::events::{AgentEnd, fail_spec, record_agent_end, record_agent_start};
use super::sandboxes::{NewSandbox, open_sandbox_in, starting_sandbox};
use super::{Store, json_optional_column, new_id, now_ms, to_i64, to_u32, to_u64};
use crate::error::{Error, Result, corrupt};
use crate::ingest::Effect;
use crate::model::{PullRequestRef, Sandbox, SandboxStatus, SpecSlice, SpecStatus, TaskStatus};

/// How failed task attempts are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskPolicy {
    /// Attempts a bridged task gets (stored on the task when it is bridged).
    pub max_attempts: u32,
    /// The wait before the second attempt; it doubles for every further one.
    pub retry_base: Duration,
    /// The longest wait between attempts.
    pub retry_cap: Duration,
}

impl Default for TaskPolicy {
    fn default() -> Self {
        TaskPolicy {
            max_attempts: 3,
            retry_base: Duration::from_secs(10),
            retry_cap: Duration::from_secs(300),
        }
    }
}

impl TaskPolicy {
    /// The wait after failed attempt `attempt` (1-based): base, 2 × base, 4 × base … up to the cap.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(20);
        self.retry_base.saturating_mul(factor).min(self.retry_cap)
    }
}

/// How many tasks may run at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimLimits {
    /// Running tasks over all projects.
    pub total: u32,
    /// Running tasks of one project.
    pub per_project: u32,
}

/// A task this coordinator claimed: it is `running`, its attempt counted, and its sandbox is
/// recorded (`starting`, not spawned yet).
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedTask {
    pub id: String,
    pub spec_id: String,
    pub attempts: u32,
    pub max_attempts: u32,
    /// The task as the spec wrote it.
    pub task: SpecTask,
    /// Its part of the final spec, as the bridge stored it (`None` for a task bridged before
    /// slices were stored; `Store::spec_slice` cuts it then).
    pub slice: Option<SpecSlice>,
    /// The sandbox recorded for this attempt.
    pub sandbox: Sandbox,
    /// That sandbox's token (only its hash is stored).
    pub token: String,
}

/// What a failed attempt did to its task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptEnd {
    /// The task was not running in that sandbox (already handled, or another attempt's).
    Ignored,
    /// The task waits for its next attempt.
    Retry { after: Duration },
    /// The attempts ran out: the task failed and so did its spec.
    Failed { spec_failed: bool },
}

/// A spec whose tasks all completed and whose result is not yet published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishCandidate {
    pub spec_id: String,
    /// Failed tries so far.
    pub attempts: u32,
    /// How many tasks it has (zero: nothing to publish).
    pub tasks: u64,
}

impl Store {
    /// Claims up to `max` ready tasks, oldest first, whose backoff has passed, of specs that are
    /// implementing, within `limits`, and records a sandbox (`starting`, of `provider`) and its
    /// token for each — all in one transaction, so a claimed task always has its sandbox record.
    ///
    /// Each task is claimed by one statement (PostgreSQL: `FOR UPDATE SKIP LOCKED`, so
    /// concurrent claimers never take one task twice; SQLite: under `BEGIN IMMEDIATE`) that reads
    /// the limits too, counting the tasks claimed before it in the same transaction (running
    /// tasks are counted per project once, in `busy`, not per candidate row). Claims take turns
    /// (`Backend::claim_serialize`), so coordinators claiming at the same instant never pass a
    /// limit together.
    ///
    /// The row is chosen by `id = (SELECT … LIMIT 1 …)`, a subquery PostgreSQL runs once; under
    /// `id IN (…)` its planner may re-run the subquery per row and claim more than one task.
    pub async fn claim_tasks(
        &self,
        limits: ClaimLimits,
        max: usize,
        provider: &str,
    ) -> Result<Vec<ClaimedTask>> {
        let sql = format!(
            "WITH busy AS (
                 SELECT rs.project_id AS project_id, COUNT(*) AS running
                 FROM tasks r JOIN specs rs ON rs.id = r.spec_id
                 WHERE r.status = $5 GROUP BY rs.project_id
             )
             UPDATE tasks SET status = $5, attempts = attempts + 1, sandbox_id = $4,
                    claimed_ms = $1, updated_ms = $1
             WHERE status = $6 AND id = (
                 SELECT t.id FROM tasks t JOIN specs s ON s.id = t.spec_id
                 LEFT JOIN busy b ON b.project_id = s.project_id
                 WHERE t.status = $6 AND t.not_before_ms <= $1 AND s.status = $7
                   AND (SELECT COUNT(*) FROM tasks r WHERE r.status = $5) < $2
                   AND COALESCE(b.running, 0) < $3
                 ORDER BY t.created_ms, t.spec_id, t.spec_task_id
                 LIMIT 1 {}
             )
             RETURNING id, spec_id, attempts, max_attempts, body, spec_slice",
            self.backend.claim_lock_clause()
        );
        let now = now_ms();
        let mut claimed = Vec::new();
        let mut tx = self.pool.begin_with(self.backend.claim_begin()).await?;
        if let Some(serialize) = self.backend.claim_serialize() {
            sqlx::query(serialize).execute(&mut *tx).await?;
        }
        while claimed.len() < max {
            let sandbox_id = new_id();
            let row = sqlx::query(&sql)
                .bind(now)
                .bind(i64::from(limits.total))
                .bind(i64::from(limits.per_project))
                .bind(&sandbox_id)
                .bind(TaskStatus::Running.as_str())
                .bind(TaskStatus::Ready.as_str())
                .bind(SpecStatus::Implementing.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            let Some(row) = row else { break };
            let id: String = row.try_get("id")?;
            let spec_id: String = row.try_get("spec_id")?;
            let new = NewSandbox {
                id: sandbox_id,
                spec_id: Some(spec_id.clone()),
                task_id: Some(id.clone()),
                provider: provider.to_string(),
                start_phase: None,
                context: None,
            };
            let token = open_sandbox_in(&mut tx, &new, now).await?;
            let body: String = row.try_get("body")?;
            claimed.push(ClaimedTask {
                id,
                spec_id,
                attempts: to_u32(row.try_get("attempts")?, "attempts")?,
                max_attempts: to_u32(row.try_get("max_attempts")?, "max_attempts")?,
                task: serde_json::from_str(&body).map_err(|e| corrupt("task body", e))?,
                slice: json_optional_column(&row, "spec_slice")?,
                sandbox: starting_sandbox(&new, now),
                token,
            });
        }
        tx.commit().await?;
        Ok(claimed)
    }

    /// The part of the final spec a claimed task works from: the stored slice, or for a task
    /// bridged before slices were stored, cut from the final spec now.
    pub async fn spec_slice(&self, claimed: &ClaimedTask) -> Result<SpecSlice> {
        if let Some(slice) = &claimed.slice {
            return Ok(slice.clone());
        }
        let final_spec = self.final_spec(&claimed.spec_id).await?.ok_or_else(|| {
            Error::Corrupt(format!(
                "spec {} has tasks but no final spec",
                claimed.spec_id
            ))
        })?;
        Ok(SpecSlice::of(&final_spec, &claimed.task))
    }

    /// Ends the running attempt of a task (in sandbox `sandbox_id`, or without one when the
    /// sandbox was never recorded) as failed: a retry after the backoff, or the task's and the
    /// spec's failure when its attempts ran out, by `policy`.
    pub async fn fail_task_attempt(
        &self,
        task_id: &str,
        sandbox_id: Option<&str>,
        reason: &str,
        policy: &TaskPolicy,
    ) -> Result<AttemptEnd> {
        let mut tx = self.pool.begin().await?;
        let end = attempt_failed(&mut tx, policy, task_id, sandbox_id, reason, now_ms()).await?;
        tx.commit().await?;
        Ok(end)
    }

    /// Running tasks whose attempt has no live sandbox: its sandbox ended before
    /// `ended_before_ms` without a word about the task (whoever ended it had time to end the
    /// attempt with the reason), or none was recorded and the claim is older than
    /// `unspawned_before_ms` (the claimer died before spawning). `(task id, sandbox id)`.
    pub async fn orphaned_tasks(
        &self,
        unspawned_before_ms: i64,
        ended_before_ms: i64,
    ) -> Result<Vec<(String, Option<String>)>> {
        let rows = sqlx::query(
            "SELECT t.id AS id, t.sandbox_id AS sandbox_id FROM tasks t
             LEFT JOIN sandboxes b ON b.id = t.sandbox_id
             WHERE t.status = $3
               AND ((b.id IS NULL AND t.claimed_ms < $1)
                    OR (b.status NOT IN ($4, $5) AND b.ended_ms < $2))
             ORDER BY t.claimed_ms, t.id",
        )
        .bind(unspawned_before_ms)
        .bind(ended_before_ms)
        .bind(TaskStatus::Running.as_str())
        .bind(SandboxStatus::Starting.as_str())
        .bind(SandboxStatus::Running.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("sandbox_id")?)))
            .collect()
    }

    /// Specs that are implementing, whose every task completed and whose publish time came.
    pub async fn publish_candidates(&self) -> Result<Vec<PublishCandidate>> {
        let rows = sqlx::query(
            "SELECT s.id AS id, s.publish_attempts AS attempts,
                    (SELECT COUNT(*) FROM tasks t WHERE t.spec_id = s.id) AS n
             FROM specs s
             WHERE s.status = $2 AND s.publish_after_ms <= $1
               AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.spec_id = s.id
                               AND t.status <> $3)
             ORDER BY s.updated_ms, s.id",
        )
        .bind(now_ms())
        .bind(SpecStatus::Implementing.as_str())
        .bind(TaskStatus::Completed.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(PublishCandidate {
                    spec_id: r.try_get("id")?,
                    attempts: to_u32(r.try_get("attempts")?, "publish_attempts")?,
                    tasks: to_u64(r.try_get("n")?, "count")?,
                })
            })
            .collect()
    }

    /// Takes the right to publish a spec for `lease` (so two replicas do not both open its pull
    /// request). Returns whether this call got it.
    pub async fn lease_publish(&self, spec_id: &str, lease: Duration) -> Result<bool> {
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE specs SET publish_after_ms = $3
             WHERE id = $1 AND status = $4 AND publish_after_ms <= $2",
        )
        .bind(spec_id)
        .bind(now)
        .bind(now.saturating_add(duration_ms(lease)))
        .bind(SpecStatus::Implementing.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Counts a failed try to publish and sets when the next may start. Returns the tries so far.
    pub async fn publish_failed(&self, spec_id: &str, retry_after: Duration) -> Result<u32> {
        let row = sqlx::query(
            "UPDATE specs SET publish_attempts = publish_attempts + 1, publish_after_ms = $2
             WHERE id = $1 RETURNING publish_attempts",
        )
        .bind(spec_id)
        .bind(now_ms().saturating_add(duration_ms(retry_after)))
        .fetch_one(&self.pool)
        .await?;
        to_u32(row.try_get("publish_attempts")?, "publish_attempts")
    }

    /// Ends an implementing spec as completed with its pull request (or none: the branch is the
    /// result) and closes its ticket. Returns whether it changed.
    pub async fn complete_spec(
        &self,
        spec_id: &str,
        pull_request: Option<&PullRequestRef>,
    ) -> Result<bool> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let number = pull_request
            .map(|pr| to_i64(pr.number, "pull request number"))
            .transpose()?;
        let done = sqlx::query(
            "UPDATE specs SET status = $5, error = NULL, pull_request_url = $2,
                    pull_request_number = $3, updated_ms = $4
             WHERE id = $1 AND status = $6",
        )
        .bind(spec_id)
        .bind(pull_request.map(|pr| pr.url.as_str()))
        .bind(number)
        .bind(now)
        .bind(SpecStatus::Completed.as_str())
        .bind(SpecStatus::Implementing.as_str())
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE tickets SET status = 'done' WHERE spec_id = $1")
            .bind(spec_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// Restarts the implementation of a failed or cancelled spec that was bridged: the spec is
    /// implementing again, failed and blocked tasks (and running ones without a live sandbox)
    /// start over with fresh attempts, completed ones stay. Returns whether it was restarted.
    pub async fn restart_tasks(&self, spec_id: &str) -> Result<bool> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE specs SET status = $3, error = NULL, publish_attempts = 0,
                    publish_after_ms = 0, recoveries = 0, updated_ms = $2
             WHERE id = $1 AND status IN ($4, $5)
               AND EXISTS (SELECT 1 FROM tickets k WHERE k.spec_id = specs.id)",
        )
        .bind(spec_id)
        .bind(now)
        .bind(SpecStatus::Implementing.as_str())
        .bind(SpecStatus::Failed.as_str())
        .bind(SpecStatus::Cancelled.as_str())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE tasks SET status = $3, attempts = 0, error = NULL, not_before_ms = 0,
                    updated_ms = $2
             WHERE spec_id = $1 AND (status IN ($4, $5, $6) OR (
                 status = $7 AND NOT EXISTS (
                     SELECT 1 FROM sandboxes b WHERE b.id = tasks.sandbox_id
                     AND b.status IN ($8, $9))))",
        )
        .bind(spec_id)
        .bind(now)
        .bind(TaskStatus::Pending.as_str())
        .bind(TaskStatus::Failed.as_str())
        .bind(TaskStatus::Blocked.as_str())
        .bind(TaskStatus::Ready.as_str())
        .bind(TaskStatus::Running.as_str())
        .bind(SandboxStatus::Starting.as_str())
        .bind(SandboxStatus::Running.as_str())
        .execute(&mut *tx)
        .await?;
        promote_ready(&mut tx, spec_id, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// How many tasks are in each status.
    pub async fn task_counts(&self) -> Result<Vec<(String, u64)>> {
        let rows =
            sqlx::query("SELECT status, COUNT(*) AS n FROM tasks GROUP BY status ORDER BY status")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("status")?, to_u64(r.try_get("n")?, "count")?)))
            .collect()
    }
}

/// The attempt of a task in a task sandbox, as one ingested batch sees it.
pub(super) struct Attempt<'a> {
    pub task_id: &'a str,
    pub sandbox_id: &'a str,
    /// Set once an event of the batch (`task.completed`, `task.failed`) ended the attempt, so a
    /// terminal event after it in the same batch need not look for it again.
    pub ended: &'a mut bool,
}

/// Applies one effect of an event of a task sandbox inside the ingest transaction. Returns
/// whether the spec's status changed.
pub(super) async fn apply(
    tx: &mut Transaction<'static, Any>,
    policy: &TaskPolicy,
    attempt: Attempt<'_>,
    effect: &Effect,
    now: i64,
) -> Result<bool> {
    let Attempt {
        task_id,
        sandbox_id,
        ended,
    } = attempt;
    match effect {
        Effect::AgentStarted => {
            record_agent_start(tx, sandbox_id).await?;
            Ok(false)
        }
        Effect::TaskCommitted { sha } => {
            sqlx::query(
                "UPDATE tasks SET commit_sha = $3, updated_ms = $4
                 WHERE id = $1 AND sandbox_id = $2 AND status = $5",
            )
            .bind(task_id)
            .bind(sandbox_id)
            .bind(sha)
            .bind(now)
            .bind(TaskStatus::Running.as_str())
            .execute(&mut **tx)
            .await?;
            Ok(false)
        }
        Effect::TaskCompleted { sha } => {
            let done = sqlx::query(
                "UPDATE tasks SET status = $5, commit_sha = $3, error = NULL,
                        finished_ms = $4, updated_ms = $4
                 WHERE id = $1 AND sandbox_id = $2 AND status = $6
                 RETURNING spec_id",
            )
            .bind(task_id)
            .bind(sandbox_id)
            .bind(sha)
            .bind(now)
            .bind(TaskStatus::Completed.as_str())
            .bind(TaskStatus::Running.as_str())
            .fetch_optional(&mut **tx)
            .await?;
            // Completed now, or not running here before: either way no attempt runs here now.
            *ended = true;
            if let Some(row) = done {
                let spec_id: String = row.try_get("spec_id")?;
                promote_ready(tx, &spec_id, now).await?;
            }
            Ok(false)
        }
        Effect::TaskFailed { reason } => {
            *ended = true;
            let end = attempt_failed(tx, policy, task_id, Some(sandbox_id), reason, now).await?;
            Ok(end == AttemptEnd::Failed { spec_failed: true })
        }
        Effect::AgentEnded {
            terminal,
            success,
            reason,
            ..
        } => {
            let end = AgentEnd::new(sandbox_id, terminal, *success, reason);
            record_agent_end(tx, &end, now).await?;
            // After `task.completed` or `task.failed` the task no longer runs here, and this
            // changes nothing; a worker that ended without either failed the attempt.
            if *ended {
                return Ok(false);
            }
            *ended = true;
            let reason = match reason {
                Some(reason) => reason.clone(),
                None => "the worker ended without reporting the task's outcome".to_string(),
            };
            let end = attempt_failed(tx, policy, task_id, Some(sandbox_id), &reason, now).await?;
            Ok(end == AttemptEnd::Failed { spec_failed: true })
        }
        // A task sandbox does not run spec phases.
        Effect::PhaseStarted { .. }
        | Effect::PhaseScored { .. }
        | Effect::PhaseCompleted { .. }
        | Effect::PhaseFailed { .. }
        | Effect::SpecCompleted { .. }
        | Effect::SpecFailed { .. } => Ok(false),
    }
}

/// Ends the running attempt of `task_id` in `sandbox_id` (or, with `None`, an attempt whose
/// sandbox was never recorded) as failed.
async fn attempt_failed(
    tx: &mut Transaction<'static, Any>,
    policy: &TaskPolicy,
    task_id: &str,
    sandbox_id: Option<&str>,
    reason: &str,
    now: i64,
) -> Result<AttemptEnd> {
    let row = sqlx::query(
        "SELECT spec_id, spec_task_id, attempts, max_attempts FROM tasks
         WHERE id = $1 AND status = $3 AND COALESCE(sandbox_id, '') = $2",
    )
    .bind(task_id)
    .bind(sandbox_id.unwrap_or_default())
    .bind(TaskStatus::Running.as_str())
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else {
        return Ok(AttemptEnd::Ignored);
    };
    let spec_id: String = row.try_get("spec_id")?;
    let spec_task_id: String = row.try_get("spec_task_id")?;
    let attempts = to_u32(row.try_get("attempts")?, "attempts")?;
    let max_attempts = to_u32(row.try_get("max_attempts")?, "max_attempts")?;
    // The updates repeat the guard: a concurrent transaction may have ended the attempt since
    // the read (PostgreSQL re-checks the condition on the updated row).
    if attempts < max_attempts {
        let after = policy.backoff(attempts);
        let done = sqlx::query(
            "UPDATE tasks SET status = $6, error = $3, not_before_ms = $4, updated_ms = $5
             WHERE id = $1 AND status = $7 AND COALESCE(sandbox_id, '') = $2",
        )
        .bind(task_id)
        .bind(sandbox_id.unwrap_or_default())
        .bind(reason)
        .bind(now.saturating_add(duration_ms(after)))
        .bind(now)
        .bind(TaskStatus::Ready.as_str())
        .bind(TaskStatus::Running.as_str())
        .execute(&mut **tx)
        .await?;
        return Ok(if done.rows_affected() > 0 {
            AttemptEnd::Retry { after }
        } else {
            AttemptEnd::Ignored
        });
    }
    let done = sqlx::query(
        "UPDATE tasks SET status = $5, error = $3, finished_ms = $4, updated_ms = $4
         WHERE id = $1 AND status = $6 AND COALESCE(sandbox_id, '') = $2",
    )
    .bind(task_id)
    .bind(sandbox_id.unwrap_or_default())
    .bind(reason)
    .bind(now)
    .bind(TaskStatus::Failed.as_str())
    .bind(TaskStatus::Running.as_str())
    .execute(&mut **tx)
    .await?;
    if done.rows_affected() == 0 {
        return Ok(AttemptEnd::Ignored);
    }
    block_dependents(tx, &spec_id, now).await?;
    let plural = if attempts == 1 { "" } else { "s" };
    let spec_failed = fail_spec(
        tx,
        &spec_id,
        &format!("{spec_task_id} failed after {attempts} attempt{plural}: {reason}"),
        now,
    )
    .await?;
    Ok(AttemptEnd::Failed { spec_failed })
}

/// Makes the pending tasks of a spec whose dependencies all completed ready.
pub(super) async fn promote_ready(
    tx: &mut Transaction<'static, Any>,
    spec_id: &str,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE tasks SET status = $3, updated_ms = $2
         WHERE spec_id = $1 AND status = $4
           AND NOT EXISTS (SELECT 1 FROM task_deps d JOIN tasks p ON p.id = d.depends_on
                           WHERE d.task_id = tasks.id AND p.status <> $5)",
    )
    .bind(spec_id)
    .bind(now)
    .bind(TaskStatus::Ready.as_str())
    .bind(TaskStatus::Pending.as_str())
    .bind(TaskStatus::Completed.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Marks every task that waits, directly or through others, for a failed task as blocked.
async fn block_dependents(
    tx: &mut Transaction<'static, Any>,
    spec_id: &str,
    now: i64,
) -> Result<()> {
    // Each round blocks one more level of the graph; a DAG has fewer levels than tasks.
    loop {
        let done = sqlx::query(
            "UPDATE tasks SET status = $3, updated_ms = $2
             WHERE spec_id = $1 AND status IN ($4, $5)
               AND EXISTS (SELECT 1 FROM task_deps d JOIN tasks p ON p.id = d.depends_on
                           WHERE d.task_id = tasks.id AND p.status IN ($6, $3))",
        )
        .bind(spec_id)
        .bind(now)
        .bind(TaskStatus::Blocked.as_str())
        .bind(TaskStatus::Pending.as_str())
        .bind(TaskStatus::Ready.as_str())
        .bind(TaskStatus::Failed.as_str())
        .execute(&mut **tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(());
        }
    }
}

/// A duration in whole milliseconds for a `*_ms` column.
fn duration_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn the_backoff_doubles_from_the_base_up_to_the_cap() {
        let policy = TaskPolicy {
            max_attempts: 9,
            retry_base: Duration::from_secs(10),
            retry_cap: Duration::from_secs(60),
        };
        let waits: Vec<u64> = (1..=6).map(|n| policy.backoff(n).as_secs()).collect();
        assert_eq!(waits, [10, 20, 40, 60, 60, 60]);
        assert_eq!(policy.backoff(u32::MAX), Duration::from_secs(60));
    }
}
