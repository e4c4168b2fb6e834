//! Compaction of the native loop's conversation near the model's context window: once a
//! request's estimated size passes [`TRIGGER`] of the window, old tool output (then old tool
//! inputs, then old assistant text) is shortened, oldest first, until it is back under
//! [`TARGET`]. Never touched: the first message (the task), the last two messages (the latest
//! answer and what came back to it) and the result of the last rejected submission (the gate's
//! feedback). Compacting down to half the window at once keeps it rare, so the prompt cache
//! is rebuilt once per compaction rather than every turn.

use std::collections::HashSet;

use crate::llm::{ChatRequest, ContentBlock, Message, Role};

/// Compaction starts when the estimate passes this share of the window.
pub const TRIGGER: f64 = 0.75;
/// And shortens until the estimate is under this share.
pub const TARGET: f64 = 0.5;
/// Characters kept of a shortened text (its beginning).
const KEEP_CHARS: usize = 400;
/// Messages at the end of the conversation that are never shortened.
const TAIL: usize = 2;
/// Bytes per token the estimate assumes: fewer than the APIs' tokenizers average (about 4 for
/// English and code), so the estimate errs on the large side.
const BYTES_PER_TOKEN: u64 = 3;

/// What one compaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compaction {
    /// Estimated tokens before and after.
    pub before: u64,
    pub after: u64,
    /// Blocks shortened.
    pub shortened: usize,
}

/// The estimated tokens of a request: its system prompt, tools and messages as JSON.
pub fn estimate(request: &ChatRequest) -> u64 {
    let tools = serde_json::to_string(&request.tools).map_or(0, |t| t.len());
    let messages: usize = request.messages.iter().map(message_bytes).sum();
    (request.system.len() + tools + messages) as u64 / BYTES_PER_TOKEN
}

fn message_bytes(message: &Message) -> usize {
    serde_json::to_string(message).map_or(0, |m| m.len())
}

/// Compacts `request` when it nears `window` tokens; `keep` names tool results (by call id)
/// that must stay whole. `None` when the request was small enough.
pub fn compact(
    request: &mut ChatRequest,
    window: u64,
    keep: &HashSet<String>,
) -> Option<Compaction> {
    let before = estimate(request);
    if (before as f64) < TRIGGER * window as f64 {
        return None;
    }
    let target = (TARGET * window as f64) as u64;
    let mut size = before;
    let mut shortened = 0;
    let end = request.messages.len().saturating_sub(TAIL);
    for pass in [Pass::ToolOutput, Pass::ToolInput, Pass::Text] {
        for message in request.messages.iter_mut().take(end).skip(1) {
            if size <= target {
                break;
            }
            for block in &mut message.content {
                if size <= target {
                    break;
                }
                let saved = shorten_block(block, pass, message.role, keep);
                if saved > 0 {
                    shortened += 1;
                    size = size.saturating_sub(saved as u64 / BYTES_PER_TOKEN);
                }
            }
        }
    }
    let after = estimate(request);
    Some(Compaction {
        before,
        after,
        shortened,
    })
}

/// What a pass shortens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    ToolOutput,
    ToolInput,
    Text,
}

/// Shortens one block if `pass` is about it; returns the bytes saved.
fn shorten_block(
    block: &mut ContentBlock,
    pass: Pass,
    role: Role,
    keep: &HashSet<String>,
) -> usize {
    match (pass, block) {
        (
            Pass::ToolOutput,
            ContentBlock::ToolResult {
                tool_use_id,
                content,
                ..
            },
        ) if !keep.contains(tool_use_id.as_str()) => shorten_text(content, "tool output"),
        (Pass::ToolInput, ContentBlock::ToolUse { input, .. }) => shorten_strings(input),
        (Pass::Text, ContentBlock::Text { text }) if role == Role::Assistant => {
            shorten_text(text, "text")
        }
        _ => 0,
    }
}

/// Keeps the beginning of a long `text` and says what was cut; returns the bytes saved.
fn shorten_text(text: &mut String, what: &str) -> usize {
    let chars = text.chars().count();
    if chars <= 2 * KEEP_CHARS {
        return 0;
    }
    let head: String = text.chars().take(KEEP_CHARS).collect();
    let shortened = format!(
        "{head}\n[… {} more characters of this old {what} were removed to keep the \
         conversation within the model's context window]",
        chars - KEEP_CHARS
    );
    let saved = text.len().saturating_sub(shortened.len());
    *text = shortened;
    saved
}

/// Shortens the long strings of a tool call's input (a file written in full, say), keeping
/// its shape; returns the bytes saved. Iterative, though a model's input is at most 128 levels
/// deep (serde_json's parsing limit).
fn shorten_strings(input: &mut serde_json::Value) -> usize {
    let mut saved = 0;
    let mut stack = vec![input];
    while let Some(value) = stack.pop() {
        match value {
            serde_json::Value::String(text) => saved += shorten_text(text, "tool input"),
            serde_json::Value::Array(items) => stack.extend(items.iter_mut()),
            serde_json::Value::Object(fields) => stack.extend(fields.values_mut()),
            _ => {}
        }
    }
    saved
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;
    use serde_json::json;

    use super::*;
    use crate::llm::SessionInfo;

    fn result(id: &str, text: String) -> Message {
        Message {
            role: Role::User,
            content: vec![ContentBlock::ToolResult {
                tool_use_id: id.into(),
                content: text,
                is_error: false,
            }],
        }
    }

    fn call(id: &str, input: serde_json::Value) -> Message {
        Message {
            role: Role::Assistant,
            content: vec![
                ContentBlock::Text {
                    text: "Reading it.".into(),
                },
                ContentBlock::ToolUse {
                    id: id.into(),
                    name: "read_file".into(),
                    input,
                },
            ],
        }
    }

    /// The task, then 20 turns whose results are 6,000 bytes each; turn 5 is a rejected
    /// submission whose feedback is as long.
    fn conversation() -> ChatRequest {
        let mut messages = vec![Message::user_text("The task. ".repeat(300))];
        for n in 0..20 {
            let id = format!("call_{n}");
            messages.push(call(
                &id,
                json!({"path": format!("f{n}"), "note": "n".repeat(3000)}),
            ));
            messages.push(result(&id, format!("{n}: {}", "x".repeat(6000))));
        }
        ChatRequest {
            session: SessionInfo {
                label: "design".into(),
                attempt: 1,
            },
            system: "You design.".into(),
            messages,
            tools: Vec::new(),
            max_tokens: 1000,
        }
    }

    #[test]
    fn a_conversation_near_the_window_is_shortened_to_half_of_it_oldest_first() {
        let mut request = conversation();
        let original = request.clone();
        let window = estimate(&request) * 100 / 80;
        let keep = HashSet::from(["call_5".to_string()]);
        let done = compact(&mut request, window, &keep).unwrap();
        assert!(done.before > done.after);
        assert!(done.after <= window / 2, "{done:?} of {window}");
        // The task, the last turn and the kept feedback are untouched.
        assert_eq!(request.messages[0], original.messages[0]);
        let n = request.messages.len();
        assert_eq!(request.messages[n - 2..], original.messages[n - 2..]);
        assert_eq!(request.messages[12], original.messages[12]);
        // The oldest output went first, and says what happened to it.
        let ContentBlock::ToolResult { content, .. } = &request.messages[2].content[0] else {
            panic!()
        };
        assert!(content.starts_with("0: xxx"), "{content}");
        assert!(
            content.ends_with(
                "were removed to keep the conversation within the model's context window]"
            ),
            "{content}"
        );
        // The conversation keeps its shape: every call still has its result.
        assert_eq!(request.messages.len(), original.messages.len());
    }

    #[test]
    fn a_request_well_within_the_window_is_left_alone() {
        let mut request = conversation();
        let original = request.clone();
        let window = estimate(&request) * 2;
        assert_eq!(compact(&mut request, window, &HashSet::new()), None);
        assert_eq!(request.messages, original.messages);
    }

    #[test]
    fn when_outputs_are_not_enough_tool_inputs_and_old_text_are_shortened_too() {
        let mut request = conversation();
        for message in &mut request.messages {
            for block in &mut message.content {
                if let ContentBlock::ToolResult { content, .. } = block {
                    content.truncate(10);
                }
            }
        }
        let window = estimate(&request) * 100 / 90;
        let done = compact(&mut request, window, &HashSet::new()).unwrap();
        assert!(done.after <= window / 2, "{done:?} of {window}");
        let ContentBlock::ToolUse { input, .. } = &request.messages[1].content[1] else {
            panic!()
        };
        assert_eq!(input["path"], "f0");
        assert!(input["note"].as_str().unwrap().contains("were removed"));
    }

    #[test]
    fn multibyte_text_is_cut_on_character_boundaries() {
        let mut text = "é".repeat(2000);
        let saved = shorten_text(&mut text, "tool output");
        assert!(saved > 0);
        assert!(text.starts_with(&"é".repeat(KEEP_CHARS)));
        let mut short = "é".repeat(10);
        assert_eq!(shorten_text(&mut short, "text"), 0);
    }
}
