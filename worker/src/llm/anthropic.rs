//! The Anthropic Messages API provider: `POST {ANTHROPIC_BASE_URL}/v1/messages`, streamed over
//! SSE by default, deltas assembled into whole blocks, retried per [`CallOptions`].
//!
//! `ANTHROPIC_BASE_URL` is the API's origin without `/v1` (as in Anthropic's own SDKs), e.g.
//! `https://api.anthropic.com`; a trailing `/v1` is tolerated and dropped.

mod request;
mod response;

use std::time::Duration;

use reqwest::Url;
use reqwest::header::{HeaderMap, HeaderValue};
use tokio_util::sync::CancellationToken;

use super::retry::{CallOptions, http_client, send_json, with_retries, within};
use super::sse::{is_event_stream, read_body, read_events};
use super::{BoxFuture, ChatRequest, ChatResponse, HttpProviderConfig, LlmError, Provider};
use crate::error::Error;
use request::MessagesRequest;
use response::{StreamedMessage, parse_message};

/// The API's origin when `ANTHROPIC_BASE_URL` is empty.
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
/// The `anthropic-version` header sent with every request.
pub const API_VERSION: &str = "2023-06-01";

/// Talks to the Anthropic Messages API (or a server that speaks it).
pub struct AnthropicProvider {
    client: reqwest::Client,
    endpoint: Url,
    headers: HeaderMap,
    model: String,
    request_timeout: Duration,
    options: CallOptions,
}

impl std::fmt::Debug for AnthropicProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnthropicProvider")
            .field("endpoint", &self.endpoint.as_str())
            .field("model", &self.model)
            .field("request_timeout", &self.request_timeout)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl AnthropicProvider {
    /// A provider for `config`. Fails on an empty API key or a base URL that is not http(s).
    pub fn new(config: HttpProviderConfig) -> Result<Self, Error> {
        let endpoint = endpoint(&config.base_url)?;
        if config.api_key.trim().is_empty() {
            return Err(Error::config("ANTHROPIC_API_KEY", "is empty"));
        }
        let mut key = HeaderValue::from_str(config.api_key.trim()).map_err(|_| {
            Error::config(
                "ANTHROPIC_API_KEY",
                "contains characters not allowed in a header",
            )
        })?;
        key.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", key);
        headers.insert("anthropic-version", HeaderValue::from_static(API_VERSION));
        Ok(AnthropicProvider {
            client: http_client()?,
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

    async fn exchange(&self, body: &MessagesRequest<'_>) -> Result<ChatResponse, LlmError> {
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
            let mut stream = StreamedMessage::default();
            let flow = read_events(&mut response, idle, |event| stream.on_event(event)).await?;
            stream.finish(flow, &self.model)
        } else {
            let text = read_body(&mut response, idle).await?;
            parse_message(&text, &self.model)
        }
    }
}

impl Provider for AnthropicProvider {
    fn name(&self) -> &'static str {
        "anthropic"
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
            let body = MessagesRequest::new(&self.model, request, self.options.stream);
            with_retries(&self.options.retry, cancel, "Anthropic request", |_| {
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
        .map_err(|e| Error::config("ANTHROPIC_BASE_URL", format!("{base:?} is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(Error::config(
            "ANTHROPIC_BASE_URL",
            format!("{base:?} is not an http(s) URL"),
        ));
    }
    let root = base.trim_end_matches('/');
    let root = root.strip_suffix("/v1").unwrap_or(root);
    Url::parse(&format!("{root}/v1/messages"))
        .map_err(|e| Error::config("ANTHROPIC_BASE_URL", format!("{base:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;

    #[test]
    fn base_url_conventions() {
        let url = |base: &str| endpoint(base).map(|u| u.to_string());
        assert_eq!(url("").unwrap(), "https://api.anthropic.com/v1/messages");
        assert_eq!(
            url("http://127.0.0.1:9/").unwrap(),
            "http://127.0.0.1:9/v1/messages"
        );
        assert_eq!(
            url("http://proxy/anthropic/v1").unwrap(),
            "http://proxy/anthropic/v1/messages"
        );
        for bad in ["localhost:8080", "ftp://host", "not a url"] {
            let err = url(bad).unwrap_err();
            assert!(err.to_string().starts_with("ANTHROPIC_BASE_URL: "), "{err}");
        }
    }

    fn config(api_key: &str, base_url: &str) -> HttpProviderConfig {
        HttpProviderConfig {
            api_key: api_key.into(),
            base_url: base_url.into(),
            model: "claude-sonnet-4-5".into(),
            request_timeout: Duration::from_secs(60),
            max_retries: 1,
        }
    }

    #[test]
    fn bad_settings_name_the_variable() {
        let error = |key: &str, base: &str| AnthropicProvider::new(config(key, base)).unwrap_err();
        assert_eq!(
            error("k", "ftp://x").to_string(),
            "ANTHROPIC_BASE_URL: \"ftp://x\" is not an http(s) URL"
        );
        assert_eq!(error(" ", "").to_string(), "ANTHROPIC_API_KEY: is empty");
        assert_eq!(
            error("bad\nkey", "").to_string(),
            "ANTHROPIC_API_KEY: contains characters not allowed in a header"
        );
    }

    #[test]
    fn debug_output_never_shows_the_key() {
        let provider = AnthropicProvider::new(config("sk-ant-secret", "")).unwrap();
        let shown = format!("{provider:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert_eq!(provider.endpoint(), "https://api.anthropic.com/v1/messages");
    }
}
