//! A check of the status names in the store's SQL: the statuses of specs, phases, tasks and
//! sandboxes are bound from the model's enums (`SpecStatus::Running.as_str()`), never written as
//! literals; a literal that crept in fails here, and one that does not even parse as its table's
//! status (a typo, a renamed variant) says so.

use std::path::Path;
use std::str::FromStr;

use crate::model::{PhaseStatus, SandboxStatus, SpecStatus, TaskStatus};

/// Whether a name parses as one table's status.
type Parses = fn(&str) -> bool;

/// The tables with a status column, whether a name parses as that table's status, and whether
/// the SQL may name it as a literal (only tickets, whose two states have no enum).
const TABLES: [(&str, Parses, bool); 5] = [
    ("specs", |s| SpecStatus::from_str(s).is_ok(), false),
    ("tasks", |s| TaskStatus::from_str(s).is_ok(), false),
    ("sandboxes", |s| SandboxStatus::from_str(s).is_ok(), false),
    ("spec_phases", |s| PhaseStatus::from_str(s).is_ok(), false),
    // A ticket has no enum of its own: it is open until every task of its spec completed.
    ("tickets", |s| matches!(s, "open" | "done"), true),
];

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The table an alias names in `sql` (`FROM tasks t`, `JOIN sandboxes b`).
fn table_of_alias<'a>(sql: &str, alias: &str) -> Option<&'a str> {
    TABLES.iter().map(|(table, ..)| *table).find(|table| {
        sql.match_indices(table).any(|(at, _)| {
            let before = sql[..at].chars().next_back();
            let after = &sql[at + table.len()..];
            let rest = after.trim_start();
            before.is_none_or(|c| !is_ident(c))
                && after.starts_with(char::is_whitespace)
                && rest.starts_with(alias)
                && !rest[alias.len()..].starts_with(is_ident)
        })
    })
}

/// The table an unqualified column at `at` belongs to: the last `UPDATE`, `FROM` or `INTO` table
/// before it.
fn table_before<'a>(sql: &str, at: usize) -> Option<&'a str> {
    let head = &sql[..at];
    ["UPDATE ", "FROM ", "INTO "]
        .iter()
        .filter_map(|keyword| head.rfind(keyword).map(|k| k + keyword.len()))
        .max()
        .and_then(|start| {
            let name: String = head[start..].chars().take_while(|c| is_ident(*c)).collect();
            TABLES
                .iter()
                .map(|(table, ..)| *table)
                .find(|table| *table == name)
        })
}

/// The quoted names right after `status` when what follows is `= 'x'`, `<> 'x'`,
/// `IN ('x', 'y')` or `NOT IN (…)`.
fn literals_after(rest: &str) -> Vec<String> {
    let quoted = |item: &str| {
        item.trim()
            .strip_prefix('\'')
            .and_then(|i| i.split_once('\''))
            .map(|(name, _)| name.to_string())
    };
    let rest = rest.trim_start();
    if let Some(value) = rest.strip_prefix("<>").or_else(|| rest.strip_prefix('=')) {
        // `= $2`, `= excluded.status`: not a literal.
        return quoted(value).into_iter().collect();
    }
    let Some(list) = rest
        .strip_prefix("NOT IN")
        .or_else(|| rest.strip_prefix("IN"))
        .and_then(|r| r.trim_start().strip_prefix('('))
    else {
        return Vec::new();
    };
    list.split(')')
        .next()
        .unwrap_or_default()
        .split(',')
        .map_while(quoted)
        .collect()
}

/// What is wrong with the status literals of one SQL statement.
fn faults(sql: &str) -> Vec<String> {
    let mut faults = Vec::new();
    for (at, _) in sql.match_indices("status") {
        let before = sql[..at].chars().next_back();
        if before.is_some_and(is_ident) || sql[at + 6..].starts_with(is_ident) {
            continue;
        }
        let names = literals_after(&sql[at + "status".len()..]);
        if names.is_empty() {
            continue;
        }
        let table = if before == Some('.') {
            let alias: String = sql[..at - 1]
                .chars()
                .rev()
                .take_while(|c| is_ident(*c))
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            table_of_alias(sql, &alias)
        } else {
            table_before(sql, at)
        };
        let Some(table) = table else {
            faults.push(format!("no table found for the status in {sql:?}"));
            continue;
        };
        let Some((_, parses, literal_ok)) = TABLES.iter().find(|(t, ..)| *t == table) else {
            continue;
        };
        for name in names {
            if !parses(&name) {
                faults.push(format!("{table}: {name:?} is not a status"));
            } else if !literal_ok {
                faults.push(format!(
                    "{table}: {name:?} is a literal; bind the enum's as_str()"
                ));
            }
        }
    }
    faults
}

/// The string literals of a Rust source that look like SQL.
fn sql_strings(source: &str) -> Vec<&str> {
    source
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| {
            ["SELECT", "UPDATE", "INSERT", "DELETE"]
                .iter()
                .any(|k| s.contains(k))
        })
        .collect()
}

#[test]
fn the_store_binds_every_status_it_names_in_sql() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store");
    let mut found = 0;
    let mut all = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().is_some_and(|n| n == "statuses.rs") {
            continue;
        }
        let source = std::fs::read_to_string(&path).unwrap();
        for sql in sql_strings(&source) {
            found += usize::from(sql.contains("status"));
            all.extend(
                faults(sql)
                    .into_iter()
                    .map(|f| format!("{}: {f}", path.display())),
            );
        }
    }
    assert!(
        found > 0,
        "no SQL naming a status found: the scan is broken"
    );
    assert_eq!(all, Vec::<String>::new());
}

#[test]
fn a_status_literal_is_found_and_one_that_does_not_parse_is_named() {
    let sql = "UPDATE tasks SET status = 'runing' WHERE id = $1 AND status IN ('ready', 'lost')
               AND NOT EXISTS (SELECT 1 FROM sandboxes b WHERE b.status = 'executing')";
    assert_eq!(
        faults(sql),
        vec![
            "tasks: \"runing\" is not a status".to_string(),
            "tasks: \"ready\" is a literal; bind the enum's as_str()".to_string(),
            "tasks: \"lost\" is not a status".to_string(),
            "sandboxes: \"executing\" is not a status".to_string(),
        ]
    );
    assert_eq!(
        faults("SELECT 1 FROM specs WHERE status = $2 AND status <> 'completed'"),
        vec!["specs: \"completed\" is a literal; bind the enum's as_str()".to_string()]
    );
    assert_eq!(
        faults("UPDATE tickets SET status = 'done' WHERE spec_id = $1 AND status IN ($2, $3)"),
        Vec::<String>::new()
    );
}
