//! omoi's own format: one JSON file per phase output (`explore.json`, `requirements.json`,
//! `design.json`, `tasks.json`) and `spec.json`, a phase context with the title and description
//! (and any outputs not in a file of their own; the worker's `.omoi/spec.json` reads as one).
//! Fields the types do not know are noted by their path, so a misspelt `depends-on` is not lost
//! in silence.

use std::path::Path;

use omoi_protocol::context::PhaseContext;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_json::error::Category;

use super::{Note, Spec, read_optional};
use crate::error::{Error, Result};

pub fn read(dir: &Path) -> Result<Spec> {
    let mut spec = Spec::default();
    if let Some(ctx) = file::<PhaseContext>(dir, "spec.json", "a phase context", &mut spec.notes)? {
        spec.title = ctx.title;
        spec.description = ctx.description;
        spec.explore = ctx.explore;
        spec.requirements = ctx.requirements;
        spec.design = ctx.design;
        spec.tasks = ctx.tasks;
    }
    spec.explore =
        file(dir, "explore.json", "an explore output", &mut spec.notes)?.or(spec.explore.take());
    spec.requirements = file(
        dir,
        "requirements.json",
        "a requirements output",
        &mut spec.notes,
    )?
    .or(spec.requirements.take());
    spec.design =
        file(dir, "design.json", "a design output", &mut spec.notes)?.or(spec.design.take());
    spec.tasks = file(dir, "tasks.json", "a tasks output", &mut spec.notes)?.or(spec.tasks.take());
    Ok(spec)
}

/// The file `name` of `dir` parsed as `what`, if it exists.
fn file<T: DeserializeOwned + Serialize>(
    dir: &Path,
    name: &str,
    what: &str,
    notes: &mut Vec<Note>,
) -> Result<Option<T>> {
    match read_optional(dir, name)? {
        Some(text) => parse(&text, &dir.join(name), what, notes).map(Some),
        None => Ok(None),
    }
}

/// `spec.json` with the title and description, and one file per output present.
pub fn render(spec: &Spec) -> Result<Vec<(&'static str, String)>> {
    let head = PhaseContext {
        title: spec.title.clone(),
        description: spec.description.clone(),
        ..PhaseContext::default()
    };
    let mut files = vec![("spec.json", pretty(&head)?)];
    if let Some(explore) = &spec.explore {
        files.push(("explore.json", pretty(explore)?));
    }
    if let Some(requirements) = &spec.requirements {
        files.push(("requirements.json", pretty(requirements)?));
    }
    if let Some(design) = &spec.design {
        files.push(("design.json", pretty(design)?));
    }
    if let Some(tasks) = &spec.tasks {
        files.push(("tasks.json", pretty(tasks)?));
    }
    Ok(files)
}

fn pretty<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string_pretty(value)
        .map(|mut s| {
            s.push('\n');
            s
        })
        .map_err(|e| Error::json("encode the spec", e))
}

/// Parses `text` (read from `path`) as a `T`, noting every field of the input that `T` does not
/// have. Bad JSON is a config error naming the file, the problem and its position.
pub fn parse<T: DeserializeOwned + Serialize>(
    text: &str,
    path: &Path,
    what: &str,
    notes: &mut Vec<Note>,
) -> Result<T> {
    let typed: T = serde_json::from_str(text).map_err(|e| {
        let problem = match e.classify() {
            Category::Syntax | Category::Eof | Category::Io => format!("is not valid JSON: {e}"),
            Category::Data => format!("is not {what}: {e}"),
        };
        Error::config(path.display().to_string(), problem)
    })?;
    let raw: Value =
        serde_json::from_str(text).map_err(|e| Error::json(path.display().to_string(), e))?;
    let known = serde_json::to_value(&typed).map_err(|e| Error::json(what, e))?;
    let file = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().to_string(),
    );
    for field in unknown_fields(&raw, &known) {
        let name = field
            .rsplit(['.', ']'])
            .next()
            .unwrap_or(&field)
            .to_string();
        let hint = match close_field(&name, &known_names(&known, &field)) {
            Some(close) => format!(" (did you mean {close}?)"),
            None => String::new(),
        };
        notes.push(Note {
            subject: format!("{file}: {field}"),
            message: format!(
                "unknown field {name:?}: it is not part of {what} and was ignored{hint}"
            ),
            blocking: true,
        });
    }
    Ok(typed)
}

/// The paths (`tasks[2].depends-on`) of the object keys in `raw` that `known` (the parsed value
/// written back) does not have.
pub fn unknown_fields(raw: &Value, known: &Value) -> Vec<String> {
    let mut out = Vec::new();
    // An explicit stack: nesting depth is whatever the input holds.
    let mut stack: Vec<(&Value, &Value, String)> = vec![(raw, known, String::new())];
    while let Some((raw, known, path)) = stack.pop() {
        match (raw, known) {
            (Value::Object(r), Value::Object(k)) => {
                for (key, value) in r {
                    let here = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    match k.get(key) {
                        Some(known) => stack.push((value, known, here)),
                        // A null the type leaves out (an absent optional) is not unknown.
                        None if value.is_null() && is_optional_name(key) => {}
                        None => out.push(here),
                    }
                }
            }
            (Value::Array(r), Value::Array(k)) => {
                for (i, (raw, known)) in r.iter().zip(k).enumerate() {
                    stack.push((raw, known, format!("{path}[{i}]")));
                }
            }
            _ => {}
        }
    }
    out.sort();
    out
}

/// Optional fields of the phase context that are left out when absent.
fn is_optional_name(key: &str) -> bool {
    matches!(
        key,
        "explore" | "requirements" | "design" | "tasks" | "sync" | "subject"
    )
}

/// The field names next to `path` in the known value.
fn known_names(known: &Value, path: &str) -> Vec<String> {
    let mut value = known;
    let parent = match path.rfind('.') {
        Some(at) => &path[..at],
        None => "",
    };
    for part in parent.split('.').filter(|p| !p.is_empty()) {
        let (key, indexes) = match part.find('[') {
            Some(at) => (&part[..at], &part[at..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            value = match value.get(key) {
                Some(v) => v,
                None => return Vec::new(),
            };
        }
        for index in indexes
            .split(['[', ']'])
            .filter(|s| !s.is_empty())
            .filter_map(|s| s.parse::<usize>().ok())
        {
            value = match value.get(index) {
                Some(v) => v,
                None => return Vec::new(),
            };
        }
    }
    value
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

/// The known name `name` most likely meant: the same once case, `-` and `_` are ignored.
fn close_field(name: &str, known: &[String]) -> Option<String> {
    let norm = |s: &str| s.to_lowercase().replace(['-', '_', ' '], "");
    let target = norm(name);
    known
        .iter()
        .find(|k| {
            norm(k) == target
                || norm(k) == format!("{target}s")
                || format!("{}s", norm(k)) == target
        })
        .cloned()
}
