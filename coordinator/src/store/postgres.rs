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
        ])
    }

    fn max_connections(&self) -> u32 {
        8
    }

    fn connection_setup(&self) -> &'static [&'static str] {
        &[]
    }

    fn next_cursor_sql(&self) -> &'static str {
        "nextval('events_cursor')"
    }

    fn claim_lock_clause(&self) -> &'static str {
        "FOR UPDATE OF t SKIP LOCKED"
    }

    fn claim_begin(&self) -> Option<&'static str> {
        None
    }
}
