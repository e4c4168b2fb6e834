//! Reading a Messages API answer: one JSON message, or the SSE events of a streamed one
//! assembled into whole blocks.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::llm::http::StreamDecoder;
use crate::llm::http::sse::{Flow, SseEvent};
use crate::llm::http::transport::error_from_status;
use crate::llm::{ChatResponse, ContentBlock, LlmError, StopReason, TokenUsage};

#[derive(Debug, Default, Deserialize)]
struct ApiUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
}

impl ApiUsage {
    /// Input tokens of every kind (cache writes and reads included), if the API said.
    fn input(&self) -> Option<u64> {
        let parts = [
            self.input_tokens,
            self.cache_creation_input_tokens,
            self.cache_read_input_tokens,
        ];
        parts
            .iter()
            .any(Option::is_some)
            .then(|| parts.iter().flatten().sum())
    }
}

#[derive(Debug, Deserialize)]
struct MessageBody {
    #[serde(default)]
    model: String,
    #[serde(default)]
    content: Vec<ResponseBlock>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: ApiUsage,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ResponseBlock {
    Text {
        #[serde(default)]
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: serde_json::Value,
    },
    /// Thinking and server-tool blocks: not part of the provider-neutral answer.
    #[serde(other)]
    Other,
}

fn stop_reason(reason: Option<&str>) -> StopReason {
    match reason {
        Some("end_turn") => StopReason::EndTurn,
        Some("tool_use") => StopReason::ToolUse,
        Some("max_tokens") => StopReason::MaxTokens,
        Some(other) => StopReason::Other(other.to_string()),
        None => StopReason::Other("none".to_string()),
    }
}

pub(super) fn parse_message(text: &str, requested_model: &str) -> Result<ChatResponse, LlmError> {
    let body: MessageBody = serde_json::from_str(text)
        .map_err(|e| LlmError::InvalidResponse(format!("not a Messages API answer: {e}")))?;
    let content = body
        .content
        .into_iter()
        .filter_map(|block| match block {
            ResponseBlock::Text { text } if text.is_empty() => None,
            ResponseBlock::Text { text } => Some(ContentBlock::Text { text }),
            ResponseBlock::ToolUse { id, name, input } => {
                Some(ContentBlock::ToolUse { id, name, input })
            }
            ResponseBlock::Other => None,
        })
        .collect();
    Ok(ChatResponse {
        content,
        stop_reason: stop_reason(body.stop_reason.as_deref()),
        usage: TokenUsage {
            input_tokens: body.usage.input().unwrap_or(0),
            output_tokens: body.usage.output_tokens.unwrap_or(0),
            cache_read_tokens: body.usage.cache_read_input_tokens.unwrap_or(0),
            cache_write_tokens: body.usage.cache_creation_input_tokens.unwrap_or(0),
        },
        model: model_or(body.model, requested_model),
    })
}

fn model_or(answered: String, requested: &str) -> String {
    if answered.is_empty() {
        requested.to_string()
    } else {
        answered
    }
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StreamEvent {
    MessageStart {
        message: MessageBody,
    },
    ContentBlockStart {
        index: usize,
        content_block: ResponseBlock,
    },
    ContentBlockDelta {
        index: usize,
        delta: BlockDelta,
    },
    MessageDelta {
        delta: MessageDelta,
        #[serde(default)]
        usage: ApiUsage,
    },
    MessageStop,
    Error {
        error: StreamError,
    },
    /// `ping`, `content_block_stop`, and event types added later.
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockDelta {
    TextDelta {
        text: String,
    },
    InputJsonDelta {
        partial_json: String,
    },
    /// Thinking, signature and citation deltas.
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
struct MessageDelta {
    #[serde(default)]
    stop_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct StreamError {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    message: String,
}

/// A block being assembled from its deltas.
#[derive(Debug)]
enum PartialBlock {
    Text(String),
    ToolUse {
        id: String,
        name: String,
        /// The input `content_block_start` carried (normally `{}`), used when no delta follows.
        initial: serde_json::Value,
        json: String,
    },
    Other,
}

/// The answer assembled from the events of one stream.
#[derive(Debug, Default)]
pub struct StreamedMessage {
    model: String,
    blocks: BTreeMap<usize, PartialBlock>,
    stop_reason: Option<String>,
    input_tokens: u64,
    output_tokens: u64,
    cache_read_tokens: u64,
    cache_write_tokens: u64,
}

impl StreamDecoder for StreamedMessage {
    fn on_event(&mut self, event: SseEvent) -> Result<Flow, LlmError> {
        let parsed: StreamEvent = serde_json::from_str(&event.data).map_err(|e| {
            LlmError::InvalidResponse(format!("unreadable stream event {:?}: {e}", event.event))
        })?;
        match parsed {
            StreamEvent::MessageStart { message } => {
                self.model = message.model;
                self.input_tokens = message.usage.input().unwrap_or(0);
                self.output_tokens = message.usage.output_tokens.unwrap_or(0);
                self.cache_read_tokens = message.usage.cache_read_input_tokens.unwrap_or(0);
                self.cache_write_tokens = message.usage.cache_creation_input_tokens.unwrap_or(0);
            }
            StreamEvent::ContentBlockStart {
                index,
                content_block,
            } => {
                let block = match content_block {
                    ResponseBlock::Text { text } => PartialBlock::Text(text),
                    ResponseBlock::ToolUse { id, name, input } => PartialBlock::ToolUse {
                        id,
                        name,
                        initial: input,
                        json: String::new(),
                    },
                    ResponseBlock::Other => PartialBlock::Other,
                };
                self.blocks.insert(index, block);
            }
            StreamEvent::ContentBlockDelta { index, delta } => {
                match (self.blocks.get_mut(&index), delta) {
                    (Some(PartialBlock::Text(text)), BlockDelta::TextDelta { text: more }) => {
                        text.push_str(&more);
                    }
                    (
                        Some(PartialBlock::ToolUse { json, .. }),
                        BlockDelta::InputJsonDelta { partial_json },
                    ) => json.push_str(&partial_json),
                    (None, _) => {
                        return Err(LlmError::InvalidResponse(format!(
                            "a delta for block {index}, which never started"
                        )));
                    }
                    _ => {}
                }
            }
            StreamEvent::MessageDelta { delta, usage } => {
                if delta.stop_reason.is_some() {
                    self.stop_reason = delta.stop_reason;
                }
                if let Some(input) = usage.input() {
                    self.input_tokens = input;
                }
                if let Some(read) = usage.cache_read_input_tokens {
                    self.cache_read_tokens = read;
                }
                if let Some(written) = usage.cache_creation_input_tokens {
                    self.cache_write_tokens = written;
                }
                if let Some(output) = usage.output_tokens {
                    self.output_tokens = output;
                }
            }
            StreamEvent::MessageStop => return Ok(Flow::Done),
            StreamEvent::Error { error } => {
                let status = status_of_error_type(&error.kind);
                let body = serde_json::json!({ "error": { "message": error.message } });
                return Err(error_from_status(status, None, &body.to_string()));
            }
            StreamEvent::Other => {}
        }
        Ok(Flow::Continue)
    }

    fn finish(self, flow: Flow, requested_model: &str) -> Result<ChatResponse, LlmError> {
        if flow != Flow::Done && self.stop_reason.is_none() {
            return Err(LlmError::Connection(
                "the stream ended before the answer was complete".to_string(),
            ));
        }
        let content = self
            .blocks
            .into_values()
            .filter_map(|block| match block {
                PartialBlock::Text(text) if text.is_empty() => None,
                PartialBlock::Text(text) => Some(ContentBlock::Text { text }),
                PartialBlock::ToolUse {
                    id,
                    name,
                    initial,
                    json,
                } => Some(ContentBlock::ToolUse {
                    id,
                    name,
                    input: tool_input(initial, json),
                }),
                PartialBlock::Other => None,
            })
            .collect();
        Ok(ChatResponse {
            content,
            stop_reason: stop_reason(self.stop_reason.as_deref()),
            usage: TokenUsage {
                input_tokens: self.input_tokens,
                output_tokens: self.output_tokens,
                cache_read_tokens: self.cache_read_tokens,
                cache_write_tokens: self.cache_write_tokens,
            },
            model: model_or(self.model, requested_model),
        })
    }
}

/// The tool input assembled from its JSON fragments; the raw text when it is not JSON.
fn tool_input(initial: serde_json::Value, json: String) -> serde_json::Value {
    if json.trim().is_empty() {
        return match initial {
            serde_json::Value::Null => serde_json::Value::Object(serde_json::Map::new()),
            initial => initial,
        };
    }
    serde_json::from_str(&json).unwrap_or(serde_json::Value::String(json))
}

/// The HTTP status that goes with an error type of the API (for errors sent inside a stream).
fn status_of_error_type(kind: &str) -> u16 {
    match kind {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        _ => 500,
    }
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;
    use serde_json::json;

    use super::*;

    #[test]
    fn cache_reads_and_writes_are_kept_apart_within_the_input() {
        let text = json!({"model": "m", "content": [], "stop_reason": "end_turn",
            "usage": {"input_tokens": 10, "cache_creation_input_tokens": 200,
                      "cache_read_input_tokens": 3000, "output_tokens": 5}})
        .to_string();
        let usage = parse_message(&text, "m").unwrap().usage;
        assert_eq!(
            usage,
            TokenUsage {
                input_tokens: 3210,
                output_tokens: 5,
                cache_read_tokens: 3000,
                cache_write_tokens: 200,
            }
        );
    }

    #[test]
    fn tool_input_falls_back_to_the_raw_text() {
        assert_eq!(
            tool_input(json!({}), "{\"a\":[1,".into()),
            json!("{\"a\":[1,")
        );
        assert_eq!(tool_input(json!({}), "{\"a\":1}".into()), json!({"a": 1}));
        assert_eq!(tool_input(json!({"b": 2}), " ".into()), json!({"b": 2}));
        assert_eq!(
            tool_input(serde_json::Value::Null, String::new()),
            json!({})
        );
    }
}
