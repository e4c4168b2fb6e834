//! Spec folders in the formats people use: omoi's JSON per phase, a Kiro spec
//! (`.kiro/specs/<name>/{requirements,design,tasks}.md`) and a spec-kit feature
//! (`specs/<NNN-name>/{spec,plan,tasks}.md`). Each reader turns a folder into a [`Spec`]; each
//! writer turns a [`Spec`] into that format's files, keeping whatever the format can hold.

mod design_md;
pub mod fields;
pub mod kiro;
mod markdown;
pub mod omoi;
mod phases;
pub mod speckit;
mod tasklist;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use omoi_protocol::artifact::{DesignOutput, ExploreOutput, RequirementsOutput, TasksOutput};
use omoi_protocol::context::PhaseContext;

use crate::error::{Error, Result};

/// A spec folder's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `requirements.json`, `design.json`, `tasks.json` (and `explore.json`), or one `spec.json`.
    Omoi,
    /// `requirements.md`, `design.md`, `tasks.md`.
    Kiro,
    /// `spec.md`, `plan.md`, `tasks.md`.
    SpecKit,
}

impl Format {
    pub const ALL: [Format; 3] = [Format::Omoi, Format::Kiro, Format::SpecKit];
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Omoi => "omoi",
            Format::Kiro => "kiro",
            Format::SpecKit => "spec-kit",
        })
    }
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "omoi" | "json" => Ok(Format::Omoi),
            "kiro" => Ok(Format::Kiro),
            "spec-kit" | "speckit" => Ok(Format::SpecKit),
            other => Err(format!(
                "unknown format {other:?}: expected omoi, kiro or spec-kit"
            )),
        }
    }
}

/// A spec as read from a folder: the outputs it holds, and what the reader noticed on the way
/// (unknown fields, lines it could not place).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Spec {
    pub title: String,
    pub description: String,
    pub explore: Option<ExploreOutput>,
    pub requirements: Option<RequirementsOutput>,
    pub design: Option<DesignOutput>,
    pub tasks: Option<TasksOutput>,
    /// Problems in the input that the reader passed over, each naming where: an unknown JSON
    /// field, a line that reads like a requirement but could not be parsed.
    pub notes: Vec<Note>,
}

/// A problem the reader passed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The file (and place in it) the note is about.
    pub subject: String,
    pub message: String,
    /// Whether the gate must fail on it (an unknown field: data the author meant was lost).
    pub blocking: bool,
}

impl Spec {
    /// The spec as a phase context: the title, the description and the outputs present.
    pub fn context(&self) -> PhaseContext {
        PhaseContext {
            title: self.title.clone(),
            description: self.description.clone(),
            explore: self.explore.clone(),
            requirements: self.requirements.clone(),
            design: self.design.clone(),
            tasks: self.tasks.clone(),
            sync: None,
        }
    }
}

/// The format of the spec folder `dir`, from the files in it.
pub fn detect(dir: &Path) -> Result<Format> {
    if !dir.is_dir() {
        return Err(Error::config(
            dir.display().to_string(),
            "is not a directory",
        ));
    }
    let has = |name: &str| dir.join(name).is_file();
    if has("spec.md") || has("plan.md") {
        Ok(Format::SpecKit)
    } else if has("requirements.md") || has("design.md") {
        Ok(Format::Kiro)
    } else if has("requirements.json")
        || has("design.json")
        || has("tasks.json")
        || has("spec.json")
    {
        Ok(Format::Omoi)
    } else if has("tasks.md") {
        Err(Error::config(
            dir.display().to_string(),
            "has tasks.md but neither Kiro's requirements.md nor spec-kit's spec.md: pass \
             --format kiro or --format spec-kit",
        ))
    } else {
        Err(Error::config(
            dir.display().to_string(),
            "holds no spec: expected omoi's requirements.json, design.json, tasks.json (or \
             spec.json), Kiro's requirements.md, design.md, tasks.md, or spec-kit's spec.md, \
             plan.md, tasks.md",
        ))
    }
}

/// Reads the spec folder `dir` in `format` (detected when `None`).
pub fn read(dir: &Path, format: Option<Format>) -> Result<(Format, Spec)> {
    let format = match format {
        Some(f) => f,
        None => detect(dir)?,
    };
    if !dir.is_dir() {
        return Err(Error::config(
            dir.display().to_string(),
            "is not a directory",
        ));
    }
    let mut spec = match format {
        Format::Omoi => omoi::read(dir)?,
        Format::Kiro => kiro::read(dir)?,
        Format::SpecKit => speckit::read(dir)?,
    };
    // A folder named `.` or `..` still has a name: the one it resolves to.
    if spec.title.is_empty()
        && let Some(name) = dir
            .canonicalize()
            .ok()
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().to_string()))
    {
        spec.title = name;
    }
    Ok((format, spec))
}

/// The files of `spec` in `format`: each file's name and text.
pub fn render(spec: &Spec, format: Format) -> Result<Vec<(&'static str, String)>> {
    match format {
        Format::Omoi => omoi::render(spec),
        Format::Kiro => Ok(kiro::render(spec)),
        Format::SpecKit => Ok(speckit::render(spec)),
    }
}

/// Writes `spec` into `dir` in `format`, creating `dir`; returns the paths written.
pub fn write(spec: &Spec, format: Format, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
    let mut written = Vec::new();
    for (name, text) in render(spec, format)? {
        let path = dir.join(name);
        std::fs::write(&path, text)
            .map_err(|e| Error::io(format!("write {}", path.display()), e))?;
        written.push(path);
    }
    Ok(written)
}

/// Reads `dir/name` if it exists; a file that cannot be read is an error naming it.
fn read_optional(dir: &Path, name: &str) -> Result<Option<String>> {
    let path = dir.join(name);
    if !path.exists() {
        return Ok(None);
    }
    std::fs::read_to_string(&path)
        .map(Some)
        .map_err(|e| Error::config(path.display().to_string(), format!("cannot read: {e}")))
}

/// `REQ-<AREA>-<NNN>` for the n-th (1-based) requirement of a markdown spec without ids.
fn positional_requirement_id(area: &str, n: usize) -> String {
    format!("REQ-{area}-{n:03}")
}

/// `TSK-<NNN>` for the n-th (1-based) task.
fn positional_task_id(n: usize) -> String {
    format!("TSK-{n:03}")
}

/// An id written in parentheses at the end of a title, `Title (REQ-AUTH-001)`, and the title
/// without it.
fn trailing_id<'a>(title: &'a str, prefix: &str) -> (&'a str, Option<&'a str>) {
    let t = title.trim();
    if let Some(open) = t.rfind('(')
        && t.ends_with(')')
    {
        let inner = &t[open + 1..t.len() - 1];
        if inner.starts_with(prefix) && !inner.contains(' ') {
            return (t[..open].trim(), Some(inner));
        }
    }
    (t, None)
}

/// The ids in `text` that look like `prefix` followed by letters, digits and dashes, in order,
/// each once (`REQ-AUTH-001`, `FR-002`, `T003`).
fn ids_in(text: &str, prefix: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(prefix) {
        let before_ok = rest[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_alphanumeric() && c != '-');
        let tail = &rest[at..];
        let len = tail
            .char_indices()
            .find(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '-'))
            .map_or(tail.len(), |(i, _)| i);
        let id = tail[..len].trim_end_matches('-');
        if before_ok
            && id.len() > prefix.len()
            && id[prefix.len()..].bytes().any(|b| b.is_ascii_digit())
            && !out.iter().any(|o| o == id)
        {
            out.push(id.to_string());
        }
        rest = &tail[len.max(1)..];
    }
    out
}

#[cfg(test)]
mod tests;
