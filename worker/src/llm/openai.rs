//! The OpenAI Chat Completions wire format for the HTTP provider, for OpenAI and any compatible
//! server (Ollama, vLLM, llama.cpp, gateways): `POST {OPENAI_BASE_URL}/chat/completions`, SSE
//! chunks assembled into whole blocks.
//!
//! `OPENAI_BASE_URL` includes the API version path, as in OpenAI's own SDKs:
//! `https://api.openai.com/v1`, `http://localhost:11434/v1`. A bare origin (no path) gets `/v1`.
//! An empty `OPENAI_API_KEY` sends no `Authorization` header (local servers need none).
//! `max_completion_tokens` is sent to api.openai.com, `max_tokens` to every other server (the
//! field compatible servers know).

mod request;
mod response;

use reqwest::Url;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};

use super::http::{HttpProvider, WireFormat, endpoint_url};
use super::{ChatRequest, ChatResponse, LlmError};
use crate::error::Error;
use request::CompletionRequest;
use response::{StreamedCompletion, parse_completion};

/// The API's base when `OPENAI_BASE_URL` is empty.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// Talks to an OpenAI-compatible Chat Completions API.
pub type OpenAiProvider = HttpProvider<OpenAi>;

/// The wire format of the OpenAI Chat Completions API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenAi {
    /// Send `max_completion_tokens` (OpenAI itself) rather than `max_tokens`.
    completion_tokens_field: bool,
}

impl WireFormat for OpenAi {
    type Body<'a> = CompletionRequest<'a>;
    type Stream = StreamedCompletion;

    const NAME: &'static str = "openai";
    const WHAT: &'static str = "OpenAI request";

    fn endpoint(base_url: &str) -> Result<Url, Error> {
        endpoint_url(
            "OPENAI_BASE_URL",
            base_url,
            DEFAULT_BASE_URL,
            |root, parsed| {
                if parsed.path().trim_matches('/').is_empty() {
                    format!("{root}/v1/chat/completions")
                } else {
                    format!("{root}/chat/completions")
                }
            },
        )
    }

    fn for_endpoint(endpoint: &Url) -> Self {
        OpenAi {
            completion_tokens_field: endpoint.host_str() == Some("api.openai.com"),
        }
    }

    /// `Authorization: Bearer …`, or nothing for an empty key.
    fn headers(api_key: &str) -> Result<HeaderMap, Error> {
        let mut headers = HeaderMap::new();
        let key = api_key.trim();
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
        Ok(headers)
    }

    fn encode<'a>(
        &self,
        model: &'a str,
        request: &'a ChatRequest,
        stream: bool,
    ) -> CompletionRequest<'a> {
        CompletionRequest::new(model, request, stream, self.completion_tokens_field)
    }

    fn decode(text: &str, model: &str) -> Result<ChatResponse, LlmError> {
        parse_completion(text, model)
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
        let url = |base: &str| OpenAi::endpoint(base).map(|u| u.to_string());
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
            context_window: None,
        }
    }

    #[test]
    fn settings_decide_headers_and_the_tokens_field() {
        let local = OpenAiProvider::new(config("", "http://localhost:11434/v1")).unwrap();
        assert_eq!(local.headers().get(AUTHORIZATION), None);
        assert!(!local.wire().completion_tokens_field);
        let official = OpenAiProvider::new(config("sk-secret", "")).unwrap();
        assert!(
            official
                .headers()
                .get(AUTHORIZATION)
                .is_some_and(|v| v.is_sensitive())
        );
        assert!(official.wire().completion_tokens_field);
        let shown = format!("{official:?}");
        assert!(!shown.contains("secret"), "{shown}");
        let err = OpenAiProvider::new(config("", "mailto:a@b")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "OPENAI_BASE_URL: \"mailto:a@b\" is not an http(s) URL"
        );
    }
}
