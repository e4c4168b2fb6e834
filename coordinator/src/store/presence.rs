//! Replicas that record they are alive (`replicas`, migration 0009), and the takeover of the
//! standbys of one unseen past a limit.
//!
//! Invariant: a lost replica's standbys are taken over by single statements that change only
//! rows still recorded under a lost replica, so each standby is adopted or ended once, whatever
//! the number of replicas doing it at the same moment.

use super::standby::{COLUMNS, standby};
use super::{Standby, Store};
use crate::error::Result;

/// What one replica records of itself at each heartbeat.
#[derive(Debug, Clone, Copy)]
pub struct Presence<'a> {
    pub replica_id: &'a str,
    /// Its provider's kind (`local`, `docker`, …).
    pub provider: &'a str,
    /// Where its provider's sandboxes live (`Provider::scope`); `None`: no other replica can
    /// manage them.
    pub scope: Option<&'a str>,
    /// When this process started.
    pub started_ms: i64,
    pub now_ms: i64,
}

/// A replica as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    pub id: String,
    pub provider: String,
    pub provider_scope: Option<String>,
    pub started_ms: i64,
    pub seen_ms: i64,
}

/// The states of a standby that has not become an ordinary sandbox yet.
const LIVE: &str = "('starting', 'idle', 'claimed', 'assigned')";

impl Store {
    /// Records that `presence.replica_id` is alive (its row made at its first heartbeat, its
    /// provider and start time kept current: a restart under the same id is the same replica).
    pub async fn replica_heartbeat(&self, presence: Presence<'_>) -> Result<()> {
        sqlx::query(
            "INSERT INTO replicas (id, provider, provider_scope, started_ms, seen_ms)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (id) DO UPDATE SET provider = excluded.provider,
                 provider_scope = excluded.provider_scope, started_ms = excluded.started_ms,
                 seen_ms = excluded.seen_ms",
        )
        .bind(presence.replica_id)
        .bind(presence.provider)
        .bind(presence.scope)
        .bind(presence.started_ms)
        .bind(presence.now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every recorded replica, by id.
    pub async fn replicas(&self) -> Result<Vec<Replica>> {
        let rows: Vec<(String, String, Option<String>, i64, i64)> = sqlx::query_as(
            "SELECT id, provider, provider_scope, started_ms, seen_ms FROM replicas ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(id, provider, provider_scope, started_ms, seen_ms)| Replica {
                    id,
                    provider,
                    provider_scope,
                    started_ms,
                    seen_ms,
                },
            )
            .collect())
    }

    /// Moves to `presence.replica_id` the live standbys of every other replica unseen since
    /// `unseen_since_ms` whose provider is of the same kind and scope as this one's (so this
    /// replica's provider can watch and stop them); answers them. Nothing when `scope` is `None`.
    pub async fn adopt_standbys(
        &self,
        presence: Presence<'_>,
        unseen_since_ms: i64,
    ) -> Result<Vec<Standby>> {
        let Some(scope) = presence.scope else {
            return Ok(Vec::new());
        };
        let rows = sqlx::query(&format!(
            "UPDATE standby_sandboxes SET replica_id = $1
             WHERE state IN {LIVE} AND provider = $2
               AND replica_id IN (SELECT r.id FROM replicas r
                                  WHERE r.id <> $1 AND r.seen_ms < $4
                                    AND r.provider = $2 AND r.provider_scope = $3)
             RETURNING {COLUMNS}"
        ))
        .bind(presence.replica_id)
        .bind(presence.provider)
        .bind(scope)
        .bind(unseen_since_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(standby).collect()
    }

    /// Ends the live standbys of every replica other than `replica_id` unseen since
    /// `unseen_since_ms` (those nobody adopted); answers them.
    pub async fn end_standbys_of_lost_replicas(
        &self,
        replica_id: &str,
        unseen_since_ms: i64,
    ) -> Result<Vec<Standby>> {
        let rows = sqlx::query(&format!(
            "UPDATE standby_sandboxes
             SET state = 'dead', assignment = NULL,
                 reason = 'its coordinator ' || replica_id || ' was lost'
             WHERE state IN {LIVE}
               AND replica_id IN (SELECT r.id FROM replicas r
                                  WHERE r.id <> $1 AND r.seen_ms < $2)
             RETURNING {COLUMNS}"
        ))
        .bind(replica_id)
        .bind(unseen_since_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(standby).collect()
    }

    /// Forgets the replicas unseen since `unseen_since_ms` that have no live standby left
    /// (one that starts again under its id records itself anew).
    pub async fn forget_lost_replicas(&self, unseen_since_ms: i64) -> Result<u64> {
        let done = sqlx::query(&format!(
            "DELETE FROM replicas WHERE seen_ms < $1
               AND NOT EXISTS (SELECT 1 FROM standby_sandboxes s
                               WHERE s.replica_id = replicas.id AND s.state IN {LIVE})"
        ))
        .bind(unseen_since_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}
