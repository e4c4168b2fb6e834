//! Storage: one [`Store`] over SQLite or PostgreSQL, chosen by the database URL.
//!
//! The SQL is shared (sqlx's `Any` driver, `$n` placeholders, portable statements); what differs
//! between the databases — connection setup, migrations, how a stream cursor is allocated — sits
//! behind the small [`Backend`] trait, implemented in [`sqlite`] and [`postgres`].

mod accounts;
mod batch;
mod bridge;
mod events;
mod overview;
pub mod postgres;
mod presence;
mod review;
mod sandboxes;
mod sealing;
mod sessions;
mod specs;
pub mod sqlite;
mod standby;
#[cfg(test)]
mod statuses;
mod tasks;

use std::borrow::Cow;
use std::sync::Arc;

use chrono::Utc;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyConnection, AnyPool, Connection, Executor, Row};

use crate::error::{Error, Result, corrupt};
use crate::hub::Notice;
use crate::secret::SecretKey;

pub use accounts::{NewProject, Revoked, TokenRecord};
pub use events::{IngestOutcome, TOKEN_GRACE_MS};
pub use overview::TALLIED_KINDS;
pub use presence::{Presence, Replica};
pub use review::ReviewedOutput;
pub use sandboxes::NewSandbox;
pub use sealing::ClearSecrets;
pub use sessions::SessionKind;
pub use specs::ExecutionClaim;
pub use standby::{NewStandby, Reach, Standby, StandbyState};
pub use tasks::{AttemptEnd, ClaimLimits, ClaimedTask, PublishCandidate, TaskPolicy};

/// What differs between the supported databases.
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// `sqlite` or `postgres`.
    fn name(&self) -> &'static str;
    /// The migrations of this database.
    fn migrator(&self) -> Migrator;
    /// How many pooled connections to keep.
    fn max_connections(&self) -> u32;
    /// Statements run on every new connection.
    fn connection_setup(&self) -> &'static [&'static str];
    /// The statement that releases the stored events with seqs `$2..=$3` of sandbox `$1` into
    /// the stream: it gives each a cursor, increasing with the seq, and answers `seq, cursor`.
    fn release_sql(&self) -> &'static str;
    /// The statement that hands out `$1` new stream cursors (in any order), as rows of `cursor`.
    fn allocate_cursors_sql(&self) -> &'static str;
    /// Whether statements use numbered `$n` parameters; else anonymous `?` in order (SQLite finds
    /// a numbered parameter by a linear search, so binding n of them costs O(n²)).
    fn numbered_parameters(&self) -> bool;
    /// The row-locking clause of the task claim's inner `SELECT … FROM tasks t` (PostgreSQL:
    /// `FOR UPDATE OF t SKIP LOCKED`, so concurrent claimers pass over each other's rows).
    fn claim_lock_clause(&self) -> &'static str;
    /// The statement that opens the claim's transaction (SQLite: `BEGIN IMMEDIATE`, the write
    /// lock up front).
    fn claim_begin(&self) -> &'static str;
    /// A statement run first in the claim's transaction that makes claims of several
    /// coordinators take turns (PostgreSQL: a transaction-scoped advisory lock), so the limits
    /// each claim reads count every task claimed before it.
    fn claim_serialize(&self) -> Option<&'static str>;
    /// A statement run first in an ingest's transaction that makes the ingests of one stream
    /// (`$1`, the spec id) take turns across coordinators (PostgreSQL: a transaction-scoped
    /// advisory lock), so a stream's cursors commit in increasing order.
    fn stream_lock_sql(&self) -> Option<&'static str>;
    /// The statement that tells the other coordinators a [`Notice`] (`$1`, its JSON) when the
    /// transaction it runs in commits (PostgreSQL: `pg_notify`); `None` for a single coordinator.
    fn notify_sql(&self) -> Option<&'static str>;
    /// The notification channel on which an assigned standby's id is sent when the assignment
    /// commits, so a poll waiting on any coordinator wakes at once (PostgreSQL); `None` for a
    /// single coordinator.
    fn standby_channel(&self) -> Option<&'static str>;
}

/// The coordinator's database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Arc<dyn Backend>,
    /// The key project secrets are sealed with; without one, a project with secrets is refused.
    secrets: Option<Arc<SecretKey>>,
    /// The database URL, kept to open the notification listener (PostgreSQL only).
    listen_url: Option<String>,
}

impl Store {
    /// Connects to `url` (`sqlite://…` or `postgres://…`), creating a SQLite file when missing,
    /// and runs the migrations.
    pub async fn open(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let (backend, url, listen_url): (Arc<dyn Backend>, String, _) =
            if url.starts_with("sqlite:") {
                (Arc::new(sqlite::Sqlite), sqlite::connect_url(url), None)
            } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
                (
                    Arc::new(postgres::Postgres),
                    url.to_string(),
                    Some(url.to_string()),
                )
            } else {
                return Err(Error::Invalid(format!(
                    "unsupported database URL {url:?}: expected sqlite://PATH or postgres://…"
                )));
            };
        let setup = backend.connection_setup();
        // One connection first, so a database that cannot be opened (a corrupt file, a refused
        // login) fails at once with its cause instead of the pool's retries and a timeout.
        let mut first = AnyConnection::connect(&url).await?;
        for statement in setup {
            first.execute(*statement).await?;
        }
        first.close().await?;
        let pool = AnyPoolOptions::new()
            .max_connections(backend.max_connections())
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    for statement in setup {
                        conn.execute(*statement).await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        // On PostgreSQL sqlx's migrator holds a session advisory lock while it migrates, so
        // replicas starting together migrate once (tested in the replicas suite).
        backend.migrator().run(&pool).await?;
        Ok(Store {
            pool,
            backend,
            secrets: None,
            listen_url,
        })
    }

    /// This store, sealing and opening project secrets with `key`.
    pub fn with_secret_key(mut self, key: SecretKey) -> Store {
        self.secrets = Some(Arc::new(key));
        self
    }

    /// Whether this store has a key for project secrets.
    pub fn has_secret_key(&self) -> bool {
        self.secrets.is_some()
    }

    /// Tells the other coordinators `notice` (nothing on SQLite, where there are none).
    pub async fn notify(&self, notice: &Notice) -> Result<()> {
        if let Some(sql) = self.backend.notify_sql() {
            sqlx::query(sql)
                .bind(to_json(notice)?)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// A listener for the other coordinators' notices, on a connection of its own; `None` on
    /// SQLite.
    pub async fn listener(&self) -> Result<Option<postgres::Listener>> {
        match &self.listen_url {
            Some(url) => Ok(Some(postgres::Listener::connect(url).await?)),
            None => Ok(None),
        }
    }

    /// `sqlite` or `postgres`.
    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

/// A migrator over migrations embedded in the binary.
fn embedded_migrator(migrations: &[(i64, &'static str, &'static str)]) -> Migrator {
    Migrator {
        migrations: Cow::Owned(
            migrations
                .iter()
                .map(|(version, description, sql)| {
                    Migration::new(
                        *version,
                        Cow::Borrowed(*description),
                        MigrationType::Simple,
                        Cow::Borrowed(*sql),
                        false,
                    )
                })
                .collect(),
        ),
        // Rolling upgrade: a replica of the previous release starts beside one that applied a
        // newer (additive) migration, so migrations it does not know are not an error.
        ignore_missing: true,
        ..Migrator::DEFAULT
    }
}

/// Now, in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// A fresh random id.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A non-negative count from the database as `u32` (negative or huge values are corrupt).
fn to_u32(value: i64, what: &str) -> Result<u32> {
    u32::try_from(value).map_err(|_| corrupt(what, format!("{value} is out of range")))
}

/// A non-negative number from the database as `u64`.
fn to_u64(value: i64, what: &str) -> Result<u64> {
    u64::try_from(value).map_err(|_| corrupt(what, format!("{value} is negative")))
}

/// A `u64` for the database (values past `i64::MAX` are refused).
fn to_i64(value: u64, what: &str) -> Result<i64> {
    i64::try_from(value).map_err(|_| Error::Invalid(format!("{what} {value} is too large")))
}

/// Reads a text column and parses it.
fn parse_column<T>(row: &AnyRow, column: &str) -> Result<T>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    let text: String = row.try_get(column)?;
    text.parse().map_err(|e| corrupt(column, e))
}

/// Reads a nullable text column and parses it.
fn parse_optional_column<T>(row: &AnyRow, column: &str) -> Result<Option<T>>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    let text: Option<String> = row.try_get(column)?;
    text.map(|t| t.parse().map_err(|e| corrupt(column, e)))
        .transpose()
}

/// Reads a nullable JSON text column.
fn json_optional_column<T: serde::de::DeserializeOwned>(
    row: &AnyRow,
    column: &str,
) -> Result<Option<T>> {
    let text: Option<String> = row.try_get(column)?;
    text.map(|t| serde_json::from_str(&t).map_err(|e| corrupt(column, e)))
        .transpose()
}

/// Serializes a value for a JSON text column.
fn to_json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::Internal(format!("serialize: {e}")))
}
