//! The body of a Messages API request, built from the provider-neutral history.

use serde::Serialize;

use crate::llm::{ChatRequest, ContentBlock, Message, Role};

#[derive(Debug, Serialize)]
pub struct MessagesRequest<'a> {
    model: &'a str,
    max_tokens: u32,
    #[serde(skip_serializing_if = "str::is_empty")]
    system: &'a str,
    messages: Vec<ApiMessage<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<ApiTool<'a>>,
    pub(super) stream: bool,
}

#[derive(Debug, Serialize)]
struct ApiMessage<'a> {
    role: &'static str,
    content: Vec<ApiBlock<'a>>,
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ApiBlock<'a> {
    Text {
        text: &'a str,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: serde_json::Value,
    },
    ToolResult {
        tool_use_id: &'a str,
        #[serde(skip_serializing_if = "str::is_empty")]
        content: &'a str,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        is_error: bool,
    },
}

#[derive(Debug, Serialize)]
struct ApiTool<'a> {
    name: &'a str,
    description: &'a str,
    input_schema: &'a serde_json::Value,
}

impl<'a> MessagesRequest<'a> {
    pub(super) fn new(model: &'a str, request: &'a ChatRequest, stream: bool) -> Self {
        MessagesRequest {
            model,
            max_tokens: request.max_tokens,
            system: &request.system,
            messages: api_messages(&request.messages),
            tools: request
                .tools
                .iter()
                .map(|tool| ApiTool {
                    name: &tool.name,
                    description: &tool.description,
                    input_schema: &tool.input_schema,
                })
                .collect(),
            stream,
        }
    }
}

/// The history as the API wants it: no empty text blocks or empty messages, consecutive messages
/// of one role merged (so roles alternate), tool results first in their user message, and every
/// tool input an object (an unparsable one, kept as a string in the history, is sent as `{}`;
/// its tool result already tells the model what was wrong).
fn api_messages(messages: &[Message]) -> Vec<ApiMessage<'_>> {
    let mut out: Vec<ApiMessage<'_>> = Vec::new();
    for message in messages {
        let role = match message.role {
            Role::User => "user",
            Role::Assistant => "assistant",
        };
        let blocks: Vec<ApiBlock<'_>> = message.content.iter().filter_map(api_block).collect();
        if blocks.is_empty() {
            continue;
        }
        match out.last_mut() {
            Some(last) if last.role == role => last.content.extend(blocks),
            _ => out.push(ApiMessage {
                role,
                content: blocks,
            }),
        }
    }
    for message in &mut out {
        message
            .content
            .sort_by_key(|block| !matches!(block, ApiBlock::ToolResult { .. }));
    }
    out
}

fn api_block(block: &ContentBlock) -> Option<ApiBlock<'_>> {
    match block {
        ContentBlock::Text { text } if text.trim().is_empty() => None,
        ContentBlock::Text { text } => Some(ApiBlock::Text { text }),
        ContentBlock::ToolUse { id, name, input } => Some(ApiBlock::ToolUse {
            id,
            name,
            input: match input {
                serde_json::Value::Object(_) => input.clone(),
                _ => serde_json::Value::Object(serde_json::Map::new()),
            },
        }),
        ContentBlock::ToolResult {
            tool_use_id,
            content,
            is_error,
        } => Some(ApiBlock::ToolResult {
            tool_use_id,
            content,
            is_error: *is_error,
        }),
    }
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;
    use serde_json::json;

    use super::*;

    fn text(text: &str) -> ContentBlock {
        ContentBlock::Text { text: text.into() }
    }

    #[test]
    fn history_is_merged_into_alternating_roles_with_tool_results_first() {
        let messages = vec![
            Message::user_text("Start."),
            Message {
                role: Role::Assistant,
                content: vec![
                    text(""),
                    ContentBlock::ToolUse {
                        id: "toolu_1".into(),
                        name: "read_file".into(),
                        input: json!("{\"path\": "),
                    },
                ],
            },
            Message {
                role: Role::User,
                content: vec![
                    text("Also note this."),
                    ContentBlock::ToolResult {
                        tool_use_id: "toolu_1".into(),
                        content: "input is not JSON".into(),
                        is_error: true,
                    },
                ],
            },
            Message::user_text("An injected message."),
            Message {
                role: Role::Assistant,
                content: vec![],
            },
        ];
        let api = serde_json::to_value(api_messages(&messages)).unwrap();
        assert_eq!(
            api,
            json!([
                {"role": "user", "content": [{"type": "text", "text": "Start."}]},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "toolu_1", "name": "read_file", "input": {}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1",
                     "content": "input is not JSON", "is_error": true},
                    {"type": "text", "text": "Also note this."},
                    {"type": "text", "text": "An injected message."}
                ]}
            ])
        );
    }
}
