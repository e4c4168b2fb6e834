//! `omoi-worker mcp`: the MCP server (JSON-RPC 2.0 over stdio, one message a line) through which
//! a CLI agent reaches the gate. It holds no secret and no state: `tools/list` and `tools/call`
//! are forwarded to the running worker over the session's gate socket ([`super::gate`]).

use std::path::PathBuf;

use serde_json::{Value, json};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::gate::{self, GateAnswer, GateRequest, MAX_LINE};

/// The protocol versions this server speaks, newest first. A client asking for one of them gets
/// it; any other request gets the newest.
pub const PROTOCOL_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// JSON-RPC error codes.
pub mod code {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL_ERROR: i64 = -32603;
}

/// Where the gate is: the session's socket and nonce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateAddress {
    pub socket: PathBuf,
    pub nonce: String,
}

/// Serves MCP on `input`/`output` until `input` ends. Requests are answered in order.
pub async fn serve<R, W>(input: R, mut output: W, gate: &GateAddress) -> std::io::Result<()>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut input = input.take(u64::MAX);
    loop {
        let mut line = Vec::new();
        input.set_limit(MAX_LINE as u64 + 1);
        if input.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let answer = if line.len() > MAX_LINE {
            // The rest of the over-long line is not a message of its own: drop it.
            while !line.ends_with(b"\n") {
                line.clear();
                input.set_limit(MAX_LINE as u64);
                if input.read_until(b'\n', &mut line).await? == 0 {
                    break;
                }
            }
            Some(error(
                Value::Null,
                code::INVALID_REQUEST,
                "message too large",
            ))
        } else if line.iter().all(u8::is_ascii_whitespace) {
            None
        } else {
            handle_line(&line, gate).await
        };
        if let Some(answer) = answer {
            let mut text = serde_json::to_vec(&answer).map_err(std::io::Error::other)?;
            text.push(b'\n');
            output.write_all(&text).await?;
            output.flush().await?;
        }
    }
}

/// The answer to one line, or nothing for a notification or a client's response.
pub async fn handle_line(line: &[u8], gate: &GateAddress) -> Option<Value> {
    let message: Value = match serde_json::from_slice(line) {
        Ok(message) => message,
        Err(err) => {
            return Some(error(
                Value::Null,
                code::PARSE_ERROR,
                &format!("parse error: {err}"),
            ));
        }
    };
    let Some(object) = message.as_object() else {
        let what = if message.is_array() {
            "batches are not supported"
        } else {
            "a message must be an object"
        };
        return Some(error(Value::Null, code::INVALID_REQUEST, what));
    };
    let id = object.get("id").cloned();
    if let Some(id) = &id {
        if !matches!(id, Value::String(_) | Value::Number(_)) {
            return Some(error(
                Value::Null,
                code::INVALID_REQUEST,
                "id must be a string or a number",
            ));
        }
    }
    let id_or_null = id.clone().unwrap_or(Value::Null);
    if object.get("jsonrpc") != Some(&Value::from("2.0")) {
        return Some(error(
            id_or_null,
            code::INVALID_REQUEST,
            "jsonrpc must be \"2.0\"",
        ));
    }
    let Some(method) = object.get("method") else {
        // A response to a request of ours: we send none, so there is nothing to do.
        if id.is_some() && (object.contains_key("result") || object.contains_key("error")) {
            return None;
        }
        return Some(error(
            id_or_null,
            code::INVALID_REQUEST,
            "method is missing",
        ));
    };
    let Some(method) = method.as_str() else {
        return Some(error(
            id_or_null,
            code::INVALID_REQUEST,
            "method must be a string",
        ));
    };
    let params = object.get("params").cloned().unwrap_or(Value::Null);
    if !matches!(params, Value::Null | Value::Object(_) | Value::Array(_)) {
        return Some(error(
            id_or_null,
            code::INVALID_REQUEST,
            "params must be an object or an array",
        ));
    }
    let Some(id) = id else {
        // Notifications (`notifications/initialized`, `notifications/cancelled` …) need no
        // answer, and a notification never gets an error either.
        return None;
    };
    Some(match call(method, &params, gate).await {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err((code, message)) => error(id, code, &message),
    })
}

type CallResult = Result<Value, (i64, String)>;

async fn call(method: &str, params: &Value, gate: &GateAddress) -> CallResult {
    match method {
        "initialize" => Ok(initialize(params)),
        "ping" => Ok(json!({})),
        "tools/list" => tools_list(gate).await,
        "tools/call" => tools_call(params, gate).await,
        other => Err((code::METHOD_NOT_FOUND, format!("method not found: {other}"))),
    }
}

fn initialize(params: &Value) -> Value {
    let asked = params["protocolVersion"].as_str().unwrap_or_default();
    let version = PROTOCOL_VERSIONS
        .iter()
        .find(|v| **v == asked)
        .unwrap_or(&PROTOCOL_VERSIONS[0]);
    json!({
        "protocolVersion": version,
        "capabilities": {"tools": {"listChanged": false}},
        "serverInfo": {"name": "omoi", "version": env!("CARGO_PKG_VERSION")},
        "instructions": "Hand in your work with the `submit` tool. Its result is the gate's verdict: \
            fix what it names and submit again until it passes.",
    })
}

async fn tools_list(gate: &GateAddress) -> CallResult {
    let request = GateRequest::Tools {
        nonce: gate.nonce.clone(),
    };
    match ask(gate, &request).await? {
        GateAnswer::Tools { tools } => Ok(json!({
            "tools": tools.into_iter().map(|tool| json!({
                "name": tool.name,
                "description": tool.description,
                "inputSchema": tool.input_schema,
            })).collect::<Vec<_>>(),
        })),
        other => Err(unexpected(&other)),
    }
}

async fn tools_call(params: &Value, gate: &GateAddress) -> CallResult {
    let Some(name) = params["name"].as_str() else {
        return Err((
            code::INVALID_PARAMS,
            "params.name must be the tool's name".to_string(),
        ));
    };
    let input = match params.get("arguments") {
        None | Some(Value::Null) => json!({}),
        Some(arguments @ Value::Object(_)) => arguments.clone(),
        Some(_) => {
            return Err((
                code::INVALID_PARAMS,
                "params.arguments must be an object".to_string(),
            ));
        }
    };
    let request = GateRequest::Call {
        nonce: gate.nonce.clone(),
        tool: name.to_string(),
        input,
    };
    match ask(gate, &request).await? {
        GateAnswer::Verdict { ok, text } => Ok(json!({
            "content": [{"type": "text", "text": text}],
            "isError": !ok,
        })),
        GateAnswer::Refused { reason } if reason.starts_with("unknown tool") => {
            Err((code::INVALID_PARAMS, reason))
        }
        other => Err(unexpected(&other)),
    }
}

async fn ask(gate: &GateAddress, request: &GateRequest) -> Result<GateAnswer, (i64, String)> {
    gate::ask(&gate.socket, request).await.map_err(|err| {
        (
            code::INTERNAL_ERROR,
            format!("the worker's gate is unreachable: {err}"),
        )
    })
}

fn unexpected(answer: &GateAnswer) -> (i64, String) {
    let text = match answer {
        GateAnswer::Refused { reason } => format!("the worker's gate refused: {reason}"),
        other => format!("the worker's gate answered out of turn: {other:?}"),
    };
    (code::INTERNAL_ERROR, text)
}

fn error(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

#[cfg(test)]
mod tests;
