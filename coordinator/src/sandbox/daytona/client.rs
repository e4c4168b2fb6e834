//! A small client of Daytona's REST API and of a sandbox's toolbox: bearer key, the optional
//! organisation header, JSON bodies, and one retry policy: 429 and 5xx answers and failed
//! connections are sent again, up to a bound, with an exponential backoff that honours
//! `Retry-After`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::wire::{
    CreateSandbox, ErrorBody, ExecuteRequest, ExecuteResponse, Sandbox, SandboxPage, Snapshot,
};

/// The organisation header of the API.
pub const ORGANIZATION_HEADER: &str = "X-Daytona-Organization-ID";

/// The longest a `Retry-After` is waited for.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(30);
/// The longest one backoff step.
const BACKOFF_CAP: Duration = Duration::from_secs(5);
/// The time one request may take (the create waits for the sandbox to start, up to 30 s).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// An answer that was not a success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// The API answered this status, with its message.
    Status { code: u16, message: String },
    /// No answer (connection refused, reset, timed out).
    Transport(String),
    /// An answer whose body was not what the API sends.
    Decode(String),
}

impl ApiError {
    /// The status code, when the API answered one.
    pub fn code(&self) -> Option<u16> {
        match self {
            ApiError::Status { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether sending again may help: 429, 5xx, no answer.
    pub fn is_retryable(&self) -> bool {
        match self {
            ApiError::Status { code, .. } => *code == 429 || *code >= 500,
            ApiError::Transport(_) => true,
            ApiError::Decode(_) => false,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Status { code, message } => write!(f, "{message} ({code})"),
            ApiError::Transport(e) => write!(f, "no answer: {e}"),
            ApiError::Decode(e) => write!(f, "an answer that does not parse: {e}"),
        }
    }
}

/// The connection settings of a [`Client`].
#[derive(Clone, PartialEq)]
pub struct Connection {
    /// The API's base, e.g. `https://app.daytona.io/api`.
    pub api_url: Url,
    /// A secret: never logged (see the `Debug` impl).
    pub api_key: String,
    pub organization_id: Option<String>,
    /// How many times one request is sent at most.
    pub max_tries: u32,
    /// The first backoff step.
    pub retry_base: Duration,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("api_url", &self.api_url.as_str())
            .field("api_key", &"<redacted>")
            .field("organization_id", &self.organization_id)
            .field("max_tries", &self.max_tries)
            .field("retry_base", &self.retry_base)
            .finish()
    }
}

/// Daytona's API and the toolboxes of its sandboxes.
#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    connection: Connection,
    /// Requests sent (tries included), for the figures.
    sent: AtomicU64,
}

impl Client {
    pub fn new(connection: Connection) -> Result<Client, String> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("an HTTP client: {e}"))?;
        Ok(Client {
            http,
            connection,
            sent: AtomicU64::new(0),
        })
    }

    /// How many requests were sent so far (every try counts).
    pub fn requests_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// `{api_url}/{segments…}`, each segment escaped.
    fn api(&self, segments: &[&str]) -> Result<Url, ApiError> {
        join(&self.connection.api_url, segments)
    }

    /// Sends one request with the retry policy and decodes the answer.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
    ) -> Result<T, ApiError> {
        let bytes = self.send(method, url, body).await?;
        serde_json::from_slice(&bytes).map_err(|e| ApiError::Decode(e.to_string()))
    }

    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
    ) -> Result<bytes::Bytes, ApiError> {
        let mut tries = 0;
        let mut delay = self.connection.retry_base;
        loop {
            tries += 1;
            let (error, retry_after) = match self.once(&method, &url, body.as_ref()).await {
                Ok(bytes) => return Ok(bytes),
                Err(answer) => answer,
            };
            if !error.is_retryable() || tries >= self.connection.max_tries {
                return Err(error);
            }
            let wait = retry_after.map_or(delay, |after| after.min(RETRY_AFTER_CAP));
            tracing::warn!(%method, path = url.path(), %error, wait_ms = wait.as_millis() as u64,
                "the Daytona API failed; trying again");
            tokio::time::sleep(wait).await;
            delay = (delay * 2).min(BACKOFF_CAP);
        }
    }

    /// One try: the body on success, else the error and the `Retry-After` the API asked for.
    async fn once(
        &self,
        method: &Method,
        url: &Url,
        body: Option<&Vec<u8>>,
    ) -> Result<bytes::Bytes, (ApiError, Option<Duration>)> {
        self.sent.fetch_add(1, Ordering::Relaxed);
        let mut request = self
            .http
            .request(method.clone(), url.clone())
            .bearer_auth(&self.connection.api_key)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(org) = &self.connection.organization_id {
            request = request.header(ORGANIZATION_HEADER, org);
        }
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let response = request
            .send()
            .await
            .map_err(|e| (ApiError::Transport(without_url(&e)), None))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = response
            .bytes()
            .await
            .map_err(|e| (ApiError::Transport(without_url(&e)), None))?;
        if status.is_success() {
            return Ok(bytes);
        }
        Err((
            ApiError::Status {
                code: status.as_u16(),
                message: message(status, &bytes),
            },
            retry_after,
        ))
    }

    /// `GET /snapshots/{name}`.
    pub async fn snapshot(&self, name: &str) -> Result<Snapshot, ApiError> {
        self.call(Method::GET, self.api(&["snapshots", name])?, None)
            .await
    }

    /// `POST /sandbox`; the API answers once the sandbox has started (or after 30 s).
    pub async fn create(&self, body: &CreateSandbox) -> Result<Sandbox, ApiError> {
        self.call(Method::POST, self.api(&["sandbox"])?, Some(to_body(body)?))
            .await
    }

    /// `GET /sandbox/{id or name}`.
    pub async fn sandbox(&self, id: &str) -> Result<Sandbox, ApiError> {
        self.call(Method::GET, self.api(&["sandbox", id])?, None)
            .await
    }

    /// `DELETE /sandbox/{id}`; a sandbox already gone (404) is not an error.
    pub async fn delete(&self, id: &str) -> Result<(), ApiError> {
        match self
            .send(Method::DELETE, self.api(&["sandbox", id])?, None)
            .await
        {
            Ok(_) => Ok(()),
            Err(ApiError::Status { code: 404, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `GET /sandbox?labels=…`, every page (100 a page, the most the API gives).
    pub async fn list(&self, labels: &BTreeMap<String, String>) -> Result<Vec<Sandbox>, ApiError> {
        let filter = serde_json::to_string(labels).map_err(|e| ApiError::Decode(e.to_string()))?;
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut url = self.api(&["sandbox"])?;
            {
                let mut query = url.query_pairs_mut();
                query
                    .append_pair("labels", &filter)
                    .append_pair("limit", "100");
                if let Some(cursor) = &cursor {
                    query.append_pair("cursor", cursor);
                }
            }
            let page: SandboxPage = self.call(Method::GET, url, None).await?;
            all.extend(page.items);
            match page.next_cursor.filter(|c| !c.is_empty()) {
                // A cursor that does not move would loop for ever.
                Some(next) if cursor.as_deref() != Some(&next) => cursor = Some(next),
                _ => return Ok(all),
            }
        }
    }

    /// `POST {toolbox}/{id}/process/execute`.
    pub async fn execute(
        &self,
        toolbox_url: &str,
        id: &str,
        request: &ExecuteRequest,
    ) -> Result<ExecuteResponse, ApiError> {
        let base = Url::parse(toolbox_url)
            .map_err(|e| ApiError::Decode(format!("the toolbox URL {toolbox_url:?}: {e}")))?;
        let url = join(&base, &[id, "process", "execute"])?;
        self.call(Method::POST, url, Some(to_body(request)?)).await
    }
}

/// `base` with `segments` appended, each escaped as one path segment.
fn join(base: &Url, segments: &[&str]) -> Result<Url, ApiError> {
    let mut url = base.clone();
    url.path_segments_mut()
        .map_err(|()| ApiError::Decode(format!("{base} cannot be a base URL")))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

/// The API's message from an error body, else the status's reason.
fn message(status: StatusCode, body: &[u8]) -> String {
    serde_json::from_slice::<ErrorBody>(body)
        .ok()
        .and_then(|b| b.text())
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_string())
}

/// A transport error without its URL (a toolbox URL may carry a token in some deployments).
fn without_url(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    if let Some(url) = error.url() {
        text = text.replace(url.as_str(), "<url>");
    }
    text
}

/// A JSON body.
fn to_body<T: Serialize>(body: &T) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(body).map_err(|e| ApiError::Decode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn paths_are_joined_and_escaped_under_the_base() {
        let base = Url::parse("https://app.daytona.io/api").unwrap();
        assert_eq!(
            join(&base, &["sandbox", "a/b c"]).unwrap().as_str(),
            "https://app.daytona.io/api/sandbox/a%2Fb%20c"
        );
        let slash = Url::parse("http://127.0.0.1:9/api/").unwrap();
        assert_eq!(
            join(&slash, &["snapshots", "omoi"]).unwrap().as_str(),
            "http://127.0.0.1:9/api/snapshots/omoi"
        );
    }

    #[test]
    fn only_429_5xx_and_no_answer_are_retried() {
        let status = |code| ApiError::Status {
            code,
            message: String::new(),
        };
        for code in [429, 500, 502, 503, 504] {
            assert!(status(code).is_retryable(), "{code}");
        }
        for code in [400, 401, 403, 404, 409, 408] {
            assert!(!status(code).is_retryable(), "{code}");
        }
        assert!(ApiError::Transport("reset".into()).is_retryable());
        assert!(!ApiError::Decode("x".into()).is_retryable());
    }

    #[test]
    fn the_key_never_shows_in_debug_output() {
        let connection = Connection {
            api_url: Url::parse("https://app.daytona.io/api").unwrap(),
            api_key: "dtn_very_secret_key".into(),
            organization_id: Some("org-1".into()),
            max_tries: 5,
            retry_base: Duration::from_millis(200),
        };
        let text = format!("{connection:?}");
        assert!(
            !text.contains("very_secret") && text.contains("<redacted>"),
            "{text}"
        );
    }

    #[test]
    fn error_bodies_give_their_message_else_the_reason() {
        assert_eq!(
            message(
                StatusCode::UNAUTHORIZED,
                br#"{"statusCode":401,"message":"Invalid API key"}"#
            ),
            "Invalid API key"
        );
        assert_eq!(message(StatusCode::BAD_GATEWAY, b"<html>"), "Bad Gateway");
    }
}
