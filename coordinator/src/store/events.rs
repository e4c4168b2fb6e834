//! Event ingest (idempotent on `(sandbox_id, seq)`), the spec's event stream, injected messages.
//!
//! An event is stored when it arrives; it is *released* into its spec's stream — given a cursor and
//! applied to the spec's state — once every lower seq of its sandbox is stored, so the stream and
//! the state follow each sandbox's seq order whatever order the batches arrive in.

use chrono::{DateTime, Utc};
use omoi_protocol::api::InjectedMessage;
use omoi_protocol::event::RawEvent;
use omoi_protocol::phase::Phase;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::batch::{Incoming, encode_batch};
use super::bridge::bridge;
use super::tasks::{self, TaskPolicy};
use super::{Store, now_ms, to_i64, to_json, to_u64};
use crate::error::{Result, corrupt};
use crate::hub::Notice;
use crate::ingest::{Effect, Quotas, effects};
use crate::model::{PhaseStatus, Sandbox, SandboxStatus, SpecStatus, StreamEvent, spec_branch};

/// How long a sandbox token stays valid after its terminal event, so the worker's last retries of
/// an unacknowledged batch still get through.
pub const TOKEN_GRACE_MS: i64 = 60_000;

/// What an ingest did.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestOutcome {
    /// The highest seq such that every seq from 1 to it is stored.
    pub acked_seq: u64,
    /// Events released into the stream by this batch, in order.
    pub released: Vec<StreamEvent>,
    /// How many events of the batch were new.
    pub stored: usize,
    /// Whether the spec's status changed.
    pub status_changed: bool,
}

impl Store {
    /// Stores a validated batch of a sandbox's events, releases what became contiguous, applies
    /// its effects, and answers the new acknowledged seq. One transaction. A task attempt that
    /// ends failed is retried, and a bridged spec's tasks get their attempts, by `policy`. A
    /// batch beyond the sandbox's `quotas` is refused whole (`Error::Quota`).
    pub async fn ingest(
        &self,
        sandbox: &Sandbox,
        events: &[RawEvent],
        policy: &TaskPolicy,
        quotas: &Quotas,
    ) -> Result<IngestOutcome> {
        // Encoding happens before the transaction, which holds the connection.
        let rows = encode_batch(events)?;
        let mut tx = self.pool.begin().await?;
        if let (Some(sql), Some(spec_id)) = (self.backend.stream_lock_sql(), &sandbox.spec_id) {
            sqlx::query(sql).bind(spec_id).execute(&mut *tx).await?;
        }
        let now = now_ms();
        let incoming = Incoming {
            rows: &rows,
            quotas,
        };
        let batch = self.store_batch(&mut tx, sandbox, incoming, now).await?;
        let (stored, released, acked) = (batch.stored, batch.released, batch.acked_seq);
        let added_bytes = to_i64(batch.added_bytes, "stored_bytes")?;

        let mut status_changed = false;
        // Whether an earlier event of this batch already ended the task's attempt.
        let mut attempt_ended = false;
        for StreamEvent { event, .. } in &released {
            match (&sandbox.spec_id, &sandbox.task_id) {
                (Some(_), Some(task_id)) => {
                    for effect in effects(event) {
                        let attempt = tasks::Attempt {
                            task_id,
                            sandbox_id: &sandbox.id,
                            ended: &mut attempt_ended,
                        };
                        status_changed |=
                            tasks::apply(&mut tx, policy, attempt, &effect, now).await?;
                    }
                }
                (Some(spec_id), None) => {
                    for effect in effects(event) {
                        let target = SpecSandbox {
                            spec_id,
                            sandbox_id: &sandbox.id,
                            task_attempts: policy.max_attempts,
                        };
                        status_changed |= apply(&mut tx, target, &effect, now).await?;
                    }
                }
                (None, _) => {}
            }
        }

        sqlx::query(
            "UPDATE sandboxes SET acked_seq = $2, last_seen_ms = $3, stored_bytes = stored_bytes + $4
             WHERE id = $1",
        )
        .bind(&sandbox.id)
        .bind(to_i64(acked, "seq")?)
        .bind(now)
        .bind(added_bytes)
        .execute(&mut *tx)
        .await?;
        // Sent when the transaction commits, so a replica that hears it finds the events.
        if let (Some(sql), Some(spec_id), Some(cursor)) = (
            self.backend.notify_sql(),
            &sandbox.spec_id,
            released.iter().map(|e| e.cursor).max(),
        ) {
            let notice = Notice::Events {
                spec_id: spec_id.clone(),
                cursor,
            };
            sqlx::query(sql)
                .bind(to_json(&notice)?)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(IngestOutcome {
            acked_seq: acked,
            released,
            stored,
            status_changed,
        })
    }

    /// The released events of a spec after `after`, in stream order, at most `limit`.
    pub async fn events_after(
        &self,
        spec_id: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<StreamEvent>> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events
             WHERE spec_id = $1 AND cursor IS NOT NULL AND cursor > $2
             ORDER BY cursor LIMIT $3"
        ))
        .bind(spec_id)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(StreamEvent {
                    cursor: row.try_get("cursor")?,
                    event: event_from_row(row)?,
                })
            })
            .collect()
    }

    /// Every stored event of a sandbox in seq order, released or not.
    pub async fn sandbox_events(&self, sandbox_id: &str) -> Result<Vec<RawEvent>> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE sandbox_id = $1 ORDER BY seq"
        ))
        .bind(sandbox_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// How many events are stored in all.
    pub async fn count_events(&self) -> Result<u64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM events")
            .fetch_one(&self.pool)
            .await?;
        to_u64(row.try_get("n")?, "count")
    }

    /// Stores a message for a sandbox's agent.
    pub async fn create_message(&self, sandbox_id: &str, text: &str) -> Result<InjectedMessage> {
        let row = sqlx::query(
            "INSERT INTO messages (sandbox_id, text, created_ms) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(sandbox_id)
        .bind(text)
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await?;
        Ok(InjectedMessage {
            id: to_u64(row.try_get("id")?, "message id")?,
            text: text.to_string(),
        })
    }

    /// A sandbox's messages with an id above `after`, oldest first.
    pub async fn messages_after(
        &self,
        sandbox_id: &str,
        after: u64,
    ) -> Result<Vec<InjectedMessage>> {
        let rows = sqlx::query(
            "SELECT id, text FROM messages WHERE sandbox_id = $1 AND id > $2 ORDER BY id LIMIT 1000",
        )
        .bind(sandbox_id)
        .bind(to_i64(after, "after")?)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(InjectedMessage {
                    id: to_u64(row.try_get("id")?, "message id")?,
                    text: row.try_get("text")?,
                })
            })
            .collect()
    }
}

pub(super) const EVENT_COLUMNS: &str =
    "id, sandbox_id, seq, cursor, spec_id, task_id, type, v, at, data";

pub(super) fn event_from_row(row: &AnyRow) -> Result<RawEvent> {
    let at: String = row.try_get("at")?;
    let data: String = row.try_get("data")?;
    let v: i64 = row.try_get("v")?;
    Ok(RawEvent {
        v: u32::try_from(v).map_err(|e| corrupt("v", e))?,
        sandbox_id: row.try_get("sandbox_id")?,
        seq: to_u64(row.try_get("seq")?, "seq")?,
        at: DateTime::parse_from_rfc3339(&at)
            .map_err(|e| corrupt("at", e))?
            .with_timezone(&Utc),
        spec_id: row.try_get("spec_id")?,
        task_id: row.try_get("task_id")?,
        kind: row.try_get("type")?,
        data: serde_json::from_str(&data).map_err(|e| corrupt("data", e))?,
    })
}

/// The spec sandbox an ingested event came from.
#[derive(Debug, Clone, Copy)]
struct SpecSandbox<'a> {
    spec_id: &'a str,
    sandbox_id: &'a str,
    /// The attempts each task gets, should the event bridge the spec.
    task_attempts: u32,
}

/// Applies one effect inside the ingest transaction. Returns whether the spec's status changed.
async fn apply(
    tx: &mut Transaction<'static, Any>,
    target: SpecSandbox<'_>,
    effect: &Effect,
    now: i64,
) -> Result<bool> {
    let SpecSandbox {
        spec_id,
        sandbox_id,
        task_attempts,
    } = target;
    match effect {
        Effect::AgentStarted => {
            record_agent_start(tx, sandbox_id).await?;
            Ok(false)
        }
        Effect::PhaseStarted { phase, attempt } => {
            let row = PhaseRow {
                spec_id,
                phase: *phase,
                status: PhaseStatus::Running,
                attempts: *attempt,
                score: None,
                duration_ms: None,
                output: None,
            };
            upsert_phase(tx, &row, now).await?;
            sqlx::query(
                "UPDATE specs SET current_phase = $2, updated_ms = $3
                 WHERE id = $1 AND status = $4",
            )
            .bind(spec_id)
            .bind(phase.as_str())
            .bind(now)
            .bind(SpecStatus::Executing.as_str())
            .execute(&mut **tx)
            .await?;
            Ok(false)
        }
        Effect::PhaseScored {
            phase,
            attempt,
            score,
        } => {
            sqlx::query(
                "UPDATE spec_phases SET score = $3, attempts = $4, updated_ms = $5
                 WHERE spec_id = $1 AND phase = $2 AND status = $6",
            )
            .bind(spec_id)
            .bind(phase.as_str())
            .bind(*score)
            .bind(i64::from(*attempt))
            .bind(now)
            .bind(PhaseStatus::Running.as_str())
            .execute(&mut **tx)
            .await?;
            Ok(false)
        }
        Effect::PhaseCompleted {
            phase,
            score,
            attempts,
            duration_ms,
            output,
        } => {
            let row = PhaseRow {
                spec_id,
                phase: *phase,
                status: PhaseStatus::Completed,
                attempts: *attempts,
                score: Some(*score),
                duration_ms: Some(to_i64(*duration_ms, "duration_ms")?),
                output: Some(output),
            };
            upsert_phase(tx, &row, now).await?;
            if let Some(next) = phase.next() {
                sqlx::query(
                    "UPDATE specs SET current_phase = $2, updated_ms = $3
                     WHERE id = $1 AND status = $4",
                )
                .bind(spec_id)
                .bind(next.as_str())
                .bind(now)
                .bind(SpecStatus::Executing.as_str())
                .execute(&mut **tx)
                .await?;
            }
            Ok(false)
        }
        Effect::PhaseFailed { phase, score } => {
            sqlx::query(
                "UPDATE spec_phases SET status = $5, score = COALESCE(NULLIF($3, -1.0), score),
                        updated_ms = $4
                 WHERE spec_id = $1 AND phase = $2",
            )
            .bind(spec_id)
            .bind(phase.as_str())
            .bind(optional_score(*score))
            .bind(now)
            .bind(PhaseStatus::Failed.as_str())
            .execute(&mut **tx)
            .await?;
            Ok(false)
        }
        Effect::SpecCompleted { final_spec } => {
            // The spec is written; its tasks run next (the scheduler), so it is implementing
            // until they all completed and the pull request or branch is reported.
            let json = to_json(final_spec)?;
            let done = sqlx::query(
                "UPDATE specs SET status = $5, final_spec = $2,
                        current_phase = $9, error = NULL, branch = $4, updated_ms = $3
                 WHERE id = $1 AND status NOT IN ($6, $7, $5, $8)",
            )
            .bind(spec_id)
            .bind(json)
            .bind(now)
            .bind(spec_branch(spec_id))
            .bind(SpecStatus::Implementing.as_str())
            .bind(SpecStatus::Cancelled.as_str())
            .bind(SpecStatus::Failed.as_str())
            .bind(SpecStatus::Completed.as_str())
            .bind(Phase::Complete.as_str())
            .execute(&mut **tx)
            .await?;
            if done.rows_affected() > 0 {
                bridge(tx, spec_id, final_spec, task_attempts, now).await?;
            }
            Ok(done.rows_affected() > 0)
        }
        // A spec sandbox runs no task.
        Effect::TaskCommitted { .. } | Effect::TaskCompleted { .. } | Effect::TaskFailed { .. } => {
            Ok(false)
        }
        Effect::SpecFailed { reason } => fail_spec(tx, spec_id, reason, now).await,
        Effect::AgentEnded {
            terminal,
            success,
            stopped_after,
            reason,
        } => {
            let end = AgentEnd::new(sandbox_id, terminal, *success, reason);
            record_agent_end(tx, &end, now).await?;
            if !*success {
                let reason = reason.as_deref().unwrap_or("the worker failed");
                return fail_spec(tx, spec_id, reason, now).await;
            }
            // Success without the final spec: the worker stopped for approval (or ran a
            // resume that had nothing left); the spec waits for `execute` again.
            let next = stopped_after.and_then(|p| p.next());
            let done = sqlx::query(
                "UPDATE specs SET status = $4, current_phase = COALESCE($2, current_phase),
                        updated_ms = $3
                 WHERE id = $1 AND status = $5",
            )
            .bind(spec_id)
            .bind(next.map(|p| p.as_str()))
            .bind(now)
            .bind(SpecStatus::Pending.as_str())
            .bind(SpecStatus::Executing.as_str())
            .execute(&mut **tx)
            .await?;
            Ok(done.rows_affected() > 0)
        }
    }
}

/// The sandbox's worker runs.
pub(super) async fn record_agent_start(
    tx: &mut Transaction<'static, Any>,
    sandbox_id: &str,
) -> Result<()> {
    sqlx::query("UPDATE sandboxes SET status = $2 WHERE id = $1 AND status = $3")
        .bind(sandbox_id)
        .bind(SandboxStatus::Running.as_str())
        .bind(SandboxStatus::Starting.as_str())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// How a sandbox's worker ended, as its terminal event says.
#[derive(Debug, Clone, Copy)]
pub(super) struct AgentEnd<'a> {
    pub sandbox_id: &'a str,
    /// The terminal event's type.
    pub terminal: &'a str,
    pub success: bool,
    pub reason: Option<&'a str>,
}

impl<'a> AgentEnd<'a> {
    /// The end of `sandbox_id`'s worker as an `AgentEnded` effect reports it.
    pub fn new(
        sandbox_id: &'a str,
        terminal: &'a str,
        success: bool,
        reason: &'a Option<String>,
    ) -> Self {
        AgentEnd {
            sandbox_id,
            terminal,
            success,
            reason: reason.as_deref(),
        }
    }
}

/// The sandbox's worker ended with a terminal event: the sandbox ends, its token expires after
/// the grace period.
pub(super) async fn record_agent_end(
    tx: &mut Transaction<'static, Any>,
    end: &AgentEnd<'_>,
    now: i64,
) -> Result<()> {
    let AgentEnd {
        sandbox_id,
        terminal,
        success,
        reason,
    } = *end;
    let status = if success {
        SandboxStatus::Completed
    } else {
        SandboxStatus::Failed
    };
    sqlx::query(
        "UPDATE sandboxes SET status = $2, terminal = $3, reason = $4, ended_ms = $5
         WHERE id = $1 AND status IN ($6, $7)",
    )
    .bind(sandbox_id)
    .bind(status.as_str())
    .bind(terminal)
    .bind(reason)
    .bind(now)
    .bind(SandboxStatus::Starting.as_str())
    .bind(SandboxStatus::Running.as_str())
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE tokens SET expires_ms = $2
         WHERE sandbox_id = $1 AND (expires_ms IS NULL OR expires_ms > $2)",
    )
    .bind(sandbox_id)
    .bind(now + TOKEN_GRACE_MS)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub(super) async fn fail_spec(
    tx: &mut Transaction<'static, Any>,
    spec_id: &str,
    reason: &str,
    now: i64,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE specs SET status = $4, error = $2, updated_ms = $3
         WHERE id = $1 AND status NOT IN ($5, $4, $6)",
    )
    .bind(spec_id)
    .bind(reason)
    .bind(now)
    .bind(SpecStatus::Failed.as_str())
    .bind(SpecStatus::Completed.as_str())
    .bind(SpecStatus::Cancelled.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// One row of `spec_phases` as an event sets it; what is `None` keeps its stored value.
#[derive(Debug, Clone, Copy)]
struct PhaseRow<'a> {
    spec_id: &'a str,
    phase: Phase,
    status: PhaseStatus,
    attempts: u32,
    score: Option<f64>,
    duration_ms: Option<i64>,
    output: Option<&'a String>,
}

async fn upsert_phase(
    tx: &mut Transaction<'static, Any>,
    row: &PhaseRow<'_>,
    now: i64,
) -> Result<()> {
    let PhaseRow {
        spec_id,
        phase,
        status,
        attempts,
        score,
        duration_ms,
        output,
    } = *row;
    sqlx::query(
        "INSERT INTO spec_phases (spec_id, phase, status, attempts, score, output, duration_ms,
                                  updated_ms)
         VALUES ($1, $2, $3, $4, NULLIF($5, -1.0), $6, $7, $8)
         ON CONFLICT (spec_id, phase) DO UPDATE SET
             status = excluded.status, attempts = excluded.attempts,
             score = COALESCE(excluded.score, spec_phases.score),
             output = COALESCE(excluded.output, spec_phases.output),
             duration_ms = COALESCE(excluded.duration_ms, spec_phases.duration_ms),
             updated_ms = excluded.updated_ms",
    )
    .bind(spec_id)
    .bind(phase.as_str())
    .bind(status.as_str())
    .bind(i64::from(attempts))
    .bind(optional_score(score))
    .bind(output.map(String::as_str))
    .bind(duration_ms)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// An optional score as bound: sqlx 0.8's `Any` driver sends a NULL double as a float4 NULL,
/// which PostgreSQL refuses for a float8 parameter, so no score travels as -1 (scores are
/// 0..=1) and the SQL turns it back into NULL with `NULLIF(…, -1.0)`.
fn optional_score(score: Option<f64>) -> f64 {
    score.unwrap_or(-1.0)
}
