//! A fake Anthropic Messages API (`POST /v1/messages`) on 127.0.0.1: answers from a script, as
//! JSON or as the API's SSE events, and checks every request the way the API validates it.

use std::collections::HashSet;

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use crate::fake_llm::{
    Dialect, FakeModel, Reply, Turn, TurnBlock, check_input_schema, check_json_content_type,
    header_text, json_response, pieces, sse_response, stalled_json_response, unknown_fields,
    valid_tool_name,
};
use crate::prompt_cache::Piece;

/// The API key the fake accepts.
pub const API_KEY: &str = "sk-ant-fake-0123456789";
/// The `anthropic-version` the fake accepts.
pub const API_VERSION: &str = "2023-06-01";

const TOP_LEVEL: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "system",
    "tools",
    "tool_choice",
    "stream",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "metadata",
    "thinking",
    "service_tier",
    // Sent by Claude Code (with its `anthropic-beta` flags).
    "context_management",
    "output_config",
];

/// The fake server. Stops when dropped.
pub type FakeAnthropic = FakeModel<Anthropic>;

/// The Anthropic Messages API (`POST /v1/messages`).
pub struct Anthropic;

impl Dialect for Anthropic {
    const PATH: &'static str = "/v1/messages";

    fn base_url(origin: &str) -> String {
        origin.to_string()
    }

    fn check(headers: &HeaderMap, body: &Value) -> Vec<String> {
        let mut problems = check_json_content_type(headers);
        if header_text(headers, "x-api-key") != Some(API_KEY) {
            problems.push("x-api-key: missing or not the expected key".to_string());
        }
        if header_text(headers, "anthropic-version") != Some(API_VERSION) {
            problems.push(format!(
                "anthropic-version: {:?}, expected {API_VERSION}",
                header_text(headers, "anthropic-version")
            ));
        }
        if !body.is_object() {
            problems.push("body: not an object".to_string());
            return problems;
        }
        problems.extend(unknown_fields(body, TOP_LEVEL));
        if body["model"].as_str().is_none_or(str::is_empty) {
            problems.push("model: Field required".to_string());
        }
        if body["max_tokens"].as_u64().is_none_or(|n| n < 1) {
            problems.push("max_tokens: Field required (an integer of at least 1)".to_string());
        }
        if !matches!(body.get("stream"), None | Some(Value::Bool(_))) {
            problems.push("stream: not a boolean".to_string());
        }
        match body.get("system") {
            None | Some(Value::String(_)) => {}
            Some(Value::Array(blocks)) if blocks.iter().all(|b| b["type"] == "text") => {}
            Some(_) => problems.push("system: not a string or text blocks".to_string()),
        }
        problems.extend(check_messages(&body["messages"]));
        problems.extend(check_tools(body.get("tools")));
        problems
    }

    fn respond(reply: Reply, request: &Value, number: usize) -> Response {
        let model = request["model"].as_str().unwrap_or_default();
        let stream = request["stream"] == Value::Bool(true);
        match reply {
            Reply::Turn(turn) if stream => sse_response(frames(&turn, model, number), None),
            Reply::Turn(turn) => json_response(StatusCode::OK, &message_json(&turn, model, number)),
            Reply::Stall { turn, events } if stream => {
                sse_response(frames(&turn, model, number), Some(events))
            }
            Reply::Stall { .. } => stalled_json_response(),
            Reply::RateLimited { retry_after } => {
                let mut response = error_response(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limit_error",
                    "Number of request tokens has exceeded your per-minute rate limit",
                );
                if let Ok(value) = retry_after.parse() {
                    response.headers_mut().insert("retry-after", value);
                }
                response
            }
            Reply::ServerError { status } => {
                let status = StatusCode::from_u16(status).unwrap();
                if status.as_u16() == 529 {
                    error_response(status, "overloaded_error", "Overloaded")
                } else {
                    error_response(status, "api_error", "Internal server error")
                }
            }
            Reply::BadRequest { message } => Self::bad_request(&message),
        }
    }

    fn bad_request(message: &str) -> Response {
        error_response(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    fn prompt(body: &Value) -> Option<Vec<Piece>> {
        Some(prompt_pieces(body))
    }
}

fn error_response(status: StatusCode, kind: &str, message: &str) -> Response {
    json_response(
        status,
        &json!({"type": "error", "error": {"type": kind, "message": message}}),
    )
}

fn check_messages(messages: &Value) -> Vec<String> {
    let Some(messages) = messages.as_array().filter(|m| !m.is_empty()) else {
        return vec!["messages: Field required (a non-empty array)".to_string()];
    };
    let mut problems = Vec::new();
    let mut seen_ids = HashSet::new();
    let mut pending_calls: Vec<String> = Vec::new();
    let mut previous_role = None;
    for (i, message) in messages.iter().enumerate() {
        let role = message["role"].as_str().unwrap_or_default();
        // Claude Code lists its deferred tools in a system entry between the turns; the API
        // takes it out of the alternation.
        if role == "system" && i > 0 {
            continue;
        }
        if !matches!(role, "user" | "assistant") {
            problems.push(format!(
                "messages.{i}.role: {role:?} is not user or assistant"
            ));
            continue;
        }
        if i == 0 && role != "user" {
            problems.push("messages.0.role: the first message must use the user role".into());
        }
        if previous_role == Some(role) {
            problems.push(format!(
                "messages.{i}: roles must alternate between user and assistant"
            ));
        }
        previous_role = Some(role);
        let blocks = match &message["content"] {
            Value::String(text) if !text.is_empty() => Vec::new(),
            Value::Array(blocks) if !blocks.is_empty() => blocks.clone(),
            _ => {
                problems.push(format!("messages.{i}.content: must be non-empty"));
                Vec::new()
            }
        };
        // The calls of the previous assistant message must all be answered first, here.
        let answered: Vec<String> = blocks
            .iter()
            .take_while(|b| b["type"] == "tool_result")
            .filter_map(|b| b["tool_use_id"].as_str().map(str::to_string))
            .collect();
        if !pending_calls.is_empty() {
            let missing: Vec<&String> = pending_calls
                .iter()
                .filter(|id| !answered.contains(id))
                .collect();
            if !missing.is_empty() {
                problems.push(format!(
                    "messages.{i}: tool_use ids were found without tool_result blocks immediately after: {missing:?}"
                ));
            }
        }
        let expected = std::mem::take(&mut pending_calls);
        let mut results_done = false;
        for (j, block) in blocks.iter().enumerate() {
            let at = format!("messages.{i}.content.{j}");
            match (block["type"].as_str().unwrap_or_default(), role) {
                ("text", _) => {
                    results_done = true;
                    if block["text"].as_str().is_none_or(|t| t.trim().is_empty()) {
                        problems.push(format!("{at}: text content blocks must be non-empty"));
                    }
                }
                ("tool_use", "assistant") => {
                    let id = block["id"].as_str().unwrap_or_default();
                    if id.is_empty() || !seen_ids.insert(id.to_string()) {
                        problems.push(format!("{at}: tool_use id {id:?} is empty or not unique"));
                    }
                    if !block["name"].as_str().is_some_and(valid_tool_name) {
                        problems.push(format!("{at}.name: not a valid tool name"));
                    }
                    if !block["input"].is_object() {
                        problems.push(format!("{at}.input: Input should be a valid dictionary"));
                    }
                    pending_calls.push(id.to_string());
                }
                ("tool_result", "user") => {
                    let id = block["tool_use_id"].as_str().unwrap_or_default();
                    if results_done {
                        problems.push(format!("{at}: tool_result blocks must come first"));
                    }
                    if !expected.iter().any(|e| e == id) {
                        problems.push(format!(
                            "{at}: unexpected tool_use_id {id:?}: each tool_result must have a corresponding tool_use in the previous message"
                        ));
                    }
                    if !matches!(
                        block.get("content"),
                        None | Some(Value::String(_)) | Some(Value::Array(_))
                    ) {
                        problems.push(format!("{at}.content: not a string or blocks"));
                    }
                    if !matches!(block.get("is_error"), None | Some(Value::Bool(_))) {
                        problems.push(format!("{at}.is_error: not a boolean"));
                    }
                }
                (kind, role) => {
                    problems.push(format!("{at}: a {kind:?} block in a {role} message"))
                }
            }
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
        problems.extend(
            unknown_fields(
                tool,
                &["name", "description", "input_schema", "cache_control"],
            )
            .into_iter()
            .map(|p| format!("tools.{i}.{p}")),
        );
        let name = tool["name"].as_str().unwrap_or_default();
        if !valid_tool_name(name) || !names.insert(name.to_string()) {
            problems.push(format!(
                "tools.{i}.name: {name:?} is not a valid, unique tool name"
            ));
        }
        if !matches!(tool.get("description"), None | Some(Value::String(_))) {
            problems.push(format!("tools.{i}.description: not a string"));
        }
        problems.extend(check_input_schema(name, &tool["input_schema"]));
    }
    problems
}

fn stop_reason(turn: &Turn) -> &'static str {
    if turn.truncated {
        "max_tokens"
    } else if turn.has_tool_calls() {
        "tool_use"
    } else {
        "end_turn"
    }
}

fn message_json(turn: &Turn, model: &str, number: usize) -> Value {
    let content: Vec<Value> = turn
        .blocks
        .iter()
        .map(|block| match block {
            TurnBlock::Text(text) => json!({"type": "text", "text": text}),
            TurnBlock::ToolCall {
                id,
                name,
                arguments,
            } => {
                // The API parses the input itself; a model's malformed text stays a string.
                let input = serde_json::from_str::<Value>(arguments)
                    .unwrap_or_else(|_| Value::String(arguments.clone()));
                json!({"type": "tool_use", "id": id, "name": name, "input": input})
            }
        })
        .collect();
    json!({
        "id": format!("msg_fake_{number:04}"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(turn),
        "stop_sequence": null,
        "usage": usage(turn, turn.output_tokens)
    })
}

/// The `usage` object of an answer (the output tokens so far: 1 in `message_start`).
fn usage(turn: &Turn, output_tokens: u64) -> Value {
    json!({
        "input_tokens": turn.input_tokens,
        "cache_creation_input_tokens": turn.cache_creation_tokens,
        "cache_read_input_tokens": turn.cache_read_tokens,
        "output_tokens": output_tokens,
    })
}

/// The prompt's blocks in the order the API reads them: tools, system, messages; a block with
/// `cache_control` ends a cacheable prefix. The marker itself is neither content nor counted: a
/// block that carried it in one request and not in the next is the same block to the cache.
fn prompt_pieces(body: &Value) -> Vec<Piece> {
    let piece = |block: &Value| {
        let mut content = block.clone();
        let marker = content
            .as_object_mut()
            .and_then(|fields| fields.remove("cache_control"));
        Piece {
            text: content.to_string(),
            breakpoint: marker.is_some(),
        }
    };
    let mut pieces: Vec<Piece> = body["tools"]
        .as_array()
        .map(|tools| tools.iter().map(piece).collect())
        .unwrap_or_default();
    match &body["system"] {
        Value::Array(blocks) => pieces.extend(blocks.iter().map(piece)),
        Value::Null => {}
        system => pieces.push(piece(system)),
    }
    for message in body["messages"].as_array().into_iter().flatten() {
        match &message["content"] {
            Value::Array(blocks) => pieces.extend(blocks.iter().map(piece)),
            content => pieces.push(piece(content)),
        }
    }
    pieces
}

/// The SSE events of `turn`, as the API streams them.
fn frames(turn: &Turn, model: &str, number: usize) -> Vec<String> {
    let event = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    let mut frames = vec![event(
        "message_start",
        json!({"type": "message_start", "message": {
            "id": format!("msg_fake_{number:04}"), "type": "message", "role": "assistant",
            "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": usage(turn, 1)
        }}),
    )];
    for (index, block) in turn.blocks.iter().enumerate() {
        let (start, deltas): (Value, Vec<Value>) = match block {
            TurnBlock::Text(text) => (
                json!({"type": "text", "text": ""}),
                pieces(text, 5)
                    .into_iter()
                    .map(|p| json!({"type": "text_delta", "text": p}))
                    .collect(),
            ),
            TurnBlock::ToolCall {
                id,
                name,
                arguments,
            } => (
                json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                pieces(arguments, 7)
                    .into_iter()
                    .map(|p| json!({"type": "input_json_delta", "partial_json": p}))
                    .collect(),
            ),
        };
        frames.push(event(
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": start}),
        ));
        if index == 0 {
            frames.push(event("ping", json!({"type": "ping"})));
        }
        for delta in deltas {
            frames.push(event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index, "delta": delta}),
            ));
        }
        frames.push(event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
    }
    frames.push(event(
        "message_delta",
        json!({"type": "message_delta",
               "delta": {"stop_reason": stop_reason(turn), "stop_sequence": null},
               "usage": {"output_tokens": turn.output_tokens}}),
    ));
    frames.push(event("message_stop", json!({"type": "message_stop"})));
    frames
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::fake_llm::post_raw;

    const GOOD_HEADERS: &[(&str, &str)] = &[
        ("content-type", "application/json"),
        ("x-api-key", API_KEY),
        ("anthropic-version", API_VERSION),
    ];

    #[tokio::test]
    async fn reports_what_the_api_rejects() {
        let fake = FakeAnthropic::start([]).await;
        let body = json!({
            "model": "",
            "messages": [
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "t1", "name": "read file", "input": "x"}]},
                {"role": "assistant", "content": [{"type": "text", "text": ""}]},
                {"role": "user", "content": [
                    {"type": "text", "text": "hi"},
                    {"type": "tool_result", "tool_use_id": "t9", "content": "r"}]}
            ],
            "tools": [{"name": "read_file", "input_schema": {"type": "string", "required": ["p"]}}],
            "temperature_x": 1
        });
        let (status, answer) = post_raw(
            &fake.base_url(),
            "/v1/messages",
            &[("content-type", "application/json")],
            &body.to_string(),
        )
        .await;
        assert_eq!(status, 400);
        let answer: Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(answer["error"]["type"], "invalid_request_error");
        assert_eq!(
            fake.violations(),
            vec![
                "request 1: x-api-key: missing or not the expected key",
                "request 1: anthropic-version: None, expected 2023-06-01",
                "request 1: temperature_x: unknown field",
                "request 1: model: Field required",
                "request 1: max_tokens: Field required (an integer of at least 1)",
                "request 1: messages.0.role: the first message must use the user role",
                "request 1: messages.0.content.0.name: not a valid tool name",
                "request 1: messages.0.content.0.input: Input should be a valid dictionary",
                "request 1: messages.1: roles must alternate between user and assistant",
                "request 1: messages.1: tool_use ids were found without tool_result blocks immediately after: [\"t1\"]",
                "request 1: messages.1.content.0: text content blocks must be non-empty",
                "request 1: messages.2.content.1: tool_result blocks must come first",
                "request 1: messages.2.content.1: unexpected tool_use_id \"t9\": each tool_result must have a corresponding tool_use in the previous message",
                "request 1: tool read_file: the input schema's type is not \"object\"",
                "request 1: tool read_file: required \"p\" is not one of its properties",
            ]
        );
    }

    #[tokio::test]
    async fn accepts_a_valid_conversation_and_serves_the_script() {
        let fake = FakeAnthropic::start([Reply::Turn(Turn::text("ok"))]).await;
        let body = json!({
            "model": "m", "max_tokens": 10, "system": "s", "stream": false,
            "messages": [
                {"role": "user", "content": "go"},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "t1", "name": "read_file", "input": {"path": "a"}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": "text", "is_error": false},
                    {"type": "text", "text": "more"}]}
            ],
            "tools": [{"name": "read_file", "description": "d", "input_schema":
                {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}]
        });
        let (status, answer) = post_raw(
            &fake.base_url(),
            "/v1/messages",
            GOOD_HEADERS,
            &body.to_string(),
        )
        .await;
        assert_eq!(status, 200);
        let answer: Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(answer["content"], json!([{"type": "text", "text": "ok"}]));
        assert_eq!(fake.violations(), Vec::<String>::new());
        // A request past the end of the script is a violation, not a silent answer.
        let (status, _) = post_raw(
            &fake.base_url(),
            "/v1/messages",
            GOOD_HEADERS,
            &body.to_string(),
        )
        .await;
        assert_eq!(status, 400);
        assert_eq!(fake.violations(), vec!["request 2: no scripted reply left"]);
    }

    /// A conversation whose system prompt (4,000 tokens) carries a breakpoint, and whose last
    /// block does; `extra` more user text.
    fn cached_body(extra: &str) -> Value {
        let mut content = vec![json!({"type": "text", "text": "go"})];
        if !extra.is_empty() {
            content.push(json!({"type": "text", "text": extra}));
        }
        if let Some(last) = content.last_mut() {
            last["cache_control"] = json!({"type": "ephemeral"});
        }
        json!({
            "model": "m", "max_tokens": 10, "stream": false,
            "system": [{"type": "text", "text": "s".repeat(16_000),
                        "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": content}],
        })
    }

    #[tokio::test]
    async fn a_metering_fake_reports_cache_writes_and_reads_as_the_api_does() {
        let fake = FakeAnthropic::start([
            Reply::Turn(Turn::text("one")),
            Reply::Turn(Turn::text("two")),
        ])
        .await;
        fake.meter_prompts();
        let mut usages = Vec::new();
        for extra in ["", &"x".repeat(800)] {
            let (status, answer) = post_raw(
                &fake.base_url(),
                "/v1/messages",
                GOOD_HEADERS,
                &cached_body(extra).to_string(),
            )
            .await;
            assert_eq!(status, 200, "{answer}");
            let answer: Value = serde_json::from_str(&answer).unwrap();
            usages.push(answer["usage"].clone());
        }
        assert_eq!(fake.violations(), Vec::<String>::new());
        // The first prompt writes its prefix; the second reads it, though its first message
        // no longer carries the breakpoint (it moved to the new last block).
        let (first, second) = (&usages[0], &usages[1]);
        assert_eq!(first["cache_read_input_tokens"], 0);
        assert!(first["cache_creation_input_tokens"].as_u64().unwrap() > 4000);
        assert_eq!(first["input_tokens"], 0);
        assert_eq!(
            second["cache_read_input_tokens"],
            first["cache_creation_input_tokens"]
        );
        assert!(second["cache_creation_input_tokens"].as_u64().unwrap() >= 200);
        let usage = fake.prompt_usage();
        assert_eq!(usage.len(), 2);
        assert_eq!(
            usage[1].cache_read_input_tokens,
            second["cache_read_input_tokens"].as_u64().unwrap()
        );
    }

    #[tokio::test]
    async fn a_prompt_beyond_the_window_is_refused_as_the_api_refuses_it() {
        let fake = FakeAnthropic::start([Reply::Turn(Turn::text("ok"))]).await;
        fake.set_context_window(1000);
        let (status, answer) = post_raw(
            &fake.base_url(),
            "/v1/messages",
            GOOD_HEADERS,
            &cached_body("").to_string(),
        )
        .await;
        assert_eq!(status, 400);
        let answer: Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(answer["error"]["type"], "invalid_request_error");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with("prompt is too long: ")
                && message.ends_with(" tokens > 1000 maximum"),
            "{message}"
        );
        assert_eq!(fake.violations(), vec![format!("request 1: {message}")]);
        // The scripted reply is still there for a prompt that fits.
        assert_eq!(fake.remaining(), 1);
    }
}
