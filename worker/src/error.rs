//! The worker's error type and its mapping to the protocol's error kinds. It knows no agent,
//! model provider or mode: they map their own failures onto it.

use omoi_protocol::event::ErrorKind;
use omoi_protocol::phase::Phase;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bad environment variable or flag. Not retryable: the same input fails again.
    #[error("{variable}: {problem}")]
    Config { variable: String, problem: String },
    /// A phase did not pass its gate within its attempts. Not retryable by the worker. `kind`
    /// is what ended the last attempt: `gate` when the agent stopped (or the output never
    /// passed), `budget`, `timeout` or `provider` when a limit or the model ended it.
    #[error("{phase} did not pass its gate: {reason}")]
    Gate {
        phase: Phase,
        reason: String,
        kind: ErrorKind,
    },
    /// An agent session ended without an accepted submission where the run needed one.
    /// Not retryable by the worker.
    #[error("the agent session ended without a submission: {detail}")]
    /// `kind` is what ended the session (budget, timeout, provider, gate …).
    Session { kind: ErrorKind, detail: String },
    /// A filesystem, process or git failure in the workspace.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// Git or the validation command failed.
    #[error("{0}")]
    Workspace(String),
    /// A checkpoint, spool or context file could not be read as JSON.
    #[error("{context}: {source}")]
    Json {
        context: String,
        #[source]
        source: serde_json::Error,
    },
    /// The run was cancelled (SIGTERM or Ctrl-C).
    #[error("cancelled")]
    Cancelled,
    /// A condition the code does not expect.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn config(variable: impl Into<String>, problem: impl Into<String>) -> Self {
        Error::Config {
            variable: variable.into(),
            problem: problem.into(),
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub fn json(context: impl Into<String>, source: serde_json::Error) -> Self {
        Error::Json {
            context: context.into(),
            source,
        }
    }

    /// The protocol's error kind, for `agent.failed`.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config { .. } => ErrorKind::Config,
            Error::Gate { kind, .. } => *kind,
            Error::Session { kind, .. } => *kind,
            Error::Io { .. } | Error::Workspace(_) | Error::Json { .. } => ErrorKind::Workspace,
            Error::Cancelled => ErrorKind::Cancelled,
            Error::Internal(_) => ErrorKind::Internal,
        }
    }

    /// The process exit code: 2 for bad input, 130 when cancelled, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self.kind() {
            ErrorKind::Config => 2,
            ErrorKind::Cancelled => 130,
            _ => 1,
        }
    }
}
