//! The Responses fake's own tests: its streamed events, the namespace calls, its checks.

use serde_json::{Value, json};

use super::*;

/// POSTs `body` to the fake's `/v1/responses` with `headers`; returns status and body text.
async fn post_raw(origin: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let mut request = reqwest::Client::new()
        .post(format!("{origin}{path}"))
        .body(body.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

const AUTH: (&str, &str) = ("authorization", "Bearer sk-fake-responses-0123456789");
const JSON: (&str, &str) = ("content-type", "application/json");

fn request(stream: bool) -> Value {
    json!({
        "model": "gpt-test", "instructions": "", "stream": stream, "store": false,
        "include": ["reasoning.encrypted_content"], "prompt_cache_key": "k",
        "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "go"}]}],
        "tools": [
            {"type": "function", "name": "exec_command", "description": "Runs a command.", "strict": false,
             "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]}},
            {"type": "namespace", "name": "mcp__omoi", "description": "omoi", "tools": [
                {"type": "function", "name": "submit", "description": "Submit.",
                 "parameters": {"type": "object", "properties": {}}}]},
        ],
    })
}

/// The data of every event of an SSE body, with its name checked against its type.
fn events(body: &str) -> Vec<Value> {
    body.split("\n\n")
        .filter(|frame| !frame.is_empty())
        .map(|frame| {
            let (name, data) = frame.split_once('\n').unwrap();
            let data: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
            assert_eq!(name.strip_prefix("event: ").unwrap(), data["type"]);
            data
        })
        .collect()
}

#[tokio::test]
async fn streams_text_and_a_namespaced_call_as_the_api_does() {
    let turn = Turn::text("Submitting now.")
        .with_tool_call("call_1", "mcp__omoi__submit", json!({"title": "x"}))
        .with_usage(300, 20);
    let fake = FakeResponses::start([Reply::Turn(turn)]).await;
    let (status, body) = post_raw(
        fake.base_url().trim_end_matches("/v1"),
        "/v1/responses",
        &[AUTH, JSON],
        &request(true).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(fake.violations(), Vec::<String>::new());
    let events = events(&body);
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        vec![
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    let sequence: Vec<u64> = events
        .iter()
        .map(|e| e["sequence_number"].as_u64().unwrap())
        .collect();
    assert_eq!(sequence, (0..13).collect::<Vec<u64>>());
    assert_eq!(
        events[11]["item"],
        json!({"id": "fc_fake_0001_1", "type": "function_call", "status": "completed",
               "arguments": "{\"title\":\"x\"}", "call_id": "call_1",
               "namespace": "mcp__omoi", "name": "submit"})
    );
    let completed = &events[12]["response"];
    assert_eq!(completed["status"], "completed");
    assert_eq!(
        completed["usage"],
        json!({"input_tokens": 300, "input_tokens_details": {"cached_tokens": 0},
               "output_tokens": 20, "output_tokens_details": {"reasoning_tokens": 0},
               "total_tokens": 320})
    );
    assert_eq!(completed["output"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn answers_json_when_not_streaming() {
    let fake = FakeResponses::start([Reply::Turn(Turn::text("hi").truncated())]).await;
    let (status, body) = post_raw(
        fake.base_url().trim_end_matches("/v1"),
        "/v1/responses",
        &[AUTH, JSON],
        &request(false).to_string(),
    )
    .await;
    assert_eq!(status, 200);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["status"], "incomplete");
    assert_eq!(
        body["incomplete_details"],
        json!({"reason": "max_output_tokens"})
    );
    assert_eq!(
        body["output"],
        json!([{"id": "msg_fake_0001_0", "type": "message", "status": "completed", "role": "assistant",
                "content": [{"type": "output_text", "text": "hi", "annotations": []}]}])
    );
}

#[tokio::test]
async fn rejects_what_the_api_rejects() {
    let fake = FakeResponses::start([]).await;
    let mut bad = request(true);
    bad["messages"] = json!([]);
    bad["include"] = json!(["everything"]);
    bad["input"] = json!([
        {"type": "function_call_output", "call_id": "call_9", "output": "x"},
        {"type": "message", "role": "tool", "content": "x"},
        {"type": "message", "role": "assistant", "content": [{"type": "input_text", "text": "x"}]},
        {"type": "function_call", "call_id": "call_2", "name": "a b", "arguments": {}},
        {"type": "telepathy"},
    ]);
    bad["tools"] = json!([
        {"type": "namespace", "name": "ns", "tools": [{"type": "web_search"}]},
        {"type": "function", "name": "f", "parameters": {"type": "array"}, "colour": "red"},
        {"type": "plugin"},
    ]);
    let origin = fake.base_url().trim_end_matches("/v1").to_string();
    let (status, body) = post_raw(
        &origin,
        "/v1/responses",
        &[("authorization", "Bearer wrong"), JSON],
        &bad.to_string(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"]["type"],
        "invalid_request_error"
    );
    assert_eq!(
        fake.violations(),
        vec![
            "request 1: authorization: missing or not `Bearer` with the expected key",
            "request 1: Unknown parameter: messages: unknown field",
            "request 1: include: unsupported value [\"everything\"]",
            "request 1: input[0]: No tool call found for function call output with call_id call_9.",
            "request 1: input[1].role: \"tool\" is not user, assistant, system or developer",
            "request 1: input[2].content[0].type: \"input_text\" is not allowed in a assistant message",
            "request 1: input[3].name: not a valid tool name",
            "request 1: input[3].arguments: must be a string",
            "request 1: input[4].type: unsupported item type \"telepathy\"",
            "request 1: tools[0].tools[0].type: a namespace holds functions",
            "request 1: tools[1].colour: unknown field",
            "request 1: tool f: the input schema's type is not \"object\"",
            "request 1: tools[2].type: unsupported tool type \"plugin\"",
        ]
    );
}
