//! The agent seam: one session, handed a [`SessionSpec`] and a [`SubmitHandler`], ends in a
//! [`SessionOutcome`]. The modes (spec, task, spec-skill) speak only this; [`native`] is omoi's
//! own loop over a model provider, and the tools it calls are in [`tools`].

pub mod compact;
pub mod native;
pub mod tools;

use std::path::PathBuf;
use std::time::Duration;

use omoi_protocol::event::ErrorKind;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::events::Emitter;
use crate::inbox::Inbox;
use crate::llm::pricing;

pub use crate::llm::BoxFuture;
pub use native::NativeAgent;

/// The name of the tool through which the agent hands in its output.
pub const SUBMIT_TOOL: &str = "submit";

/// Runs agent sessions.
///
/// The contract, for every implementation:
/// - The session works in `spec.workspace` with the tools `spec.tools` allows, and no others
///   that change the workspace.
/// - The agent is offered one tool named `spec.submit.name`, described and shaped by
///   `spec.submit`. Each call of it goes to `submit.check`, under the session's timeout and
///   cancellation; a rejection's feedback goes back to the agent as the tool's answer, and the
///   agent may try again.
/// - The session ends with `Submitted` as soon as a submission is accepted, and with `Ended`
///   when a limit of `spec.limits` is reached, the agent stops, or `cancel` fires (then the
///   reason is `Cancelled`). Nothing it started outlives it.
/// - It reports what happens as `agent.*` events through `emitter` (messages, tool calls and
///   results, edited files, usage) and counts turns, tool calls and usage on the emitter.
/// - Messages that arrive in `spec.inbox` reach the agent, as the user's, before its next turn.
/// - `Err` only when the session could not start (the workspace is unusable); how a started
///   session ended is always an `Ok` outcome.
pub trait Agent: Send + Sync {
    /// The agent's name for logs: the model provider of the native agent.
    fn name(&self) -> &'static str;

    /// Runs one session to its end.
    fn run_session<'a>(
        &'a self,
        spec: SessionSpec,
        submit: &'a dyn SubmitHandler,
        emitter: &'a Emitter,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<SessionOutcome>>;
}

/// One session to run.
#[derive(Debug, Clone)]
pub struct SessionSpec {
    /// Which session this is: the phase name (`explore` …), `task:TSK-001`, or `spec-skill`.
    pub label: String,
    /// Counts from 1.
    pub attempt: u32,
    pub system: String,
    /// The first user message.
    pub prompt: String,
    pub submit: SubmitTool,
    pub limits: Limits,
    /// The directory the agent works in.
    pub workspace: PathBuf,
    pub tools: ToolSet,
    /// Messages the user injects while the session runs.
    pub inbox: Inbox,
}

/// The submit tool as the agent sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct SubmitTool {
    pub name: String,
    /// What the tool says it is for.
    pub description: String,
    /// JSON Schema of the tool's input object.
    pub schema: serde_json::Value,
}

/// Limits of one session (one phase attempt, or one task run).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub max_turns: u32,
    pub max_budget_usd: f64,
    pub timeout: Duration,
    /// Overrides the price table for cost estimates (`OMOI_PRICE_*_PER_MTOK`).
    pub price: Option<pricing::Price>,
}

/// The tools a session gets besides `submit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToolSet {
    pub access: Access,
    /// Limits of the `run` tool (shell commands).
    pub run: RunLimits,
}

impl ToolSet {
    /// The tools that only read (and `run`).
    pub fn read_only() -> Self {
        ToolSet {
            access: Access::ReadOnly,
            run: RunLimits::default(),
        }
    }

    /// The reading tools and the writing tools.
    pub fn read_write() -> Self {
        ToolSet {
            access: Access::ReadWrite,
            run: RunLimits::default(),
        }
    }
}

/// Whether the agent may change the workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// read_file, list_files, search, run.
    ReadOnly,
    /// Also write_file and edit_file.
    ReadWrite,
}

/// Limits of the `run` tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunLimits {
    pub timeout: Duration,
    /// Bytes of combined output kept (the rest is cut, and the cut is said).
    pub output_cap: usize,
}

impl Default for RunLimits {
    fn default() -> Self {
        RunLimits {
            timeout: Duration::from_secs(120),
            output_cap: 32 * 1024,
        }
    }
}

/// Judges submissions: the spec phase gate, the task gate (which runs validation), the
/// spec-skill's document check.
pub trait SubmitHandler: Send + Sync {
    /// Checks one submission. `Rejected` feedback goes back to the agent as the tool's answer.
    /// The check runs under the session's timeout and cancellation (it may run a validation
    /// command).
    fn check<'a>(&'a self, input: &'a serde_json::Value) -> BoxFuture<'a, SubmitVerdict>;
}

/// The verdict on one submission.
#[derive(Debug, Clone, PartialEq)]
pub enum SubmitVerdict {
    Accepted,
    Rejected { feedback: String },
}

/// Why a session ended without an accepted submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The agent stopped and never had a submission accepted.
    NoSubmission,
    MaxTurns,
    Budget,
    Timeout,
    /// No progress for several turns (the same call repeated, nothing read or written).
    Stalled,
    /// Nothing happened for the stall window: a CLI agent printed nothing, made no model call
    /// and received no answer, and no submission was being judged.
    Idle,
    /// The model provider failed after its retries.
    Provider,
    Cancelled,
}

impl EndReason {
    /// The protocol's error kind of a run that fails because a session ended this way.
    pub fn error_kind(self) -> ErrorKind {
        match self {
            EndReason::MaxTurns | EndReason::Budget => ErrorKind::Budget,
            EndReason::Timeout | EndReason::Idle => ErrorKind::Timeout,
            EndReason::Provider => ErrorKind::Provider,
            EndReason::Cancelled => ErrorKind::Cancelled,
            EndReason::NoSubmission | EndReason::Stalled => ErrorKind::Gate,
        }
    }

    /// The error of a run that fails because a session ended this way.
    pub fn into_error(self, detail: String) -> Error {
        Error::Session {
            kind: self.error_kind(),
            detail,
        }
    }
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionOutcome {
    /// `submit` accepted this input.
    Submitted { input: serde_json::Value },
    /// The session ended without an accepted submission; `detail` says why in words.
    Ended { reason: EndReason, detail: String },
}
