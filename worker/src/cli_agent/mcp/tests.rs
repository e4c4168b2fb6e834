//! The MCP server over an in-memory pipe, with a real gate socket behind it: the handshake the
//! CLIs send, the tool list and calls, and JSON-RPC errors for bad input.

use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::*;
use crate::cli_agent::gate::GateSocket;
use crate::cli_agent::gate::tests::{TitleGate, title_tool};

/// Sends `lines` to a served MCP server and returns every answer line, parsed.
async fn exchange(lines: &[&[u8]]) -> Vec<Value> {
    let parent = tempfile::tempdir().unwrap();
    let socket = GateSocket::bind(parent.path()).unwrap();
    let gate = GateAddress {
        socket: socket.path().to_path_buf(),
        nonce: socket.nonce().to_string(),
    };
    let (client, server) = tokio::io::duplex(64 * 1024);
    let (server_read, server_write) = tokio::io::split(server);
    let (client_read, mut client_write) = tokio::io::split(client);
    let talk = async {
        for line in lines {
            client_write.write_all(line).await.unwrap();
            client_write.write_all(b"\n").await.unwrap();
        }
        client_write.shutdown().await.unwrap();
        let mut answers = Vec::new();
        let mut reader = BufReader::new(client_read).lines();
        while let Some(line) = reader.next_line().await.unwrap() {
            answers.push(serde_json::from_str(&line).unwrap());
        }
        answers
    };
    let serve_mcp = async {
        serve(BufReader::new(server_read), server_write, &gate)
            .await
            .unwrap();
    };
    let tool = title_tool();
    tokio::select! {
        _ = socket.serve(&tool, &TitleGate) => unreachable!("serve never returns"),
        (answers, ()) = async { tokio::join!(talk, serve_mcp) } => answers,
    }
}

async fn one(line: &str) -> Value {
    let mut answers = exchange(&[line.as_bytes()]).await;
    assert_eq!(answers.len(), 1, "{answers:?}");
    answers.remove(0)
}

fn error_answer(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

#[tokio::test]
async fn the_handshake_claude_code_sends() {
    // In the order the CLI sends them: a discovery probe, initialize, the initialized
    // notification, the tool list.
    let answers = exchange(&[
        br#"{"jsonrpc":"2.0","id":"server-discover-probe-1","method":"server/discover","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
        br#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"roots":{},"elicitation":{}},"clientInfo":{"name":"claude-code","version":"2.1.332"}}}"#,
        br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}"#,
    ])
    .await;
    assert_eq!(
        answers,
        vec![
            error_answer(
                json!("server-discover-probe-1"),
                -32601,
                "method not found: server/discover"
            ),
            json!({"jsonrpc": "2.0", "id": 0, "result": {
                "protocolVersion": "2025-11-25",
                "capabilities": {"tools": {"listChanged": false}},
                "serverInfo": {"name": "omoi", "version": env!("CARGO_PKG_VERSION")},
                "instructions": initialize(&json!({}))["instructions"],
            }}),
            json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": [{
                "name": "submit",
                "description": "Submit the title.",
                "inputSchema": {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]},
            }]}}),
        ]
    );
}

#[tokio::test]
async fn initialize_answers_the_version_asked_for_or_the_newest() {
    let codex = one(r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"codex-mcp-client","version":"0.163.0"}}}"#).await;
    assert_eq!(codex["result"]["protocolVersion"], "2025-06-18");
    let future = one(r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2099-01-01"}}"#).await;
    assert_eq!(future["result"]["protocolVersion"], "2025-11-25");
}

#[tokio::test]
async fn a_call_returns_the_gates_verdict_as_the_tool_result() {
    let answers = exchange(&[
        br#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"submit","arguments":{"title":7},"_meta":{"claudecode/toolUseId":"toolu_1","progressToken":2}}}"#,
        br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"submit","arguments":{"title":"good"}}}"#,
        br#"{"jsonrpc":"2.0","id":4,"method":"ping"}"#,
    ])
    .await;
    assert_eq!(
        answers,
        vec![
            json!({"jsonrpc": "2.0", "id": 2, "result": {
                "content": [{"type": "text", "text": "title 7 is not good"}], "isError": true}}),
            json!({"jsonrpc": "2.0", "id": 3, "result": {
                "content": [{"type": "text", "text": crate::cli_agent::gate::ACCEPTED_TEXT}],
                "isError": false}}),
            json!({"jsonrpc": "2.0", "id": 4, "result": {}}),
        ]
    );
}

#[tokio::test]
async fn bad_json_rpc_gets_json_rpc_errors() {
    let answers = exchange(&[
        b"{not json",
        b"[1,2]",
        b"42",
        br#"{"id":1,"method":"ping"}"#,
        br#"{"jsonrpc":"2.0","id":{"x":1},"method":"ping"}"#,
        br#"{"jsonrpc":"2.0","id":2,"method":7}"#,
        br#"{"jsonrpc":"2.0","id":3}"#,
        br#"{"jsonrpc":"2.0","id":4,"method":"ping","params":"x"}"#,
        br#"{"jsonrpc":"2.0","id":5,"method":"resources/list"}"#,
        br#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{}}"#,
        br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"submit","arguments":[1]}}"#,
        br#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"run","arguments":{}}}"#,
        // Neither a notification nor a response to one of ours gets an answer.
        br#"{"jsonrpc":"2.0","method":"no/such/notification"}"#,
        br#"{"jsonrpc":"2.0","id":99,"result":{}}"#,
        b"   ",
    ])
    .await;
    let parse_error = answers[0]["error"]["message"].as_str().unwrap().to_string();
    assert!(parse_error.starts_with("parse error: "), "{parse_error}");
    assert_eq!(
        answers,
        vec![
            error_answer(Value::Null, -32700, &parse_error),
            error_answer(Value::Null, -32600, "batches are not supported"),
            error_answer(Value::Null, -32600, "a message must be an object"),
            error_answer(json!(1), -32600, "jsonrpc must be \"2.0\""),
            error_answer(Value::Null, -32600, "id must be a string or a number"),
            error_answer(json!(2), -32600, "method must be a string"),
            error_answer(json!(3), -32600, "method is missing"),
            error_answer(json!(4), -32600, "params must be an object or an array"),
            error_answer(json!(5), -32601, "method not found: resources/list"),
            error_answer(json!(6), -32602, "params.name must be the tool's name"),
            error_answer(json!(7), -32602, "params.arguments must be an object"),
            error_answer(json!(8), -32602, "unknown tool `run`"),
        ]
    );
}

#[tokio::test]
async fn an_oversized_message_is_refused_and_the_next_one_answered() {
    let mut big =
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{\"x\":\"".to_vec();
    big.extend(std::iter::repeat_n(b'a', MAX_LINE + 10));
    big.extend(b"\"}}");
    let answers = exchange(&[&big, br#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#]).await;
    assert_eq!(
        answers,
        vec![
            error_answer(Value::Null, -32600, "message too large"),
            json!({"jsonrpc": "2.0", "id": 2, "result": {}}),
        ]
    );
}

#[tokio::test]
async fn an_unreachable_gate_is_an_internal_error() {
    let gate = GateAddress {
        socket: PathBuf::from("/nonexistent/gate.sock"),
        nonce: "n".to_string(),
    };
    let answer = handle_line(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#, &gate)
        .await
        .unwrap();
    assert_eq!(
        answer,
        error_answer(
            json!(1),
            -32603,
            "the worker's gate is unreachable: No such file or directory (os error 2)"
        )
    );
}
