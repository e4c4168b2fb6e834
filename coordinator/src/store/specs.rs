//! Specs, their phases (the checkpoints) and the tasks bridged from them.

use std::collections::HashMap;

use omoi_protocol::artifact::FinalSpec;
use omoi_protocol::context::PhaseContext;
use omoi_protocol::phase::Phase;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{
    Store, json_optional_column, new_id, now_ms, parse_column, parse_optional_column, to_u32,
    to_u64,
};
use crate::error::{Error, Result};
use crate::model::{PhaseRecord, PullRequestRef, Spec, SpecStatus, TaskRecord, time_from_ms};

const SPEC_COLUMNS: &str = "id, project_id, title, description, status, current_phase, error, \
                            stop_after, recoveries, created_ms, updated_ms, branch, \
                            pull_request_url, pull_request_number";

/// Who claims a spec's execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutionClaim {
    /// A user's execute, launch or resume: the spec must not be executing.
    Start,
    /// A replacement for a lost sandbox: the spec must still be executing, replaced `seen`
    /// times as the claimer read it — so of several coordinators that saw one loss, one wins.
    Recovery { seen: u32 },
}

impl Store {
    /// Creates a pending spec in a project of `user_id`.
    pub async fn create_spec(
        &self,
        user_id: &str,
        project_id: &str,
        title: &str,
        description: &str,
    ) -> Result<Spec> {
        let now = now_ms();
        let spec = Spec {
            id: new_id(),
            project_id: project_id.to_string(),
            title: title.to_string(),
            description: description.to_string(),
            status: SpecStatus::Pending,
            current_phase: Some(Phase::Explore),
            error: None,
            stop_after: None,
            recoveries: 0,
            branch: None,
            pull_request: None,
            created_at: time_from_ms(now),
            updated_at: time_from_ms(now),
        };
        sqlx::query(
            "INSERT INTO specs (id, project_id, user_id, title, description, status, current_phase,
                                recoveries, created_ms, updated_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $8)",
        )
        .bind(&spec.id)
        .bind(project_id)
        .bind(user_id)
        .bind(title)
        .bind(description)
        .bind(spec.status.as_str())
        .bind(Phase::Explore.as_str())
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(spec)
    }

    /// The user's specs, newest first.
    pub async fn specs(&self, user_id: &str) -> Result<Vec<Spec>> {
        let rows = sqlx::query(&format!(
            "SELECT {SPEC_COLUMNS} FROM specs WHERE user_id = $1 ORDER BY created_ms DESC, id"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(spec_from_row).collect()
    }

    /// A spec of `user_id`; 404 when it does not exist or is someone else's.
    pub async fn spec(&self, user_id: &str, id: &str) -> Result<Spec> {
        let row = sqlx::query(&format!(
            "SELECT {SPEC_COLUMNS} FROM specs WHERE id = $1 AND user_id = $2"
        ))
        .bind(id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => spec_from_row(&row),
            None => Err(Error::NotFound(format!("no spec {id}"))),
        }
    }

    /// A spec by id, whoever owns it (for the coordinator's own use).
    pub async fn spec_by_id(&self, id: &str) -> Result<Option<Spec>> {
        let row = sqlx::query(&format!("SELECT {SPEC_COLUMNS} FROM specs WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| spec_from_row(&r)).transpose()
    }

    /// Specs in one status, oldest first.
    pub async fn specs_with_status(&self, status: SpecStatus) -> Result<Vec<Spec>> {
        let rows = sqlx::query(&format!(
            "SELECT {SPEC_COLUMNS} FROM specs WHERE status = $1 ORDER BY created_ms, id"
        ))
        .bind(status.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(spec_from_row).collect()
    }

    /// How many specs are in each status.
    pub async fn spec_counts(&self) -> Result<Vec<(String, u64)>> {
        let rows =
            sqlx::query("SELECT status, COUNT(*) AS n FROM specs GROUP BY status ORDER BY status")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("status")?, to_u64(r.try_get("n")?, "count")?)))
            .collect()
    }

    /// Marks a spec executing from `phase`, in one conditional statement so two callers never
    /// both start it. A user's start needs the spec pending, failed or cancelled (and resets the
    /// recovery count); a recovery needs it executing (and counts one more). Returns whether
    /// this call claimed it.
    pub async fn claim_execution(
        &self,
        id: &str,
        phase: Phase,
        stop_after: Option<Phase>,
        claim: ExecutionClaim,
    ) -> Result<bool> {
        // The statuses bound after the four common parameters, from `$5` on.
        let (sql, statuses): (&str, &[SpecStatus]) = match claim {
            ExecutionClaim::Recovery { .. } => (
                "UPDATE specs SET current_phase = $2, stop_after = $3, updated_ms = $4,
                        recoveries = recoveries + 1
                 WHERE id = $1 AND status = $5 AND recoveries = $6",
                &[SpecStatus::Executing],
            ),
            ExecutionClaim::Start => (
                "UPDATE specs SET status = $5, current_phase = $2, error = NULL,
                        stop_after = $3, updated_ms = $4, recoveries = 0
                 WHERE id = $1 AND status IN ($6, $7, $8)",
                &[
                    SpecStatus::Executing,
                    SpecStatus::Pending,
                    SpecStatus::Failed,
                    SpecStatus::Cancelled,
                ],
            ),
        };
        let mut query = sqlx::query(sql)
            .bind(id)
            .bind(phase.as_str())
            .bind(stop_after.map(Phase::as_str))
            .bind(now_ms());
        for status in statuses {
            query = query.bind(status.as_str());
        }
        if let ExecutionClaim::Recovery { seen } = claim {
            query = query.bind(i64::from(seen));
        }
        let done = query.execute(&self.pool).await?;
        Ok(done.rows_affected() > 0)
    }

    /// Ends a spec as failed or cancelled, unless it already ended. Returns whether it changed.
    pub async fn finish_spec(
        &self,
        id: &str,
        status: SpecStatus,
        error: Option<&str>,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE specs SET status = $2, error = $3, updated_ms = $4
             WHERE id = $1 AND status NOT IN ($5, $6, $7)",
        )
        .bind(id)
        .bind(status.as_str())
        .bind(error)
        .bind(now_ms())
        .bind(SpecStatus::Completed.as_str())
        .bind(SpecStatus::Failed.as_str())
        .bind(SpecStatus::Cancelled.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The phases of a spec that have started, in phase order.
    pub async fn phases(&self, spec_id: &str) -> Result<Vec<PhaseRecord>> {
        let rows = sqlx::query(
            "SELECT phase, status, attempts, score, output, duration_ms
             FROM spec_phases WHERE spec_id = $1",
        )
        .bind(spec_id)
        .fetch_all(&self.pool)
        .await?;
        let mut phases = rows
            .iter()
            .map(phase_from_row)
            .collect::<Result<Vec<_>>>()?;
        phases.sort_by_key(|p| p.phase);
        Ok(phases)
    }

    /// The stored final spec, once `spec.execution_completed` arrived.
    pub async fn final_spec(&self, spec_id: &str) -> Result<Option<FinalSpec>> {
        let row = sqlx::query("SELECT final_spec FROM specs WHERE id = $1")
            .bind(spec_id)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => json_optional_column(&row, "final_spec"),
            None => Ok(None),
        }
    }

    /// The context to start a phase from: the request and every checkpoint stored so far, and the
    /// phase after the last contiguous checkpoint (where a new sandbox starts).
    pub async fn checkpoint_context(&self, spec: &Spec) -> Result<(PhaseContext, Phase)> {
        let mut context = PhaseContext {
            title: spec.title.clone(),
            description: spec.description.clone(),
            ..PhaseContext::default()
        };
        let phases = self.phases(&spec.id).await?;
        let mut start = Phase::Explore;
        for phase in Phase::ALL {
            let Some(record) = phases.iter().find(|p| p.phase == phase) else {
                break;
            };
            let Some(output) = record.output.clone() else {
                break;
            };
            context.set(output);
            match phase.next() {
                Some(next) => start = next,
                None => break,
            }
        }
        Ok((context, start))
    }

    /// The tasks bridged from a spec, in spec order: by the length of the spec's id, then the
    /// id, so `TSK-999` comes before `TSK-1000`.
    pub async fn tasks_of_spec(&self, spec_id: &str) -> Result<Vec<TaskRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {TASK_COLUMNS} FROM tasks t WHERE t.spec_id = $1
             ORDER BY LENGTH(t.spec_task_id), t.spec_task_id, t.id"
        ))
        .bind(spec_id)
        .fetch_all(&self.pool)
        .await?;
        // The dependencies of all of them in one query, not one per task.
        let mut deps: HashMap<String, Vec<String>> = HashMap::new();
        let dep_rows = sqlx::query(
            "SELECT d.task_id AS task_id, d.depends_on AS depends_on
             FROM task_deps d JOIN tasks t ON t.id = d.task_id
             WHERE t.spec_id = $1 ORDER BY d.task_id, d.depends_on",
        )
        .bind(spec_id)
        .fetch_all(&self.pool)
        .await?;
        for row in &dep_rows {
            deps.entry(row.try_get("task_id")?)
                .or_default()
                .push(row.try_get("depends_on")?);
        }
        rows.iter()
            .map(|row| {
                let id: String = row.try_get("id")?;
                let depends_on = deps.remove(&id).unwrap_or_default();
                task_from_row(row, depends_on)
            })
            .collect()
    }

    /// A task of a spec of `user_id`; 404 otherwise.
    pub async fn task(&self, user_id: &str, id: &str) -> Result<TaskRecord> {
        let row = sqlx::query(&format!(
            "SELECT {TASK_COLUMNS} FROM tasks t JOIN specs s ON s.id = t.spec_id
             WHERE t.id = $1 AND s.user_id = $2"
        ))
        .bind(id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => self.task_with_deps(&row).await,
            None => Err(Error::NotFound(format!("no task {id}"))),
        }
    }

    /// A task by id, whoever owns its spec (for the coordinator's own use).
    pub async fn task_by_id(&self, id: &str) -> Result<Option<TaskRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {TASK_COLUMNS} FROM tasks t WHERE t.id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => Ok(Some(self.task_with_deps(&row).await?)),
            None => Ok(None),
        }
    }

    /// The task of `row` with its dependencies read.
    async fn task_with_deps(&self, row: &AnyRow) -> Result<TaskRecord> {
        let id: String = row.try_get("id")?;
        let depends_on =
            sqlx::query("SELECT depends_on FROM task_deps WHERE task_id = $1 ORDER BY depends_on")
                .bind(&id)
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(|r| r.try_get::<String, _>("depends_on"))
                .collect::<Result<Vec<_>, _>>()?;
        task_from_row(row, depends_on)
    }
}

/// A task record from a row of `TASK_COLUMNS` and its dependencies.
fn task_from_row(row: &AnyRow, depends_on: Vec<String>) -> Result<TaskRecord> {
    Ok(TaskRecord {
        id: row.try_get("id")?,
        spec_id: row.try_get("spec_id")?,
        ticket_id: row.try_get("ticket_id")?,
        spec_task_id: row.try_get("spec_task_id")?,
        title: row.try_get("title")?,
        status: parse_column(row, "status")?,
        attempts: to_u32(row.try_get("attempts")?, "attempts")?,
        max_attempts: to_u32(row.try_get("max_attempts")?, "max_attempts")?,
        depends_on,
        sandbox_id: row.try_get("sandbox_id")?,
        commit_sha: row.try_get("commit_sha")?,
        error: row.try_get("error")?,
    })
}

const TASK_COLUMNS: &str = "t.id AS id, t.spec_id AS spec_id, t.ticket_id AS ticket_id, \
                            t.spec_task_id AS spec_task_id, t.title AS title, t.status AS status, \
                            t.attempts AS attempts, t.max_attempts AS max_attempts, \
                            t.sandbox_id AS sandbox_id, t.commit_sha AS commit_sha, \
                            t.error AS error";

fn spec_from_row(row: &AnyRow) -> Result<Spec> {
    let pr_url: Option<String> = row.try_get("pull_request_url")?;
    let pr_number: Option<i64> = row.try_get("pull_request_number")?;
    let pull_request = match (pr_url, pr_number) {
        (Some(url), Some(number)) => Some(PullRequestRef {
            url,
            number: to_u64(number, "pull_request_number")?,
        }),
        _ => None,
    };
    Ok(Spec {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        title: row.try_get("title")?,
        description: row.try_get("description")?,
        status: parse_column(row, "status")?,
        current_phase: parse_optional_column(row, "current_phase")?,
        error: row.try_get("error")?,
        stop_after: parse_optional_column(row, "stop_after")?,
        recoveries: to_u32(row.try_get("recoveries")?, "recoveries")?,
        branch: row.try_get("branch")?,
        pull_request,
        created_at: time_from_ms(row.try_get("created_ms")?),
        updated_at: time_from_ms(row.try_get("updated_ms")?),
    })
}

fn phase_from_row(row: &AnyRow) -> Result<PhaseRecord> {
    let duration: Option<i64> = row.try_get("duration_ms")?;
    Ok(PhaseRecord {
        phase: parse_column(row, "phase")?,
        status: parse_column(row, "status")?,
        attempts: to_u32(row.try_get("attempts")?, "attempts")?,
        score: row.try_get("score")?,
        duration_ms: duration.map(|d| to_u64(d, "duration_ms")).transpose()?,
        output: json_optional_column(row, "output")?,
    })
}
