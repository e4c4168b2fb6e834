//! Kiro's spec folder (`.kiro/specs/<name>/`): `requirements.md` (an introduction, then
//! `### Requirement N` with a user story and numbered EARS acceptance criteria), `design.md`
//! (Overview, Architecture, Components and Interfaces, Data Models, Error Handling, Testing
//! Strategy) and `tasks.md` (a checkbox list, sub-tasks nested, `_Requirements: 1.1, 2.3_` lines).
//!
//! Mapping: requirement N becomes `REQ-SPEC-<NNN>` (or the id written in parentheses after its
//! title); its first acceptance criterion is the EARS text, the others its acceptance criteria. A
//! reference `2.3` names requirement 2. Kiro runs tasks in order, so a task without a `Depends on:`
//! line depends on the task before it; a task with sub-tasks is a group, and its sub-tasks are the
//! tasks (inheriting its requirements). Kiro has no estimates, types or priorities; omoi writes
//! them as detail lines Kiro shows as text.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use omoi_protocol::artifact::{
    DesignOutput, Priority, Requirement, RequirementKind, RequirementsOutput, SpecTask, TaskKind,
    TasksOutput,
};

use super::design_md::{self, Refs};
use super::markdown::{Doc, item, labelled};
use super::tasklist::{details, entries, name_of, named, renamed, write_details};
use super::{
    Note, Spec, positional_requirement_id, positional_task_id, read_optional, trailing_id,
};
use crate::error::Result;

/// The area of the ids given to Kiro requirements that carry none.
const AREA: &str = "SPEC";

pub fn read(dir: &Path) -> Result<Spec> {
    let mut spec = Spec {
        title: dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default(),
        ..Spec::default()
    };
    // Requirement number (as written) → id.
    let mut numbers: HashMap<String, String> = HashMap::new();
    if let Some(text) = read_optional(dir, "requirements.md")? {
        let (description, requirements) = read_requirements(&text, &mut numbers, &mut spec.notes);
        spec.description = description;
        spec.requirements = Some(requirements);
    }
    if let Some(text) = read_optional(dir, "design.md")? {
        spec.design = Some(read_design(&text, &numbers));
    }
    if let Some(text) = read_optional(dir, "tasks.md")? {
        spec.tasks = Some(read_tasks(&text, &numbers, &mut spec.notes));
    }
    Ok(spec)
}

/// The introduction and the requirements; fills `numbers` with each requirement's number.
fn read_requirements(
    text: &str,
    numbers: &mut HashMap<String, String>,
    notes: &mut Vec<Note>,
) -> (String, RequirementsOutput) {
    let doc = Doc::parse(text);
    let description = doc
        .root()
        .find("introduction")
        .map(|s| s.all_lines().join("\n").trim().to_string())
        .unwrap_or_default();
    let mut requirements = Vec::new();
    for section in doc.sections() {
        let Some(rest) = strip_word(section.title(), "requirement") else {
            continue;
        };
        let number: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if number.is_empty() {
            continue;
        }
        let after = rest[number.len()..].trim_start_matches([':', '.', ' ', '-', '—']);
        let (title, id) = trailing_id(after, "REQ-");
        let id = id.map_or_else(
            || positional_requirement_id(AREA, requirements.len() + 1),
            str::to_string,
        );
        numbers.insert(number.clone(), id.clone());
        let mut story = String::new();
        let mut kind = RequirementKind::Functional;
        let mut priority = Priority::Medium;
        let subject = format!("requirements.md: Requirement {number}");
        for line in section.own_lines() {
            if let Some(v) = labelled(line, "user story") {
                story = v.to_string();
            } else if let Some(v) = labelled(line, "type") {
                kind = named(v, &subject, "type", notes).unwrap_or(kind);
            } else if let Some(v) = labelled(line, "priority") {
                priority = named(v, &subject, "priority", notes).unwrap_or(priority);
            }
        }
        let criteria: Vec<String> = section
            .find("acceptance criteria")
            .map(|s| {
                s.own_lines()
                    .iter()
                    .filter_map(|l| item(l))
                    .filter(|i| i.indent < 4)
                    .map(|i| i.text.to_string())
                    .collect()
            })
            .unwrap_or_default();
        let (text, acceptance) = match criteria.split_first() {
            Some((first, rest)) => (first.clone(), rest.to_vec()),
            None => {
                notes.push(Note {
                    subject: subject.clone(),
                    message: "has no acceptance criteria: its EARS text is empty".into(),
                    blocking: false,
                });
                (String::new(), Vec::new())
            }
        };
        let title = if title.is_empty() {
            story.clone()
        } else {
            title.to_string()
        };
        requirements.push(Requirement {
            id,
            title,
            text,
            kind,
            priority,
            acceptance_criteria: acceptance,
        });
    }
    (description, RequirementsOutput { requirements })
}

/// `text` after `word` and a space (case-insensitive), if it starts with it.
fn strip_word<'a>(text: &'a str, word: &str) -> Option<&'a str> {
    let head = text.get(..word.len())?;
    if !head.eq_ignore_ascii_case(word) {
        return None;
    }
    text[word.len()..].strip_prefix(' ').map(str::trim)
}

/// The requirement ids a reference list names: `2.3` and `2` name requirement 2, an id stands
/// for itself.
fn requirement_refs(refs: &[String], numbers: &HashMap<String, String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in refs {
        let number = r.split('.').next().unwrap_or(r);
        let id = numbers.get(number).cloned().unwrap_or_else(|| r.clone());
        if !out.contains(&id) {
            out.push(id);
        }
    }
    out
}

fn read_design(text: &str, numbers: &HashMap<String, String>) -> DesignOutput {
    let doc = Doc::parse(text);
    let root = doc.root();
    let refs = |found: &[String]| requirement_refs(found, numbers);
    design_md::design(&root, "overview", &refs)
}

fn read_tasks(text: &str, numbers: &HashMap<String, String>, notes: &mut Vec<Note>) -> TasksOutput {
    let lines: Vec<&str> = text.lines().collect();
    let list = entries(&lines);
    // Kiro number → task id, and the open groups: indent, number and requirements.
    let mut task_numbers: HashMap<String, String> = HashMap::new();
    let mut groups: Vec<(usize, Option<String>, Vec<String>)> = Vec::new();
    let mut drafts: Vec<(SpecTask, Option<Vec<String>>)> = Vec::new();
    for (at, entry) in list.iter().enumerate() {
        let (number, title) = split_number(&entry.text);
        let inside = |group: &(usize, Option<String>, Vec<String>)| {
            group.0 < entry.indent
                || group.1.as_ref().zip(number).is_some_and(|(g, n)| {
                    n.strip_prefix(g.as_str())
                        .is_some_and(|r| r.starts_with('.'))
                })
        };
        groups.retain(inside);
        let subject = format!("tasks.md: line {}", entry.line);
        let d = details(&entry.bullets, &subject, notes);
        // Sub-tasks are indented, or numbered `2.1` under `2.` at the same indent.
        let numbered_children = number.is_some_and(|n| {
            list.get(at + 1).is_some_and(|next| {
                split_number(&next.text)
                    .0
                    .and_then(|m| m.strip_prefix(n))
                    .is_some_and(|r| r.starts_with('.'))
            })
        });
        if entry.has_children || numbered_children {
            groups.push((entry.indent, number.map(str::to_string), d.requirements));
            continue;
        }
        let (title, id) = trailing_id(title, "TSK-");
        let id = id.map_or_else(|| positional_task_id(drafts.len() + 1), str::to_string);
        if let Some(number) = number {
            task_numbers.insert(number.to_string(), id.clone());
        }
        let mut refs: Vec<String> = groups.iter().flat_map(|(_, _, r)| r.clone()).collect();
        refs.extend(d.requirements);
        let acceptance_criteria = if d.done_when.is_empty() {
            d.description.clone()
        } else {
            d.done_when
        };
        drafts.push((
            SpecTask {
                id,
                title: title.to_string(),
                description: if d.description.is_empty() {
                    title.to_string()
                } else {
                    d.description.join("\n")
                },
                kind: d.kind.unwrap_or(TaskKind::Implementation),
                priority: d.priority.unwrap_or(Priority::Medium),
                estimate_hours: d.estimate.unwrap_or(0.0),
                files: d.files,
                acceptance_criteria,
                depends_on: Vec::new(),
                requirements: requirement_refs(&refs, numbers),
            },
            d.depends_on,
        ));
    }
    let mut tasks = Vec::with_capacity(drafts.len());
    let mut previous: Option<String> = None;
    for (mut task, depends_on) in drafts {
        task.depends_on = match depends_on {
            Some(deps) => deps
                .iter()
                .map(|d| {
                    task_numbers
                        .get(d.trim_end_matches('.'))
                        .cloned()
                        .unwrap_or_else(|| d.clone())
                })
                .collect(),
            None => previous.iter().cloned().collect(),
        };
        previous = Some(task.id.clone());
        tasks.push(task);
    }
    TasksOutput { tasks }
}

/// `2.1 Title` → (`2.1`, `Title`); `1. Title` → (`1`, `Title`); no number → (None, text).
fn split_number(text: &str) -> (Option<&str>, &str) {
    let len = text
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii_digit() || c == '.'))
        .map_or(text.len(), |(i, _)| i);
    let number = text[..len].trim_end_matches('.');
    if number.is_empty() || !number.starts_with(|c: char| c.is_ascii_digit()) {
        return (None, text.trim());
    }
    (Some(number), text[len..].trim())
}

/// The three files of a Kiro spec.
pub fn render(spec: &Spec) -> Vec<(&'static str, String)> {
    let requirements = spec
        .requirements
        .as_ref()
        .map(|r| r.requirements.as_slice())
        .unwrap_or_default();
    // Requirement id → its number.
    let numbers: HashMap<&str, usize> = requirements
        .iter()
        .enumerate()
        .map(|(n, r)| (r.id.as_str(), n + 1))
        .collect();
    let refs = |ids: &[String]| -> Vec<String> {
        ids.iter()
            .map(|id| {
                numbers
                    .get(id.as_str())
                    .map_or_else(|| id.clone(), |n| n.to_string())
            })
            .collect()
    };
    let mut files = Vec::new();
    if spec.requirements.is_some() || !spec.description.is_empty() {
        files.push(("requirements.md", render_requirements(spec, requirements)));
    }
    if let Some(design) = &spec.design {
        files.push(("design.md", render_design(design, &refs)));
    }
    if let Some(tasks) = &spec.tasks {
        files.push(("tasks.md", render_tasks(tasks, &refs)));
    }
    files
}

fn render_requirements(spec: &Spec, requirements: &[Requirement]) -> String {
    let mut out = String::from("# Requirements Document\n\n## Introduction\n\n");
    if !spec.description.trim().is_empty() {
        let _ = writeln!(out, "{}\n", spec.description.trim());
    }
    out.push_str("## Requirements\n");
    for (n, r) in requirements.iter().enumerate() {
        let number = n + 1;
        let id = if r.id == positional_requirement_id(AREA, number) {
            String::new()
        } else {
            format!(" ({})", r.id)
        };
        let _ = writeln!(out, "\n### Requirement {number}: {}{id}\n", r.title);
        if r.kind != RequirementKind::Functional {
            let _ = writeln!(out, "**Type:** {}\n", name_of(&r.kind));
        }
        if r.priority != Priority::Medium {
            let _ = writeln!(out, "**Priority:** {}\n", name_of(&r.priority));
        }
        out.push_str("#### Acceptance Criteria\n\n");
        let _ = writeln!(out, "1. {}", r.text);
        for (m, c) in r.acceptance_criteria.iter().enumerate() {
            let _ = writeln!(out, "{}. {c}", m + 2);
        }
    }
    out
}

fn render_design(design: &DesignOutput, refs: Refs<'_>) -> String {
    let mut out = String::from("# Design Document\n\n");
    let _ = writeln!(out, "## Overview\n\n{}", design.overview.trim());
    design_md::render_components(
        &mut out,
        "Components and Interfaces",
        &design.components,
        refs,
    );
    design_md::render_rest(&mut out, design);
    out
}

fn render_tasks(tasks: &TasksOutput, refs: Refs<'_>) -> String {
    let mut out = String::from("# Implementation Plan\n");
    let numbers: HashMap<&str, String> = tasks
        .tasks
        .iter()
        .enumerate()
        .rev()
        .map(|(n, t)| (t.id.as_str(), (n + 1).to_string()))
        .collect();
    for (n, task) in tasks.tasks.iter().enumerate() {
        let number = n + 1;
        let id = if task.id == positional_task_id(number) {
            String::new()
        } else {
            format!(" ({})", task.id)
        };
        let _ = writeln!(out, "\n- [ ] {number}. {}{id}", task.title);
        let deps = renamed(&task.depends_on, &numbers);
        write_details(&mut out, task, &deps, &refs(&task.requirements));
    }
    out
}
