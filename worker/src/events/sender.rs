//! Delivery to the coordinator: batches events, POSTs them to the sandbox's ingest route, drops
//! what the coordinator acknowledged (from the queue and the spool) and retries the rest with
//! exponential backoff and jitter.
//!
//! What each answer means:
//! - `2xx` with `{"acked_seq": N}`: every event up to N is stored; anything above is resent.
//! - connection errors, timeouts, `408`, `429`, `5xx`: the coordinator is busy or away; retry with
//!   backoff (the first failure of a streak is logged, recovery too).
//! - `413`: the batch is too large; halve the batch size and resend at once.
//! - any other `4xx` (`401`, `403`, `404`, `422` …): retrying soon will not fix it. Logged once as
//!   an error; the events stay queued and spooled and are retried at the longest backoff, because
//!   a coordinator restored from a backup may know the sandbox again. Nothing is ever dropped.
//!
//! The sandbox token is only held as a sensitive header value and never logged.

use std::collections::VecDeque;
use std::time::Duration;

use omoi_protocol::api::{ErrorBody, EventBatch, IngestAck};
use omoi_protocol::event::Envelope;
use reqwest::Url;
use reqwest::header::{AUTHORIZATION, HeaderValue, RETRY_AFTER};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::retry::{Failure, Retry, classify};
use super::spool::SharedSpool;
use super::{DeliveryReport, SinkSignals, lock};
use crate::error::{Error, Result};

/// Most events in one request.
pub const MAX_BATCH: usize = 100;
/// The least time between two batches that are not full. An event queued when no batch went
/// out for this long is sent at once (so `agent.started` and the first event of a quiet spell
/// are not held back); events queued sooner wait for the window to end and go together.
pub const BATCH_WINDOW: Duration = Duration::from_millis(200);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends events to `POST {base}/api/v1/sandboxes/{sandbox_id}/events`.
pub struct HttpSender {
    client: reqwest::Client,
    endpoint: Url,
    authorization: HeaderValue,
    spool: SharedSpool,
}

impl std::fmt::Debug for HttpSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSender")
            .field("endpoint", &self.endpoint.as_str())
            .field("authorization", &"<redacted>")
            .finish()
    }
}

impl HttpSender {
    /// Validates the base URL and token and builds the HTTP client (rustls, connect and
    /// request timeouts).
    pub fn new(base_url: &str, sandbox_id: &str, token: &str, spool: SharedSpool) -> Result<Self> {
        let endpoint = ingest_url(base_url, sandbox_id)?;
        if token.is_empty() {
            return Err(Error::config(
                "SANDBOX_TOKEN",
                "is empty; the coordinator needs it",
            ));
        }
        let mut authorization =
            HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                Error::config(
                    "SANDBOX_TOKEN",
                    "contains characters that are not allowed in an HTTP header",
                )
            })?;
        authorization.set_sensitive(true);
        let client = crate::tls::client_builder()
            .user_agent(concat!("omoi-worker/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|err| Error::Internal(format!("building the HTTP client: {err}")))?;
        Ok(HttpSender {
            client,
            endpoint,
            authorization,
            spool,
        })
    }

    /// The URL events are posted to.
    pub fn endpoint(&self) -> &str {
        self.endpoint.as_str()
    }

    /// Delivers events until every emitter is gone, or closing is signalled and everything
    /// emitted so far is acknowledged, or abort is signalled (the rest stays in the spool).
    pub async fn run(
        self,
        rx: mpsc::UnboundedReceiver<Envelope>,
        signals: SinkSignals,
    ) -> DeliveryReport {
        let mut queue = Queue::new(rx);
        let mut retry = Retry::new();
        let mut report = DeliveryReport::default();
        let mut batch_limit = MAX_BATCH;
        let mut highest_sent = 0u64;
        loop {
            queue.take_ready();
            let closing = signals.closing.is_cancelled();
            if queue.pending.is_empty() && (closing || queue.closed) {
                return report;
            }
            let send_at = match (retry.at, queue.first_queued_at) {
                (Some(at), _) => Some(at),
                (None, _) if closing || queue.pending.len() >= batch_limit => None,
                (None, first) => first.map(|first| queue.send_after(first)),
            };
            let due = match send_at {
                None => !queue.pending.is_empty(),
                Some(at) => Instant::now() >= at,
            };
            if !due {
                tokio::select! {
                    biased;
                    _ = signals.abort.cancelled() => return queue.abandon(report),
                    received = queue.rx.recv(), if !queue.closed => queue.push(received),
                    _ = signals.closing.cancelled(), if !closing => {}
                    _ = sleep_until(send_at) => retry.at = None,
                }
                continue;
            }
            retry.at = None;
            queue.last_sent_at = Some(Instant::now());

            let batch: Vec<Envelope> = queue.pending.iter().take(batch_limit).cloned().collect();
            let batch_max = batch.last().map_or(0, |last| last.seq);
            highest_sent = highest_sent.max(batch_max);
            tracing::debug!(
                events = batch.len(),
                first = batch.first().map_or(0, |first| first.seq),
                last = batch_max,
                "sending events"
            );
            let outcome = tokio::select! {
                biased;
                _ = signals.abort.cancelled() => return queue.abandon(report),
                outcome = self.post(batch) => outcome,
            };
            match outcome {
                Ok(ack) => {
                    if ack.acked_seq > highest_sent {
                        tracing::warn!(
                            acked_seq = ack.acked_seq,
                            highest_sent,
                            "the coordinator acknowledges events this worker never sent; \
                             is the sandbox id reused?"
                        );
                    }
                    let delivered = queue.drop_acked(ack.acked_seq);
                    report.delivered += delivered;
                    if let Err(err) = lock(&self.spool).ack(ack.acked_seq) {
                        tracing::warn!(%err, "could not record the ack in the spool; a restart resends those events");
                    }
                    if delivered > 0 {
                        retry.succeeded();
                        batch_limit = (batch_limit * 2).min(MAX_BATCH);
                    } else {
                        // Stored but not contiguous: the coordinator misses an event before
                        // ours that this worker no longer has. Keep trying, slowly.
                        retry.failed(&Failure::Rejected(format!(
                            "the coordinator stores events only up to seq {} and waits for {}, \
                             which this worker no longer has",
                            ack.acked_seq,
                            ack.acked_seq + 1
                        )));
                    }
                }
                Err(Failure::TooLarge) if batch_limit > 1 => {
                    batch_limit = (batch_limit / 2).max(1);
                    tracing::warn!(
                        batch_limit,
                        "the coordinator refused a batch as too large; sending smaller ones"
                    );
                }
                Err(Failure::TooLarge) => retry.failed(&Failure::Rejected(
                    "the coordinator refuses a single event as too large (413)".to_string(),
                )),
                Err(failure) => retry.failed(&failure),
            }
        }
    }

    /// One request: the batch out, the ack back.
    async fn post(&self, events: Vec<Envelope>) -> std::result::Result<IngestAck, Failure> {
        let response = self
            .client
            .post(self.endpoint.clone())
            .header(AUTHORIZATION, self.authorization.clone())
            .json(&EventBatch { events })
            .send()
            .await
            .map_err(|err| Failure::Transient {
                reason: describe(&err),
                retry_after: None,
            })?;
        let status = response.status();
        if status.is_success() {
            return response.json::<IngestAck>().await.map_err(|err| {
                if err.is_decode() {
                    Failure::Rejected(format!("the answer is not an ingest ack: {err}"))
                } else {
                    Failure::Transient {
                        reason: describe(&err),
                        retry_after: None,
                    }
                }
            });
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = response.text().await.unwrap_or_default();
        let message = match serde_json::from_str::<ErrorBody>(&body) {
            Ok(ErrorBody { error }) => format!("{status}: {}: {}", error.code, error.message),
            Err(_) => status.to_string(),
        };
        Err(classify(status, message, retry_after))
    }
}

/// A reqwest error without the URL's query (there is none) and never with headers.
fn describe(err: &reqwest::Error) -> String {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let mut text = kind.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Builds `{base}/api/v1/sandboxes/{sandbox_id}/events`, keeping a path prefix of the base.
fn ingest_url(base_url: &str, sandbox_id: &str) -> Result<Url> {
    const VARIABLE: &str = "OMOIOS_API_URL";
    let mut url = Url::parse(base_url.trim())
        .map_err(|err| Error::config(VARIABLE, format!("not a URL ({err}): {base_url:?}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::config(
            VARIABLE,
            format!("must be an http or https URL, not {:?}", url.scheme()),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(Error::config(VARIABLE, "has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::config(VARIABLE, "must not have a query or fragment"));
    }
    if sandbox_id.trim().is_empty() {
        return Err(Error::config("SANDBOX_ID", "is empty"));
    }
    url.path_segments_mut()
        .map_err(|()| Error::config(VARIABLE, "cannot be a base URL"))?
        .pop_if_empty()
        .extend(["api", "v1", "sandboxes", sandbox_id, "events"]);
    Ok(url)
}

/// Events waiting for an ack, and the channel they come from.
struct Queue {
    rx: mpsc::UnboundedReceiver<Envelope>,
    /// Every emitter is gone: nothing more will come.
    closed: bool,
    pending: VecDeque<Envelope>,
    /// When the oldest pending event was queued.
    first_queued_at: Option<Instant>,
    /// When the last batch went out, while the batch window applies to the next one.
    last_sent_at: Option<Instant>,
}

impl Queue {
    fn new(rx: mpsc::UnboundedReceiver<Envelope>) -> Self {
        Queue {
            rx,
            closed: false,
            pending: VecDeque::new(),
            first_queued_at: None,
            last_sent_at: None,
        }
    }

    /// When a batch whose oldest event was queued at `first` is due: at once after a quiet
    /// spell, else when the window since the last batch ends.
    fn send_after(&self, first: Instant) -> Instant {
        match self.last_sent_at {
            Some(last) => first.max(last + BATCH_WINDOW),
            None => first,
        }
    }

    fn push(&mut self, received: Option<Envelope>) {
        match received {
            Some(envelope) => {
                if self.pending.is_empty() {
                    self.first_queued_at = Some(Instant::now());
                }
                self.pending.push_back(envelope);
            }
            None => self.closed = true,
        }
    }

    /// Moves everything already in the channel to the queue.
    fn take_ready(&mut self) {
        while !self.closed {
            match self.rx.try_recv() {
                Ok(envelope) => self.push(Some(envelope)),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => self.closed = true,
            }
        }
    }

    /// Drops pending events up to `acked_seq`; returns how many.
    fn drop_acked(&mut self, acked_seq: u64) -> u64 {
        let before = self.pending.len();
        while self
            .pending
            .front()
            .is_some_and(|event| event.seq <= acked_seq)
        {
            self.pending.pop_front();
        }
        if self.pending.is_empty() {
            self.first_queued_at = None;
        } else if self.pending.len() < before {
            // What is left (more than one batch was pending) has waited long enough already.
            self.last_sent_at = None;
        }
        (before - self.pending.len()) as u64
    }

    /// Gives up now: everything unacked stays in the spool for a restart.
    fn abandon(mut self, mut report: DeliveryReport) -> DeliveryReport {
        self.take_ready();
        report.unsent = self.pending.len() as u64;
        if report.unsent > 0 {
            tracing::warn!(
                unsent = report.unsent,
                "event delivery stopped at its deadline; unsent events stay in the spool"
            );
        }
        report
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use pretty_assertions::assert_eq;

    use super::*;
    use crate::events::spool::Spool;

    fn spool() -> (tempfile::TempDir, SharedSpool) {
        let tmp = tempfile::tempdir().unwrap();
        let spool = Spool::open(tmp.path()).unwrap().spool;
        (tmp, Arc::new(Mutex::new(spool)))
    }

    fn config_error(base_url: &str, sandbox_id: &str, token: &str) -> (String, String) {
        let (_tmp, spool) = spool();
        match HttpSender::new(base_url, sandbox_id, token, spool) {
            Err(Error::Config { variable, problem }) => (variable, problem),
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn the_ingest_url_keeps_the_base_path_and_encodes_the_sandbox_id() {
        let cases = [
            (
                "http://127.0.0.1:8080",
                "sb-1",
                "http://127.0.0.1:8080/api/v1/sandboxes/sb-1/events",
            ),
            (
                "https://omoi.example/",
                "sb-1",
                "https://omoi.example/api/v1/sandboxes/sb-1/events",
            ),
            (
                "https://omoi.example/coordinator/",
                "sb 1/x",
                "https://omoi.example/coordinator/api/v1/sandboxes/sb%201%2Fx/events",
            ),
        ];
        for (base, sandbox_id, expected) in cases {
            assert_eq!(
                ingest_url(base, sandbox_id).unwrap().as_str(),
                expected,
                "{base}"
            );
        }
    }

    #[test]
    fn a_bad_url_is_a_config_error_naming_the_variable() {
        let api = "OMOIOS_API_URL".to_string();
        assert_eq!(
            config_error("not a url", "sb-1", "t"),
            (
                api.clone(),
                "not a URL (relative URL without a base): \"not a url\"".to_string()
            )
        );
        assert_eq!(
            config_error("ftp://example.com", "sb-1", "t"),
            (
                api.clone(),
                "must be an http or https URL, not \"ftp\"".to_string()
            )
        );
        assert_eq!(
            config_error("http://example.com/?a=b", "sb-1", "t"),
            (api, "must not have a query or fragment".to_string())
        );
        assert_eq!(
            config_error("http://example.com", "", "t"),
            ("SANDBOX_ID".to_string(), "is empty".to_string())
        );
    }

    #[test]
    fn a_bad_token_is_a_config_error_that_does_not_repeat_it() {
        assert_eq!(
            config_error("http://example.com", "sb-1", ""),
            (
                "SANDBOX_TOKEN".to_string(),
                "is empty; the coordinator needs it".to_string()
            )
        );
        let (variable, problem) = config_error("http://example.com", "sb-1", "sec\nret");
        assert_eq!(variable, "SANDBOX_TOKEN");
        assert!(!problem.contains("sec"), "{problem}");
    }

    #[test]
    fn debug_output_hides_the_token() {
        let (_tmp, spool) = spool();
        let sender = HttpSender::new("http://127.0.0.1:1", "sb-1", "s3cr3t-token", spool).unwrap();
        let debug = format!("{sender:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
        assert_eq!(
            sender.endpoint(),
            "http://127.0.0.1:1/api/v1/sandboxes/sb-1/events"
        );
    }
}
