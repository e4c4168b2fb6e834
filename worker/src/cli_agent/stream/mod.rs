//! The output streams of the CLI agents, one JSON object a line, mapped onto omoi's events:
//! Claude Code's `stream-json` (`claude`) and Codex's `exec --json` JSONL (`codex`). A line that
//! is not JSON, or of a kind the mapper does not know, is logged and skipped, never fatal.
//!
//! Usage is not emitted from here: the model proxy sees every call and emits `agent.usage` from
//! what passes through it. What the CLI reports about itself lands in [`Finished`], for the logs
//! and the session's end.

pub mod claude;
pub mod codex;

use std::path::Path;

use omoi_protocol::event::{Event, Usage};

use crate::agent::tools::shorten;

/// Characters of tool inputs and outputs in events.
const SUMMARY_CHARS: usize = 200;

/// What one line of a CLI's stream means to omoi.
#[derive(Debug, Clone, PartialEq)]
pub enum Mapped {
    /// An event to emit as it is.
    Event(Event),
    /// The CLI's own session (thread) id, to record with the attempt.
    SessionId(String),
    /// The CLI says its run (or, for Codex, its turn) ended.
    Finished(Finished),
}

/// The end of a CLI run as the CLI reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    pub ok: bool,
    /// The final text, or what went wrong.
    pub detail: String,
    /// Tokens and cost as the CLI counted them (Codex reports no cost: zero).
    pub reported: Usage,
}

/// One line as JSON; `None` (logged unless blank) when it is not.
fn parse(line: &str, cli: &str) -> Option<serde_json::Value> {
    let line = line.trim();
    if line.is_empty() {
        return None;
    }
    match serde_json::from_str(line) {
        Ok(value) => Some(value),
        Err(err) => {
            tracing::warn!(%err, cli, line = %summary(line), "not a JSON line, skipped");
            None
        }
    }
}

/// `text` shortened for an event.
fn summary(text: &str) -> String {
    shorten(text, SUMMARY_CHARS)
}

/// `path` relative to `workspace` when it lies inside it, else as given.
fn relative(path: &str, workspace: &Path) -> String {
    Path::new(path)
        .strip_prefix(workspace)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| path.to_string())
}

/// Lines added and removed by a unified-diff hunk's lines (`+…`, `-…`, ` …`).
fn count_patch_lines<'a>(lines: impl IntoIterator<Item = &'a str>) -> (u64, u64) {
    lines.into_iter().fold((0, 0), |(added, removed), line| {
        if line.starts_with('+') && !line.starts_with("+++") {
            (added + 1, removed)
        } else if line.starts_with('-') && !line.starts_with("---") {
            (added, removed + 1)
        } else {
            (added, removed)
        }
    })
}

/// The events the mappers' tests expect, built briefly.
#[cfg(test)]
mod expect {
    use omoi_protocol::event::{AgentMessage, AgentToolResult, AgentToolUse, Event};

    use super::Mapped;

    pub fn message(text: &str) -> Mapped {
        Mapped::Event(Event::AgentMessage(AgentMessage {
            text: text.to_string(),
        }))
    }

    pub fn tool_use(tool: &str, call_id: &str, input: &str) -> Mapped {
        Mapped::Event(Event::AgentToolUse(AgentToolUse {
            tool: tool.to_string(),
            call_id: call_id.to_string(),
            input_summary: input.to_string(),
        }))
    }

    pub fn tool_result(call_id: &str, ok: bool, output: &str) -> Mapped {
        Mapped::Event(Event::AgentToolResult(AgentToolResult {
            call_id: call_id.to_string(),
            ok,
            output_summary: output.to_string(),
        }))
    }
}
