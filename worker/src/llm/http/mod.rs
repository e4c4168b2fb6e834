//! The one HTTP provider: a model API reached over HTTP, whose wire format (request encoding,
//! response and stream decoding, headers, the URL rule) is a [`WireFormat`]; `anthropic` and
//! `openai` are the two. The transport is [`transport`] and [`sse`]; retries are
//! [`super::retry`], apart from both.

pub mod sse;
pub mod transport;

use std::time::Duration;

use reqwest::Url;
use reqwest::header::HeaderMap;
use tokio_util::sync::CancellationToken;

use super::retry::{RetryPolicy, with_retries};
use super::{BoxFuture, ChatRequest, ChatResponse, HttpProviderConfig, LlmError, Provider};
use crate::error::Error;
use sse::{Flow, SseEvent, is_event_stream, read_body, read_events};
use transport::{http_client, send_json, within};

/// How an HTTP provider makes its calls, beyond [`super::HttpProviderConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallOptions {
    pub retry: RetryPolicy,
    /// Longest silence before the attempt fails as a timeout and is retried: the wait for a
    /// streamed answer to start, and every gap between pieces of a body.
    pub idle_timeout: Duration,
    /// Stream the answer over SSE (the default) or ask for one JSON body.
    pub stream: bool,
}

impl CallOptions {
    /// The idle limit when none is configured.
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

    /// Streaming, [`RetryPolicy::new`], [`Self::DEFAULT_IDLE_TIMEOUT`].
    pub fn new(max_retries: u32) -> Self {
        CallOptions {
            retry: RetryPolicy::new(max_retries),
            idle_timeout: Self::DEFAULT_IDLE_TIMEOUT,
            stream: true,
        }
    }
}

/// One model API's wire format.
pub trait WireFormat: Send + Sync + Sized + 'static {
    /// The request body as the API takes it.
    type Body<'a>: serde::Serialize + Send + Sync;
    /// Assembles a streamed answer from its events.
    type Stream: StreamDecoder;

    /// The provider's name: `anthropic`, `openai`.
    const NAME: &'static str;
    /// What a retried call is called in logs.
    const WHAT: &'static str;

    /// The URL rule: the endpoint requests go to, from the configured base URL (empty for the
    /// API's default). A bad URL is `Error::Config` naming the variable.
    fn endpoint(base_url: &str) -> Result<Url, Error>;
    /// The wire format for that endpoint (some APIs' fields depend on the server).
    fn for_endpoint(endpoint: &Url) -> Self;
    /// The headers of every request, the API key among them (marked sensitive).
    fn headers(api_key: &str) -> Result<HeaderMap, Error>;
    /// The body of one request.
    fn encode<'a>(&self, model: &'a str, request: &'a ChatRequest, stream: bool) -> Self::Body<'a>;
    /// A whole (not streamed) answer; `model` is the one asked for.
    fn decode(text: &str, model: &str) -> Result<ChatResponse, LlmError>;
}

/// The endpoint of an API from its configured base URL (`default` when empty): the base must be
/// an http(s) URL with a host; `rule` makes the endpoint from the base without its trailing `/`
/// and the parsed base. Problems are `Error::Config` naming `variable`.
pub fn endpoint_url(
    variable: &str,
    configured: &str,
    default: &str,
    rule: impl FnOnce(&str, &Url) -> String,
) -> Result<Url, Error> {
    let base = match configured.trim() {
        "" => default,
        base => base,
    };
    let parsed = Url::parse(base)
        .map_err(|e| Error::config(variable, format!("{base:?} is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(Error::config(
            variable,
            format!("{base:?} is not an http(s) URL"),
        ));
    }
    let endpoint = rule(base.trim_end_matches('/'), &parsed);
    Url::parse(&endpoint).map_err(|e| Error::config(variable, format!("{base:?}: {e}")))
}

/// The decoder of one streamed answer.
pub trait StreamDecoder: Default + Send {
    /// Takes one event; [`Flow::Done`] when the answer is complete.
    fn on_event(&mut self, event: SseEvent) -> Result<Flow, LlmError>;
    /// The answer, once the stream ended with `flow`; `model` is the one asked for.
    fn finish(self, flow: Flow, model: &str) -> Result<ChatResponse, LlmError>;
}

/// A model behind an HTTP API that speaks `W`, streamed over SSE by default, deltas assembled
/// into whole blocks, retried per [`CallOptions`].
pub struct HttpProvider<W> {
    wire: W,
    client: reqwest::Client,
    endpoint: Url,
    headers: HeaderMap,
    model: String,
    context_window: u64,
    request_timeout: Duration,
    options: CallOptions,
}

impl<W: WireFormat> std::fmt::Debug for HttpProvider<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpProvider")
            .field("api", &W::NAME)
            .field("endpoint", &self.endpoint.as_str())
            .field("model", &self.model)
            .field("request_timeout", &self.request_timeout)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl<W: WireFormat> HttpProvider<W> {
    /// A provider for `config`. Fails on a bad base URL or API key, naming the variable.
    pub fn new(config: HttpProviderConfig) -> Result<Self, Error> {
        let endpoint = W::endpoint(&config.base_url)?;
        let headers = W::headers(&config.api_key)?;
        Ok(HttpProvider {
            wire: W::for_endpoint(&endpoint),
            client: http_client()?,
            endpoint,
            headers,
            context_window: config
                .context_window
                .unwrap_or_else(|| crate::llm::pricing::context_window(&config.model)),
            model: config.model,
            request_timeout: config.request_timeout,
            options: CallOptions::new(config.max_retries),
        })
    }

    /// Replaces the retry, idle and streaming options.
    pub fn with_options(mut self, options: CallOptions) -> Self {
        self.options = options;
        self
    }

    /// The URL requests go to.
    pub fn endpoint(&self) -> &str {
        self.endpoint.as_str()
    }

    /// The headers of every request.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The wire format, as set up for the endpoint.
    pub fn wire(&self) -> &W {
        &self.wire
    }

    async fn exchange(&self, body: &W::Body<'_>, stream: bool) -> Result<ChatResponse, LlmError> {
        let idle = self.options.idle_timeout;
        let mut response = send_json(
            &self.client,
            &self.endpoint,
            &self.headers,
            body,
            stream,
            idle,
        )
        .await?;
        if stream && is_event_stream(response.headers()) {
            let mut decoder = W::Stream::default();
            let flow = read_events(&mut response, idle, |event| decoder.on_event(event)).await?;
            decoder.finish(flow, &self.model)
        } else {
            let text = read_body(&mut response, idle).await?;
            W::decode(&text, &self.model)
        }
    }
}

impl<W: WireFormat> Provider for HttpProvider<W> {
    fn name(&self) -> &'static str {
        W::NAME
    }

    fn model(&self) -> &str {
        &self.model
    }

    fn context_window(&self) -> u64 {
        self.context_window
    }

    fn complete<'a>(
        &'a self,
        request: &'a ChatRequest,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<ChatResponse, LlmError>> {
        Box::pin(async move {
            let stream = self.options.stream;
            let body = self.wire.encode(&self.model, request, stream);
            with_retries(&self.options.retry, cancel, W::WHAT, |_| {
                within(self.request_timeout, self.exchange(&body, stream))
            })
            .await
        })
    }
}
