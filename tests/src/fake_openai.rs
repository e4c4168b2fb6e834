//! A fake OpenAI Chat Completions API (`POST /v1/chat/completions`) on 127.0.0.1: answers from a
//! script, as JSON or as the API's SSE chunks, and checks every request the way the API does.

use std::collections::HashSet;

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use crate::fake_llm::{
    Dialect, FakeModel, Reply, Turn, TurnBlock, check_input_schema, check_json_content_type,
    header_text, json_response, pieces, sse_response, stalled_json_response, unknown_fields,
    valid_tool_name,
};

/// The API key the fake accepts.
pub const API_KEY: &str = "sk-fake-openai-0123456789";

const CREATED: u64 = 1_700_000_000;

const TOP_LEVEL: &[&str] = &[
    "model",
    "messages",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "max_tokens",
    "max_completion_tokens",
    "stream",
    "stream_options",
    "temperature",
    "top_p",
    "n",
    "stop",
    "seed",
    "user",
    "response_format",
    "reasoning_effort",
    "presence_penalty",
    "frequency_penalty",
    "metadata",
    "store",
];

/// The fake server. Stops when dropped.
pub type FakeOpenAi = FakeModel<OpenAi>;

/// The OpenAI Chat Completions API (`POST /v1/chat/completions`).
pub struct OpenAi;

impl Dialect for OpenAi {
    const PATH: &'static str = "/v1/chat/completions";

    fn base_url(origin: &str) -> String {
        format!("{origin}/v1")
    }

    fn check(headers: &HeaderMap, body: &Value) -> Vec<String> {
        let rules = Rules {
            key: API_KEY,
            fields: TOP_LEVEL,
            unknown: "Unrecognized request argument supplied",
            no_model: "model: you must provide a model parameter",
        };
        let mut problems = match rules.check(headers, body) {
            Ok(problems) => problems,
            Err(problems) => return problems,
        };
        for field in ["max_tokens", "max_completion_tokens"] {
            if body.get(field).is_some() && body[field].as_u64().is_none_or(|n| n < 1) {
                problems.push(format!("{field}: not an integer of at least 1"));
            }
        }
        if body.get("max_tokens").is_some() && body.get("max_completion_tokens").is_some() {
            problems.push("max_tokens and max_completion_tokens: only one may be set".into());
        }
        let streaming = match body.get("stream") {
            None => false,
            Some(Value::Bool(stream)) => *stream,
            Some(_) => {
                problems.push("stream: not a boolean".to_string());
                false
            }
        };
        match body.get("stream_options") {
            None => {}
            Some(_) if !streaming => {
                problems.push("stream_options: only allowed when 'stream' is enabled".to_string())
            }
            Some(options) if !options["include_usage"].is_boolean() => {
                problems.push("stream_options.include_usage: not a boolean".to_string())
            }
            Some(_) => {}
        }
        problems.extend(check_messages(&body["messages"]));
        problems.extend(check_tools(body.get("tools")));
        problems
    }

    fn respond(reply: Reply, request: &Value, number: usize) -> Response {
        let model = request["model"].as_str().unwrap_or_default();
        let stream = request["stream"] == Value::Bool(true);
        let usage = request["stream_options"]["include_usage"] == Value::Bool(true);
        match reply {
            Reply::Turn(turn) if stream => sse_response(frames(&turn, model, number, usage), None),
            Reply::Turn(turn) => {
                json_response(StatusCode::OK, &completion_json(&turn, model, number))
            }
            Reply::Stall { turn, events } if stream => {
                sse_response(frames(&turn, model, number, usage), Some(events))
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

/// What both OpenAI APIs check first: the content type, the key, a JSON object for a body, its
/// fields and the model.
pub(crate) struct Rules<'a> {
    pub key: &'a str,
    pub fields: &'a [&'a str],
    /// How the API words an unknown field.
    pub unknown: &'a str,
    /// How the API words a missing model.
    pub no_model: &'a str,
}

impl Rules<'_> {
    /// The problems found; `Err` when the body is not an object (nothing more to check).
    pub(crate) fn check(
        &self,
        headers: &HeaderMap,
        body: &Value,
    ) -> Result<Vec<String>, Vec<String>> {
        let mut problems = check_json_content_type(headers);
        if header_text(headers, "authorization") != Some(&format!("Bearer {}", self.key)) {
            problems.push("authorization: missing or not `Bearer` with the expected key".into());
        }
        if !body.is_object() {
            problems.push("body: not an object".to_string());
            return Err(problems);
        }
        problems.extend(
            unknown_fields(body, self.fields)
                .into_iter()
                .map(|p| format!("{}: {p}", self.unknown)),
        );
        if body["model"].as_str().is_none_or(str::is_empty) {
            problems.push(self.no_model.to_string());
        }
        Ok(problems)
    }
}

/// An error answer in the shape both OpenAI APIs use.
pub(crate) fn error_response(
    status: StatusCode,
    kind: &str,
    code: &str,
    message: &str,
) -> Response {
    json_response(
        status,
        &json!({"error": {"message": message, "type": kind, "param": null, "code": code}}),
    )
}

/// OpenAI's 429, with `retry-after` when it is a valid header value.
pub(crate) fn rate_limited(retry_after: &str) -> Response {
    let mut response = error_response(
        StatusCode::TOO_MANY_REQUESTS,
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for requests",
    );
    if let Ok(value) = retry_after.parse() {
        response.headers_mut().insert("retry-after", value);
    }
    response
}

/// OpenAI's 5xx answer.
pub(crate) fn server_error(status: u16) -> Response {
    error_response(
        StatusCode::from_u16(status).unwrap(),
        "server_error",
        "server_error",
        "The server had an error while processing your request. Sorry about that!",
    )
}

/// OpenAI's 400 answer with `message`.
pub(crate) fn invalid_request(message: &str) -> Response {
    error_response(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        "invalid_value",
        message,
    )
}

fn check_messages(messages: &Value) -> Vec<String> {
    let Some(messages) = messages.as_array().filter(|m| !m.is_empty()) else {
        return vec!["messages: must be a non-empty array".to_string()];
    };
    let mut problems = Vec::new();
    let mut seen_ids = HashSet::new();
    // Calls of the last assistant message that no tool message has answered yet.
    let mut open_calls: Vec<String> = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let at = format!("messages[{i}]");
        let role = message["role"].as_str().unwrap_or_default();
        if role != "tool" && !open_calls.is_empty() {
            problems.push(format!(
                "{at}: an assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'; not answered: {open_calls:?}"
            ));
            open_calls.clear();
        }
        let content_ok = |allow_null: bool| match &message["content"] {
            Value::String(_) | Value::Array(_) => true,
            Value::Null => allow_null,
            _ => false,
        };
        match role {
            "system" | "developer" | "user" => {
                if !content_ok(false) {
                    problems.push(format!("{at}.content: must be a string or parts"));
                }
            }
            "assistant" => {
                let calls = message.get("tool_calls");
                if !content_ok(calls.is_some()) {
                    problems.push(format!(
                        "{at}.content: required unless tool_calls is specified"
                    ));
                }
                if let Some(calls) = calls {
                    let Some(calls) = calls.as_array().filter(|c| !c.is_empty()) else {
                        problems.push(format!("{at}.tool_calls: must be a non-empty array"));
                        continue;
                    };
                    for (j, call) in calls.iter().enumerate() {
                        let id = call["id"].as_str().unwrap_or_default();
                        if id.is_empty() || !seen_ids.insert(id.to_string()) {
                            problems.push(format!("{at}.tool_calls[{j}].id: empty or not unique"));
                        }
                        if call["type"] != "function" {
                            problems.push(format!("{at}.tool_calls[{j}].type: must be function"));
                        }
                        if !call["function"]["name"]
                            .as_str()
                            .is_some_and(valid_tool_name)
                        {
                            problems.push(format!("{at}.tool_calls[{j}].function.name: invalid"));
                        }
                        // Compatible servers (Ollama) parse the arguments of past calls.
                        let arguments = call["function"]["arguments"]
                            .as_str()
                            .map(|a| serde_json::from_str::<Value>(a).is_ok_and(|v| v.is_object()));
                        if arguments != Some(true) {
                            problems.push(format!(
                                "{at}.tool_calls[{j}].function.arguments: must be a string holding a JSON object"
                            ));
                        }
                        open_calls.push(id.to_string());
                    }
                }
            }
            "tool" => {
                let id = message["tool_call_id"].as_str().unwrap_or_default();
                match open_calls.iter().position(|open| open == id) {
                    Some(n) => {
                        open_calls.remove(n);
                    }
                    None => problems.push(format!(
                        "{at}: messages with role 'tool' must be a response to a preceding message with 'tool_calls' (tool_call_id {id:?})"
                    )),
                }
                if !content_ok(false) {
                    problems.push(format!("{at}.content: must be a string or parts"));
                }
            }
            other => problems.push(format!("{at}.role: {other:?} is not a valid role")),
        }
    }
    if !open_calls.is_empty() {
        problems.push(format!(
            "an assistant message with 'tool_calls' must be followed by tool messages; not answered: {open_calls:?}"
        ));
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
        if tool["type"] != "function" {
            problems.push(format!("tools[{i}].type: must be function"));
        }
        let function = &tool["function"];
        problems.extend(
            unknown_fields(function, &["name", "description", "parameters", "strict"])
                .into_iter()
                .map(|p| format!("tools[{i}].function.{p}")),
        );
        let name = function["name"].as_str().unwrap_or_default();
        if !valid_tool_name(name) || !names.insert(name.to_string()) {
            problems.push(format!(
                "tools[{i}].function.name: {name:?} is not valid and unique"
            ));
        }
        if !matches!(function.get("description"), None | Some(Value::String(_))) {
            problems.push(format!("tools[{i}].function.description: not a string"));
        }
        problems.extend(check_input_schema(name, &function["parameters"]));
    }
    problems
}

fn finish_reason(turn: &Turn) -> &'static str {
    if turn.truncated {
        "length"
    } else if turn.has_tool_calls() {
        "tool_calls"
    } else {
        "stop"
    }
}

fn text_of(turn: &Turn) -> String {
    turn.blocks
        .iter()
        .filter_map(|b| match b {
            TurnBlock::Text(text) => Some(text.as_str()),
            TurnBlock::ToolCall { .. } => None,
        })
        .collect::<Vec<_>>()
        .join("")
}

fn calls_of(turn: &Turn) -> Vec<(&str, &str, &str)> {
    turn.blocks
        .iter()
        .filter_map(|b| match b {
            TurnBlock::ToolCall {
                id,
                name,
                arguments,
            } => Some((id.as_str(), name.as_str(), arguments.as_str())),
            TurnBlock::Text(_) => None,
        })
        .collect()
}

fn usage_json(turn: &Turn) -> Value {
    json!({
        "prompt_tokens": turn.input_tokens,
        "completion_tokens": turn.output_tokens,
        "total_tokens": turn.input_tokens + turn.output_tokens
    })
}

fn completion_json(turn: &Turn, model: &str, number: usize) -> Value {
    let text = text_of(turn);
    let calls: Vec<Value> = calls_of(turn)
        .into_iter()
        .map(|(id, name, arguments)| {
            json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments}})
        })
        .collect();
    let mut message = json!({
        "role": "assistant",
        "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::from(text) },
        "refusal": null
    });
    if !calls.is_empty() {
        message["tool_calls"] = Value::from(calls);
    }
    json!({
        "id": format!("chatcmpl-fake{number:04}"),
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": null,
                     "finish_reason": finish_reason(turn)}],
        "usage": usage_json(turn),
        "system_fingerprint": "fp_fake"
    })
}

/// The SSE chunks of `turn`, as the API streams them (`data: [DONE]` last).
fn frames(turn: &Turn, model: &str, number: usize, include_usage: bool) -> Vec<String> {
    let chunk = |delta: Value, finish: Option<&str>| {
        let mut chunk = json!({
            "id": format!("chatcmpl-fake{number:04}"),
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": model,
            "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]
        });
        if include_usage {
            chunk["usage"] = Value::Null;
        }
        format!("data: {chunk}\n\n")
    };
    let mut frames = vec![chunk(
        json!({"role": "assistant", "content": "", "refusal": null}),
        None,
    )];
    let text = text_of(turn);
    if !text.is_empty() {
        for piece in pieces(&text, 5) {
            frames.push(chunk(json!({"content": piece}), None));
        }
    }
    for (index, (id, name, arguments)) in calls_of(turn).into_iter().enumerate() {
        frames.push(chunk(
            json!({"tool_calls": [{"index": index, "id": id, "type": "function",
                                   "function": {"name": name, "arguments": ""}}]}),
            None,
        ));
        for piece in pieces(arguments, 7) {
            frames.push(chunk(
                json!({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}),
                None,
            ));
        }
    }
    frames.push(chunk(json!({}), Some(finish_reason(turn))));
    if include_usage {
        let usage = json!({
            "id": format!("chatcmpl-fake{number:04}"),
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": model,
            "system_fingerprint": "fp_fake",
            "choices": [],
            "usage": usage_json(turn)
        });
        frames.push(format!("data: {usage}\n\n"));
    }
    frames.push("data: [DONE]\n\n".to_string());
    frames
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::fake_llm::post_raw;

    #[tokio::test]
    async fn reports_what_the_api_rejects() {
        let fake = FakeOpenAi::start([]).await;
        let body = json!({
            "model": "m",
            "max_tokens": 0,
            "stream_options": {"include_usage": true},
            "messages": [
                {"role": "user", "content": "go"},
                {"role": "assistant", "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "read_file", "arguments": "{\"p\":"}},
                    {"id": "c2", "type": "function", "function": {"name": "read_file", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "r"},
                {"role": "user", "content": "next"},
                {"role": "tool", "tool_call_id": "c3", "content": "r"},
                {"role": "robot", "content": "?"}
            ],
            "tools": [{"type": "function", "function": {"name": "read_file", "parameters": {}}}]
        });
        let bearer = "Bearer wrong";
        let (status, answer) = post_raw(
            &fake.base_url().replace("/v1", ""),
            "/v1/chat/completions",
            &[
                ("content-type", "application/json"),
                ("authorization", bearer),
            ],
            &body.to_string(),
        )
        .await;
        assert_eq!(status, 400);
        let answer: Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(answer["error"]["type"], "invalid_request_error");
        assert_eq!(
            fake.violations(),
            vec![
                "request 1: authorization: missing or not `Bearer` with the expected key",
                "request 1: max_tokens: not an integer of at least 1",
                "request 1: stream_options: only allowed when 'stream' is enabled",
                "request 1: messages[1].tool_calls[0].function.arguments: must be a string holding a JSON object",
                "request 1: messages[3]: an assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'; not answered: [\"c2\"]",
                "request 1: messages[4]: messages with role 'tool' must be a response to a preceding message with 'tool_calls' (tool_call_id \"c3\")",
                "request 1: messages[5].role: \"robot\" is not a valid role",
                "request 1: tool read_file: the input schema's type is not \"object\"",
            ]
        );
    }

    #[tokio::test]
    async fn accepts_a_valid_conversation_and_streams_the_script() {
        let fake = FakeOpenAi::start([Reply::Turn(Turn::text("ok").with_usage(3, 1))]).await;
        let body = json!({
            "model": "m", "max_tokens": 10, "stream": true,
            "stream_options": {"include_usage": true},
            "messages": [
                {"role": "system", "content": "s"},
                {"role": "user", "content": "go"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "read_file", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "r"}
            ],
            "tools": [{"type": "function", "function": {"name": "read_file", "description": "d",
                "parameters": {"type": "object", "properties": {}}}}]
        });
        let key = format!("Bearer {API_KEY}");
        let (status, answer) = post_raw(
            &fake.base_url().replace("/v1", ""),
            "/v1/chat/completions",
            &[
                ("content-type", "application/json"),
                ("authorization", &key),
            ],
            &body.to_string(),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(fake.violations(), Vec::<String>::new());
        assert!(
            answer.contains("\"delta\":{\"content\":\"ok\"}"),
            "{answer}"
        );
        assert!(
            answer.contains(
                "\"usage\":{\"completion_tokens\":1,\"prompt_tokens\":3,\"total_tokens\":4}"
            ),
            "{answer}"
        );
        assert!(answer.contains("data: [DONE]\n\n"), "{answer}");
    }
}
