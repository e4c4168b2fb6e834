//! The PostgreSQL backend, for several coordinator replicas on one database.

use sqlx::migrate::Migrator;

use super::Backend;

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
}
