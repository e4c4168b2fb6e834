//! Sandboxes: what was spawned for which spec, its liveness and how it ended.

use std::collections::HashSet;

use omoi_protocol::context::PhaseContext;
use omoi_protocol::phase::Phase;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::accounts::insert_token;
use super::{
    Store, TOKEN_GRACE_MS, json_optional_column, now_ms, parse_column, parse_optional_column,
    to_json, to_u64,
};
use crate::error::Result;
use crate::model::{Sandbox, SandboxStatus, time_from_ms};
use crate::token::TokenKind;

/// A sandbox about to be spawned.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSandbox {
    pub id: String,
    pub spec_id: Option<String>,
    pub task_id: Option<String>,
    pub provider: String,
    pub start_phase: Option<Phase>,
    /// The phase context it starts from (served at `GET /sandboxes/{id}/context`).
    pub context: Option<PhaseContext>,
}

const SET_HANDLE: &str = "UPDATE sandboxes SET handle = $2, replica_id = $3 WHERE id = $1";

const SANDBOX_COLUMNS: &str = "id, spec_id, task_id, provider, handle, status, start_phase, \
                               acked_seq, terminal, reason, created_ms, last_seen_ms, ended_ms";

impl Store {
    /// Records a sandbox in `starting`.
    pub async fn create_sandbox(&self, new: &NewSandbox) -> Result<Sandbox> {
        let now = now_ms();
        insert_sandbox(&self.pool, new, now).await?;
        Ok(starting_sandbox(new, now))
    }

    /// Records a sandbox in `starting` and its token in one transaction; answers the sandbox and
    /// its token. (A task's sandbox is recorded when the task is claimed: `claim_tasks`.)
    pub async fn open_sandbox(&self, new: &NewSandbox) -> Result<(Sandbox, String)> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let token = open_sandbox_in(&mut tx, new, now).await?;
        tx.commit().await?;
        Ok((starting_sandbox(new, now), token))
    }

    /// Stores the provider's handle of a sandbox `replica` spawned.
    pub async fn set_sandbox_handle(&self, id: &str, handle: &str, replica: &str) -> Result<()> {
        sqlx::query(SET_HANDLE)
            .bind(id)
            .bind(handle)
            .bind(replica)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Stores the providers' handles of several sandboxes `replica` spawned (`(sandbox id,
    /// handle)`) in one transaction.
    pub async fn set_sandbox_handles(
        &self,
        handles: &[(String, String)],
        replica: &str,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for (id, handle) in handles {
            sqlx::query(SET_HANDLE)
                .bind(id)
                .bind(handle)
                .bind(replica)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A sandbox by id.
    pub async fn sandbox(&self, id: &str) -> Result<Option<Sandbox>> {
        let row = sqlx::query(&format!(
            "SELECT {SANDBOX_COLUMNS} FROM sandboxes WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| sandbox_from_row(&r)).transpose()
    }

    /// The context a sandbox was started with.
    pub async fn sandbox_context(&self, id: &str) -> Result<Option<PhaseContext>> {
        let row = sqlx::query("SELECT context FROM sandboxes WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => json_optional_column(&row, "context"),
            None => Ok(None),
        }
    }

    /// The sandboxes of a spec, oldest first.
    pub async fn sandboxes_of_spec(&self, spec_id: &str) -> Result<Vec<Sandbox>> {
        let rows = sqlx::query(&format!(
            "SELECT {SANDBOX_COLUMNS} FROM sandboxes WHERE spec_id = $1 ORDER BY created_ms, id"
        ))
        .bind(spec_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(sandbox_from_row).collect()
    }

    /// Every sandbox in `starting` or `running`.
    pub async fn live_sandboxes(&self) -> Result<Vec<Sandbox>> {
        let rows = sqlx::query(&format!(
            "SELECT {SANDBOX_COLUMNS} FROM sandboxes WHERE status IN ($1, $2)
             ORDER BY created_ms, id"
        ))
        .bind(SandboxStatus::Starting.as_str())
        .bind(SandboxStatus::Running.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(sandbox_from_row).collect()
    }

    /// The ids of the live sandboxes `replica` spawned.
    pub async fn live_sandboxes_of_replica(&self, replica: &str) -> Result<HashSet<String>> {
        let rows =
            sqlx::query("SELECT id FROM sandboxes WHERE status IN ($1, $2) AND replica_id = $3")
                .bind(SandboxStatus::Starting.as_str())
                .bind(SandboxStatus::Running.as_str())
                .bind(replica)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(|row| Ok(row.try_get("id")?)).collect()
    }

    /// Ends a live sandbox with `status` and `reason`, and revokes its tokens: at once for a lost
    /// or failed one, after [`TOKEN_GRACE_MS`] for a terminated one (so the events it drains on
    /// SIGTERM still land). Returns whether it was live (so only one caller acts on its end).
    pub async fn end_sandbox(
        &self,
        id: &str,
        status: SandboxStatus,
        reason: Option<&str>,
    ) -> Result<bool> {
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE sandboxes SET status = $2, reason = COALESCE($3, reason), ended_ms = $4
             WHERE id = $1 AND status IN ($5, $6)",
        )
        .bind(id)
        .bind(status.as_str())
        .bind(reason)
        .bind(now)
        .bind(SandboxStatus::Starting.as_str())
        .bind(SandboxStatus::Running.as_str())
        .execute(&self.pool)
        .await?;
        let grace = match status {
            SandboxStatus::Terminated => TOKEN_GRACE_MS,
            _ => 0,
        };
        self.expire_sandbox_tokens(id, now + grace).await?;
        Ok(done.rows_affected() > 0)
    }

    /// How many sandboxes are starting or running.
    pub async fn count_live_sandboxes(&self) -> Result<u64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM sandboxes WHERE status IN ($1, $2)")
            .bind(SandboxStatus::Starting.as_str())
            .bind(SandboxStatus::Running.as_str())
            .fetch_one(&self.pool)
            .await?;
        to_u64(row.try_get("n")?, "count")
    }
}

fn sandbox_from_row(row: &AnyRow) -> Result<Sandbox> {
    let ended: Option<i64> = row.try_get("ended_ms")?;
    Ok(Sandbox {
        id: row.try_get("id")?,
        spec_id: row.try_get("spec_id")?,
        task_id: row.try_get("task_id")?,
        provider: row.try_get("provider")?,
        handle: row.try_get("handle")?,
        status: parse_column(row, "status")?,
        start_phase: parse_optional_column(row, "start_phase")?,
        acked_seq: to_u64(row.try_get("acked_seq")?, "acked_seq")?,
        terminal: row.try_get("terminal")?,
        reason: row.try_get("reason")?,
        created_at: time_from_ms(row.try_get("created_ms")?),
        last_seen_at: time_from_ms(row.try_get("last_seen_ms")?),
        ended_at: ended.map(time_from_ms),
    })
}

/// Inserts a sandbox in `starting`.
async fn insert_sandbox<'e, E>(executor: E, new: &NewSandbox, now: i64) -> Result<()>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let context = new.context.as_ref().map(to_json).transpose()?;
    sqlx::query(
        "INSERT INTO sandboxes (id, spec_id, task_id, provider, status, start_phase, context,
                                acked_seq, created_ms, last_seen_ms)
         VALUES ($1, $2, $3, $4, $8, $5, $6, 0, $7, $7)",
    )
    .bind(&new.id)
    .bind(&new.spec_id)
    .bind(&new.task_id)
    .bind(&new.provider)
    .bind(new.start_phase.map(Phase::as_str))
    .bind(context)
    .bind(now)
    .bind(SandboxStatus::Starting.as_str())
    .execute(executor)
    .await?;
    Ok(())
}

/// Inserts a sandbox in `starting` and a new token for it inside `tx`; answers the token.
pub(super) async fn open_sandbox_in(
    tx: &mut Transaction<'static, Any>,
    new: &NewSandbox,
    now: i64,
) -> Result<String> {
    insert_sandbox(&mut **tx, new, now).await?;
    insert_token(&mut **tx, TokenKind::Sandbox, None, Some(&new.id), now).await
}

/// The record of a sandbox just inserted by `insert_sandbox`.
pub(super) fn starting_sandbox(new: &NewSandbox, now: i64) -> Sandbox {
    Sandbox {
        id: new.id.clone(),
        spec_id: new.spec_id.clone(),
        task_id: new.task_id.clone(),
        provider: new.provider.clone(),
        handle: None,
        status: SandboxStatus::Starting,
        start_phase: new.start_phase,
        acked_seq: 0,
        terminal: None,
        reason: None,
        created_at: time_from_ms(now),
        last_seen_at: time_from_ms(now),
        ended_at: None,
    }
}
