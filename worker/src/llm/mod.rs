//! The model provider trait and the provider-neutral message types the agent loop speaks.

pub mod anthropic;
pub mod http;
pub mod openai;
pub mod pricing;
pub mod retry;
pub mod scripted;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// A boxed future, so that providers can sit behind `dyn Provider`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Who said a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    User,
    Assistant,
}

/// One block of a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock {
    Text {
        text: String,
    },
    /// A tool call. `input` is whatever the model sent: the agent loop rejects anything
    /// but a JSON object as a tool error (a provider passes unparsable arguments as a string).
    ToolUse {
        id: String,
        name: String,
        input: serde_json::Value,
    },
    ToolResult {
        tool_use_id: String,
        content: String,
        is_error: bool,
    },
}

/// A message of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: Vec<ContentBlock>,
}

impl Message {
    pub fn user_text(text: impl Into<String>) -> Self {
        Message {
            role: Role::User,
            content: vec![ContentBlock::Text { text: text.into() }],
        }
    }
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// JSON Schema of the tool's input object.
    pub input_schema: serde_json::Value,
}

/// Which agent session a request belongs to: `label` is the phase name (`explore` …),
/// `task:TSK-001` in task mode, or `spec-skill`; `attempt` counts from 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub label: String,
    pub attempt: u32,
}

/// One call to the model.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub session: SessionInfo,
    pub system: String,
    pub messages: Vec<Message>,
    pub tools: Vec<ToolSpec>,
    pub max_tokens: u32,
}

/// Why the model stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    EndTurn,
    ToolUse,
    MaxTokens,
    Other(String),
}

/// Tokens one call used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenUsage {
    /// Every input token, cached or not.
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Input tokens read from the prompt cache (part of `input_tokens`).
    pub cache_read_tokens: u64,
    /// Input tokens written to the prompt cache (part of `input_tokens`).
    pub cache_write_tokens: u64,
}

/// The model's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatResponse {
    pub content: Vec<ContentBlock>,
    pub stop_reason: StopReason,
    pub usage: TokenUsage,
    /// The model that answered, as the API reports it.
    pub model: String,
}

/// What can go wrong talking to a model.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LlmError {
    /// 429. Retryable, after `retry_after` when the API says.
    #[error("rate limited (429): {message}")]
    RateLimited {
        retry_after: Option<Duration>,
        message: String,
    },
    /// 5xx or an overloaded answer. Retryable.
    #[error("server error ({status}): {message}")]
    Server { status: u16, message: String },
    /// The request or the stream took too long. Retryable.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The connection failed or broke. Retryable.
    #[error("connection failed: {0}")]
    Connection(String),
    /// Any other 4xx: the API's own message. Not retryable.
    #[error("API error ({status}): {message}")]
    Api { status: u16, message: String },
    /// The answer could not be understood. Not retryable.
    #[error("invalid response: {0}")]
    InvalidResponse(String),
    /// The scripted provider has no answer for this request. Not retryable.
    #[error("script: {0}")]
    Script(String),
    /// The call was cancelled. Not retryable.
    #[error("cancelled")]
    Cancelled,
}

impl LlmError {
    /// Whether the same request may succeed if sent again.
    pub fn is_retryable(&self) -> bool {
        match self {
            LlmError::RateLimited { .. }
            | LlmError::Server { .. }
            | LlmError::Timeout(_)
            | LlmError::Connection(_) => true,
            LlmError::Api { .. }
            | LlmError::InvalidResponse(_)
            | LlmError::Script(_)
            | LlmError::Cancelled => false,
        }
    }
}

/// Settings of a provider that talks to an HTTP API (`anthropic`, `openai`).
#[derive(Clone, PartialEq)]
pub struct HttpProviderConfig {
    pub api_key: String,
    /// Base URL without the path, e.g. `https://api.anthropic.com`.
    pub base_url: String,
    pub model: String,
    /// Limit of one request, first byte to last.
    pub request_timeout: Duration,
    /// Retries of one call on 429, 5xx, timeouts and connection errors.
    pub max_retries: u32,
    /// The model's context window in tokens (`OMOI_CONTEXT_WINDOW`); `None`: the model's
    /// known window ([`pricing::context_window`]).
    pub context_window: Option<u64>,
}

impl std::fmt::Debug for HttpProviderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpProviderConfig")
            .field("api_key", &"<redacted>")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("request_timeout", &self.request_timeout)
            .field("max_retries", &self.max_retries)
            .field("context_window", &self.context_window)
            .finish()
    }
}

/// A model behind an API (or a script). Providers are stateless between calls: the whole
/// conversation is in the request.
pub trait Provider: Send + Sync {
    /// The provider's name: `anthropic`, `openai`, `scripted` …
    fn name(&self) -> &'static str;
    /// The model asked for.
    fn model(&self) -> &str;
    /// The most tokens one request may hold: the model's context window.
    fn context_window(&self) -> u64 {
        pricing::context_window(self.model())
    }
    /// Sends one request and returns the whole answer. Implementations honour `cancel`.
    fn complete<'a>(
        &'a self,
        request: &'a ChatRequest,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<ChatResponse, LlmError>>;
}

impl<P: Provider + ?Sized> Provider for &P {
    fn name(&self) -> &'static str {
        (**self).name()
    }

    fn model(&self) -> &str {
        (**self).model()
    }

    fn context_window(&self) -> u64 {
        (**self).context_window()
    }

    fn complete<'a>(
        &'a self,
        request: &'a ChatRequest,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<ChatResponse, LlmError>> {
        (**self).complete(request, cancel)
    }
}
