//! A fake of the coordinator's event ingest route, `POST /api/v1/sandboxes/{id}/events`, for
//! tests: it stores events exactly as the coordinator must (idempotent on `(sandbox_id, seq)`,
//! answering the highest contiguous seq), checks every request against the protocol, and can
//! refuse or demand a token so tests can watch the worker retry.
//!
//! ```no_run
//! # async fn example() {
//! use omoi_tests::sink::{FakeSink, SinkOptions};
//! let sink = FakeSink::start(SinkOptions::default()).await;
//! // … run a worker with OMOIOS_API_URL = sink.url() and SANDBOX_TOKEN = omoi_tests::sink::TOKEN …
//! assert_eq!(sink.protocol_errors(), Vec::<String>::new());
//! let events = sink.events();
//! # }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use omoi_protocol::api::{ErrorBody, ErrorDetail, EventBatch, IngestAck, RawEventBatch};
use omoi_protocol::event::{ENVELOPE_VERSION, Envelope, RawEvent};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The most events the worker may put in one batch.
pub const MAX_BATCH_EVENTS: usize = 100;

/// The sandbox token a default sink demands.
pub const TOKEN: &str = "sandbox-test-token";

/// How the sink behaves. The default demands [`TOKEN`], refuses nothing and stores everything.
#[derive(Debug, Clone)]
pub struct SinkOptions {
    /// When set, every request must carry `Authorization: Bearer <token>`; others get 401.
    /// `None` accepts any token or none.
    pub token: Option<String>,
    /// Answer 503 to this many requests before accepting any.
    pub refuse_first: usize,
    /// Store only the first this-many events of each batch, as a coordinator that stored part
    /// of a batch would; the ack then tells the worker to resend the rest.
    pub store_at_most: Option<usize>,
}

impl Default for SinkOptions {
    fn default() -> Self {
        SinkOptions {
            token: Some(TOKEN.to_string()),
            refuse_first: 0,
            store_at_most: None,
        }
    }
}

/// A running fake ingest server on `127.0.0.1`; it stops when dropped.
pub struct FakeSink {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl std::fmt::Debug for FakeSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeSink")
            .field("addr", &self.addr)
            .finish()
    }
}

struct Shared {
    options: SinkOptions,
    refusing: AtomicBool,
    store: Mutex<Store>,
    /// Bumped on every request, for [`FakeSink::wait_until`].
    changed: watch::Sender<u64>,
}

#[derive(Default)]
struct Store {
    requests: usize,
    refused: usize,
    events: BTreeMap<(String, u64), RawEvent>,
    acked: HashMap<String, u64>,
    duplicates: usize,
    protocol_errors: Vec<String>,
}

impl Drop for FakeSink {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeSink {
    /// Binds `127.0.0.1:0` and serves on the current tokio runtime (so tests with paused time
    /// work). Panics when it cannot bind: the test cannot run without its sink.
    pub async fn start(options: SinkOptions) -> FakeSink {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the fake event sink");
        let addr = listener
            .local_addr()
            .expect("address of the fake event sink");
        let shared = Arc::new(Shared {
            options,
            refusing: AtomicBool::new(false),
            store: Mutex::new(Store::default()),
            changed: watch::Sender::new(0),
        });
        let router = Router::new()
            .route("/api/v1/sandboxes/{sandbox_id}/events", any(ingest))
            .fallback(unexpected)
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            // The server ends with the test; a failure here shows up as requests that fail.
            let _ = axum::serve(listener, router).await;
        });
        FakeSink {
            addr,
            shared,
            server,
        }
    }

    /// The base URL, for `OMOIOS_API_URL`: `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every stored event as the coordinator stores it, ordered by sandbox id then seq, each
    /// once.
    pub fn events(&self) -> Vec<RawEvent> {
        self.shared.store().events.values().cloned().collect()
    }

    /// [`FakeSink::events`], typed (the sink only accepts batches whose events all type-check).
    pub fn envelopes(&self) -> Vec<Envelope> {
        self.events().iter().filter_map(typed).collect()
    }

    /// Every request received, refused and rejected ones included.
    pub fn requests(&self) -> usize {
        self.shared.store().requests
    }

    /// Requests answered 503 (see [`SinkOptions::refuse_first`] and [`FakeSink::set_refusing`]).
    pub fn refused(&self) -> usize {
        self.shared.store().refused
    }

    /// Events received again after they were stored (and not stored twice).
    pub fn duplicates(&self) -> usize {
        self.shared.store().duplicates
    }

    /// What was wrong with requests that broke the protocol; a correct worker leaves this empty.
    pub fn protocol_errors(&self) -> Vec<String> {
        self.shared.store().protocol_errors.clone()
    }

    /// While set, every request is answered 503.
    pub fn set_refusing(&self, refusing: bool) {
        self.shared.refusing.store(refusing, Ordering::SeqCst);
    }

    /// Waits until `done(&stored envelopes)` holds or `timeout` passes; returns whether it held.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&[Envelope]) -> bool,
    ) -> bool {
        let mut changed = self.shared.changed.subscribe();
        let wait = async {
            loop {
                if done(&self.envelopes()) {
                    return;
                }
                if changed.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }
}

impl Shared {
    fn store(&self) -> MutexGuard<'_, Store> {
        // Test data only; a panicking handler leaves it usable.
        self.store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

async fn ingest(
    State(shared): State<Arc<Shared>>,
    Path(sandbox_id): Path<String>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let response = handle(&shared, &sandbox_id, &method, &headers, &body);
    shared.changed.send_modify(|version| *version += 1);
    response
}

fn handle(
    shared: &Shared,
    sandbox_id: &str,
    method: &Method,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let mut store = shared.store();
    store.requests += 1;
    if method != Method::POST {
        return store.violation(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} on the ingest route; only POST is allowed"),
        );
    }
    if store.refused < shared.options.refuse_first || shared.refusing.load(Ordering::SeqCst) {
        store.refused += 1;
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "refusing for the test",
        );
    }
    if let Some(token) = &shared.options.token {
        let expected = format!("Bearer {token}");
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if given != Some(expected.as_str()) {
            return error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or wrong token",
            );
        }
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type
        .to_ascii_lowercase()
        .starts_with("application/json")
    {
        return store.violation(
            StatusCode::BAD_REQUEST,
            format!("content-type is {content_type:?}, not application/json"),
        );
    }
    let batch: EventBatch = match serde_json::from_slice(body) {
        Ok(batch) => batch,
        Err(err) => {
            return store.violation(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("body is not an event batch: {err}"),
            );
        }
    };
    if let Err(problem) = check_batch(&batch, sandbox_id) {
        return store.violation(StatusCode::UNPROCESSABLE_ENTITY, problem);
    }
    // Stored as the coordinator stores them: raw, so unknown fields survive.
    let raw: RawEventBatch = match serde_json::from_slice(body) {
        Ok(raw) => raw,
        Err(err) => {
            return store.violation(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("body is not a raw event batch: {err}"),
            );
        }
    };

    let keep = shared.options.store_at_most.unwrap_or(usize::MAX);
    for event in raw.events.into_iter().take(keep) {
        let key = (event.sandbox_id.clone(), event.seq);
        match store.events.get(&key) {
            Some(stored) if *stored == event => store.duplicates += 1,
            Some(_) => {
                let problem = format!("seq {} was sent again as a different event", key.1);
                store.protocol_errors.push(problem);
            }
            None => {
                store.events.insert(key, event);
            }
        }
    }
    let mut acked = store.acked.get(sandbox_id).copied().unwrap_or(0);
    while store
        .events
        .contains_key(&(sandbox_id.to_string(), acked + 1))
    {
        acked += 1;
    }
    store.acked.insert(sandbox_id.to_string(), acked);
    Json(IngestAck { acked_seq: acked }).into_response()
}

/// What the protocol asks of a batch beyond its shape.
fn check_batch(batch: &EventBatch, sandbox_id: &str) -> Result<(), String> {
    if batch.events.is_empty() {
        return Err("empty batch".to_string());
    }
    if batch.events.len() > MAX_BATCH_EVENTS {
        return Err(format!(
            "{} events in one batch; at most {MAX_BATCH_EVENTS}",
            batch.events.len()
        ));
    }
    let mut previous = 0;
    for envelope in &batch.events {
        if envelope.sandbox_id != sandbox_id {
            return Err(format!(
                "event seq {} carries sandbox id {:?} but was posted for {sandbox_id:?}",
                envelope.seq, envelope.sandbox_id
            ));
        }
        if envelope.v != ENVELOPE_VERSION {
            return Err(format!(
                "event seq {} has version {}",
                envelope.seq, envelope.v
            ));
        }
        if envelope.seq <= previous {
            return Err(format!(
                "seq {} follows seq {previous}; a batch is in rising seq order from 1",
                envelope.seq
            ));
        }
        previous = envelope.seq;
    }
    Ok(())
}

fn typed(raw: &RawEvent) -> Option<Envelope> {
    serde_json::to_value(raw)
        .and_then(serde_json::from_value)
        .ok()
}

impl Store {
    fn violation(&mut self, status: StatusCode, problem: String) -> Response {
        let response = error(status, "invalid_request", &problem);
        self.protocol_errors.push(problem);
        response
    }
}

async fn unexpected(State(shared): State<Arc<Shared>>, method: Method, uri: Uri) -> Response {
    let response = {
        let mut store = shared.store();
        store.requests += 1;
        store.violation(
            StatusCode::NOT_FOUND,
            format!("unexpected request {method} {uri}"),
        )
    };
    shared.changed.send_modify(|version| *version += 1);
    response
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            code: code.to_string(),
            message: message.to_string(),
        },
    };
    (status, Json(body)).into_response()
}
