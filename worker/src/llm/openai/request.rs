//! The body of a Chat Completions request, built from the provider-neutral history.

use serde::Serialize;

use crate::llm::{ChatRequest, ContentBlock, Message, Role};

#[derive(Debug, Serialize)]
pub struct CompletionRequest<'a> {
    model: &'a str,
    messages: Vec<ApiMessage<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<ApiTool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u32>,
    pub(super) stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
}

#[derive(Debug, Serialize)]
struct StreamOptions {
    include_usage: bool,
}

#[derive(Debug, Serialize)]
#[serde(tag = "role", rename_all = "snake_case")]
enum ApiMessage<'a> {
    System {
        content: &'a str,
    },
    User {
        content: String,
    },
    Assistant {
        content: Option<String>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        tool_calls: Vec<ApiToolCall<'a>>,
    },
    Tool {
        tool_call_id: &'a str,
        content: String,
    },
}

#[derive(Debug, Serialize)]
struct ApiToolCall<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: ApiFunctionCall<'a>,
}

#[derive(Debug, Serialize)]
struct ApiFunctionCall<'a> {
    name: &'a str,
    /// The arguments as a JSON text, as the API wants them.
    arguments: String,
}

#[derive(Debug, Serialize)]
struct ApiTool<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: ApiFunction<'a>,
}

#[derive(Debug, Serialize)]
struct ApiFunction<'a> {
    name: &'a str,
    description: &'a str,
    parameters: &'a serde_json::Value,
}

impl<'a> CompletionRequest<'a> {
    pub(super) fn new(
        model: &'a str,
        request: &'a ChatRequest,
        stream: bool,
        completion_tokens_field: bool,
    ) -> Self {
        let mut messages = Vec::new();
        if !request.system.is_empty() {
            messages.push(ApiMessage::System {
                content: &request.system,
            });
        }
        for message in &request.messages {
            push_api_messages(&mut messages, message);
        }
        CompletionRequest {
            model,
            messages,
            tools: request
                .tools
                .iter()
                .map(|tool| ApiTool {
                    kind: "function",
                    function: ApiFunction {
                        name: &tool.name,
                        description: &tool.description,
                        parameters: &tool.input_schema,
                    },
                })
                .collect(),
            max_tokens: (!completion_tokens_field).then_some(request.max_tokens),
            max_completion_tokens: completion_tokens_field.then_some(request.max_tokens),
            stream,
            stream_options: stream.then_some(StreamOptions {
                include_usage: true,
            }),
        }
    }
}

/// Appends one history message in the API's shape: a user message's tool results become `tool`
/// messages (one per result, first, so they follow the assistant message that called), then its
/// text one user message; an assistant message keeps its text and its calls (an unparsable
/// input, kept as a string in the history, is sent as `{}`: servers such as Ollama reject
/// arguments that are not JSON, and the tool result already tells the model what was wrong).
/// Empty messages are left out.
fn push_api_messages<'a>(out: &mut Vec<ApiMessage<'a>>, message: &'a Message) {
    let text = message
        .content
        .iter()
        .filter_map(|block| match block {
            ContentBlock::Text { text } if !text.trim().is_empty() => Some(text.as_str()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n\n");
    match message.role {
        Role::User => {
            for block in &message.content {
                if let ContentBlock::ToolResult {
                    tool_use_id,
                    content,
                    is_error,
                } = block
                {
                    out.push(ApiMessage::Tool {
                        tool_call_id: tool_use_id,
                        content: if *is_error {
                            format!("Error: {content}")
                        } else {
                            content.clone()
                        },
                    });
                }
            }
            if !text.is_empty() {
                out.push(ApiMessage::User { content: text });
            }
        }
        Role::Assistant => {
            let tool_calls: Vec<ApiToolCall<'a>> = message
                .content
                .iter()
                .filter_map(|block| match block {
                    ContentBlock::ToolUse { id, name, input } => Some(ApiToolCall {
                        id,
                        kind: "function",
                        function: ApiFunctionCall {
                            name,
                            arguments: match input {
                                serde_json::Value::Object(_) => input.to_string(),
                                _ => "{}".to_string(),
                            },
                        },
                    }),
                    _ => None,
                })
                .collect();
            if text.is_empty() && tool_calls.is_empty() {
                return;
            }
            out.push(ApiMessage::Assistant {
                content: (!text.is_empty()).then_some(text),
                tool_calls,
            });
        }
    }
}
