//! The tools an agent may call, confined to the workspace.
//!
//! Every path is relative to the workspace root; paths that leave it (absolute, `..`, symlinks
//! that point outside) are refused as a tool error. Bad input is a tool error too: the model
//! reads the message and tries again; nothing here panics or ends the session.

mod fs;
mod path;
mod run;
mod search;

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::json;
use tokio_util::sync::CancellationToken;

pub use super::{Access, RunLimits};
use crate::error::Result;
use crate::llm::ToolSpec;

/// The tool set of a session.
#[derive(Debug, Clone)]
pub struct ToolBox {
    root: PathBuf,
    access: Access,
    run: RunLimits,
}

/// What one tool call produced. `ok = false` is a tool error: `output` says what went wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutcome {
    pub ok: bool,
    pub output: String,
    /// Set when the call changed a file.
    pub edit: Option<FileEdit>,
}

impl ToolOutcome {
    pub fn success(output: impl Into<String>) -> Self {
        ToolOutcome {
            ok: true,
            output: output.into(),
            edit: None,
        }
    }

    pub fn failure(output: impl Into<String>) -> Self {
        ToolOutcome {
            ok: false,
            output: output.into(),
            edit: None,
        }
    }
}

/// A file a tool call changed, with the size of the change in lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEdit {
    /// Relative to the workspace root, `/`-separated.
    pub path: String,
    pub lines_added: u64,
    pub lines_removed: u64,
}

/// The names of the tools that only read.
const READ_TOOLS: [&str; 4] = ["read_file", "list_files", "search", "run"];
/// The names of the tools that write.
const WRITE_TOOLS: [&str; 2] = ["write_file", "edit_file"];

impl ToolBox {
    /// Tools rooted at `workspace` (canonicalized; it must exist).
    pub fn new(workspace: &Path, access: Access, run: RunLimits) -> Result<Self> {
        let root = workspace.canonicalize().map_err(|e| {
            crate::error::Error::io(format!("workspace {}", workspace.display()), e)
        })?;
        Ok(ToolBox { root, access, run })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn access(&self) -> Access {
        self.access
    }

    pub fn run_limits(&self) -> RunLimits {
        self.run
    }

    /// The names of the tools of this session, in the order of [`ToolBox::specs`].
    pub fn names(&self) -> Vec<&'static str> {
        let mut names = READ_TOOLS.to_vec();
        if self.access == Access::ReadWrite {
            names.extend(WRITE_TOOLS);
        }
        names
    }

    /// The tools of this session with the JSON Schemas of their inputs.
    pub fn specs(&self) -> Vec<ToolSpec> {
        self.names()
            .into_iter()
            .filter_map(|name| spec_of(name, self.run))
            .collect()
    }

    /// Runs one tool call. Never fails: every problem is a tool error (`ok = false`) whose
    /// output names it.
    pub async fn call(
        &self,
        name: &str,
        input: &serde_json::Value,
        cancel: &CancellationToken,
    ) -> ToolOutcome {
        if !input.is_object() {
            return ToolOutcome::failure(format!(
                "input is not a JSON object: {}",
                shorten(&input.to_string(), 200)
            ));
        }
        if WRITE_TOOLS.contains(&name) && self.access == Access::ReadOnly {
            return ToolOutcome::failure(format!(
                "`{name}` is not available in this session: it may only read the workspace"
            ));
        }
        let done = match name {
            "read_file" => match parse(name, input) {
                Ok(args) => fs::read_file(&self.root, args).await,
                Err(err) => Err(err),
            },
            "list_files" => match parse(name, input) {
                Ok(args) => fs::list_files(&self.root, args, cancel).await,
                Err(err) => Err(err),
            },
            "search" => match parse(name, input) {
                Ok(args) => search::search(&self.root, args, cancel).await,
                Err(err) => Err(err),
            },
            "write_file" => match parse(name, input) {
                Ok(args) => fs::write_file(&self.root, args).await,
                Err(err) => Err(err),
            },
            "edit_file" => match parse(name, input) {
                Ok(args) => fs::edit_file(&self.root, args).await,
                Err(err) => Err(err),
            },
            "run" => {
                return match parse(name, input) {
                    Ok(args) => run::run(&self.root, self.run, args, cancel).await,
                    Err(err) => ToolOutcome::failure(err),
                };
            }
            other => Err(format!(
                "unknown tool `{other}`; the tools are: {}",
                self.names().join(", ")
            )),
        };
        match done {
            Ok(done) => ToolOutcome {
                ok: true,
                output: done.output,
                edit: done.edit,
            },
            Err(message) => ToolOutcome::failure(message),
        }
    }
}

/// The successful result of a file tool.
#[derive(Debug)]
struct Done {
    output: String,
    edit: Option<FileEdit>,
}

impl Done {
    fn output(output: impl Into<String>) -> Self {
        Done {
            output: output.into(),
            edit: None,
        }
    }
}

/// Reads a tool's input into its argument struct; the error names the tool and the problem.
fn parse<T: DeserializeOwned>(tool: &str, input: &serde_json::Value) -> Result<T, String> {
    serde_json::from_value(input.clone()).map_err(|err| format!("bad input for {tool}: {err}"))
}

/// `text` cut to at most `max_chars` characters, with `…` when cut.
pub(crate) fn shorten(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        None => text.to_owned(),
        Some((end, _)) => {
            let mut cut = text[..end].to_owned();
            cut.push('…');
            cut
        }
    }
}

fn spec_of(name: &str, run: RunLimits) -> Option<ToolSpec> {
    let (description, input_schema) = match name {
        "read_file" => (
            "Read a text file of the workspace. Long files are cut; the cut is said, and \
             offset_line reads further."
                .to_owned(),
            json!({
                "type": "object",
                "properties": {
                    "path": {"type": "string", "description": "Path relative to the workspace root."},
                    "offset_line": {"type": "integer", "minimum": 1, "description": "First line to show (1-based)."},
                    "limit_lines": {"type": "integer", "minimum": 1, "description": "How many lines to show."}
                },
                "required": ["path"]
            }),
        ),
        "list_files" => (
            "List the files of the workspace (or of a directory of it), sorted. Skips .git, \
             .omoi and gitignored files. A glob with a `/` matches the path from the \
             workspace root, one without matches the file name."
                .to_owned(),
            json!({
                "type": "object",
                "properties": {
                    "path": {"type": "string", "description": "Directory relative to the workspace root (default: the root)."},
                    "glob": {"type": "string", "description": "e.g. `*.rs` or `src/**/*.rs`."}
                }
            }),
        ),
        "search" => (
            "Search file contents with a regular expression (Rust regex syntax). Returns \
             `path:line:text` matches; skips .git, .omoi, gitignored and binary files."
                .to_owned(),
            json!({
                "type": "object",
                "properties": {
                    "pattern": {"type": "string", "description": "Regular expression."},
                    "path": {"type": "string", "description": "File or directory to search (default: the root)."},
                    "glob": {"type": "string", "description": "Only files matching this glob, as in list_files."}
                },
                "required": ["pattern"]
            }),
        ),
        "write_file" => (
            "Create or overwrite a file with the given content; missing parent directories \
             are created."
                .to_owned(),
            json!({
                "type": "object",
                "properties": {
                    "path": {"type": "string", "description": "Path relative to the workspace root."},
                    "content": {"type": "string", "description": "The whole new content."}
                },
                "required": ["path", "content"]
            }),
        ),
        "edit_file" => (
            "Replace one exact occurrence of `old` with `new` in a file. `old` must occur \
             exactly once: include enough surrounding text to make it unique."
                .to_owned(),
            json!({
                "type": "object",
                "properties": {
                    "path": {"type": "string", "description": "Path relative to the workspace root."},
                    "old": {"type": "string", "description": "The exact text to replace."},
                    "new": {"type": "string", "description": "The replacement."}
                },
                "required": ["path", "old", "new"]
            }),
        ),
        "run" => (
            format!(
                "Run a shell command (`sh -c`) in the workspace root. Returns the exit code and \
                 the combined output (at most {} bytes; the middle is cut). The command and \
                 everything it started are killed after the timeout (at most {} s).",
                run.output_cap,
                run.timeout.as_secs()
            ),
            json!({
                "type": "object",
                "properties": {
                    "command": {"type": "string", "description": "The shell command."},
                    "timeout_secs": {"type": "integer", "minimum": 1, "description": "A shorter timeout, in seconds."}
                },
                "required": ["command"]
            }),
        ),
        _ => return None,
    };
    Some(ToolSpec {
        name: name.to_owned(),
        description,
        input_schema,
    })
}

#[cfg(test)]
mod tests;
