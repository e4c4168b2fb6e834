//! Checkbox task lists as Kiro and spec-kit write them, and the detail bullets under a task that
//! both readers and writers share: `Done when:`, `Files:`, `Depends on:`, `_Estimate: 4h_`,
//! `_Type: test_`, `_Priority: high_`, `_Requirements: 1.1, 2.3_`. Any other bullet is a line of
//! the task's description.

use std::collections::HashMap;
use std::fmt::Write as _;

use omoi_protocol::artifact::{Priority, SpecTask, TaskKind};
use serde::de::DeserializeOwned;

use super::Note;
use super::markdown::{item, labelled, values};

/// One checkbox item and the lines under it (up to the next checkbox item).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    pub(crate) indent: usize,
    pub(crate) line: usize,
    pub(crate) text: String,
    /// The texts of the plain list items under it.
    pub(crate) bullets: Vec<String>,
    /// Whether checkbox items nested under it follow (it is a group, not a task).
    pub(crate) has_children: bool,
}

/// The checkbox items of `lines`, with their bullets, in order.
pub(crate) fn entries(lines: &[&str]) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        let Some(it) = item(line) else {
            continue;
        };
        match it.checkbox {
            Some(_) => {
                out.push(Entry {
                    indent: it.indent,
                    line: n + 1,
                    text: it.text.to_string(),
                    bullets: Vec::new(),
                    has_children: false,
                });
            }
            None => {
                if let Some(last) = out.last_mut()
                    && it.indent > last.indent
                {
                    last.bullets.push(it.text.to_string());
                }
            }
        }
    }
    // A checkbox item followed by a more indented one is a group of sub-tasks.
    for i in 1..out.len() {
        if out[i].indent > out[i - 1].indent {
            out[i - 1].has_children = true;
        }
    }
    out
}

/// What the detail bullets of a task say.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Details {
    pub(crate) description: Vec<String>,
    pub(crate) done_when: Vec<String>,
    pub(crate) files: Vec<String>,
    /// `None` when no `Depends on:` line was written.
    pub(crate) depends_on: Option<Vec<String>>,
    pub(crate) estimate: Option<f64>,
    pub(crate) kind: Option<TaskKind>,
    pub(crate) priority: Option<Priority>,
    /// The references as written (`1.1`, `FR-002`, `REQ-AUTH-001`).
    pub(crate) requirements: Vec<String>,
}

/// Reads the detail bullets; a label whose value cannot be read is noted against `subject`.
pub(crate) fn details(bullets: &[String], subject: &str, notes: &mut Vec<Note>) -> Details {
    let mut d = Details::default();
    for bullet in bullets {
        if let Some(v) = labelled(bullet, "done when") {
            d.done_when.push(v.to_string());
        } else if let Some(v) = labelled(bullet, "files") {
            d.files.extend(values(v));
        } else if let Some(v) = labelled(bullet, "depends on") {
            d.depends_on.get_or_insert_with(Vec::new).extend(values(v));
        } else if let Some(v) = labelled(bullet, "estimate") {
            match v.trim_end_matches(['h', 'H']).trim().parse::<f64>() {
                Ok(hours) => d.estimate = Some(hours),
                Err(_) => notes.push(Note {
                    subject: subject.to_string(),
                    message: format!("estimate {v:?} is not a number of hours (e.g. 4h)"),
                    blocking: false,
                }),
            }
        } else if let Some(v) = labelled(bullet, "type") {
            d.kind = named(v, subject, "type", notes);
        } else if let Some(v) = labelled(bullet, "priority") {
            d.priority = named(v, subject, "priority", notes);
        } else if let Some(v) = labelled(bullet, "requirements") {
            d.requirements.extend(values(v));
        } else {
            d.description.push(bullet.clone());
        }
    }
    d
}

/// A serde enum value from its name (`non_functional`, `high`), or a note.
pub(crate) fn named<T: DeserializeOwned>(
    value: &str,
    subject: &str,
    what: &str,
    notes: &mut Vec<Note>,
) -> Option<T> {
    let name = value.trim().to_lowercase().replace([' ', '-'], "_");
    match serde_json::from_value(serde_json::Value::String(name)) {
        Ok(v) => Some(v),
        Err(_) => {
            notes.push(Note {
                subject: subject.to_string(),
                message: format!("{what} {value:?} is not one omoi knows; it was left out"),
                blocking: false,
            });
            None
        }
    }
}

/// Task ids as a format writes them (`names`: id → Kiro number or spec-kit `T001`); an id not in
/// `names` (a dependency on no task) is written as it is.
pub(crate) fn renamed(ids: &[String], names: &HashMap<&str, String>) -> Vec<String> {
    ids.iter()
        .map(|id| {
            names
                .get(id.as_str())
                .cloned()
                .unwrap_or_else(|| id.clone())
        })
        .collect()
}

/// The serde name of an enum value (`non_functional`), for writing.
pub(crate) fn name_of<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Writes a task's detail bullets: description lines, `Done when:`, `Files:`,
/// `Depends on:` (always, `none` when empty), estimate, type and priority when not the default,
/// and requirements.
pub(crate) fn write_details(
    out: &mut String,
    task: &SpecTask,
    depends_on: &[String],
    requirements: &[String],
) {
    let pad = "  ";
    // A description that only repeats the title is not written: readers take the title for it.
    let description = if task.description == task.title {
        ""
    } else {
        task.description.as_str()
    };
    for line in description.lines().filter(|l| !l.trim().is_empty()) {
        let _ = writeln!(out, "{pad}- {}", line.trim());
    }
    for criterion in &task.acceptance_criteria {
        let _ = writeln!(out, "{pad}- Done when: {criterion}");
    }
    if !task.files.is_empty() {
        let files: Vec<String> = task.files.iter().map(|f| format!("`{f}`")).collect();
        let _ = writeln!(out, "{pad}- Files: {}", files.join(", "));
    }
    let deps = if depends_on.is_empty() {
        "none".to_string()
    } else {
        depends_on.join(", ")
    };
    let _ = writeln!(out, "{pad}- Depends on: {deps}");
    let _ = writeln!(out, "{pad}- _Estimate: {}h_", task.estimate_hours);
    if task.kind != TaskKind::Implementation {
        let _ = writeln!(out, "{pad}- _Type: {}_", name_of(&task.kind));
    }
    if task.priority != Priority::Medium {
        let _ = writeln!(out, "{pad}- _Priority: {}_", name_of(&task.priority));
    }
    if !requirements.is_empty() {
        let _ = writeln!(out, "{pad}- _Requirements: {}_", requirements.join(", "));
    }
}
