//! The coordinator's error types (its own and a sandbox provider's) and their mapping to HTTP answers.
//!
//! The caller's faults map to 4xx with a message; everything else is an opaque 500 whose cause is
//! logged, never sent.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use omoi_protocol::api::{ErrorBody, ErrorDetail};

/// The result of coordinator operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the coordinator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed (bad JSON, bad query). Not retryable.
    #[error("{0}")]
    BadRequest(String),
    /// No valid bearer token. Not retryable.
    #[error("{0}")]
    Unauthorized(String),
    /// A valid token that may not do this. Not retryable.
    #[error("{0}")]
    Forbidden(String),
    /// No such thing, or not the caller's. Not retryable.
    #[error("{0}")]
    NotFound(String),
    /// The thing is in a state that forbids this (e.g. already running). Retryable later.
    #[error("{0}")]
    Conflict(String),
    /// Well-formed but invalid content. Not retryable.
    #[error("{0}")]
    Invalid(String),
    /// The body is larger than the route accepts. Not retryable.
    #[error("{0}")]
    TooLarge(String),
    /// A sandbox used up one of its quotas (seq window, held-back events, stored bytes). Not
    /// retryable as it is.
    #[error("{message}")]
    Quota { kind: QuotaKind, message: String },
    /// The database failed. Retryable.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration failed at start. Not retryable.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The sandbox provider failed. Retryable.
    #[error("sandbox: {0}")]
    Sandbox(#[from] SandboxError),
    /// A spec's sandbox could not be started: the spec is failed with the provider's words,
    /// which the answer leaves out (they may name the coordinator's infrastructure).
    #[error("no sandbox could be started for the spec {spec_id}; it failed, and it shows why")]
    SandboxUnavailable { spec_id: String },
    /// Stored data that does not parse: a bug or a foreign write. Not retryable.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// Anything else unexpected. Not retryable.
    #[error("internal: {0}")]
    Internal(String),
}

/// The quotas of one sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaKind {
    /// How far its seq may run ahead of the acknowledged one.
    SeqWindow,
    /// How many of its events may wait for a gap to fill.
    HeldEvents,
    /// How many bytes of event data it may store.
    StoredBytes,
}

impl QuotaKind {
    /// Every kind, in the order `/metrics` lists them.
    pub const ALL: [QuotaKind; 3] = [
        QuotaKind::SeqWindow,
        QuotaKind::HeldEvents,
        QuotaKind::StoredBytes,
    ];

    /// The label value in `/metrics`.
    pub fn as_str(self) -> &'static str {
        match self {
            QuotaKind::SeqWindow => "seq_window",
            QuotaKind::HeldEvents => "held_events",
            QuotaKind::StoredBytes => "stored_bytes",
        }
    }
}

/// What a provider failed at.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The workspace or the process could not be set up. Retryable when the cause is transient.
    #[error("spawning sandbox {sandbox_id} failed: {reason}")]
    Spawn { sandbox_id: String, reason: String },
    /// The provider does not know this sandbox. Not retryable.
    #[error("no sandbox with handle {0}")]
    NotFound(String),
    /// The provider could not be reached or answered an error. Retryable.
    #[error("{0}")]
    Provider(String),
    /// A file operation failed. Retryable.
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

impl SandboxError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> SandboxError {
        let context = context.into();
        move |source| SandboxError::Io { context, source }
    }
}

impl Error {
    /// The HTTP status and the stable code of this error.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Error::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Error::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Error::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Error::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Error::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Error::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            Error::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            Error::Quota { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "quota_exceeded"),
            Error::SandboxUnavailable { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "sandbox_unavailable")
            }
            Error::Database(_)
            | Error::Migrate(_)
            | Error::Sandbox(_)
            | Error::Corrupt(_)
            | Error::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    /// The JSON body sent for this error: the message for the caller's faults, nothing inside for 500.
    pub fn body(&self) -> ErrorBody {
        let (status, code) = self.status_and_code();
        let message =
            if status.is_server_error() && !matches!(self, Error::SandboxUnavailable { .. }) {
                "internal error; the server log has the details".to_string()
            } else {
                self.to_string()
            };
        ErrorBody {
            error: ErrorDetail {
                code: code.to_string(),
                message,
            },
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, _) = self.status_and_code();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        (status, Json(self.body())).into_response()
    }
}

/// Builds the error of a stored value that does not parse.
pub fn corrupt(what: &str, err: impl std::fmt::Display) -> Error {
    Error::Corrupt(format!("{what}: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn server_errors_are_opaque_and_client_errors_keep_their_message() {
        assert_eq!(
            Error::Corrupt("phase output: secret detail".into()).body(),
            ErrorBody {
                error: ErrorDetail {
                    code: "internal".into(),
                    message: "internal error; the server log has the details".into(),
                }
            }
        );
        assert_eq!(
            Error::Conflict("spec is running".into()).body(),
            ErrorBody {
                error: ErrorDetail {
                    code: "conflict".into(),
                    message: "spec is running".into(),
                }
            }
        );
    }
}
