//! A GitHub spec-kit feature folder (`specs/<NNN-name>/`): `spec.md` (user scenarios, functional
//! requirements `- **FR-001**: System MUST …`, key entities), `plan.md` (summary, technical
//! context, …) and `tasks.md` (`- [ ] T001 [P] [US1] Description in path/file.py`, in phases).
//!
//! Mapping: `FR-001` becomes `REQ-FR-001` (other ids stay as written); a requirement's nested
//! bullets are its acceptance criteria, and MUST in a text without SHALL reads as SHALL. Key
//! entities are the design's data models. spec-kit's plan names no components and its tasks name
//! no requirements: omoi reads (and writes) a `## Components` section in `plan.md` whose
//! components carry `_Requirements: FR-001_` lines, and requirement ids in a task's line or its
//! `Requirements:` bullet. `T001` becomes `TSK-001`; a task's dependencies are its `Depends on:
//! T001` bullet, else what the phase order and `[P]` marks give (`phases`); paths in the task line
//! are its files.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use omoi_protocol::artifact::{
    DataModel, DesignOutput, Priority, Requirement, RequirementKind, RequirementsOutput, SpecTask,
    TaskKind, TasksOutput,
};

use super::design_md::{self, Refs, whole};
use super::markdown::{Doc, item, labelled};
use super::phases::{self, Placed};
use super::tasklist::{details, entries, name_of, named, renamed, write_details};
use super::{Note, Spec, ids_in, positional_task_id, read_optional};
use crate::error::Result;

pub fn read(dir: &Path) -> Result<Spec> {
    let mut spec = Spec::default();
    let mut entities = Vec::new();
    let mut stories = HashMap::new();
    if let Some(text) = read_optional(dir, "spec.md")? {
        entities = read_spec(&text, &mut spec);
        stories = user_stories(&text);
    }
    if let Some(text) = read_optional(dir, "plan.md")? {
        let mut design = read_plan(&text);
        if design.data_models.is_empty() {
            design.data_models = entities;
        }
        if spec.title.is_empty() {
            spec.title = title_after(&text, "implementation plan");
        }
        spec.design = Some(design);
    }
    if let Some(text) = read_optional(dir, "tasks.md")? {
        spec.tasks = Some(read_tasks(&text, &stories, &mut spec.notes));
    }
    if spec.title.is_empty() {
        spec.title = dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
    }
    Ok(spec)
}

/// The text after `Heading:` in the first H1 that starts with `heading`.
fn title_after(text: &str, heading: &str) -> String {
    let doc = Doc::parse(text);
    doc.root()
        .find(heading)
        .and_then(|s| s.title().split_once(':').map(|(_, t)| t.trim().to_string()))
        .unwrap_or_default()
}

/// `FR-001` → `REQ-FR-001`; any other id as written.
fn requirement_id(written: &str) -> String {
    if written.starts_with("FR-") {
        format!("REQ-{written}")
    } else {
        written.to_string()
    }
}

/// `REQ-FR-001` → `FR-001`; any other id as it is.
fn written_id(id: &str) -> &str {
    id.strip_prefix("REQ-")
        .filter(|rest| rest.starts_with("FR-"))
        .unwrap_or(id)
}

/// The title, description and requirements of `spec.md`; returns its key entities.
fn read_spec(text: &str, spec: &mut Spec) -> Vec<DataModel> {
    spec.title = title_after(text, "feature specification");
    let lines: Vec<&str> = text.lines().collect();
    if let Some(at) = lines.iter().position(|l| labelled(l, "input").is_some()) {
        let mut input: Vec<&str> = vec![labelled(lines[at], "input").unwrap_or_default()];
        input.extend(lines[at + 1..].iter().take_while(|l| !l.trim().is_empty()));
        let joined = input.join("\n");
        let joined = joined.trim();
        let joined = labelled(joined, "user description").unwrap_or(joined);
        spec.description = joined.trim().trim_matches('"').trim().to_string();
    }
    let doc = Doc::parse(text);
    let root = doc.root();
    let mut requirements = Vec::new();
    if let Some(section) = root.find("functional requirements") {
        let own = section.own_lines();
        let mut current: Option<(usize, Requirement)> = None;
        for line in own {
            let Some(it) = item(line) else {
                continue;
            };
            if let Some((indent, r)) = current.as_mut()
                && it.indent > *indent
            {
                if let Some(v) = labelled(it.text, "title") {
                    r.title = v.to_string();
                } else if let Some(v) = labelled(it.text, "type") {
                    let subject = format!("spec.md: {}", r.id);
                    r.kind = named(v, &subject, "type", &mut spec.notes).unwrap_or(r.kind);
                } else if let Some(v) = labelled(it.text, "priority") {
                    let subject = format!("spec.md: {}", r.id);
                    r.priority =
                        named(v, &subject, "priority", &mut spec.notes).unwrap_or(r.priority);
                } else {
                    r.acceptance_criteria.push(it.text.to_string());
                }
                continue;
            }
            let Some((id, text)) = bold_label(it.text) else {
                continue;
            };
            if let Some((_, done)) = current.take() {
                requirements.push(done);
            }
            let id = requirement_id(id);
            if text.contains("NEEDS CLARIFICATION") {
                spec.notes.push(Note {
                    subject: format!("spec.md: {id}"),
                    message: "is marked [NEEDS CLARIFICATION]: settle it before building".into(),
                    blocking: false,
                });
            }
            current = Some((
                it.indent,
                Requirement {
                    title: derived_title(text),
                    text: shall_for_must(text),
                    id,
                    kind: RequirementKind::Functional,
                    priority: Priority::Medium,
                    acceptance_criteria: Vec::new(),
                },
            ));
        }
        if let Some((_, done)) = current {
            requirements.push(done);
        }
    }
    spec.requirements = Some(RequirementsOutput { requirements });
    root.find("key entities")
        .map(|section| {
            let mut models: Vec<DataModel> = Vec::new();
            for line in section.own_lines() {
                let Some(it) = item(line) else {
                    continue;
                };
                match (bold_label(it.text), models.last_mut()) {
                    (Some((name, description)), _) if it.indent < 2 => models.push(DataModel {
                        name: name.to_string(),
                        description: description.to_string(),
                        fields: Vec::new(),
                    }),
                    (_, Some(model)) => model.fields.push(it.text.to_string()),
                    (_, None) => {}
                }
            }
            models
        })
        .unwrap_or_default()
}

/// `**FR-001**: text` or `**FR-001:** text` → (`FR-001`, `text`).
fn bold_label(text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix("**")?;
    let end = rest.find("**")?;
    let label = rest[..end].trim_end_matches(':').trim();
    let after = rest[end + 2..].trim_start();
    let after = after.strip_prefix(':').unwrap_or(after).trim();
    (!label.is_empty()).then_some((label, after))
}

/// The first words of a requirement text, as its title.
fn derived_title(text: &str) -> String {
    let mut title = String::new();
    for word in text.split_whitespace() {
        if title.len() + word.len() > 60 {
            break;
        }
        if !title.is_empty() {
            title.push(' ');
        }
        title.push_str(word);
    }
    title.trim_end_matches(['.', ',', ';', ':']).to_string()
}

/// `System MUST x` → `System SHALL x` when the text has no SHALL of its own.
fn shall_for_must(text: &str) -> String {
    let has = |word: &str| {
        text.split(|c: char| !c.is_alphanumeric())
            .any(|w| w == word)
    };
    if has("SHALL") || has("shall") || has("Shall") {
        return text.to_string();
    }
    match text.find("MUST") {
        Some(at)
            if !text[at + 4..].starts_with(|c: char| c.is_alphanumeric())
                && !text[..at].ends_with(|c: char| c.is_alphanumeric()) =>
        {
            format!("{}SHALL{}", &text[..at], &text[at + 4..])
        }
        _ => text.to_string(),
    }
}

fn read_plan(text: &str) -> DesignOutput {
    let doc = Doc::parse(text);
    let root = doc.root();
    let refs = |found: &[String]| -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for f in found {
            let id = requirement_id(f);
            if !out.contains(&id) {
                out.push(id);
            }
        }
        out
    };
    let mut design = design_md::design(&root, "summary", &refs);
    if design.testing_strategy.is_empty() {
        // spec-kit's Technical Context names the testing tools.
        design.testing_strategy = whole(&root, "technical context")
            .lines()
            .find_map(|l| labelled(l, "testing"))
            .unwrap_or_default()
            .to_string();
    }
    design
}

/// A user story of `spec.md`: its priority and acceptance scenarios.
#[derive(Debug, Clone, PartialEq)]
struct Story {
    priority: Priority,
    scenarios: Vec<String>,
}

/// The user stories by tag (`US1`): `### User Story 1 - Title (Priority: P1)` and the numbered
/// items under `**Acceptance Scenarios**:`. P1 is high, P2 medium, P3 and later low.
fn user_stories(text: &str) -> HashMap<String, Story> {
    let doc = Doc::parse(text);
    let mut stories = HashMap::new();
    for section in doc.sections() {
        let title = section.title();
        let Some(rest) = title.strip_prefix("User Story ") else {
            continue;
        };
        let number: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if number.is_empty() {
            continue;
        }
        let priority = match title
            .rsplit_once("Priority: P")
            .map(|(_, p)| p.trim_end_matches(')'))
        {
            Some("1") => Priority::High,
            Some("2") => Priority::Medium,
            _ => Priority::Low,
        };
        let lines = section.own_lines();
        let scenarios = lines
            .iter()
            .skip_while(|l| labelled(l, "acceptance scenarios").is_none())
            .skip(1)
            .filter_map(|l| item(l))
            .map(|i| i.text.replace("**", ""))
            .collect();
        stories.insert(
            format!("US{number}"),
            Story {
                priority,
                scenarios,
            },
        );
    }
    stories
}

/// Words that open a task creating the files it names.
const CREATING: [&str; 9] = [
    "create",
    "add",
    "write",
    "scaffold",
    "initialize",
    "initialise",
    "generate",
    "new",
    "set",
];

fn read_tasks(text: &str, stories: &HashMap<String, Story>, notes: &mut Vec<Note>) -> TasksOutput {
    let lines: Vec<&str> = text.lines().collect();
    let headings = Doc::parse(text).heading_lines();
    let mut tasks = Vec::new();
    let mut placed: Vec<Placed> = Vec::new();
    let mut lines_of: Vec<usize> = Vec::new();
    for entry in entries(&lines) {
        let subject = format!("tasks.md: line {}", entry.line);
        let d = details(&entry.bullets, &subject, notes);
        let (first, rest) = entry
            .text
            .split_once(' ')
            .unwrap_or((entry.text.as_str(), ""));
        let (id, mut title) = match first.strip_prefix('T') {
            Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
                (format!("TSK-{digits}"), rest.trim())
            }
            _ => (positional_task_id(tasks.len() + 1), entry.text.as_str()),
        };
        // Markers: [P] (parallel), [US1] (user story).
        let mut story = None;
        let mut parallel = false;
        while let Some((marker, after)) = title.strip_prefix('[').and_then(|t| t.split_once(']')) {
            if let Some(s) = stories.get(marker) {
                story = Some(s);
            }
            parallel |= marker.eq_ignore_ascii_case("p");
            title = after.trim_start();
        }
        // Headings above the task (entries and headings are both in line order).
        let section = headings.partition_point(|&h| h + 1 < entry.line);
        placed.push(Placed {
            section,
            parallel,
            explicit: d.depends_on.is_some(),
        });
        lines_of.push(entry.line);
        let mut refs = d.requirements.clone();
        refs.extend(ids_in(title, "FR-"));
        refs.extend(ids_in(title, "REQ-"));
        let mut requirements: Vec<String> = Vec::new();
        for r in refs {
            let id = requirement_id(&r);
            if !requirements.contains(&id) {
                requirements.push(id);
            }
        }
        let creates = title
            .split_whitespace()
            .next()
            .is_some_and(|w| CREATING.contains(&w.to_lowercase().as_str()));
        let files = if d.files.is_empty() {
            paths_in(title)
                .into_iter()
                .map(|p| if creates { format!("new:{p}") } else { p })
                .collect()
        } else {
            d.files
        };
        let acceptance_criteria = match (d.done_when.is_empty(), story) {
            (false, _) => d.done_when,
            (true, Some(story)) if !story.scenarios.is_empty() => story.scenarios.clone(),
            (true, _) => d.description.clone(),
        };
        // spec-kit's task line is its description.
        let description = if d.description.is_empty() {
            title.to_string()
        } else {
            d.description.join("\n")
        };
        tasks.push(SpecTask {
            id,
            title: title.to_string(),
            description,
            kind: d.kind.unwrap_or(TaskKind::Implementation),
            priority: d
                .priority
                .or(story.map(|s| s.priority))
                .unwrap_or(Priority::Medium),
            estimate_hours: d.estimate.unwrap_or(0.0),
            files,
            acceptance_criteria,
            // Filled in by phase order below when no `Depends on:` line was written.
            depends_on: d
                .depends_on
                .unwrap_or_default()
                .iter()
                .map(|t| match t.strip_prefix('T') {
                    Some(digits) if digits.bytes().all(|b| b.is_ascii_digit()) => {
                        format!("TSK-{digits}")
                    }
                    _ => t.clone(),
                })
                .collect(),
            requirements,
        });
    }
    let inferred = phases::infer(&placed);
    for (t, deps) in inferred.deps.iter().enumerate() {
        if let Some(deps) = deps {
            let ids: Vec<String> = deps.iter().map(|&d| tasks[d].id.clone()).collect();
            tasks[t].depends_on = ids;
        }
    }
    for (first, count) in inferred.sequenced {
        notes.push(Note {
            subject: format!("tasks.md: line {}", lines_of[first]),
            message: format!(
                "{count} tasks marked [P] follow a step of many tasks: too many to make each \
                 depend on each, so they run in sequence instead; give them Depends on: lines to \
                 run them in parallel"
            ),
            blocking: false,
        });
    }
    TasksOutput { tasks }
}

/// The words of a task line that look like paths (`src/models/user.py`, `README.md`); a word
/// that starts with `/` is an API route (`POST /api/users`) or a path outside the repository,
/// not a file of it.
fn paths_in(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|w| {
            w.trim_matches(['`', ',', ';', '(', ')', '"'])
                .trim_end_matches('.')
        })
        .filter(|w| {
            let extension = w.rsplit_once('.').is_some_and(|(stem, ext)| {
                !stem.is_empty()
                    && (1..=5).contains(&ext.len())
                    && ext.bytes().all(|b| b.is_ascii_alphanumeric())
            });
            !w.starts_with('/')
                && ((w.contains('/') && !w.starts_with("http"))
                    || (extension
                        && w.bytes().any(|b| b.is_ascii_alphabetic())
                        && !w.contains("..")))
        })
        .map(str::to_string)
        .collect()
}

/// The three files of a spec-kit feature.
pub fn render(spec: &Spec) -> Vec<(&'static str, String)> {
    let refs = |ids: &[String]| -> Vec<String> {
        ids.iter().map(|id| written_id(id).to_string()).collect()
    };
    let mut files = vec![("spec.md", render_spec(spec))];
    if let Some(design) = &spec.design {
        files.push(("plan.md", render_plan(spec, design, &refs)));
    }
    if let Some(tasks) = &spec.tasks {
        files.push(("tasks.md", render_tasks(spec, tasks, &refs)));
    }
    files
}

fn render_spec(spec: &Spec) -> String {
    let mut out = format!("# Feature Specification: {}\n\n", spec.title);
    let _ = writeln!(out, "**Status**: Draft");
    let _ = writeln!(
        out,
        "**Input**: User description: \"{}\"",
        spec.description.trim()
    );
    out.push_str("\n## Requirements *(mandatory)*\n\n### Functional Requirements\n\n");
    for r in spec.requirements.iter().flat_map(|r| &r.requirements) {
        let _ = writeln!(out, "- **{}**: {}", written_id(&r.id), r.text);
        if r.title != derived_title(&r.text) {
            let _ = writeln!(out, "  - Title: {}", r.title);
        }
        if r.kind != RequirementKind::Functional {
            let _ = writeln!(out, "  - _Type: {}_", name_of(&r.kind));
        }
        if r.priority != Priority::Medium {
            let _ = writeln!(out, "  - _Priority: {}_", name_of(&r.priority));
        }
        for c in &r.acceptance_criteria {
            let _ = writeln!(out, "  - {c}");
        }
    }
    if let Some(design) = &spec.design
        && !design.data_models.is_empty()
    {
        out.push_str("\n### Key Entities\n\n");
        for m in &design.data_models {
            let _ = writeln!(out, "- **{}**: {}", m.name, m.description.trim());
            for f in &m.fields {
                let _ = writeln!(out, "  - {f}");
            }
        }
    }
    out
}

fn render_plan(spec: &Spec, design: &DesignOutput, refs: Refs<'_>) -> String {
    let mut out = format!("# Implementation Plan: {}\n\n", spec.title);
    let _ = writeln!(out, "## Summary\n\n{}", design.overview.trim());
    design_md::render_components(&mut out, "Components", &design.components, refs);
    let without_models = DesignOutput {
        data_models: Vec::new(),
        ..design.clone()
    };
    design_md::render_rest(&mut out, &without_models);
    out
}

/// The tasks in phases, one per wave of the dependency graph, `[P]` where spec-kit would put it;
/// every task keeps its `Depends on:` line, so the graph reads back as it was.
fn render_tasks(spec: &Spec, tasks: &TasksOutput, refs: Refs<'_>) -> String {
    let mut out = format!("# Tasks: {}\n", spec.title);
    let numbers: HashMap<&str, String> = tasks
        .tasks
        .iter()
        .map(|t| (t.id.as_str(), written_task(&t.id)))
        .collect();
    let written = phases::phases(&tasks.tasks);
    for (n, phase) in written.phases.iter().enumerate() {
        if n < written.ordered {
            let _ = writeln!(out, "\n## Phase {}", n + 1);
        } else {
            let _ = writeln!(
                out,
                "\n## Phase {}: Not ordered (a dependency cycle or a repeated id)",
                n + 1
            );
        }
        for &t in phase {
            let task = &tasks.tasks[t];
            let marker = if written.parallel[t] { " [P]" } else { "" };
            let _ = writeln!(
                out,
                "\n- [ ] {}{marker} {}",
                written_task(&task.id),
                task.title
            );
            let deps = renamed(&task.depends_on, &numbers);
            let reqs = refs(&task.requirements);
            let in_title: Vec<String> = ids_in(&task.title, "FR-");
            let reqs: Vec<String> = reqs.into_iter().filter(|r| !in_title.contains(r)).collect();
            write_details(&mut out, task, &deps, &reqs);
        }
    }
    out
}

/// `TSK-001` → `T001`; any other id as it is.
fn written_task(id: &str) -> String {
    match id.strip_prefix("TSK-") {
        Some(digits) if digits.bytes().all(|b| b.is_ascii_digit()) => format!("T{digits}"),
        _ => id.to_string(),
    }
}
