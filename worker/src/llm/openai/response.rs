//! Reading a Chat Completions answer: one JSON completion, or the SSE chunks of a streamed one
//! assembled into whole blocks.

use std::collections::HashMap;

use serde::Deserialize;

use crate::llm::http::StreamDecoder;
use crate::llm::http::sse::{Flow, SseEvent};
use crate::llm::http::transport::error_from_status;
use crate::llm::{ChatResponse, ContentBlock, LlmError, StopReason, TokenUsage};

#[derive(Debug, Default, Deserialize)]
struct ApiUsage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct CompletionBody {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    choices: Option<Vec<Choice>>,
    #[serde(default)]
    usage: Option<ApiUsage>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    #[serde(default)]
    index: Option<u32>,
    /// A whole answer's message.
    #[serde(default)]
    message: Option<ChoiceMessage>,
    /// A stream chunk's fragment of it.
    #[serde(default)]
    delta: Option<ChoiceMessage>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ChoiceMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCallPart>>,
}

/// A whole tool call, or (streamed) a fragment of one.
#[derive(Debug, Deserialize)]
struct ToolCallPart {
    #[serde(default)]
    index: Option<usize>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionPart>,
}

#[derive(Debug, Deserialize)]
struct FunctionPart {
    #[serde(default)]
    name: Option<String>,
    /// A JSON text (or its fragment); a few servers send an object instead.
    #[serde(default)]
    arguments: Option<serde_json::Value>,
}

/// Text, calls, reason and usage gathered from a whole answer or from the chunks of a stream.
#[derive(Debug, Default)]
struct Assembly {
    model: String,
    text: String,
    calls: Vec<PartialCall>,
    /// The slot in `calls` of each tool-call index the stream used.
    slots: HashMap<usize, usize>,
    finish_reason: Option<String>,
    usage: TokenUsage,
}

#[derive(Debug, Default)]
struct PartialCall {
    id: String,
    name: String,
    arguments: String,
}

impl Assembly {
    fn take_body(&mut self, body: CompletionBody) -> Result<(), LlmError> {
        if let Some(error) = body.error {
            return Err(stream_error(&error));
        }
        if let Some(model) = body.model.filter(|m| !m.is_empty()) {
            self.model = model;
        }
        if let Some(usage) = body.usage {
            self.usage.input_tokens = usage.prompt_tokens.unwrap_or(self.usage.input_tokens);
            self.usage.output_tokens = usage.completion_tokens.unwrap_or(self.usage.output_tokens);
        }
        for choice in body.choices.unwrap_or_default() {
            if choice.index.unwrap_or(0) != 0 {
                continue;
            }
            for part in choice.message.into_iter().chain(choice.delta) {
                self.take_message(part);
            }
            if choice.finish_reason.is_some() {
                self.finish_reason = choice.finish_reason;
            }
        }
        Ok(())
    }

    fn take_message(&mut self, message: ChoiceMessage) {
        for text in message.content.into_iter().chain(message.refusal) {
            self.text.push_str(&text);
        }
        for part in message.tool_calls.unwrap_or_default() {
            self.take_call(part);
        }
    }

    /// Adds a call fragment. Fragments of one call share an index; a new id at a used index
    /// starts a new call (some servers number every call 0).
    fn take_call(&mut self, part: ToolCallPart) {
        let id = part.id.filter(|id| !id.is_empty());
        let index = part.index.unwrap_or(self.calls.len());
        let current = self.slots.get(&index).copied();
        let slot = match (current, &id) {
            (Some(slot), Some(id))
                if !self.calls[slot].id.is_empty() && self.calls[slot].id != *id =>
            {
                None
            }
            (current, _) => current,
        };
        let slot = slot.unwrap_or_else(|| {
            self.calls.push(PartialCall::default());
            self.slots.insert(index, self.calls.len() - 1);
            self.calls.len() - 1
        });
        let call = &mut self.calls[slot];
        if let Some(id) = id {
            call.id = id;
        }
        let Some(function) = part.function else {
            return;
        };
        if let Some(name) = function.name.filter(|n| *n != call.name) {
            call.name.push_str(&name);
        }
        match function.arguments {
            Some(serde_json::Value::String(fragment)) => call.arguments.push_str(&fragment),
            Some(serde_json::Value::Null) | None => {}
            Some(object) => call.arguments = object.to_string(),
        }
    }

    fn finish(self, requested_model: &str) -> ChatResponse {
        let mut content = Vec::new();
        if !self.text.is_empty() {
            content.push(ContentBlock::Text { text: self.text });
        }
        let has_calls = !self.calls.is_empty();
        for (n, call) in self.calls.into_iter().enumerate() {
            let input = if call.arguments.trim().is_empty() {
                serde_json::Value::Object(serde_json::Map::new())
            } else {
                serde_json::from_str(&call.arguments)
                    .unwrap_or(serde_json::Value::String(call.arguments))
            };
            content.push(ContentBlock::ToolUse {
                id: if call.id.is_empty() {
                    format!("call_{n}")
                } else {
                    call.id
                },
                name: call.name,
                input,
            });
        }
        let stop_reason = match self.finish_reason.as_deref() {
            Some("tool_calls" | "function_call") => StopReason::ToolUse,
            // Some servers say `stop` after calling tools.
            Some("stop") if has_calls => StopReason::ToolUse,
            Some("stop") => StopReason::EndTurn,
            Some("length") => StopReason::MaxTokens,
            Some(other) => StopReason::Other(other.to_string()),
            None => StopReason::Other("none".to_string()),
        };
        ChatResponse {
            content,
            stop_reason,
            usage: self.usage,
            model: if self.model.is_empty() {
                requested_model.to_string()
            } else {
                self.model
            },
        }
    }
}

/// The error an `{"error": {...}}` object means when it comes with a 200 or inside a stream.
fn stream_error(error: &serde_json::Value) -> LlmError {
    let field = |name: &str| error.get(name).and_then(|v| v.as_str()).unwrap_or_default();
    let status = if field("code").contains("rate_limit") || field("type").contains("rate_limit") {
        429
    } else if field("type") == "invalid_request_error" {
        400
    } else {
        500
    };
    let body = serde_json::json!({ "error": error });
    error_from_status(status, None, &body.to_string())
}

pub(super) fn parse_completion(
    text: &str,
    requested_model: &str,
) -> Result<ChatResponse, LlmError> {
    let body: CompletionBody = serde_json::from_str(text)
        .map_err(|e| LlmError::InvalidResponse(format!("not a Chat Completions answer: {e}")))?;
    let mut assembly = Assembly::default();
    assembly.take_body(body)?;
    Ok(assembly.finish(requested_model))
}

/// The answer assembled from the chunks of one stream.
#[derive(Debug, Default)]
pub struct StreamedCompletion {
    assembly: Assembly,
}

impl StreamDecoder for StreamedCompletion {
    fn on_event(&mut self, event: SseEvent) -> Result<Flow, LlmError> {
        if event.data.trim() == "[DONE]" {
            return Ok(Flow::Done);
        }
        let chunk: CompletionBody = serde_json::from_str(&event.data)
            .map_err(|e| LlmError::InvalidResponse(format!("unreadable stream chunk: {e}")))?;
        self.assembly.take_body(chunk)?;
        Ok(Flow::Continue)
    }

    fn finish(self, flow: Flow, requested_model: &str) -> Result<ChatResponse, LlmError> {
        if flow != Flow::Done && self.assembly.finish_reason.is_none() {
            return Err(LlmError::Connection(
                "the stream ended before the answer was complete".to_string(),
            ));
        }
        Ok(self.assembly.finish(requested_model))
    }
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;
    use serde_json::json;

    use super::*;

    #[test]
    fn calls_sharing_index_zero_are_told_apart_by_id() {
        let mut assembly = Assembly::default();
        let part = |id: Option<&str>, name: Option<&str>, args: &str| ToolCallPart {
            index: Some(0),
            id: id.map(str::to_string),
            function: Some(FunctionPart {
                name: name.map(str::to_string),
                arguments: Some(json!(args)),
            }),
        };
        assembly.take_call(part(Some("a"), Some("read_file"), "{\"path\":"));
        assembly.take_call(part(None, None, "\"x\"}"));
        assembly.take_call(part(Some("b"), Some("list_files"), "{}"));
        assembly.take_call(part(Some("b"), Some("list_files"), ""));
        assembly.finish_reason = Some("stop".into());
        let response = assembly.finish("m");
        assert_eq!(
            response.content,
            vec![
                ContentBlock::ToolUse {
                    id: "a".into(),
                    name: "read_file".into(),
                    input: json!({"path": "x"})
                },
                ContentBlock::ToolUse {
                    id: "b".into(),
                    name: "list_files".into(),
                    input: json!({})
                },
            ]
        );
        assert_eq!(response.stop_reason, StopReason::ToolUse);
    }
}
