//! The PostgreSQL backend, for several coordinator replicas on one database, and the listener
//! that hears the other replicas' notices.

use sqlx::migrate::Migrator;
use sqlx::postgres::PgListener;

use super::Backend;
use crate::error::Result;
use crate::hub::Notice;

/// The notification channel of omoi's notices.
pub const CHANNEL: &str = "omoi_stream";
/// The notification channel of assigned standbys (the payload: the standby's id), apart from
/// [`CHANNEL`] so a replica of an earlier release, which listens there only, never hears it.
pub const STANDBY_CHANNEL: &str = "omoi_standby";

/// A PostgreSQL server.
#[derive(Debug, Clone, Copy)]
pub struct Postgres;

impl Backend for Postgres {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn migrator(&self) -> Migrator {
        super::embedded_migrator(&[
            (
                1,
                "init",
                include_str!("../../migrations/postgres/0001_init.sql"),
            ),
            (
                2,
                "tasks",
                include_str!("../../migrations/postgres/0002_tasks.sql"),
            ),
            (
                3,
                "task claims",
                include_str!("../../migrations/postgres/0003_task_claims.sql"),
            ),
            (
                4,
                "hardening",
                include_str!("../../migrations/postgres/0004_hardening.sql"),
            ),
            (
                5,
                "replicas",
                include_str!("../../migrations/postgres/0005_replicas.sql"),
            ),
            (
                6,
                "dashboard sessions",
                include_str!("../../migrations/postgres/0006_dashboard_sessions.sql"),
            ),
            (
                7,
                "warm pools",
                include_str!("../../migrations/postgres/0007_warm_pools.sql"),
            ),
            (
                8,
                "project image pull secrets",
                include_str!("../../migrations/postgres/0008_project_pull_secrets.sql"),
            ),
            (
                9,
                "replica presence",
                include_str!("../../migrations/postgres/0009_replica_presence.sql"),
            ),
            (
                10,
                "standby handle",
                include_str!("../../migrations/postgres/0010_standby_handle.sql"),
            ),
        ])
    }

    fn max_connections(&self) -> u32 {
        8
    }

    fn connection_setup(&self) -> &'static [&'static str] {
        &[]
    }

    fn release_sql(&self) -> &'static str {
        // PostgreSQL evaluates volatile output expressions after ORDER BY (documented under
        // SELECT), and does not flatten a subquery whose output calls one: the sequence hands
        // out cursors in seq order.
        "UPDATE events SET cursor = r.cursor
         FROM (SELECT id, nextval('events_cursor') AS cursor FROM events
               WHERE sandbox_id = $1 AND seq BETWEEN $2 AND $3 ORDER BY seq) AS r
         WHERE events.id = r.id
         RETURNING events.seq, events.cursor"
    }

    fn allocate_cursors_sql(&self) -> &'static str {
        "SELECT nextval('events_cursor') AS cursor FROM generate_series(1, $1)"
    }

    fn numbered_parameters(&self) -> bool {
        true
    }

    fn claim_lock_clause(&self) -> &'static str {
        "FOR UPDATE OF t SKIP LOCKED"
    }

    fn claim_begin(&self) -> &'static str {
        "BEGIN"
    }

    fn claim_serialize(&self) -> Option<&'static str> {
        // Held until the claim commits; the claim's statement starts after it is granted, so
        // under READ COMMITTED it sees every claim committed before. The key is omoi's own.
        Some("SELECT pg_advisory_xact_lock(7006001)")
    }

    fn stream_lock_sql(&self) -> Option<&'static str> {
        // Two 32-bit keys: a key space apart from the claims' 64-bit one.
        Some("SELECT pg_advisory_xact_lock(7006002, hashtext($1))")
    }

    fn notify_sql(&self) -> Option<&'static str> {
        Some("SELECT pg_notify('omoi_stream', $1)")
    }

    fn standby_channel(&self) -> Option<&'static str> {
        Some(STANDBY_CHANNEL)
    }
}

/// What the listener heard.
#[derive(Debug, Clone, PartialEq)]
pub enum Heard {
    Notice(Notice),
    /// A standby's assignment was stored (its id).
    Standby(String),
    /// The connection was lost and is opened again by the next `recv`: notices sent meanwhile
    /// are missed.
    Gap,
}

/// A dedicated connection listening on [`CHANNEL`] and [`STANDBY_CHANNEL`] (sqlx's listener needs the PostgreSQL
/// driver itself, not `Any`).
#[derive(Debug)]
pub struct Listener(PgListener);

impl Listener {
    /// Connects to `url` and listens.
    pub async fn connect(url: &str) -> Result<Listener> {
        let mut listener = PgListener::connect(url).await?;
        listener.listen_all([CHANNEL, STANDBY_CHANNEL]).await?;
        Ok(Listener(listener))
    }

    /// The next notice, or a gap. A payload that is not a notice is skipped (and logged).
    pub async fn recv(&mut self) -> Result<Heard> {
        loop {
            let Some(notification) = self.0.try_recv().await? else {
                return Ok(Heard::Gap);
            };
            if notification.channel() == STANDBY_CHANNEL {
                return Ok(Heard::Standby(notification.payload().to_string()));
            }
            match parse_notice(notification.payload()) {
                Some(notice) => return Ok(Heard::Notice(notice)),
                None => tracing::warn!(
                    payload = notification.payload(),
                    "ignoring a notification that is not a notice"
                ),
            }
        }
    }
}

/// A notice from a notification payload; `None` when it is not one.
pub fn parse_notice(payload: &str) -> Option<Notice> {
    serde_json::from_str(payload).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn notices_travel_as_small_json_and_anything_else_is_refused() {
        let notice = Notice::Events {
            spec_id: "s-1".into(),
            cursor: 42,
        };
        let payload = serde_json::to_string(&notice).unwrap();
        assert_eq!(payload, r#"{"kind":"events","spec_id":"s-1","cursor":42}"#);
        assert_eq!(parse_notice(&payload), Some(notice));
        assert_eq!(
            parse_notice(r#"{"kind":"status","spec_id":"s-1","replica":"r-a"}"#),
            Some(Notice::Status {
                spec_id: "s-1".into(),
                replica: "r-a".into()
            })
        );
        assert_eq!(parse_notice("s-1 42"), None);
        assert_eq!(parse_notice(r#"{"kind":"events","spec_id":"s-1"}"#), None);
        assert_eq!(parse_notice(r#"{"kind":"deleted","spec_id":"s-1"}"#), None);
    }
}
