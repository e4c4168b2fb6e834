//! The bridge (DESIGN §5.4, first half): a finished spec becomes one ticket `[Spec] <title>` and
//! one task per `TSK-NNN`, with the spec's dependencies mapped to the coordinator's task ids.
//!
//! Runs inside the ingest transaction that stores `spec.execution_completed`, once per spec (the
//! ticket is unique per spec). A task without dependencies starts `ready`, the others `pending`.
//! Each task keeps its slice of the final spec (`SpecSlice`), what its sandbox's context needs.
//! Running the tasks is the scheduler's (`crate::scheduler`, `super::tasks`).

use std::collections::HashMap;

use omoi_protocol::artifact::FinalSpec;
use sqlx::{Any, Transaction};

use super::{new_id, to_json};
use crate::error::Result;
use crate::model::{SpecSlice, TaskStatus};

/// Creates the ticket and tasks of a finished spec, unless they exist; each task may run
/// `max_attempts` times.
pub(super) async fn bridge(
    tx: &mut Transaction<'static, Any>,
    spec_id: &str,
    spec: &FinalSpec,
    max_attempts: u32,
    now: i64,
) -> Result<()> {
    let ticket_id = new_id();
    let created = sqlx::query(
        "INSERT INTO tickets (id, spec_id, title, status, created_ms)
         VALUES ($1, $2, $3, 'open', $4)
         ON CONFLICT (spec_id) DO NOTHING",
    )
    .bind(&ticket_id)
    .bind(spec_id)
    .bind(format!("[Spec] {}", spec.title))
    .bind(now)
    .execute(&mut **tx)
    .await?;
    if created.rows_affected() == 0 {
        return Ok(());
    }
    // The TASKS gate refuses duplicate ids; should one slip through, its first task wins.
    let mut ids: HashMap<&str, String> = HashMap::new();
    for task in &spec.tasks.tasks {
        if ids.contains_key(task.id.as_str()) {
            continue;
        }
        let id = new_id();
        let status = if task.depends_on.is_empty() {
            TaskStatus::Ready
        } else {
            TaskStatus::Pending
        };
        sqlx::query(
            "INSERT INTO tasks (id, ticket_id, spec_id, spec_task_id, title, body, status, attempts,
                                max_attempts, created_ms, updated_ms, spec_slice)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $9, $9, $10)",
        )
        .bind(&id)
        .bind(&ticket_id)
        .bind(spec_id)
        .bind(&task.id)
        .bind(&task.title)
        .bind(to_json(task)?)
        .bind(status.as_str())
        .bind(i64::from(max_attempts.max(1)))
        .bind(now)
        .bind(to_json(&SpecSlice::of(spec, task))?)
        .execute(&mut **tx)
        .await?;
        ids.insert(task.id.as_str(), id);
    }
    for task in &spec.tasks.tasks {
        let Some(task_id) = ids.get(task.id.as_str()) else {
            continue;
        };
        // The TASKS gate refuses unknown dependencies; one that slipped through is skipped.
        for dep in task.depends_on.iter().filter_map(|d| ids.get(d.as_str())) {
            sqlx::query(
                "INSERT INTO task_deps (task_id, depends_on) VALUES ($1, $2)
                 ON CONFLICT (task_id, depends_on) DO NOTHING",
            )
            .bind(task_id)
            .bind(dep)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}
