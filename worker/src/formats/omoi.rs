//! omoi's own format: one JSON file per phase output (`explore.json`, `requirements.json`,
//! `design.json`, `tasks.json`) and `spec.json`, a phase context with the title and description
//! (and any outputs not in a file of their own; the worker's `.omoi/spec.json` reads as one).
//! Fields the types do not know are noted by their path, so a misspelt `depends-on` is not lost
//! in silence.

use std::path::Path;

use omoi_protocol::context::PhaseContext;
use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::error::Category;

use super::{Note, Spec, fields, read_optional};
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
fn file<T: DeserializeOwned + JsonSchema>(
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
pub fn parse<T: DeserializeOwned + JsonSchema>(
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
    let schema = serde_json::to_value(schemars::schema_for!(T))
        .map_err(|e| Error::json(format!("the schema of {what}"), e))?;
    let unknown = fields::unknown_fields(text, &schema)
        .map_err(|e| Error::json(path.display().to_string(), e))?;
    let file = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().to_string(),
    );
    for field in unknown {
        let hint = match &field.meant {
            Some(meant) => format!(" (did you mean {meant}?)"),
            None => String::new(),
        };
        notes.push(Note {
            subject: format!("{file}: {}", field.path),
            message: format!(
                "unknown field {:?}: it is not part of {what} and was ignored{hint}",
                field.name
            ),
            blocking: true,
        });
    }
    Ok(typed)
}
