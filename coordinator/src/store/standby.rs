//! Standby sandboxes of the warm pools: recorded when spawned, registered by their worker,
//! claimed by one statement, assigned a sealed environment, delivered once.
//!
//! Invariant: a standby goes from `idle` to `claimed` only in [`Store::claim_standby`], one
//! `UPDATE … WHERE state = 'idle' … RETURNING` (its inner select skips rows another claimer has
//! locked, on PostgreSQL), so two claims — of one coordinator or of several on one database —
//! never take the same standby; and its assignment leaves the database once, in the `UPDATE`
//! that moves it from `assigned` to `delivered` and clears it.

use std::collections::BTreeMap;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, now_ms};
use crate::error::{Error, Result, corrupt};
use crate::token::{TokenKind, generate_token, hash_token};

/// Where a standby sandbox is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StandbyState {
    /// Spawned; its worker has not registered yet.
    Starting,
    /// Registered and waiting for an assignment.
    Idle,
    /// Taken by one launch; its repository is being put in place.
    Claimed,
    /// Its assignment is ready for the worker to fetch.
    Assigned,
    /// The worker fetched its assignment: it is an ordinary sandbox now.
    Delivered,
    /// Ended before its assignment was delivered.
    Dead,
}

impl StandbyState {
    pub fn as_str(self) -> &'static str {
        match self {
            StandbyState::Starting => "starting",
            StandbyState::Idle => "idle",
            StandbyState::Claimed => "claimed",
            StandbyState::Assigned => "assigned",
            StandbyState::Delivered => "delivered",
            StandbyState::Dead => "dead",
        }
    }

    fn parse(text: &str) -> Result<StandbyState> {
        Ok(match text {
            "starting" => StandbyState::Starting,
            "idle" => StandbyState::Idle,
            "claimed" => StandbyState::Claimed,
            "assigned" => StandbyState::Assigned,
            "delivered" => StandbyState::Delivered,
            "dead" => StandbyState::Dead,
            other => return Err(corrupt("standby state", format!("{other:?}"))),
        })
    }
}

/// A standby sandbox as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standby {
    pub id: String,
    /// The image it runs; empty for the provider's default.
    pub pool: String,
    /// The kind of provider that runs it.
    pub provider: String,
    /// The coordinator that spawned it.
    pub replica_id: String,
    /// The provider's handle, once spawned.
    pub handle: Option<String>,
    pub state: StandbyState,
    pub created_ms: i64,
    pub registered_ms: Option<i64>,
    /// When its worker was last heard (registration, each assignment poll).
    pub seen_ms: i64,
    /// When a launch claimed it.
    pub claimed_ms: Option<i64>,
}

/// Which standbys a claim may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach<'a> {
    /// Any replica's: the claim only hands over an assignment (the worker clones the
    /// repository, or the launch has none).
    Any,
    /// Those of `replica_id` and of the replicas whose provider has `scope` (`Provider::scope`):
    /// the claim puts the repository into the standby, which only a provider that can reach it
    /// does. `None`: only `replica_id`'s own.
    Scope {
        replica_id: &'a str,
        scope: Option<&'a str>,
    },
}

/// A new standby to record.
#[derive(Debug, Clone, Copy)]
pub struct NewStandby<'a> {
    pub id: &'a str,
    pub pool: &'a str,
    pub provider: &'a str,
    pub replica_id: &'a str,
}

pub(super) const COLUMNS: &str = "id, pool, provider, replica_id, handle, state, created_ms, \
     registered_ms, seen_ms, claimed_ms";

pub(super) fn standby(row: &AnyRow) -> Result<Standby> {
    let state: String = row.try_get("state")?;
    Ok(Standby {
        id: row.try_get("id")?,
        pool: row.try_get("pool")?,
        provider: row.try_get("provider")?,
        replica_id: row.try_get("replica_id")?,
        handle: row.try_get("handle")?,
        state: StandbyState::parse(&state)?,
        created_ms: row.try_get("created_ms")?,
        registered_ms: row.try_get("registered_ms")?,
        seen_ms: row.try_get("seen_ms")?,
        claimed_ms: row.try_get("claimed_ms")?,
    })
}

impl Store {
    /// Records a standby about to be spawned; answers its pool credential (only its hash is
    /// stored).
    pub async fn open_standby(&self, new: NewStandby<'_>) -> Result<String> {
        let token = generate_token(TokenKind::Standby)?;
        let now = now_ms();
        sqlx::query(
            "INSERT INTO standby_sandboxes
                 (id, pool, provider, replica_id, token_hash, state, created_ms, seen_ms)
             VALUES ($1, $2, $3, $4, $5, 'starting', $6, $6)",
        )
        .bind(new.id)
        .bind(new.pool)
        .bind(new.provider)
        .bind(new.replica_id)
        .bind(hash_token(&token))
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(token)
    }

    /// Records a standby that enrolled itself: a sandbox the provider's own pool made (`handle`,
    /// made at `created_ms`), already running. Its id is the caller's (one per sandbox, e.g. its
    /// pod's uid): a second enrollment of the same id records nothing and answers `None`.
    /// Otherwise answers its pool credential (only its hash is stored).
    pub async fn enroll_standby(
        &self,
        new: NewStandby<'_>,
        handle: &str,
        created_ms: i64,
    ) -> Result<Option<String>> {
        let token = generate_token(TokenKind::Standby)?;
        let done = sqlx::query(
            "INSERT INTO standby_sandboxes
                 (id, pool, provider, replica_id, token_hash, state, created_ms, seen_ms, handle)
             VALUES ($1, $2, $3, $4, $5, 'starting', $6, $7, $8)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(new.id)
        .bind(new.pool)
        .bind(new.provider)
        .bind(new.replica_id)
        .bind(hash_token(&token))
        .bind(created_ms)
        .bind(now_ms())
        .bind(handle)
        .execute(&self.pool)
        .await?;
        Ok((done.rows_affected() == 1).then_some(token))
    }

    /// The derived registration credential of the provider pool `pool` (see
    /// [`crate::secret::SecretKey::derive`]); `None` without the operator's key.
    pub fn pool_credential(&self, pool: &str) -> Option<String> {
        self.secrets.as_ref().map(|key| {
            format!(
                "omoi_r_{}",
                key.derive(&format!("omoi pool enrollment\0{pool}"))
            )
        })
    }

    /// Stores the provider's handle of a spawned standby.
    pub async fn set_standby_handle(&self, id: &str, handle: &str) -> Result<()> {
        sqlx::query("UPDATE standby_sandboxes SET handle = $2 WHERE id = $1")
            .bind(id)
            .bind(handle)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The standby `id` when `token` is its pool credential (each standby has its own).
    pub async fn standby_with_token(&self, id: &str, token: &str) -> Result<Option<Standby>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM standby_sandboxes WHERE id = $1 AND token_hash = $2"
        ))
        .bind(id)
        .bind(hash_token(token))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(standby).transpose()
    }

    /// One standby by id.
    pub async fn standby(&self, id: &str) -> Result<Option<Standby>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM standby_sandboxes WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(standby).transpose()
    }

    /// Its worker announced itself: a `starting` standby becomes `idle` (an `idle` one is only
    /// seen again). `false` when the standby is past waiting (claimed, delivered, dead).
    pub async fn register_standby(&self, id: &str) -> Result<bool> {
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE standby_sandboxes
             SET state = 'idle', registered_ms = COALESCE(registered_ms, $2), seen_ms = $2
             WHERE id = $1 AND state IN ('starting', 'idle')",
        )
        .bind(id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Its worker polls for the assignment: it is alive.
    pub async fn touch_standby(&self, id: &str) -> Result<()> {
        sqlx::query("UPDATE standby_sandboxes SET seen_ms = $2 WHERE id = $1")
            .bind(id)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Takes one idle standby of `pool` on `provider` heard since `seen_since_ms` within
    /// `reach`, the one waiting longest, in one statement: it is `claimed` by this call and no
    /// other.
    pub async fn claim_standby(
        &self,
        provider: &str,
        pool: &str,
        seen_since_ms: i64,
        reach: Reach<'_>,
    ) -> Result<Option<Standby>> {
        let (within, replica_id, scope) = match reach {
            Reach::Any => ("", None, None),
            Reach::Scope { replica_id, scope } => (
                "AND (t.replica_id = $5 OR t.replica_id IN
                      (SELECT r.id FROM replicas r WHERE r.provider_scope = $6))",
                Some(replica_id),
                scope,
            ),
        };
        let sql = format!(
            "UPDATE standby_sandboxes SET state = 'claimed', claimed_ms = $1
             WHERE id = (SELECT t.id FROM standby_sandboxes t
                         WHERE t.provider = $2 AND t.pool = $3 AND t.state = 'idle'
                           AND t.handle IS NOT NULL AND t.seen_ms >= $4 {within}
                         ORDER BY t.registered_ms, t.id LIMIT 1 {lock})
               AND state = 'idle'
             RETURNING {COLUMNS}",
            lock = self.backend.claim_lock_clause(),
        );
        let mut query = sqlx::query(&sql)
            .bind(now_ms())
            .bind(provider)
            .bind(pool)
            .bind(seen_since_ms);
        if let Some(replica_id) = replica_id {
            query = query.bind(replica_id).bind(scope);
        }
        let row = query.fetch_optional(&self.pool).await?;
        row.as_ref().map(standby).transpose()
    }

    /// Takes the idle standby whose sandbox is `handle` on `provider` (the provider's pool chose
    /// the sandbox), in one statement: it is `claimed` by this call and no other.
    pub async fn claim_standby_by_handle(
        &self,
        provider: &str,
        handle: &str,
    ) -> Result<Option<Standby>> {
        let row = sqlx::query(&format!(
            "UPDATE standby_sandboxes SET state = 'claimed', claimed_ms = $1
             WHERE provider = $2 AND handle = $3 AND state = 'idle'
             RETURNING {COLUMNS}"
        ))
        .bind(now_ms())
        .bind(provider)
        .bind(handle)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(standby).transpose()
    }

    /// Hands a claimed standby its assignment (`env`, sealed with the operator's key) for the
    /// sandbox `sandbox_id`; `false` when it is no longer claimed (it died meanwhile).
    pub async fn assign_standby(
        &self,
        id: &str,
        sandbox_id: &str,
        env: &BTreeMap<String, String>,
    ) -> Result<bool> {
        let key = self.secrets.as_ref().ok_or_else(|| {
            Error::Invalid("warm pools need the operator's key to seal assignments".into())
        })?;
        let json = serde_json::to_string(env)
            .map_err(|e| Error::Internal(format!("encoding an assignment: {e}")))?;
        let sealed = key
            .seal(&json)
            .map_err(|e| Error::Internal(format!("sealing an assignment: {e}")))?;
        let update = "UPDATE standby_sandboxes SET state = 'assigned', assignment = $2, \
                      sandbox_id = $3 WHERE id = $1 AND state = 'claimed'";
        let assigned = match self.backend.standby_channel() {
            // One statement: the notification goes out when the assignment commits, and only
            // if it was made.
            Some(channel) => {
                let sql = format!(
                    "WITH done AS ({update} RETURNING id)
                     SELECT count(*) AS n FROM (SELECT pg_notify('{channel}', id) FROM done) w"
                );
                let n: i64 = sqlx::query_scalar(&sql)
                    .bind(id)
                    .bind(sealed)
                    .bind(sandbox_id)
                    .fetch_one(&self.pool)
                    .await?;
                n
            }
            None => {
                let done = sqlx::query(update)
                    .bind(id)
                    .bind(sealed)
                    .bind(sandbox_id)
                    .execute(&self.pool)
                    .await?;
                i64::try_from(done.rows_affected()).unwrap_or(i64::MAX)
            }
        };
        Ok(assigned == 1)
    }

    /// The assignment of standby `id`, if it is `assigned`: the same statement marks it
    /// `delivered` and clears the stored document, so it is delivered once.
    pub async fn take_assignment(&self, id: &str) -> Result<Option<BTreeMap<String, String>>> {
        // Read and cleared in one transaction: RETURNING would answer the cleared column.
        let mut tx = self.pool.begin().await?;
        let sealed: Option<Option<String>> = sqlx::query_scalar(
            "SELECT assignment FROM standby_sandboxes WHERE id = $1 AND state = 'assigned'",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(Some(sealed)) = sealed else {
            return Ok(None);
        };
        let done = sqlx::query(
            "UPDATE standby_sandboxes SET state = 'delivered', assignment = NULL
             WHERE id = $1 AND state = 'assigned'",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(None);
        }
        tx.commit().await?;
        let key = self.secrets.as_ref().ok_or_else(|| {
            Error::Internal("an assignment is stored but this server has no key to open it".into())
        })?;
        let json = key
            .open(&sealed)
            .map_err(|e| corrupt("standby assignment", e))?;
        serde_json::from_str(&json)
            .map(Some)
            .map_err(|e| corrupt("standby assignment", e))
    }

    /// Ends a standby that was not delivered (died, timed out, refused); `false` when it had
    /// been delivered or ended already.
    pub async fn end_standby(&self, id: &str, reason: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE standby_sandboxes SET state = 'dead', assignment = NULL, reason = $2
             WHERE id = $1 AND state NOT IN ('delivered', 'dead')",
        )
        .bind(id)
        .bind(reason)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The standbys `replica_id` spawned on `provider` that are not delivered or dead.
    pub async fn live_standbys_of_replica(
        &self,
        replica_id: &str,
        provider: &str,
    ) -> Result<Vec<Standby>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM standby_sandboxes
             WHERE replica_id = $1 AND provider = $2
               AND state IN ('starting', 'idle', 'claimed', 'assigned')
             ORDER BY created_ms, id"
        ))
        .bind(replica_id)
        .bind(provider)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(standby).collect()
    }

    /// The ids and handles of every standby not yet delivered or dead (reconcile keeps them).
    pub async fn live_standby_keys(&self) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT id, handle FROM standby_sandboxes
             WHERE state IN ('starting', 'idle', 'claimed', 'assigned')",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut keys = Vec::with_capacity(rows.len() * 2);
        for row in rows {
            keys.push(row.try_get("id")?);
            if let Some(handle) = row.try_get::<Option<String>, _>("handle")? {
                keys.push(handle);
            }
        }
        Ok(keys)
    }
}
