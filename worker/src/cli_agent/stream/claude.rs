//! Claude Code's `--output-format stream-json --verbose` lines → omoi events. Each content block
//! of the model's answer comes as its own `assistant` line (the lines share `message.id`); tool
//! results come as `user` lines, with what a file tool did in `tool_use_result`; the run ends
//! with one `result` line.

use std::collections::HashSet;
use std::path::PathBuf;

use omoi_protocol::event::{
    AgentFileEdited, AgentMessage, AgentToolResult, AgentToolUse, Event, Usage,
};
use serde_json::Value;

use super::{Finished, Mapped, count_patch_lines, parse, relative, summary};

/// The built-in tools that change files.
const EDIT_TOOLS: &[&str] = &["Write", "Edit", "MultiEdit", "NotebookEdit"];

/// Maps one Claude Code session's lines, in order.
#[derive(Debug)]
pub struct ClaudeStream {
    workspace: PathBuf,
    /// Ids of file-tool calls whose results are still to come.
    edits: HashSet<String>,
}

impl ClaudeStream {
    /// `workspace`: the CLI's working directory; edited paths are reported relative to it.
    pub fn new(workspace: impl Into<PathBuf>) -> Self {
        ClaudeStream {
            workspace: workspace.into(),
            edits: HashSet::new(),
        }
    }

    /// What one line means; nothing for a line that is not JSON or not known (logged).
    pub fn line(&mut self, line: &str) -> Vec<Mapped> {
        let Some(value) = parse(line, "claude-code") else {
            return Vec::new();
        };
        match value["type"].as_str().unwrap_or_default() {
            "system" if value["subtype"] == "init" => value["session_id"]
                .as_str()
                .map(|id| vec![Mapped::SessionId(id.to_string())])
                .unwrap_or_default(),
            "system" | "stream_event" | "rate_limit_event" | "keep_alive" => Vec::new(),
            "assistant" => self.assistant(&value),
            "user" => self.user(&value),
            "result" => vec![Mapped::Finished(finished(&value))],
            other => {
                tracing::warn!(kind = other, line = %summary(line), "claude-code: unknown line, skipped");
                Vec::new()
            }
        }
    }

    fn assistant(&mut self, value: &Value) -> Vec<Mapped> {
        let mut mapped = Vec::new();
        for block in blocks(&value["message"]["content"]) {
            match block["type"].as_str().unwrap_or_default() {
                "text" => {
                    let text = block["text"].as_str().unwrap_or_default();
                    if !text.trim().is_empty() {
                        mapped.push(Mapped::Event(Event::AgentMessage(AgentMessage {
                            text: text.to_string(),
                        })));
                    }
                }
                "tool_use" => {
                    let id = block["id"].as_str().unwrap_or_default().to_string();
                    let name = block["name"].as_str().unwrap_or_default().to_string();
                    if EDIT_TOOLS.contains(&name.as_str()) {
                        self.edits.insert(id.clone());
                    }
                    mapped.push(Mapped::Event(Event::AgentToolUse(AgentToolUse {
                        tool: name,
                        call_id: id,
                        input_summary: summary(&block["input"].to_string()),
                    })));
                }
                // Thinking and the like are the model's own business.
                _ => {}
            }
        }
        mapped
    }

    fn user(&mut self, value: &Value) -> Vec<Mapped> {
        let results: Vec<&Value> = blocks(&value["message"]["content"])
            .filter(|b| b["type"] == "tool_result")
            .collect();
        let mut mapped = Vec::new();
        for block in &results {
            let id = block["tool_use_id"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let ok = block["is_error"] != Value::Bool(true);
            mapped.push(Mapped::Event(Event::AgentToolResult(AgentToolResult {
                call_id: id.clone(),
                ok,
                output_summary: summary(&result_text(&block["content"])),
            })));
            if self.edits.remove(&id) && ok && results.len() == 1 {
                mapped.extend(self.file_edited(&value["tool_use_result"]));
            }
        }
        mapped
    }

    /// What a file tool did, from its `tool_use_result`.
    fn file_edited(&self, result: &Value) -> Option<Mapped> {
        let path = result["filePath"].as_str()?;
        let (lines_added, lines_removed) = match result["structuredPatch"].as_array() {
            Some(hunks) if !hunks.is_empty() => count_patch_lines(
                hunks
                    .iter()
                    .flat_map(|h| h["lines"].as_array().into_iter().flatten())
                    .filter_map(Value::as_str),
            ),
            // A new file: every line is added.
            _ => (
                result["content"]
                    .as_str()
                    .map_or(0, |c| c.lines().count() as u64),
                0,
            ),
        };
        Some(Mapped::Event(Event::AgentFileEdited(AgentFileEdited {
            path: relative(path, &self.workspace),
            lines_added,
            lines_removed,
        })))
    }
}

/// The content blocks of a message (a string content has none).
fn blocks(content: &Value) -> impl Iterator<Item = &Value> {
    content.as_array().into_iter().flatten()
}

/// A tool result's content as text: the string, or its text blocks joined.
fn result_text(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn finished(value: &Value) -> Finished {
    let usage = &value["usage"];
    let count = |name: &str| usage[name].as_u64().unwrap_or(0);
    let ok = value["is_error"] == Value::Bool(false) && value["subtype"] == "success";
    let detail = match value["result"].as_str() {
        Some(text) if ok => text.to_string(),
        _ => {
            let errors: Vec<&str> = value["errors"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let subtype = value["subtype"].as_str().unwrap_or("unknown");
            if errors.is_empty() {
                format!(
                    "{subtype}: {}",
                    value["result"].as_str().unwrap_or_default()
                )
            } else {
                format!("{subtype}: {}", errors.join("; "))
            }
        }
    };
    Finished {
        ok,
        detail,
        reported: Usage {
            input_tokens: count("input_tokens")
                + count("cache_creation_input_tokens")
                + count("cache_read_input_tokens"),
            output_tokens: count("output_tokens"),
            cost_usd: value["total_cost_usd"].as_f64().unwrap_or(0.0),
        },
    }
}

#[cfg(test)]
mod tests;
