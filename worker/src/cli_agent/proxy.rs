//! The model proxy of a CLI agent session: an HTTP server on loopback that the CLI's base URL
//! points at. It accepts only the session's throwaway credential, forwards each call to the
//! real API with the real key, streams the answer back unchanged, counts the tokens and cost of
//! what passes through (`agent.usage`), and refuses every call once the budget is spent (the
//! session then ends: [`ModelProxy::budget_spent`]).
//!
//! Invariant: the real key is only ever in this process; the CLI and everything it starts see
//! the throwaway credential.

pub mod meter;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use omoi_protocol::event::{AgentUsage, Event, Usage};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::config::Secret;
use crate::error::{Error, Result};
use crate::events::Emitter;
use crate::llm::pricing::Price;
pub use meter::{CallUsage, Meter, Wire};

/// What a proxy forwards to and what it may spend.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub wire: Wire,
    /// The real API's base URL: `ANTHROPIC_BASE_URL` (without `/v1`) for [`Wire::Anthropic`],
    /// `OPENAI_BASE_URL` (with `/v1`) for [`Wire::OpenAiResponses`].
    pub upstream: String,
    /// The real key; `None` for a server that needs none (a local model server).
    pub key: Option<Secret>,
    /// The session's budget in US dollars.
    pub budget_usd: f64,
    /// Overrides the price table.
    pub price: Option<Price>,
}

/// A running proxy. Stops when dropped.
#[derive(Debug)]
pub struct ModelProxy {
    addr: SocketAddr,
    credential: String,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for ModelProxy {
    fn drop(&mut self) {
        // Answers still streaming end with the server task, after the session: what they
        // used is not the session's to report any more (its terminal event may be out).
        lock(&self.shared.totals).closed = true;
        self.task.abort();
    }
}

#[derive(Debug)]
struct Shared {
    config: ProxyConfig,
    /// Where `/v1/…` paths go: the upstream's `/v1`, without a trailing slash.
    upstream_v1: String,
    credential: String,
    client: reqwest::Client,
    emitter: Option<Emitter>,
    totals: Mutex<Totals>,
    spent: Notify,
    /// When a call last came in or a piece of an answer last passed.
    last_traffic: Mutex<Instant>,
}

impl Shared {
    fn touch(&self) {
        *lock(&self.last_traffic) = Instant::now();
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Totals {
    usage: Usage,
    calls: u64,
    spent: bool,
    /// The proxy was dropped: nothing more is recorded or emitted.
    closed: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain counters: a panic elsewhere cannot leave them half-written.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl ModelProxy {
    /// Starts a proxy on 127.0.0.1 (a free port) with a fresh credential. Usage goes to
    /// `emitter` as `agent.usage`, one event per call.
    pub async fn start(config: ProxyConfig, emitter: Option<Emitter>) -> Result<Self> {
        let client = crate::tls::client_builder()
            .connect_timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| Error::Internal(format!("cannot build the proxy's HTTP client: {e}")))?;
        let base = config.upstream.trim_end_matches('/');
        let upstream_v1 = match config.wire {
            Wire::Anthropic => format!("{base}/v1"),
            Wire::OpenAiResponses => base.to_string(),
        };
        let credential = format!("omoi-session-{}", uuid::Uuid::new_v4().simple());
        let shared = Arc::new(Shared {
            config,
            upstream_v1,
            credential: credential.clone(),
            client,
            emitter,
            totals: Mutex::new(Totals::default()),
            spent: Notify::new(),
            last_traffic: Mutex::new(Instant::now()),
        });
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| Error::io("bind the model proxy on 127.0.0.1", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io("read the model proxy's address", e))?;
        // Every SSE event is written at once: no waiting for delayed ACKs.
        let listener = axum::serve::ListenerExt::tap_io(listener, |stream| {
            let _ = stream.set_nodelay(true);
        });
        let app = Router::new().fallback(forward).with_state(shared.clone());
        let task = tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                tracing::warn!(%err, "model proxy stopped");
            }
        });
        Ok(ModelProxy {
            addr,
            credential,
            shared,
            task,
        })
    }

    /// The base URL to give the CLI: `http://127.0.0.1:PORT` for Claude Code
    /// (`ANTHROPIC_BASE_URL`), `http://127.0.0.1:PORT/v1` for Codex (its provider's `base_url`).
    pub fn base_url(&self) -> String {
        match self.shared.config.wire {
            Wire::Anthropic => format!("http://{}", self.addr),
            Wire::OpenAiResponses => format!("http://{}/v1", self.addr),
        }
    }

    /// The throwaway credential the CLI must send.
    pub fn credential(&self) -> &str {
        &self.credential
    }

    /// The usage of every call so far.
    pub fn total(&self) -> Usage {
        lock(&self.shared.totals).usage
    }

    /// Calls forwarded and answered so far.
    pub fn calls(&self) -> u64 {
        lock(&self.shared.totals).calls
    }

    /// When a call last came in or a piece of an answer last passed (the proxy's start before
    /// the first call): what the session's stall detection watches besides the CLI's output.
    pub fn last_traffic(&self) -> Instant {
        *lock(&self.shared.last_traffic)
    }

    /// Resolves once the budget is spent; from then on every call is refused.
    pub async fn budget_spent(&self) {
        loop {
            let notified = self.shared.spent.notified();
            if lock(&self.shared.totals).spent {
                return;
            }
            notified.await;
        }
    }
}

/// Request headers the proxy does not pass on: hop-by-hop ones, the credential (replaced by the
/// real key) and `accept-encoding` (the usage is read from the plain answer).
const DROPPED_REQUEST_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "upgrade",
    "proxy-authorization",
    "proxy-connection",
    "authorization",
    "x-api-key",
    "accept-encoding",
];
const DROPPED_RESPONSE_HEADERS: &[&str] = &[
    "content-length",
    "connection",
    "keep-alive",
    "transfer-encoding",
];

async fn forward(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let wire = shared.config.wire;
    shared.touch();
    if !has_credential(wire, &headers, &shared.credential) {
        return api_error(
            wire,
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "invalid x-api-key",
        );
    }
    let Some(rest) = uri.path().strip_prefix("/v1") else {
        return api_error(wire, StatusCode::NOT_FOUND, "not_found_error", "not found");
    };
    if lock(&shared.totals).spent {
        return budget_refusal(&shared);
    }
    let mut url = format!("{}{rest}", shared.upstream_v1);
    if let Some(query) = uri.query() {
        url.push('?');
        url.push_str(query);
    }
    let mut upstream_headers = reqwest::header::HeaderMap::new();
    for (name, value) in &headers {
        if !DROPPED_REQUEST_HEADERS.contains(&name.as_str()) {
            upstream_headers.append(name.clone(), value.clone());
        }
    }
    if let Some(key) = &shared.config.key {
        let (name, value) = match wire {
            Wire::Anthropic => ("x-api-key", key.expose().to_string()),
            Wire::OpenAiResponses => ("authorization", format!("Bearer {}", key.expose())),
        };
        match HeaderValue::from_str(&value) {
            Ok(value) => {
                upstream_headers.insert(HeaderName::from_static(name), value);
            }
            Err(_) => {
                return api_error(
                    wire,
                    StatusCode::BAD_GATEWAY,
                    "api_error",
                    "the configured key is not a valid header value",
                );
            }
        }
    }
    let model = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|b| b["model"].as_str().map(str::to_string));
    let sent = shared
        .client
        .request(method, &url)
        .headers(upstream_headers)
        .body(body)
        .send()
        .await;
    let upstream = match sent {
        Ok(upstream) => upstream,
        Err(err) => {
            tracing::warn!(%err, "model proxy: the upstream API is unreachable");
            return api_error(
                wire,
                StatusCode::BAD_GATEWAY,
                "api_error",
                "the model API is unreachable",
            );
        }
    };
    relay(shared, upstream, model)
}

/// The answer to the CLI: the upstream's status, headers and body as they come, the body
/// watched by a [`Meter`] for the call's usage.
fn relay(shared: Arc<Shared>, upstream: reqwest::Response, model: Option<String>) -> Response {
    let wire = shared.config.wire;
    let status = upstream.status();
    let event_stream = crate::llm::http::sse::is_event_stream(upstream.headers());
    let mut builder = Response::builder().status(status.as_u16());
    for (name, value) in upstream.headers() {
        if !DROPPED_RESPONSE_HEADERS.contains(&name.as_str()) {
            builder = builder.header(name, value);
        }
    }
    let metered = Metered {
        meter: status.is_success().then(|| Meter::new(wire, event_stream)),
        shared,
        model,
    };
    let stream = futures_util::stream::unfold(
        (upstream, metered),
        |(mut upstream, mut metered)| async move {
            match upstream.chunk().await {
                Ok(Some(chunk)) => {
                    metered.shared.touch();
                    if let Some(meter) = &mut metered.meter {
                        meter.feed(&chunk);
                    }
                    Some((Ok::<_, std::io::Error>(chunk), (upstream, metered)))
                }
                Ok(None) => None,
                Err(err) => Some((Err(std::io::Error::other(err)), (upstream, metered))),
            }
        },
    );
    builder
        .body(Body::from_stream(stream))
        .unwrap_or_else(|err| {
            api_error(
                wire,
                StatusCode::BAD_GATEWAY,
                "api_error",
                &format!("cannot relay the answer: {err}"),
            )
        })
}

/// The meter of one answer; records the call when the answer ends or the CLI goes away.
struct Metered {
    meter: Option<Meter>,
    shared: Arc<Shared>,
    model: Option<String>,
}

impl Drop for Metered {
    fn drop(&mut self) {
        let Some(meter) = self.meter.take() else {
            return;
        };
        let Some(mut usage) = meter.finish() else {
            return;
        };
        if usage.model.is_none() {
            usage.model = self.model.take();
        }
        record(&self.shared, &usage);
    }
}

/// Adds one call to the totals, emits `agent.usage`, and marks the budget spent when it is.
fn record(shared: &Shared, usage: &CallUsage) {
    let call = Usage {
        input_tokens: usage.input_tokens,
        output_tokens: usage.output_tokens,
        cost_usd: usage.cost(shared.config.price),
    };
    let (total, newly_spent) = {
        let mut totals = lock(&shared.totals);
        if totals.closed {
            return;
        }
        totals.calls += 1;
        totals.usage.input_tokens += call.input_tokens;
        totals.usage.output_tokens += call.output_tokens;
        totals.usage.cost_usd += call.cost_usd;
        let newly_spent = !totals.spent && totals.usage.cost_usd >= shared.config.budget_usd;
        totals.spent |= newly_spent;
        (totals.usage, newly_spent)
    };
    if let Some(emitter) = &shared.emitter {
        // One model call is one turn of the agent.
        emitter.count_turn();
        emitter.add_usage(call);
        emitter.emit(Event::AgentUsage(AgentUsage {
            model: usage.model.clone(),
            call,
            total,
        }));
    }
    if newly_spent {
        tracing::info!(
            budget = shared.config.budget_usd,
            spent = total.cost_usd,
            "model proxy: the budget is spent"
        );
        shared.spent.notify_waiters();
    }
}

fn has_credential(wire: Wire, headers: &HeaderMap, credential: &str) -> bool {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let bearer = text("authorization").and_then(|v| v.strip_prefix("Bearer "));
    let given = match wire {
        Wire::Anthropic => text("x-api-key").or(bearer),
        Wire::OpenAiResponses => bearer,
    };
    given.is_some_and(|given| {
        given.len() == credential.len()
            && given
                .bytes()
                .zip(credential.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    })
}

/// The refusal once the budget is spent: an error the CLIs do not retry.
fn budget_refusal(shared: &Shared) -> Response {
    let message = format!(
        "the session's budget of ${:.2} is spent",
        shared.config.budget_usd
    );
    match shared.config.wire {
        Wire::Anthropic => api_error(
            Wire::Anthropic,
            StatusCode::FORBIDDEN,
            "permission_error",
            &message,
        ),
        Wire::OpenAiResponses => api_error(
            Wire::OpenAiResponses,
            StatusCode::TOO_MANY_REQUESTS,
            "insufficient_quota",
            &message,
        ),
    }
}

/// An error answer in the API's own shape.
fn api_error(wire: Wire, status: StatusCode, kind: &str, message: &str) -> Response {
    let body = match wire {
        Wire::Anthropic => json!({"type": "error", "error": {"type": kind, "message": message}}),
        Wire::OpenAiResponses => {
            json!({"error": {"message": message, "type": kind, "param": null, "code": kind}})
        }
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests;
