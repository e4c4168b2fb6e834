//! What the dashboard reads beyond the records: a spec's latest events, the events of some
//! kinds (evaluations, usage), and per spec of a user its task progress and cost so far.

use std::collections::HashMap;

use sqlx::Row;

use super::Store;
use super::events::{EVENT_COLUMNS, event_from_row};
use crate::error::Result;
use crate::model::{StreamEvent, TaskStatus};

/// The event kinds a spec page tallies: evaluations (the timeline), phase starts and usage
/// (tokens and cost per phase and task).
pub const TALLIED_KINDS: [&str; 3] = ["spec.eval_result", "spec.phase_started", "agent.usage"];

impl Store {
    /// A spec's released events of the tallied kinds, in stream order.
    pub async fn tallied_events(&self, spec_id: &str) -> Result<Vec<StreamEvent>> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events
             WHERE spec_id = $1 AND cursor IS NOT NULL AND type IN ($2, $3, $4)
             ORDER BY cursor"
        ))
        .bind(spec_id)
        .bind(TALLIED_KINDS[0])
        .bind(TALLIED_KINDS[1])
        .bind(TALLIED_KINDS[2])
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(stream_event_from_row).collect()
    }

    /// A spec's latest `limit` released events, oldest first; with `kind`, only the types that
    /// start with it; with `sandbox`, only that sandbox's.
    pub async fn latest_events(
        &self,
        spec_id: &str,
        kind: Option<&str>,
        sandbox: Option<&str>,
        limit: u32,
    ) -> Result<Vec<StreamEvent>> {
        // The prefix is matched with substr, not LIKE, so `%` and `_` in it are plain text.
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events
             WHERE spec_id = $1 AND cursor IS NOT NULL
               AND ($2 = '' OR substr(type, 1, length($2)) = $2)
               AND ($3 = '' OR sandbox_id = $3)
             ORDER BY cursor DESC LIMIT $4"
        ))
        .bind(spec_id)
        .bind(kind.unwrap_or(""))
        .bind(sandbox.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut events = rows
            .iter()
            .map(stream_event_from_row)
            .collect::<Result<Vec<_>>>()?;
        events.reverse();
        Ok(events)
    }

    /// For each spec of a user that has tasks: (completed, all).
    pub async fn task_progress(&self, user_id: &str) -> Result<HashMap<String, (u64, u64)>> {
        let rows = sqlx::query(
            "SELECT t.spec_id, SUM(CASE WHEN t.status = $2 THEN 1 ELSE 0 END) AS done,
                    COUNT(*) AS total
             FROM tasks t JOIN specs s ON s.id = t.spec_id
             WHERE s.user_id = $1 GROUP BY t.spec_id",
        )
        .bind(user_id)
        .bind(TaskStatus::Completed.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let done: i64 = row.try_get("done")?;
                let total: i64 = row.try_get("total")?;
                Ok((
                    row.try_get("spec_id")?,
                    (
                        u64::try_from(done).unwrap_or(0),
                        u64::try_from(total).unwrap_or(0),
                    ),
                ))
            })
            .collect()
    }

    /// For each spec of a user: the sum of its model calls' estimated cost in US dollars.
    pub async fn cost_so_far(&self, user_id: &str) -> Result<HashMap<String, f64>> {
        let rows = sqlx::query(
            "SELECT e.spec_id, e.data FROM events e JOIN specs s ON s.id = e.spec_id
             WHERE s.user_id = $1 AND e.type = 'agent.usage' AND e.cursor IS NOT NULL",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        let mut costs: HashMap<String, f64> = HashMap::new();
        for row in &rows {
            let spec_id: String = row.try_get("spec_id")?;
            let data: String = row.try_get("data")?;
            let cost = serde_json::from_str::<serde_json::Value>(&data)
                .ok()
                .and_then(|d| d["call"]["cost_usd"].as_f64())
                .unwrap_or(0.0);
            *costs.entry(spec_id).or_default() += cost;
        }
        Ok(costs)
    }
}

fn stream_event_from_row(row: &sqlx::any::AnyRow) -> Result<StreamEvent> {
    Ok(StreamEvent {
        cursor: row.try_get("cursor")?,
        event: event_from_row(row)?,
    })
}
