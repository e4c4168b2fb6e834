//! Codex's `exec --json` lines → omoi events: `thread.started` carries the session id, items
//! (`agent_message`, `command_execution`, `mcp_tool_call`, `file_change`) start and complete,
//! and each turn ends with `turn.completed` (with usage) or `turn.failed`.

use std::collections::HashSet;
use std::path::PathBuf;

use omoi_protocol::event::{
    AgentFileEdited, AgentMessage, AgentToolResult, AgentToolUse, Event, Usage,
};
use serde_json::Value;

use super::{Finished, Mapped, parse, relative, summary};

/// Maps one Codex session's lines, in order.
#[derive(Debug)]
pub struct CodexStream {
    workspace: PathBuf,
    /// Items whose start was already reported as a tool use.
    started: HashSet<String>,
}

impl CodexStream {
    /// `workspace`: the CLI's working directory; changed paths are reported relative to it.
    pub fn new(workspace: impl Into<PathBuf>) -> Self {
        CodexStream {
            workspace: workspace.into(),
            started: HashSet::new(),
        }
    }

    /// What one line means; nothing for a line that is not JSON or not known (logged).
    pub fn line(&mut self, line: &str) -> Vec<Mapped> {
        let Some(value) = parse(line, "codex") else {
            return Vec::new();
        };
        match value["type"].as_str().unwrap_or_default() {
            "thread.started" => value["thread_id"]
                .as_str()
                .map(|id| vec![Mapped::SessionId(id.to_string())])
                .unwrap_or_default(),
            "turn.started" | "item.updated" => Vec::new(),
            "item.started" => self.started(&value["item"]),
            "item.completed" => self.completed(&value["item"]),
            "turn.completed" => vec![Mapped::Finished(Finished {
                ok: true,
                detail: String::new(),
                reported: usage(&value["usage"]),
            })],
            "turn.failed" => vec![Mapped::Finished(Finished {
                ok: false,
                detail: value["error"]["message"]
                    .as_str()
                    .unwrap_or("the turn failed")
                    .to_string(),
                reported: Usage::default(),
            })],
            "error" => {
                tracing::warn!(message = %value["message"], "codex: stream error");
                Vec::new()
            }
            other => {
                tracing::warn!(kind = other, line = %summary(line), "codex: unknown line, skipped");
                Vec::new()
            }
        }
    }

    fn started(&mut self, item: &Value) -> Vec<Mapped> {
        match tool_use(item) {
            Some(event) => {
                self.started.insert(item_id(item));
                vec![Mapped::Event(event)]
            }
            None => Vec::new(),
        }
    }

    fn completed(&mut self, item: &Value) -> Vec<Mapped> {
        let id = item_id(item);
        let mut mapped = Vec::new();
        match item["type"].as_str().unwrap_or_default() {
            "agent_message" => {
                let text = item["text"].as_str().unwrap_or_default();
                if !text.trim().is_empty() {
                    mapped.push(Mapped::Event(Event::AgentMessage(AgentMessage {
                        text: text.to_string(),
                    })));
                }
            }
            "command_execution" | "mcp_tool_call" | "web_search" => {
                if !self.started.remove(&id) {
                    mapped.extend(tool_use(item).map(Mapped::Event));
                }
                let (ok, output) = outcome(item);
                mapped.push(Mapped::Event(Event::AgentToolResult(AgentToolResult {
                    call_id: id,
                    ok,
                    output_summary: summary(&output),
                })));
            }
            "file_change" if item["status"] == "completed" => {
                for change in item["changes"].as_array().into_iter().flatten() {
                    let Some(path) = change["path"].as_str() else {
                        continue;
                    };
                    // Codex reports which files changed, not by how many lines.
                    mapped.push(Mapped::Event(Event::AgentFileEdited(AgentFileEdited {
                        path: relative(path, &self.workspace),
                        lines_added: 0,
                        lines_removed: 0,
                    })));
                }
            }
            "error" => {
                tracing::warn!(message = %item["message"], "codex: error item");
            }
            // Reasoning, plans and the like are the model's own business.
            _ => {}
        }
        mapped
    }
}

fn item_id(item: &Value) -> String {
    item["id"].as_str().unwrap_or_default().to_string()
}

/// The `agent.tool_use` of an item that is a tool call.
fn tool_use(item: &Value) -> Option<Event> {
    let (tool, input) = match item["type"].as_str()? {
        "command_execution" => (
            "command_execution".to_string(),
            item["command"].as_str().unwrap_or_default().to_string(),
        ),
        "mcp_tool_call" => (
            format!(
                "mcp__{}__{}",
                item["server"].as_str().unwrap_or_default(),
                item["tool"].as_str().unwrap_or_default()
            ),
            item["arguments"].to_string(),
        ),
        "web_search" => (
            "web_search".to_string(),
            item["query"].as_str().unwrap_or_default().to_string(),
        ),
        _ => return None,
    };
    Some(Event::AgentToolUse(AgentToolUse {
        tool,
        call_id: item_id(item),
        input_summary: summary(&input),
    }))
}

/// Whether a completed tool item succeeded, and its output as text.
fn outcome(item: &Value) -> (bool, String) {
    let completed = item["status"] == "completed";
    match item["type"].as_str().unwrap_or_default() {
        "command_execution" => (
            completed && item["exit_code"] == 0,
            item["aggregated_output"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        ),
        "mcp_tool_call" => {
            if let Some(message) = item["error"]["message"].as_str() {
                return (false, message.to_string());
            }
            let result = &item["result"];
            let text = result["content"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n");
            let is_error = result["is_error"] == true || result["isError"] == true;
            (completed && !is_error, text)
        }
        _ => (completed, String::new()),
    }
}

/// Codex's usage of a turn (it reports no cost).
fn usage(usage: &Value) -> Usage {
    Usage {
        input_tokens: usage["input_tokens"].as_u64().unwrap_or(0),
        output_tokens: usage["output_tokens"].as_u64().unwrap_or(0)
            + usage["reasoning_output_tokens"].as_u64().unwrap_or(0),
        cost_usd: 0.0,
    }
}

#[cfg(test)]
mod tests;
