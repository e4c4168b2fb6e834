//! The worker's end of the gate for a CLI agent: a unix socket in a directory private to the
//! session (mode 0700), on which `omoi-worker mcp` asks for the tool definitions and hands in
//! submissions. Each connection carries one request line and one answer line (JSON); a request
//! without the session's nonce is refused. Submissions run one at a time through the session's
//! [`SubmitHandler`], the same evaluator (or task gate) the native loop calls; the tool is
//! described to the CLI as the session's [`SubmitTool`].

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Notify;

use crate::agent::{SubmitHandler, SubmitTool, SubmitVerdict};
use crate::error::{Error, Result};

/// How long a connection may take to send its request line.
const REQUEST_DEADLINE: Duration = Duration::from_secs(10);
/// The largest request line accepted (a submitted document included).
pub const MAX_LINE: usize = 4 << 20;

/// What `omoi-worker mcp` asks the gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum GateRequest {
    /// The tools to offer the model.
    Tools { nonce: String },
    /// One call of `tool` with `input`.
    Call {
        nonce: String,
        tool: String,
        input: serde_json::Value,
    },
}

/// One tool as the gate describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateTool {
    pub name: String,
    pub description: String,
    pub input_schema: serde_json::Value,
}

/// The gate's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum GateAnswer {
    Tools {
        tools: Vec<GateTool>,
    },
    /// The tool ran; `ok` false means the model should fix its input (`text` says how).
    Verdict {
        ok: bool,
        text: String,
    },
    /// The request itself was wrong (bad nonce, unknown tool, not JSON).
    Refused {
        reason: String,
    },
}

/// The text the model gets when its submission passes.
pub const ACCEPTED_TEXT: &str =
    "Accepted: the submission passed the gate. The work is done; end the session now.";

/// A bound gate socket. Its directory is removed when it is dropped.
#[derive(Debug)]
pub struct GateSocket {
    dir: PathBuf,
    path: PathBuf,
    nonce: String,
    listener: UnixListener,
    accepted: Mutex<Option<serde_json::Value>>,
    accepted_signal: Notify,
    /// A submission is being judged (a validation command may run for minutes).
    checking: AtomicBool,
}

impl Drop for GateSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl GateSocket {
    /// Binds `gate.sock` in a new directory of mode 0700 under `parent`, with a fresh nonce.
    pub fn bind(parent: &Path) -> Result<Self> {
        // Short names: a unix socket's path must fit in 108 bytes.
        let random = uuid::Uuid::new_v4().simple().to_string();
        let dir = parent.join(format!("gate-{}", &random[..12]));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| Error::io(format!("create the gate directory {}", dir.display()), e))?;
        let path = dir.join("gate.sock");
        let listener = match UnixListener::bind(&path) {
            Ok(listener) => listener,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(Error::io(
                    format!("bind the gate socket {}", path.display()),
                    e,
                ));
            }
        };
        Ok(GateSocket {
            dir,
            path,
            nonce: uuid::Uuid::new_v4().simple().to_string(),
            listener,
            accepted: Mutex::new(None),
            accepted_signal: Notify::new(),
            checking: AtomicBool::new(false),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The secret of this session's gate; `omoi-worker mcp` sends it with every request.
    pub fn nonce(&self) -> &str {
        &self.nonce
    }

    /// The input of the submission that passed, if one did.
    pub fn accepted(&self) -> Option<serde_json::Value> {
        self.accepted
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Whether a submission is being judged right now.
    pub fn checking(&self) -> bool {
        self.checking.load(Ordering::Relaxed)
    }

    /// Waits until a submission passes.
    pub async fn wait_accepted(&self) -> serde_json::Value {
        loop {
            let notified = self.accepted_signal.notified();
            if let Some(input) = self.accepted() {
                return input;
            }
            notified.await;
        }
    }

    /// Answers connections until dropped (run it beside the CLI). One request at a time, so
    /// two submissions never run the gate together.
    pub async fn serve(&self, tool: &SubmitTool, handler: &dyn SubmitHandler) {
        loop {
            let stream = match self.listener.accept().await {
                Ok((stream, _)) => stream,
                Err(err) => {
                    tracing::warn!(%err, "gate socket: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if let Err(err) = self.answer(stream, tool, handler).await {
                tracing::warn!(%err, "gate socket: a connection failed");
            }
        }
    }

    async fn answer(
        &self,
        stream: UnixStream,
        tool: &SubmitTool,
        handler: &dyn SubmitHandler,
    ) -> std::io::Result<()> {
        let (read, mut write) = stream.into_split();
        let mut line = Vec::new();
        let mut reader = BufReader::new(read).take(MAX_LINE as u64 + 1);
        let read = tokio::time::timeout(REQUEST_DEADLINE, reader.read_until(b'\n', &mut line));
        let answer = match read.await {
            Err(_) => refused("no request within the deadline"),
            Ok(Err(err)) => return Err(err),
            Ok(Ok(_)) if line.len() > MAX_LINE => refused("the request is too large"),
            Ok(Ok(_)) => self.handle(&line, tool, handler).await,
        };
        let mut text = serde_json::to_vec(&answer).map_err(std::io::Error::other)?;
        text.push(b'\n');
        write.write_all(&text).await?;
        write.shutdown().await
    }

    async fn handle(
        &self,
        line: &[u8],
        submit: &SubmitTool,
        handler: &dyn SubmitHandler,
    ) -> GateAnswer {
        let request = match serde_json::from_slice::<GateRequest>(line) {
            Ok(request) => request,
            Err(err) => return refused(&format!("not a gate request: {err}")),
        };
        let nonce = match &request {
            GateRequest::Tools { nonce } | GateRequest::Call { nonce, .. } => nonce,
        };
        if !same_secret(nonce.as_bytes(), self.nonce.as_bytes()) {
            return refused("wrong nonce");
        }
        match request {
            GateRequest::Tools { .. } => GateAnswer::Tools {
                tools: vec![GateTool {
                    name: submit.name.clone(),
                    description: submit.description.clone(),
                    input_schema: submit.schema.clone(),
                }],
            },
            GateRequest::Call { tool, input, .. } if tool == submit.name => {
                if !input.is_object() {
                    return GateAnswer::Verdict {
                        ok: false,
                        text: "the input is not a JSON object".to_string(),
                    };
                }
                self.checking.store(true, Ordering::Relaxed);
                let verdict = handler.check(&input).await;
                self.checking.store(false, Ordering::Relaxed);
                match verdict {
                    SubmitVerdict::Accepted => {
                        *self
                            .accepted
                            .lock()
                            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(input);
                        self.accepted_signal.notify_waiters();
                        GateAnswer::Verdict {
                            ok: true,
                            text: ACCEPTED_TEXT.to_string(),
                        }
                    }
                    SubmitVerdict::Rejected { feedback } => GateAnswer::Verdict {
                        ok: false,
                        text: feedback,
                    },
                }
            }
            GateRequest::Call { tool, .. } => refused(&format!("unknown tool `{tool}`")),
        }
    }
}

fn refused(reason: &str) -> GateAnswer {
    GateAnswer::Refused {
        reason: reason.to_string(),
    }
}

/// Compares two secrets in time that does not depend on where they differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Sends one request to the gate at `path` and reads its answer (the MCP side).
pub async fn ask(path: &Path, request: &GateRequest) -> std::io::Result<GateAnswer> {
    let stream = UnixStream::connect(path).await?;
    let (read, mut write) = stream.into_split();
    let mut text = serde_json::to_vec(request).map_err(std::io::Error::other)?;
    text.push(b'\n');
    write.write_all(&text).await?;
    let mut line = Vec::new();
    BufReader::new(read)
        .take(MAX_LINE as u64 + 1)
        .read_until(b'\n', &mut line)
        .await?;
    serde_json::from_slice(&line).map_err(std::io::Error::other)
}

#[cfg(test)]
pub(crate) mod tests;
