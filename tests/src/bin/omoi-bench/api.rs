//! The benchmarks' client of the coordinator's HTTP API: the user routes they drive, event batches
//! with a sandbox token, and a reader of the live SSE stream.

use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use serde_json::{Value, json};

use crate::Result;

/// A user of the coordinator at `base` (e.g. `http://127.0.0.1:8080`).
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    bearer: String,
}

impl Api {
    pub fn new(base: &str, token: &str) -> Result<Api> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        Ok(Api {
            http,
            base: base.trim_end_matches('/').to_string(),
            bearer: format!("Bearer {token}"),
        })
    }

    /// `{base}/api/v1{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    /// The underlying client (its connection pool is shared by clones).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub async fn get(&self, path: &str) -> Result<Value> {
        let response = self
            .http
            .get(self.url(path))
            .header(AUTHORIZATION, &self.bearer)
            .send()
            .await?;
        answer(response, "GET", path).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let response = self
            .http
            .post(self.url(path))
            .header(AUTHORIZATION, &self.bearer)
            .json(body)
            .send()
            .await?;
        answer(response, "POST", path).await
    }

    /// A project over a local directory; `worker_env` goes to every sandbox of it.
    pub async fn create_project(&self, repo: &str, worker_env: Value) -> Result<String> {
        let project = self
            .post(
                "/projects",
                &json!({"name": "bench", "repo_url": repo, "worker_env": worker_env}),
            )
            .await?;
        id_of(&project)
    }

    pub async fn create_spec(
        &self,
        project_id: &str,
        title: &str,
        description: &str,
    ) -> Result<String> {
        let spec = self
            .post(
                "/specs",
                &json!({"project_id": project_id, "title": title, "description": description}),
            )
            .await?;
        id_of(&spec)
    }

    /// Starts a spec's sandbox, optionally to stop after a phase; answers the spec detail.
    pub async fn execute(&self, spec_id: &str, stop_after: Option<&str>) -> Result<Value> {
        let body = match stop_after {
            Some(phase) => json!({ "stop_after": phase }),
            None => json!({}),
        };
        self.post(&format!("/specs/{spec_id}/execute"), &body).await
    }

    pub async fn cancel(&self, spec_id: &str) -> Result<Value> {
        self.post(&format!("/specs/{spec_id}/cancel"), &json!({}))
            .await
    }

    /// Opens the live stream of a spec's events (`Accept: text/event-stream`).
    pub async fn subscribe(&self, spec_id: &str) -> Result<SseReader> {
        let path = format!("/specs/{spec_id}/events");
        let response = self
            .http
            .get(self.url(&path))
            .header(AUTHORIZATION, &self.bearer)
            .header(ACCEPT, "text/event-stream")
            .timeout(Duration::from_secs(3600))
            .send()
            .await?;
        if !response.status().is_success() {
            return Err(format!("GET {path}: {}", response.status()).into());
        }
        Ok(SseReader {
            response,
            buffer: Vec::new(),
        })
    }
}

/// Posts one event batch (an already encoded body) with a sandbox token; answers `acked_seq`.
pub async fn post_batch(
    http: &reqwest::Client,
    url: &str,
    bearer: &str,
    body: Vec<u8>,
) -> Result<u64> {
    let response = http
        .post(url)
        .header(AUTHORIZATION, bearer)
        .header(CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await?;
    let ack = answer(response, "POST", url).await?;
    ack["acked_seq"]
        .as_u64()
        .ok_or_else(|| format!("POST {url}: no acked_seq in {ack}").into())
}

async fn answer(response: reqwest::Response, method: &str, path: &str) -> Result<Value> {
    let status = response.status();
    let text = response.text().await?;
    if !status.is_success() {
        return Err(format!("{method} {path}: {status}: {text}").into());
    }
    Ok(serde_json::from_str(&text)?)
}

fn id_of(value: &Value) -> Result<String> {
    value["id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("no id in {value}").into())
}

/// One SSE message.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SseMessage {
    /// The `event:` field (`message` when absent).
    pub event: String,
    pub id: Option<String>,
    pub data: String,
}

/// Reads SSE messages off a streaming response.
#[derive(Debug)]
pub struct SseReader {
    response: reqwest::Response,
    buffer: Vec<u8>,
}

impl SseReader {
    /// A reader of a response already known to be a stream.
    pub fn from_response(response: reqwest::Response) -> SseReader {
        SseReader {
            response,
            buffer: Vec::new(),
        }
    }

    /// The next message; `None` when the server ended the stream.
    pub async fn next(&mut self) -> Result<Option<SseMessage>> {
        loop {
            if let Some(end) = find_message_end(&self.buffer) {
                let raw: Vec<u8> = self.buffer.drain(..end.0 + end.1).collect();
                let text = String::from_utf8_lossy(&raw[..end.0]);
                match parse_message(&text) {
                    Some(message) => return Ok(Some(message)),
                    None => continue, // a comment (keep-alive)
                }
            }
            match self.response.chunk().await? {
                Some(chunk) => self.buffer.extend_from_slice(&chunk),
                None => return Ok(None),
            }
        }
    }
}

/// Where the first message ends: its length and the length of the blank line after it.
fn find_message_end(buffer: &[u8]) -> Option<(usize, usize)> {
    let lf = buffer.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    let crlf = buffer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

fn parse_message(text: &str) -> Option<SseMessage> {
    let mut message = SseMessage {
        event: "message".into(),
        ..SseMessage::default()
    };
    let mut has_field = false;
    for line in text.lines() {
        let (field, value) = match line.split_once(':') {
            Some(("", _)) => continue,
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        has_field = true;
        match field {
            "event" => message.event = value.to_string(),
            "id" => message.id = Some(value.to_string()),
            "data" => {
                if !message.data.is_empty() {
                    message.data.push('\n');
                }
                message.data.push_str(value);
            }
            _ => {}
        }
    }
    has_field.then_some(message)
}
