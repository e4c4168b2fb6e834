//! The OpenAI Chat Completions provider, for OpenAI and any compatible server (Ollama, vLLM,
//! llama.cpp, gateways): `POST {OPENAI_BASE_URL}/chat/completions`, streamed over SSE by default,
//! deltas assembled into whole blocks, retried per [`CallOptions`].
//!
//! `OPENAI_BASE_URL` includes the API version path, as in OpenAI's own SDKs:
//! `https://api.openai.com/v1`, `http://localhost:11434/v1`. A bare origin (no path) gets `/v1`.
//! An empty `OPENAI_API_KEY` sends no `Authorization` header (local servers need none).
//! `max_completion_tokens` is sent to api.openai.com, `max_tokens` to every other server (the
//! field compatible servers know).

mod request;
mod response;

use std::time::Duration;

use reqwest::Url;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use tokio_util::sync::CancellationToken;

use super::retry::{CallOptions, http_client, send_json, with_retries, within};
use super::sse::{is_event_stream, read_body, read_events};
use super::{BoxFuture, ChatRequest, ChatResponse, HttpProviderConfig, LlmError, Provider};
use crate::error::Error;
use request::CompletionRequest;
use response::{StreamedCompletion, parse_completion};

/// The API's base when `OPENAI_BASE_URL` is empty.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// Talks to an OpenAI-compatible Chat Completions API.
pub struct OpenAiProvider {
    client: reqwest::Client,
    endpoint: Url,
    headers: HeaderMap,
    model: String,
    request_timeout: Duration,
    options: CallOptions,
    /// Send `max_completion_tokens` (OpenAI itself) rather than `max_tokens`.
    completion_tokens_field: bool,
}

impl std::fmt::Debug for OpenAiProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiProvider")
            .field("endpoint", &self.endpoint.as_str())
            .field("model", &self.model)
            .field("request_timeout", &self.request_timeout)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl OpenAiProvider {
    /// A provider for `config`. Fails on a base URL that is not http(s).
    pub fn new(config: HttpProviderConfig) -> Result<Self, Error> {
        let endpoint = endpoint(&config.base_url)?;
        let mut headers = HeaderMap::new();
        let key = config.api_key.trim();
        if !key.is_empty() {
            let mut value = HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| {
                Error::config(
                    "OPENAI_API_KEY",
                    "contains characters not allowed in a header",
                )
            })?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        Ok(OpenAiProvider {
            client: http_client()?,
            completion_tokens_field: endpoint.host_str() == Some("api.openai.com"),
            endpoint,
            headers,
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

    async fn exchange(&self, body: &CompletionRequest<'_>) -> Result<ChatResponse, LlmError> {
        let idle = self.options.idle_timeout;
        let mut response = send_json(
            &self.client,
            &self.endpoint,
            &self.headers,
            body,
            body.stream,
            idle,
        )
        .await?;
        if body.stream && is_event_stream(response.headers()) {
            let mut stream = StreamedCompletion::default();
            let flow = read_events(&mut response, idle, |event| stream.on_event(event)).await?;
            stream.finish(flow, &self.model)
        } else {
            let text = read_body(&mut response, idle).await?;
            parse_completion(&text, &self.model)
        }
    }
}

impl Provider for OpenAiProvider {
    fn name(&self) -> &'static str {
        "openai"
    }

    fn model(&self) -> &str {
        &self.model
    }

    fn complete<'a>(
        &'a self,
        request: &'a ChatRequest,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<ChatResponse, LlmError>> {
        Box::pin(async move {
            let body = CompletionRequest::new(
                &self.model,
                request,
                self.options.stream,
                self.completion_tokens_field,
            );
            with_retries(&self.options.retry, cancel, "OpenAI request", |_| {
                within(self.request_timeout, self.exchange(&body))
            })
            .await
        })
    }
}

fn endpoint(base_url: &str) -> Result<Url, Error> {
    let base = match base_url.trim() {
        "" => DEFAULT_BASE_URL,
        base => base,
    };
    let parsed = Url::parse(base)
        .map_err(|e| Error::config("OPENAI_BASE_URL", format!("{base:?} is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(Error::config(
            "OPENAI_BASE_URL",
            format!("{base:?} is not an http(s) URL"),
        ));
    }
    let root = base.trim_end_matches('/');
    let root = if parsed.path().trim_matches('/').is_empty() {
        format!("{root}/v1")
    } else {
        root.to_string()
    };
    Url::parse(&format!("{root}/chat/completions"))
        .map_err(|e| Error::config("OPENAI_BASE_URL", format!("{base:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;

    #[test]
    fn base_url_conventions() {
        let url = |base: &str| endpoint(base).map(|u| u.to_string());
        assert_eq!(
            url("").unwrap(),
            "https://api.openai.com/v1/chat/completions"
        );
        assert_eq!(
            url("http://localhost:11434/v1/").unwrap(),
            "http://localhost:11434/v1/chat/completions"
        );
        assert_eq!(
            url("http://localhost:8000").unwrap(),
            "http://localhost:8000/v1/chat/completions"
        );
        assert_eq!(
            url("https://gateway.example/openai/v1").unwrap(),
            "https://gateway.example/openai/v1/chat/completions"
        );
        let err = url("localhost:11434").unwrap_err();
        assert!(err.to_string().starts_with("OPENAI_BASE_URL: "), "{err}");
    }

    fn config(api_key: &str, base_url: &str) -> HttpProviderConfig {
        HttpProviderConfig {
            api_key: api_key.into(),
            base_url: base_url.into(),
            model: "llama3.1".into(),
            request_timeout: Duration::from_secs(60),
            max_retries: 1,
        }
    }

    #[test]
    fn settings_decide_headers_and_the_tokens_field() {
        let local = OpenAiProvider::new(config("", "http://localhost:11434/v1")).unwrap();
        assert_eq!(local.headers.get(AUTHORIZATION), None);
        assert!(!local.completion_tokens_field);
        let official = OpenAiProvider::new(config("sk-secret", "")).unwrap();
        assert!(
            official
                .headers
                .get(AUTHORIZATION)
                .is_some_and(|v| v.is_sensitive())
        );
        assert!(official.completion_tokens_field);
        let shown = format!("{official:?}");
        assert!(!shown.contains("secret"), "{shown}");
        let err = OpenAiProvider::new(config("", "mailto:a@b")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "OPENAI_BASE_URL: \"mailto:a@b\" is not an http(s) URL"
        );
    }
}
