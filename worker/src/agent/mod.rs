//! The agent loop: send the conversation and tool schemas, run the tool calls, append the
//! results, repeat until `submit` is accepted or a limit ends the session.

pub mod tools;

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::events::Emitter;
use crate::llm::{Provider, SessionInfo};
use tools::ToolBox;

/// Limits of one session (one phase attempt, or one task run).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub max_turns: u32,
    pub max_budget_usd: f64,
    pub timeout: Duration,
}

/// What the `submit` tool does with the model's output.
pub trait SubmitHandler: Send + Sync {
    /// JSON Schema of the submit tool's input.
    fn schema(&self) -> serde_json::Value;
    /// What the submit tool says it is for.
    fn description(&self) -> String;
    /// Checks one submission. `Rejected` feedback goes back to the model as the tool result.
    fn check(&self, input: &serde_json::Value) -> SubmitVerdict;
}

/// The verdict on one submission.
#[derive(Debug, Clone, PartialEq)]
pub enum SubmitVerdict {
    Accepted,
    Rejected { feedback: String },
}

/// One session to run.
pub struct SessionSpec<'a> {
    pub session: SessionInfo,
    pub system: String,
    /// The first user message.
    pub prompt: String,
    pub tools: &'a ToolBox,
    pub limits: Limits,
}

/// Why a session ended without an accepted submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The model stopped calling tools and never had a submission accepted.
    NoSubmission,
    MaxTurns,
    Budget,
    Timeout,
    /// No progress for several turns (the same call repeated, nothing read or written).
    Stalled,
    /// The provider failed after its retries.
    Provider,
    Cancelled,
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionOutcome {
    /// `submit` accepted this input.
    Submitted { input: serde_json::Value },
    /// The session ended without an accepted submission; `detail` says why in words.
    Ended { reason: EndReason, detail: String },
}

/// Runs one session to its end. Emits `agent.message`, `agent.tool_use`, `agent.tool_result`,
/// `agent.file_edited` and `agent.usage` through `emitter`.
pub async fn run_session(
    provider: &dyn Provider,
    spec: SessionSpec<'_>,
    submit: &dyn SubmitHandler,
    emitter: &Emitter,
    cancel: &CancellationToken,
) -> SessionOutcome {
    let _ = (provider, spec, submit, emitter, cancel);
    SessionOutcome::Ended {
        reason: EndReason::NoSubmission,
        detail: "agent loop not built yet".into(),
    }
}
