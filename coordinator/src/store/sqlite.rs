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
        ]
    }

    fn next_cursor_sql(&self) -> &'static str {
        "(SELECT COALESCE(MAX(cursor), 0) + 1 FROM events)"
    }

    fn claim_lock_clause(&self) -> &'static str {
        ""
    }

    fn claim_begin(&self) -> Option<&'static str> {
        Some("BEGIN IMMEDIATE")
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
