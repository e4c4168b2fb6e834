//! The fake model server: one [`FakeModel`] over a [`Dialect`] (the API's checks and wire
//! format), with the scripted replies, the recorded requests and violations, the JSON-Schema check
//! of tool definitions, and the axum server plumbing. `fake_anthropic` and `fake_openai` are the
//! two dialects.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::prompt_cache::{DEFAULT_WINDOW, Piece, PromptCache, PromptUsage, tokens};

/// One block of a scripted model turn.
#[derive(Debug, Clone, PartialEq)]
pub enum TurnBlock {
    Text(String),
    /// A tool call; `arguments` is the JSON text the model wrote (malformed on purpose in some
    /// tests).
    ToolCall {
        id: String,
        name: String,
        arguments: String,
    },
}

/// One answer of the model.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    pub blocks: Vec<TurnBlock>,
    /// Input tokens not read from or written to the prompt cache.
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Set by a metering fake ([`FakeModel::meter_prompts`]) from the request.
    pub cache_read_tokens: u64,
    pub cache_creation_tokens: u64,
    /// The answer was cut by the token limit (`max_tokens` / `length`).
    pub truncated: bool,
}

impl Turn {
    /// An answer with no content at all.
    pub fn empty() -> Self {
        Turn {
            blocks: Vec::new(),
            input_tokens: 10,
            output_tokens: 1,
            cache_read_tokens: 0,
            cache_creation_tokens: 0,
            truncated: false,
        }
    }

    pub fn text(text: impl Into<String>) -> Self {
        Turn::empty().with_text(text)
    }

    pub fn tool_call(id: &str, name: &str, input: Value) -> Self {
        Turn::empty().with_tool_call(id, name, input)
    }

    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.blocks.push(TurnBlock::Text(text.into()));
        self
    }

    pub fn with_tool_call(self, id: &str, name: &str, input: Value) -> Self {
        self.with_raw_tool_call(id, name, &input.to_string())
    }

    /// A tool call whose arguments are `arguments` verbatim, valid JSON or not.
    pub fn with_raw_tool_call(mut self, id: &str, name: &str, arguments: &str) -> Self {
        self.blocks.push(TurnBlock::ToolCall {
            id: id.to_string(),
            name: name.to_string(),
            arguments: arguments.to_string(),
        });
        self
    }

    pub fn with_usage(mut self, input_tokens: u64, output_tokens: u64) -> Self {
        self.input_tokens = input_tokens;
        self.output_tokens = output_tokens;
        self
    }

    pub fn truncated(mut self) -> Self {
        self.truncated = true;
        self
    }

    pub fn has_tool_calls(&self) -> bool {
        self.blocks
            .iter()
            .any(|b| matches!(b, TurnBlock::ToolCall { .. }))
    }
}

/// What the fake answers to one request, in script order.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// A normal answer: JSON, or SSE when the request asked to stream.
    Turn(Turn),
    /// 429 with a `retry-after` header of this value.
    RateLimited { retry_after: String },
    /// A 5xx answer (500 `api_error`, 529 `overloaded_error` …) with the API's error body.
    ServerError { status: u16 },
    /// 400 with the API's error body and this message.
    BadRequest { message: String },
    /// Streams the first `events` events of `turn`, then sends nothing more and never closes.
    /// (Asked for JSON, it never answers.)
    Stall { turn: Turn, events: usize },
}

/// One request the fake received.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    pub path: String,
    /// Header names in lowercase.
    pub headers: BTreeMap<String, String>,
    pub body: Value,
}

/// How one API checks requests and writes answers.
pub trait Dialect: Send + Sync + 'static {
    /// The route requests must use.
    const PATH: &'static str;
    /// The base URL a client of this API is given, from the fake's `http://host:port`.
    fn base_url(origin: &str) -> String;
    /// Everything the real API would reject in this request, in words.
    fn check(headers: &HeaderMap, body: &Value) -> Vec<String>;
    /// The answer to a request (`number` counts requests from 1).
    fn respond(reply: Reply, request: &Value, number: usize) -> Response;
    /// The API's 400 answer with `message`.
    fn bad_request(message: &str) -> Response;
    /// The request's prompt as the API counts and caches it, block by block; `None` where the
    /// fake does not measure prompts (then no window is enforced either).
    fn prompt(_body: &Value) -> Option<Vec<Piece>> {
        None
    }
}

#[derive(Debug)]
pub(crate) struct FakeState {
    replies: VecDeque<Reply>,
    requests: Vec<RecordedRequest>,
    violations: Vec<String>,
    /// The most input tokens a prompt may have.
    window: u64,
    /// Whether answers report the usage counted from the request (with the cache).
    metering: bool,
    cache: PromptCache,
    /// The usage of every metered prompt, in order.
    prompt_usage: Vec<PromptUsage>,
}

impl Default for FakeState {
    fn default() -> Self {
        FakeState {
            replies: VecDeque::new(),
            requests: Vec::new(),
            violations: Vec::new(),
            window: DEFAULT_WINDOW,
            metering: false,
            cache: PromptCache::default(),
            prompt_usage: Vec::new(),
        }
    }
}

type Shared = Arc<Mutex<FakeState>>;

/// A running fake model API: a server on loopback (or a given address) that speaks dialect `D`, with a queue of
/// replies. Stops when dropped.
pub struct FakeModel<D> {
    addr: SocketAddr,
    state: Shared,
    task: JoinHandle<()>,
    dialect: PhantomData<fn() -> D>,
}

impl<D> std::fmt::Debug for FakeModel<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeModel")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl<D> Drop for FakeModel<D> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<D: Dialect> FakeModel<D> {
    /// Starts a fake on 127.0.0.1 that answers `replies` in order.
    pub async fn start(replies: impl IntoIterator<Item = Reply>) -> Self {
        Self::start_on(std::net::Ipv4Addr::LOCALHOST.into(), replies).await
    }

    /// Starts a fake on `ip` (a free port): e.g. a docker network's gateway, where containers
    /// reach it.
    pub async fn start_on(ip: std::net::IpAddr, replies: impl IntoIterator<Item = Reply>) -> Self {
        let state: Shared = Arc::new(Mutex::new(FakeState {
            replies: replies.into_iter().collect(),
            ..FakeState::default()
        }));
        let app = Router::new()
            .route(D::PATH, post(handle::<D>))
            .fallback(unexpected)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Small streamed writes must not wait for delayed ACKs (Nagle): the real APIs flush
        // every SSE event at once.
        let listener = axum::serve::ListenerExt::tap_io(listener, |stream| {
            let _ = stream.set_nodelay(true);
        });
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeModel {
            addr,
            state,
            task,
            dialect: PhantomData,
        }
    }

    /// The base URL a client is given: `ANTHROPIC_BASE_URL` (no `/v1`) or `OPENAI_BASE_URL`
    /// (with `/v1`).
    pub fn base_url(&self) -> String {
        D::base_url(&format!("http://{}", self.addr))
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Everything the real API would have rejected, one line each (`request N: …`).
    pub fn violations(&self) -> Vec<String> {
        self.state.lock().unwrap().violations.clone()
    }

    /// Scripted replies not used yet.
    pub fn remaining(&self) -> usize {
        self.state.lock().unwrap().replies.len()
    }

    pub fn push(&self, reply: Reply) {
        self.state.lock().unwrap().replies.push_back(reply);
    }

    /// From now on, answers report the input usage counted from each request, with the prompt
    /// cache (`cache_read_input_tokens`, `cache_creation_input_tokens`), instead of the turn's.
    pub fn meter_prompts(&self) {
        self.state.lock().unwrap().metering = true;
    }

    /// Refuses prompts of more than `tokens` input tokens, as the API does beyond its window
    /// (default [`DEFAULT_WINDOW`]).
    pub fn set_context_window(&self, tokens: u64) {
        self.state.lock().unwrap().window = tokens;
    }

    /// The usage of every metered prompt, in order.
    pub fn prompt_usage(&self) -> Vec<PromptUsage> {
        self.state.lock().unwrap().prompt_usage.clone()
    }
}

async fn handle<D: Dialect>(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed = serde_json::from_slice::<Value>(&body);
    let mut state_guard = state.lock().unwrap();
    let number = state_guard.requests.len() + 1;
    let body = match parsed {
        Ok(body) => body,
        Err(e) => {
            let message = format!("request {number}: body is not JSON: {e}");
            state_guard.violations.push(message.clone());
            return D::bad_request(&message);
        }
    };
    state_guard.requests.push(RecordedRequest {
        path: D::PATH.to_string(),
        headers: headers
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_string(), value)
            })
            .collect(),
        body: body.clone(),
    });
    let violations = D::check(&headers, &body);
    if !violations.is_empty() {
        state_guard
            .violations
            .extend(violations.iter().map(|v| format!("request {number}: {v}")));
        return D::bad_request(&violations.join("; "));
    }
    let prompt = D::prompt(&body);
    if let Some(pieces) = &prompt {
        let size: u64 = pieces.iter().map(|p| tokens(&p.text)).sum();
        if size > state_guard.window {
            // The API's words for it.
            let message = format!(
                "prompt is too long: {size} tokens > {} maximum",
                state_guard.window
            );
            state_guard
                .violations
                .push(format!("request {number}: {message}"));
            return D::bad_request(&message);
        }
    }
    let Some(mut reply) = state_guard.replies.pop_front() else {
        let message = format!("request {number}: no scripted reply left");
        state_guard.violations.push(message.clone());
        return D::bad_request(&message);
    };
    if let (true, Some(pieces), Reply::Turn(turn) | Reply::Stall { turn, .. }) =
        (state_guard.metering, &prompt, &mut reply)
    {
        let usage = state_guard.cache.account(pieces);
        turn.input_tokens = usage.input_tokens;
        turn.cache_read_tokens = usage.cache_read_input_tokens;
        turn.cache_creation_tokens = usage.cache_creation_input_tokens;
        state_guard.prompt_usage.push(usage);
    }
    drop(state_guard);
    D::respond(reply, &body, number)
}

async fn unexpected(State(state): State<Shared>, method: Method, uri: Uri) -> Response {
    state
        .lock()
        .unwrap()
        .violations
        .push(format!("unexpected request {method} {uri}"));
    StatusCode::NOT_FOUND.into_response()
}

/// A JSON answer with `status`.
pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// An SSE answer of `frames` (each one whole event, blank line included), one body chunk per
/// frame; with `stall_after`, only that many frames are sent and the body then stays open.
pub(crate) fn sse_response(frames: Vec<String>, stall_after: Option<usize>) -> Response {
    let stream = futures_util::stream::unfold(
        (frames.into_iter(), 0usize),
        move |(mut frames, sent)| async move {
            if stall_after.is_some_and(|limit| sent >= limit) {
                std::future::pending::<()>().await;
            }
            let frame = frames.next()?;
            Some((Ok::<_, Infallible>(Bytes::from(frame)), (frames, sent + 1)))
        },
    );
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .unwrap()
}

/// A 200 JSON answer whose body never comes.
pub(crate) fn stalled_json_response() -> Response {
    let body = Body::from_stream(futures_util::stream::once(async {
        std::future::pending::<()>().await;
        Ok::<_, Infallible>(Bytes::new())
    }));
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .unwrap()
}

/// `text` in pieces of at most `size` characters (one empty piece for empty text).
pub(crate) fn pieces(text: &str, size: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return vec![String::new()];
    }
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

/// Problems of a JSON Schema that must describe a tool's input object.
pub(crate) fn check_input_schema(tool: &str, schema: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(object) = schema.as_object() else {
        return vec![format!("tool {tool}: the input schema is not an object")];
    };
    if object.get("type") != Some(&Value::from("object")) {
        problems.push(format!(
            "tool {tool}: the input schema's type is not \"object\""
        ));
    }
    let properties = match object.get("properties") {
        None => serde_json::Map::new(),
        Some(Value::Object(properties)) => properties.clone(),
        Some(_) => {
            problems.push(format!("tool {tool}: properties is not an object"));
            serde_json::Map::new()
        }
    };
    for (name, property) in &properties {
        if !property.is_object() && !property.is_boolean() {
            problems.push(format!("tool {tool}: property {name} is not a schema"));
        }
    }
    match object.get("required") {
        None => {}
        Some(Value::Array(required)) => {
            for name in required {
                match name.as_str() {
                    Some(name) if properties.contains_key(name) => {}
                    _ => problems.push(format!(
                        "tool {tool}: required {name} is not one of its properties"
                    )),
                }
            }
        }
        Some(_) => problems.push(format!("tool {tool}: required is not an array")),
    }
    problems
}

/// Whether a tool name is 1–64 letters, digits, `_` or `-` (what both APIs accept).
pub(crate) fn valid_tool_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The fields of `body` outside `allowed`.
pub(crate) fn unknown_fields(body: &Value, allowed: &[&str]) -> Vec<String> {
    body.as_object()
        .map(|object| {
            object
                .keys()
                .filter(|key| !allowed.contains(&key.as_str()))
                .map(|key| format!("{key}: unknown field"))
                .collect()
        })
        .unwrap_or_default()
}

/// The value of header `name` as text.
pub(crate) fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Problems with the content type of a JSON request.
pub(crate) fn check_json_content_type(headers: &HeaderMap) -> Vec<String> {
    match header_text(headers, "content-type") {
        Some(value) if value.starts_with("application/json") => Vec::new(),
        other => vec![format!("content-type is {other:?}, not application/json")],
    }
}

/// A bare HTTP/1.1 client for the fakes' own tests: sends one POST, returns status and body.
#[cfg(test)]
pub(crate) async fn post_raw(
    origin: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = origin.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!("POST {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let status = answer[9..12].parse().unwrap();
    let body = answer.split_once("\r\n\r\n").unwrap().1.to_string();
    (status, body)
}
