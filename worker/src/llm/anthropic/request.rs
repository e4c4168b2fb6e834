//! The body of a Messages API request, built from the provider-neutral history, with prompt
//! caching breakpoints on the tools, the system prompt and the end of the conversation.

use serde::Serialize;

use crate::llm::{ChatRequest, ContentBlock, Message, Role};

#[derive(Debug, Serialize)]
pub struct MessagesRequest<'a> {
    model: &'a str,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    system: Vec<SystemBlock<'a>>,
    messages: Vec<ApiMessage<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<ApiTool<'a>>,
    pub(super) stream: bool,
}

/// A prompt caching breakpoint: the request's prefix up to here is cached for reuse.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
struct CacheControl {
    #[serde(rename = "type")]
    kind: &'static str,
}

const EPHEMERAL: CacheControl = CacheControl { kind: "ephemeral" };

#[derive(Debug, Serialize)]
struct SystemBlock<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
    cache_control: CacheControl,
}

#[derive(Debug, Serialize)]
struct ApiMessage<'a> {
    role: &'static str,
    content: Vec<Block<'a>>,
}

/// A content block, and whether the cached prefix ends with it.
#[derive(Debug, Serialize)]
struct Block<'a> {
    #[serde(flatten)]
    block: ApiBlock<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_control: Option<CacheControl>,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_control: Option<CacheControl>,
}

impl<'a> MessagesRequest<'a> {
    /// The request, with its three caching breakpoints: after the tools (the last tool),
    /// after the system prompt, and at the end of the conversation (its last block), so each
    /// turn reads the previous turn's prefix from the cache.
    pub(super) fn new(model: &'a str, request: &'a ChatRequest, stream: bool) -> Self {
        let mut tools: Vec<ApiTool<'a>> = request
            .tools
            .iter()
            .map(|tool| ApiTool {
                name: &tool.name,
                description: &tool.description,
                input_schema: &tool.input_schema,
                cache_control: None,
            })
            .collect();
        if let Some(last) = tools.last_mut() {
            last.cache_control = Some(EPHEMERAL);
        }
        let system = if request.system.is_empty() {
            Vec::new()
        } else {
            vec![SystemBlock {
                kind: "text",
                text: &request.system,
                cache_control: EPHEMERAL,
            }]
        };
        let mut messages = api_messages(&request.messages);
        if let Some(last) = messages.last_mut().and_then(|m| m.content.last_mut()) {
            last.cache_control = Some(EPHEMERAL);
        }
        MessagesRequest {
            model,
            max_tokens: request.max_tokens,
            system,
            messages,
            tools,
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
        let blocks: Vec<Block<'_>> = message
            .content
            .iter()
            .filter_map(api_block)
            .map(|block| Block {
                block,
                cache_control: None,
            })
            .collect();
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
            .sort_by_key(|b| !matches!(b.block, ApiBlock::ToolResult { .. }));
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

    #[test]
    fn breakpoints_sit_on_the_last_tool_the_system_prompt_and_the_last_block() {
        let tool = |name: &str| crate::llm::ToolSpec {
            name: name.into(),
            description: format!("{name} a file"),
            input_schema: json!({"type": "object"}),
        };
        let request = ChatRequest {
            session: crate::llm::SessionInfo {
                label: "explore".into(),
                attempt: 1,
            },
            system: "You explore.".into(),
            messages: vec![
                Message::user_text("Start."),
                Message {
                    role: Role::Assistant,
                    content: vec![ContentBlock::ToolUse {
                        id: "toolu_1".into(),
                        name: "read_file".into(),
                        input: json!({"path": "a"}),
                    }],
                },
                Message {
                    role: Role::User,
                    content: vec![ContentBlock::ToolResult {
                        tool_use_id: "toolu_1".into(),
                        content: "contents".into(),
                        is_error: false,
                    }],
                },
            ],
            tools: vec![tool("read"), tool("write")],
            max_tokens: 100,
        };
        let body = serde_json::to_value(MessagesRequest::new("m", &request, true)).unwrap();
        assert_eq!(
            body,
            json!({
                "model": "m",
                "max_tokens": 100,
                "system": [{"type": "text", "text": "You explore.",
                            "cache_control": {"type": "ephemeral"}}],
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "Start."}]},
                    {"role": "assistant", "content": [
                        {"type": "tool_use", "id": "toolu_1", "name": "read_file",
                         "input": {"path": "a"}}
                    ]},
                    {"role": "user", "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "contents",
                         "cache_control": {"type": "ephemeral"}}
                    ]}
                ],
                "tools": [
                    {"name": "read", "description": "read a file",
                     "input_schema": {"type": "object"}},
                    {"name": "write", "description": "write a file",
                     "input_schema": {"type": "object"},
                     "cache_control": {"type": "ephemeral"}}
                ],
                "stream": true
            })
        );
    }
}
