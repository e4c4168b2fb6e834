//! A fake OpenAI Responses API (`POST /v1/responses`) on 127.0.0.1, as Codex calls it: answers
//! from a script with the API's streamed events (`response.created` … `response.completed`),
//! including function calls of tools grouped in a namespace (how Codex offers MCP tools), and
//! checks every request the way the API validates it.

use std::collections::HashSet;

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use crate::fake_llm::{
    Dialect, FakeModel, Reply, Turn, TurnBlock, check_input_schema, json_response, pieces,
    sse_response, stalled_json_response, unknown_fields, valid_tool_name,
};
use crate::fake_openai::{Rules, invalid_request, rate_limited, server_error};

/// The API key the fake accepts.
pub const API_KEY: &str = "sk-fake-responses-0123456789";

const CREATED: u64 = 1_700_000_000;

const TOP_LEVEL: &[&str] = &[
    "model",
    "input",
    "instructions",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "reasoning",
    "store",
    "stream",
    "include",
    "prompt_cache_key",
    "prompt_cache_retention",
    "text",
    "client_metadata",
    "service_tier",
    "max_output_tokens",
    "max_tool_calls",
    "temperature",
    "top_p",
    "metadata",
    "previous_response_id",
    "truncation",
    "user",
    "safety_identifier",
    "background",
    "conversation",
];

/// Item types the fake accepts in `input`.
const INPUT_ITEMS: &[&str] = &[
    "message",
    "function_call",
    "function_call_output",
    "reasoning",
    "custom_tool_call",
    "custom_tool_call_output",
    "local_shell_call",
    "local_shell_call_output",
    "web_search_call",
    "compaction",
];

/// Tool types the fake accepts in `tools`.
const TOOL_TYPES: &[&str] = &[
    "function",
    "namespace",
    "custom",
    "web_search",
    "web_search_preview",
    "local_shell",
    "file_search",
    "image_generation",
];

/// The fake server. Stops when dropped. A scripted tool call named `<namespace>__<tool>` of a
/// namespace the request offers is answered as a call of `<tool>` in that namespace (so
/// `mcp__omoi__submit` is Codex's `submit` of `mcp__omoi`).
pub type FakeResponses = FakeModel<Responses>;

/// The OpenAI Responses API (`POST /v1/responses`).
pub struct Responses;

impl Dialect for Responses {
    const PATH: &'static str = "/v1/responses";

    fn base_url(origin: &str) -> String {
        format!("{origin}/v1")
    }

    fn check(headers: &HeaderMap, body: &Value) -> Vec<String> {
        let rules = Rules {
            key: API_KEY,
            fields: TOP_LEVEL,
            unknown: "Unknown parameter",
            no_model: "model: Missing required parameter",
        };
        let mut problems = match rules.check(headers, body) {
            Ok(problems) => problems,
            Err(problems) => return problems,
        };
        if !matches!(body.get("stream"), None | Some(Value::Bool(_))) {
            problems.push("stream: not a boolean".to_string());
        }
        if !matches!(body.get("instructions"), None | Some(Value::String(_))) {
            problems.push("instructions: not a string".to_string());
        }
        if body["store"] == Value::Bool(false) && body.get("previous_response_id").is_some() {
            problems.push("previous_response_id: not allowed when store is false".to_string());
        }
        if let Some(include) = body.get("include") {
            let known = [
                "reasoning.encrypted_content",
                "message.output_text.logprobs",
            ];
            match include.as_array() {
                Some(items)
                    if items
                        .iter()
                        .all(|i| i.as_str().is_some_and(|i| known.contains(&i))) => {}
                _ => problems.push(format!("include: unsupported value {include}")),
            }
        }
        problems.extend(check_input(&body["input"]));
        problems.extend(check_tools(body.get("tools")));
        problems
    }

    fn respond(reply: Reply, request: &Value, number: usize) -> Response {
        let model = request["model"].as_str().unwrap_or_default();
        let stream = request["stream"] == Value::Bool(true);
        let namespaces = namespaces_of(request);
        let answer = Answer {
            model,
            number,
            namespaces: &namespaces,
        };
        match reply {
            Reply::Turn(turn) if stream => sse_response(answer.frames(&turn), None),
            Reply::Turn(turn) => json_response(StatusCode::OK, &answer.response(&turn, true)),
            Reply::Stall { turn, events } if stream => {
                sse_response(answer.frames(&turn), Some(events))
            }
            Reply::Stall { .. } => stalled_json_response(),
            Reply::RateLimited { retry_after } => rate_limited(&retry_after),
            Reply::ServerError { status } => server_error(status),
            Reply::BadRequest { message } => Self::bad_request(&message),
        }
    }

    fn bad_request(message: &str) -> Response {
        invalid_request(message)
    }
}

fn check_input(input: &Value) -> Vec<String> {
    let items = match input {
        Value::String(text) if !text.is_empty() => return Vec::new(),
        Value::Array(items) if !items.is_empty() => items,
        _ => return vec!["input: must be a non-empty string or array".to_string()],
    };
    let mut problems = Vec::new();
    let mut calls = HashSet::new();
    for (i, item) in items.iter().enumerate() {
        let at = format!("input[{i}]");
        // A message may leave out `type`.
        let kind = item["type"].as_str().unwrap_or("message");
        if !INPUT_ITEMS.contains(&kind) {
            problems.push(format!("{at}.type: unsupported item type {kind:?}"));
            continue;
        }
        match kind {
            "message" => problems.extend(check_message(&at, item)),
            "function_call" | "custom_tool_call" => {
                let call_id = item["call_id"].as_str().unwrap_or_default();
                if call_id.is_empty() {
                    problems.push(format!("{at}.call_id: Missing required parameter"));
                }
                calls.insert(call_id.to_string());
                if !item["name"].as_str().is_some_and(valid_tool_name) {
                    problems.push(format!("{at}.name: not a valid tool name"));
                }
                let payload = if kind == "function_call" {
                    "arguments"
                } else {
                    "input"
                };
                if !item[payload].is_string() {
                    problems.push(format!("{at}.{payload}: must be a string"));
                }
            }
            "function_call_output" | "custom_tool_call_output" => {
                let call_id = item["call_id"].as_str().unwrap_or_default();
                if !calls.contains(call_id) {
                    problems.push(format!(
                        "{at}: No tool call found for function call output with call_id {call_id}."
                    ));
                }
                if !matches!(
                    item.get("output"),
                    Some(Value::String(_)) | Some(Value::Array(_))
                ) {
                    problems.push(format!("{at}.output: must be a string or content"));
                }
            }
            _ => {}
        }
    }
    problems
}

fn check_message(at: &str, item: &Value) -> Vec<String> {
    let role = item["role"].as_str().unwrap_or_default();
    if !matches!(role, "user" | "assistant" | "system" | "developer") {
        return vec![format!(
            "{at}.role: {role:?} is not user, assistant, system or developer"
        )];
    }
    let parts = match &item["content"] {
        Value::String(_) => return Vec::new(),
        Value::Array(parts) => parts,
        _ => return vec![format!("{at}.content: must be a string or an array")],
    };
    let allowed: &[&str] = if role == "assistant" {
        &["output_text", "refusal"]
    } else {
        &["input_text", "input_image", "input_file"]
    };
    let mut problems = Vec::new();
    for (j, part) in parts.iter().enumerate() {
        let kind = part["type"].as_str().unwrap_or_default();
        if !allowed.contains(&kind) {
            problems.push(format!(
                "{at}.content[{j}].type: {kind:?} is not allowed in a {role} message"
            ));
        } else if kind.ends_with("_text") && !part["text"].is_string() {
            problems.push(format!("{at}.content[{j}].text: must be a string"));
        }
    }
    problems
}

fn check_tools(tools: Option<&Value>) -> Vec<String> {
    let Some(tools) = tools else {
        return Vec::new();
    };
    let Some(tools) = tools.as_array() else {
        return vec!["tools: not an array".to_string()];
    };
    let mut problems = Vec::new();
    let mut names = HashSet::new();
    for (i, tool) in tools.iter().enumerate() {
        let at = format!("tools[{i}]");
        let kind = tool["type"].as_str().unwrap_or_default();
        if !TOOL_TYPES.contains(&kind) {
            problems.push(format!("{at}.type: unsupported tool type {kind:?}"));
            continue;
        }
        match kind {
            "function" => problems.extend(check_function(&at, tool, &mut names)),
            "namespace" => {
                let name = tool["name"].as_str().unwrap_or_default();
                if !valid_tool_name(name) || !names.insert(name.to_string()) {
                    problems.push(format!("{at}.name: {name:?} is not a valid, unique name"));
                }
                let mut inner = HashSet::new();
                match tool["tools"].as_array() {
                    Some(members) => {
                        for (j, member) in members.iter().enumerate() {
                            let at = format!("{at}.tools[{j}]");
                            if member["type"] != "function" {
                                problems.push(format!("{at}.type: a namespace holds functions"));
                            } else {
                                problems.extend(check_function(&at, member, &mut inner));
                            }
                        }
                    }
                    None => problems.push(format!("{at}.tools: must be an array")),
                }
            }
            "custom" => {
                let name = tool["name"].as_str().unwrap_or_default();
                if !valid_tool_name(name) || !names.insert(name.to_string()) {
                    problems.push(format!("{at}.name: {name:?} is not a valid, unique name"));
                }
            }
            _ => {}
        }
    }
    problems
}

fn check_function(at: &str, tool: &Value, names: &mut HashSet<String>) -> Vec<String> {
    let mut problems: Vec<String> = unknown_fields(
        tool,
        &[
            "type",
            "name",
            "description",
            "parameters",
            "strict",
            "defer_loading",
        ],
    )
    .into_iter()
    .map(|p| format!("{at}.{p}"))
    .collect();
    let name = tool["name"].as_str().unwrap_or_default();
    if !valid_tool_name(name) || !names.insert(name.to_string()) {
        problems.push(format!("{at}.name: {name:?} is not a valid, unique name"));
    }
    if !matches!(
        tool.get("description"),
        None | Some(Value::String(_)) | Some(Value::Null)
    ) {
        problems.push(format!("{at}.description: not a string"));
    }
    if let Some(parameters) = tool.get("parameters").filter(|p| !p.is_null()) {
        problems.extend(check_input_schema(name, parameters));
    }
    problems
}

/// The namespaces the request offers, by name.
fn namespaces_of(request: &Value) -> Vec<String> {
    request["tools"]
        .as_array()
        .map(|tools| {
            tools
                .iter()
                .filter(|t| t["type"] == "namespace")
                .filter_map(|t| t["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Writes the answer to one request.
struct Answer<'a> {
    model: &'a str,
    number: usize,
    namespaces: &'a [String],
}

impl Answer<'_> {
    fn id(&self) -> String {
        format!("resp_fake_{:04}", self.number)
    }

    /// The output items of `turn`, whole.
    fn items(&self, turn: &Turn) -> Vec<Value> {
        turn.blocks
            .iter()
            .enumerate()
            .map(|(i, block)| self.item(i, block, true))
            .collect()
    }

    fn item(&self, index: usize, block: &TurnBlock, done: bool) -> Value {
        let status = if done { "completed" } else { "in_progress" };
        match block {
            TurnBlock::Text(text) => {
                let content = if done {
                    json!([{"type": "output_text", "text": text, "annotations": []}])
                } else {
                    json!([])
                };
                json!({"id": format!("msg_fake_{:04}_{index}", self.number), "type": "message",
                       "status": status, "role": "assistant", "content": content})
            }
            TurnBlock::ToolCall {
                id,
                name,
                arguments,
            } => {
                let mut item = json!({
                    "id": format!("fc_fake_{:04}_{index}", self.number), "type": "function_call",
                    "status": status, "arguments": if done { arguments.as_str() } else { "" },
                    "call_id": id, "name": name,
                });
                for namespace in self.namespaces {
                    if let Some(tool) = name.strip_prefix(&format!("{namespace}__")) {
                        item["namespace"] = json!(namespace);
                        item["name"] = json!(tool);
                    }
                }
                item
            }
        }
    }

    fn response(&self, turn: &Turn, done: bool) -> Value {
        let (status, incomplete) = match (done, turn.truncated) {
            (false, _) => ("in_progress", Value::Null),
            (true, false) => ("completed", Value::Null),
            (true, true) => ("incomplete", json!({"reason": "max_output_tokens"})),
        };
        let usage = if done {
            json!({
                "input_tokens": turn.input_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": turn.output_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": turn.input_tokens + turn.output_tokens,
            })
        } else {
            Value::Null
        };
        json!({
            "id": self.id(), "object": "response", "created_at": CREATED, "status": status,
            "error": null, "incomplete_details": incomplete, "model": self.model,
            "output": if done { json!(self.items(turn)) } else { json!([]) },
            "parallel_tool_calls": true, "tool_choice": "auto", "tools": [],
            "usage": usage,
        })
    }

    /// The SSE events of `turn`, as the API streams them.
    fn frames(&self, turn: &Turn) -> Vec<String> {
        let mut events = vec![
            json!({"type": "response.created", "response": self.response(turn, false)}),
            json!({"type": "response.in_progress", "response": self.response(turn, false)}),
        ];
        for (index, block) in turn.blocks.iter().enumerate() {
            let item = self.item(index, block, false);
            let item_id = item["id"].clone();
            events.push(
                json!({"type": "response.output_item.added", "output_index": index, "item": item}),
            );
            match block {
                TurnBlock::Text(text) => {
                    let part = |text: &str| json!({"type": "output_text", "text": text, "annotations": []});
                    events.push(
                        json!({"type": "response.content_part.added", "item_id": item_id,
                        "output_index": index, "content_index": 0, "part": part("")}),
                    );
                    for piece in pieces(text, 16) {
                        events.push(json!({"type": "response.output_text.delta", "item_id": item_id,
                            "output_index": index, "content_index": 0, "delta": piece, "logprobs": []}));
                    }
                    events.push(
                        json!({"type": "response.output_text.done", "item_id": item_id,
                        "output_index": index, "content_index": 0, "text": text, "logprobs": []}),
                    );
                    events.push(
                        json!({"type": "response.content_part.done", "item_id": item_id,
                        "output_index": index, "content_index": 0, "part": part(text)}),
                    );
                }
                TurnBlock::ToolCall { arguments, .. } => {
                    for piece in pieces(arguments, 16) {
                        events.push(json!({"type": "response.function_call_arguments.delta",
                            "item_id": item_id, "output_index": index, "delta": piece}));
                    }
                    events.push(json!({"type": "response.function_call_arguments.done",
                        "item_id": item_id, "output_index": index, "arguments": arguments}));
                }
            }
            events.push(
                json!({"type": "response.output_item.done", "output_index": index,
                "item": self.item(index, block, true)}),
            );
        }
        let last = if turn.truncated {
            "response.incomplete"
        } else {
            "response.completed"
        };
        events.push(json!({"type": last, "response": self.response(turn, true)}));
        events
            .into_iter()
            .enumerate()
            .map(|(sequence, mut event)| {
                event["sequence_number"] = json!(sequence);
                let name = event["type"].as_str().unwrap_or_default().to_string();
                format!("event: {name}\ndata: {event}\n\n")
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
