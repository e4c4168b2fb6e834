//! The SQLite backend: one file, WAL, one connection (SQLite serializes writers anyway).

use sqlx::migrate::Migrator;

use super::{Backend, embedded_migrator};

/// The embedded default database.
#[derive(Debug, Clone, Copy)]
pub struct Sqlite;

impl Backend for Sqlite {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn migrator(&self) -> Migrator {
        embedded_migrator(&[
            (
                1,
                "init",
                include_str!("../../migrations/sqlite/0001_init.sql"),
            ),
            (
                2,
                "tasks",
                include_str!("../../migrations/sqlite/0002_tasks.sql"),
            ),
            (
                3,
                "task claims",
                include_str!("../../migrations/sqlite/0003_task_claims.sql"),
            ),
            (
                4,
                "hardening",
                include_str!("../../migrations/sqlite/0004_hardening.sql"),
            ),
            (
                5,
                "replicas",
                include_str!("../../migrations/sqlite/0005_replicas.sql"),
            ),
            (
                6,
                "dashboard sessions",
                include_str!("../../migrations/sqlite/0006_dashboard_sessions.sql"),
            ),
            (
                7,
                "warm pools",
                include_str!("../../migrations/sqlite/0007_warm_pools.sql"),
            ),
            (
                8,
                "project image pull secrets",
                include_str!("../../migrations/sqlite/0008_project_pull_secrets.sql"),
            ),
            (
                9,
                "replica presence",
                include_str!("../../migrations/sqlite/0009_replica_presence.sql"),
            ),
            (
                10,
                "standby handle",
                include_str!("../../migrations/sqlite/0010_standby_handle.sql"),
            ),
        ])
    }

    fn max_connections(&self) -> u32 {
        1
    }

    fn connection_setup(&self) -> &'static [&'static str] {
        &[
            "PRAGMA journal_mode = WAL",
            "PRAGMA foreign_keys = ON",
            "PRAGMA busy_timeout = 10000",
            "PRAGMA synchronous = NORMAL",
            // Statement journals (a multi-row insert's undo) stay in memory, not in temp files.
            "PRAGMA temp_store = MEMORY",
        ]
    }

    fn release_sql(&self) -> &'static str {
        // One writer at a time: the cursors after the highest one so far. The scalar subquery
        // runs once, before any row changes.
        "UPDATE events SET cursor = seq - $2 + 1 + (SELECT COALESCE(MAX(cursor), 0) FROM events)
         WHERE sandbox_id = $1 AND seq BETWEEN $2 AND $3
         RETURNING seq, cursor"
    }

    fn allocate_cursors_sql(&self) -> &'static str {
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1)
         SELECT (SELECT COALESCE(MAX(cursor), 0) FROM events) + i AS cursor FROM n"
    }

    fn numbered_parameters(&self) -> bool {
        false
    }

    fn claim_lock_clause(&self) -> &'static str {
        ""
    }

    fn claim_begin(&self) -> &'static str {
        "BEGIN IMMEDIATE"
    }

    fn claim_serialize(&self) -> Option<&'static str> {
        // BEGIN IMMEDIATE already makes one writer at a time.
        None
    }

    fn stream_lock_sql(&self) -> Option<&'static str> {
        // One writer at a time already.
        None
    }

    fn notify_sql(&self) -> Option<&'static str> {
        None
    }

    fn standby_channel(&self) -> Option<&'static str> {
        None
    }
}

/// The URL to connect with: the file is created when missing.
pub fn connect_url(url: &str) -> String {
    if url.contains(":memory:") || url.contains("mode=") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_url_creates_the_file_unless_told_otherwise() {
        assert_eq!(connect_url("sqlite://omoi.db"), "sqlite://omoi.db?mode=rwc");
        assert_eq!(
            connect_url("sqlite://omoi.db?cache=shared"),
            "sqlite://omoi.db?cache=shared&mode=rwc"
        );
        assert_eq!(
            connect_url("sqlite://x.db?mode=ro"),
            "sqlite://x.db?mode=ro"
        );
        assert_eq!(connect_url("sqlite::memory:"), "sqlite::memory:");
    }
}
