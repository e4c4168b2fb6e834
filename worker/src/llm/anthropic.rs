//! The Anthropic Messages API's wire format for the HTTP provider: `POST
//! {ANTHROPIC_BASE_URL}/v1/messages`, `x-api-key`, SSE events assembled into whole blocks.
//!
//! `ANTHROPIC_BASE_URL` is the API's origin without `/v1` (as in Anthropic's own SDKs), e.g.
//! `https://api.anthropic.com`; a trailing `/v1` is tolerated and dropped.

mod request;
mod response;

use reqwest::Url;
use reqwest::header::{HeaderMap, HeaderValue};

use super::http::{HttpProvider, WireFormat, endpoint_url};
use super::{ChatRequest, ChatResponse, LlmError};
use crate::error::Error;
use request::MessagesRequest;
use response::{StreamedMessage, parse_message};

/// The API's origin when `ANTHROPIC_BASE_URL` is empty.
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
/// The `anthropic-version` header sent with every request.
pub const API_VERSION: &str = "2023-06-01";

/// Talks to the Anthropic Messages API (or a server that speaks it).
pub type AnthropicProvider = HttpProvider<Anthropic>;

/// The wire format of the Anthropic Messages API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anthropic;

impl WireFormat for Anthropic {
    type Body<'a> = MessagesRequest<'a>;
    type Stream = StreamedMessage;

    const NAME: &'static str = "anthropic";
    const WHAT: &'static str = "Anthropic request";

    fn endpoint(base_url: &str) -> Result<Url, Error> {
        endpoint_url(
            "ANTHROPIC_BASE_URL",
            base_url,
            DEFAULT_BASE_URL,
            |root, _| {
                let root = root.strip_suffix("/v1").unwrap_or(root);
                format!("{root}/v1/messages")
            },
        )
    }

    fn for_endpoint(_endpoint: &Url) -> Self {
        Anthropic
    }

    /// `x-api-key` (it must not be empty) and `anthropic-version`.
    fn headers(api_key: &str) -> Result<HeaderMap, Error> {
        if api_key.trim().is_empty() {
            return Err(Error::config("ANTHROPIC_API_KEY", "is empty"));
        }
        let mut key = HeaderValue::from_str(api_key.trim()).map_err(|_| {
            Error::config(
                "ANTHROPIC_API_KEY",
                "contains characters not allowed in a header",
            )
        })?;
        key.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", key);
        headers.insert("anthropic-version", HeaderValue::from_static(API_VERSION));
        Ok(headers)
    }

    fn encode<'a>(
        &self,
        model: &'a str,
        request: &'a ChatRequest,
        stream: bool,
    ) -> MessagesRequest<'a> {
        MessagesRequest::new(model, request, stream)
    }

    fn decode(text: &str, model: &str) -> Result<ChatResponse, LlmError> {
        parse_message(text, model)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use pretty_assertions::assert_eq;

    use super::*;
    use crate::llm::HttpProviderConfig;

    #[test]
    fn base_url_conventions() {
        let url = |base: &str| Anthropic::endpoint(base).map(|u| u.to_string());
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
            context_window: None,
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
