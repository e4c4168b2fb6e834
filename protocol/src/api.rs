//! Request and response bodies of the coordinator's HTTP API that the worker uses.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::event::{Envelope, RawEvent};

/// `POST /api/v1/sandboxes/{id}/events` as the worker sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EventBatch {
    pub events: Vec<Envelope>,
}

/// The same batch as the coordinator reads it: unknown types are kept as they are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RawEventBatch {
    pub events: Vec<RawEvent>,
}

/// The answer to an event batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct IngestAck {
    /// The highest seq stored such that every seq from 1 to it is stored.
    pub acked_seq: u64,
}

/// An injected user message, as `GET /api/v1/sandboxes/{id}/messages` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct InjectedMessage {
    pub id: u64,
    pub text: String,
}

/// The error body of every failed API call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `not_found`.
    pub code: String,
    pub message: String,
}
