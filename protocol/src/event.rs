//! The event envelope and one payload struct per event type.
//!
//! On the wire: `{"v":1,"sandbox_id","seq","at","spec_id"?,"task_id"?,"type","data"}`.
//! New fields are optional; a type is never renamed; unknown types travel as [`RawEvent`].

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::artifact::{FinalSpec, PhaseOutput};
use crate::eval::Evaluation;
use crate::phase::Phase;

/// The envelope version this crate writes.
pub const ENVELOPE_VERSION: u32 = 1;

/// One event as the worker sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Envelope {
    pub v: u32,
    pub sandbox_id: String,
    /// Per-sandbox sequence number: 1, 2, 3 … without gaps.
    pub seq: u64,
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    #[serde(flatten)]
    pub event: Event,
}

/// An envelope whose type may be unknown to this version: `data` stays raw JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RawEvent {
    pub v: u32,
    pub sandbox_id: String,
    pub seq: u64,
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub data: serde_json::Value,
}

impl RawEvent {
    /// The typed event, when the type is one this version knows and the data fits it.
    pub fn typed(&self) -> Result<Event, serde_json::Error> {
        serde_json::from_value(serde_json::json!({"type": self.kind, "data": self.data}))
    }
}

/// Every event type and its payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", content = "data")]
pub enum Event {
    #[serde(rename = "agent.started")]
    AgentStarted(AgentStarted),
    #[serde(rename = "agent.heartbeat")]
    AgentHeartbeat(AgentHeartbeat),
    #[serde(rename = "agent.message")]
    AgentMessage(AgentMessage),
    #[serde(rename = "agent.tool_use")]
    AgentToolUse(AgentToolUse),
    #[serde(rename = "agent.tool_result")]
    AgentToolResult(AgentToolResult),
    #[serde(rename = "agent.file_edited")]
    AgentFileEdited(AgentFileEdited),
    #[serde(rename = "agent.usage")]
    AgentUsage(AgentUsage),
    #[serde(rename = "agent.message_injected")]
    AgentMessageInjected(AgentMessageInjected),
    #[serde(rename = "agent.completed")]
    AgentCompleted(AgentCompleted),
    #[serde(rename = "agent.failed")]
    AgentFailed(AgentFailed),
    #[serde(rename = "spec.execution_started")]
    SpecExecutionStarted(SpecExecutionStarted),
    #[serde(rename = "spec.phase_started")]
    SpecPhaseStarted(SpecPhaseStarted),
    #[serde(rename = "spec.eval_result")]
    SpecEvalResult(SpecEvalResult),
    #[serde(rename = "spec.phase_retry")]
    SpecPhaseRetry(SpecPhaseRetry),
    #[serde(rename = "spec.phase_completed")]
    SpecPhaseCompleted(SpecPhaseCompleted),
    #[serde(rename = "spec.phase_failed")]
    SpecPhaseFailed(SpecPhaseFailed),
    #[serde(rename = "spec.execution_completed")]
    SpecExecutionCompleted(Box<FinalSpec>),
    #[serde(rename = "spec.execution_failed")]
    SpecExecutionFailed(SpecExecutionFailed),
    #[serde(rename = "task.started")]
    TaskStarted(TaskStarted),
    #[serde(rename = "task.validation")]
    TaskValidation(TaskValidation),
    #[serde(rename = "task.committed")]
    TaskCommitted(TaskCommitted),
    #[serde(rename = "task.completed")]
    TaskCompleted(TaskCompleted),
    #[serde(rename = "task.failed")]
    TaskFailed(TaskFailed),
}

impl Event {
    /// The dotted wire name of the type.
    pub fn type_name(&self) -> &'static str {
        match self {
            Event::AgentStarted(_) => "agent.started",
            Event::AgentHeartbeat(_) => "agent.heartbeat",
            Event::AgentMessage(_) => "agent.message",
            Event::AgentToolUse(_) => "agent.tool_use",
            Event::AgentToolResult(_) => "agent.tool_result",
            Event::AgentFileEdited(_) => "agent.file_edited",
            Event::AgentUsage(_) => "agent.usage",
            Event::AgentMessageInjected(_) => "agent.message_injected",
            Event::AgentCompleted(_) => "agent.completed",
            Event::AgentFailed(_) => "agent.failed",
            Event::SpecExecutionStarted(_) => "spec.execution_started",
            Event::SpecPhaseStarted(_) => "spec.phase_started",
            Event::SpecEvalResult(_) => "spec.eval_result",
            Event::SpecPhaseRetry(_) => "spec.phase_retry",
            Event::SpecPhaseCompleted(_) => "spec.phase_completed",
            Event::SpecPhaseFailed(_) => "spec.phase_failed",
            Event::SpecExecutionCompleted(_) => "spec.execution_completed",
            Event::SpecExecutionFailed(_) => "spec.execution_failed",
            Event::TaskStarted(_) => "task.started",
            Event::TaskValidation(_) => "task.validation",
            Event::TaskCommitted(_) => "task.committed",
            Event::TaskCompleted(_) => "task.completed",
            Event::TaskFailed(_) => "task.failed",
        }
    }

    /// Whether this event ends the sandbox's run (`agent.completed` or `agent.failed`).
    pub fn is_terminal(&self) -> bool {
        matches!(self, Event::AgentCompleted(_) | Event::AgentFailed(_))
    }
}

/// What the worker was started to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WorkerMode {
    Spec,
    Task,
    SpecSkill,
}

/// Token and cost counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Estimated cost in US dollars.
    pub cost_usd: f64,
}

/// Running totals of a worker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Counters {
    pub turns: u64,
    pub tool_calls: u64,
    pub usage: Usage,
}

/// Why a worker failed, for the coordinator to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The environment or a flag was wrong; retrying with the same input fails again.
    Config,
    /// The model provider failed or refused.
    Provider,
    /// A phase did not pass its gate within its attempts.
    Gate,
    /// A time limit ran out.
    Timeout,
    /// The budget in turns or dollars ran out.
    Budget,
    /// Git, the validation command or the workspace failed.
    Workspace,
    /// The run was cancelled (SIGTERM).
    Cancelled,
    /// A bug or an unexpected condition.
    Internal,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentStarted {
    pub version: String,
    pub mode: WorkerMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_phase: Option<Phase>,
    /// Names of what this worker can do: providers, tools.
    #[serde(default)]
    pub capabilities: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentHeartbeat {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    pub counters: Counters,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentMessage {
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentToolUse {
    pub tool: String,
    pub call_id: String,
    /// The input, shortened for display.
    pub input_summary: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentToolResult {
    pub call_id: String,
    pub ok: bool,
    /// The output, shortened for display.
    pub output_summary: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentFileEdited {
    pub path: String,
    pub lines_added: u64,
    pub lines_removed: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentUsage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// This call's usage.
    pub call: Usage,
    /// The attempt's usage so far.
    pub total: Usage,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentMessageInjected {
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentCompleted {
    pub success: bool,
    pub counters: Counters,
    /// Set when the worker stopped early on `SPEC_STOP_AFTER`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_after: Option<Phase>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentFailed {
    pub kind: ErrorKind,
    pub reason: String,
    #[serde(default)]
    pub counters: Counters,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SpecExecutionStarted {
    pub title: String,
    pub phases: Vec<Phase>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SpecPhaseStarted {
    pub phase: Phase,
    pub attempt: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SpecEvalResult {
    pub attempt: u32,
    #[serde(flatten)]
    pub evaluation: Evaluation,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SpecPhaseRetry {
    pub phase: Phase,
    /// The attempt that is about to start.
    pub attempt: u32,
    pub reason: String,
    pub feedback: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SpecPhaseCompleted {
    pub phase: Phase,
    pub score: f64,
    pub attempts: u32,
    pub duration_ms: u64,
    /// The phase's output: with the earlier ones, the checkpoint.
    pub output: PhaseOutput,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SpecPhaseFailed {
    pub phase: Phase,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_score: Option<f64>,
    #[serde(default)]
    pub feedback: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SpecExecutionFailed {
    pub phase: Phase,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskStarted {
    pub task_id: String,
    pub title: String,
    pub branch: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskValidation {
    pub task_id: String,
    pub command: String,
    /// `None` when the command was killed (timeout) or could not start.
    pub exit_code: Option<i32>,
    /// The last lines of its output.
    #[serde(default)]
    pub output_tail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskCommitted {
    pub task_id: String,
    pub sha: String,
    pub branch: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskCompleted {
    pub task_id: String,
    pub sha: String,
    pub summary: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskFailed {
    pub task_id: String,
    pub reason: String,
    /// Files in conflict, when a rebase could not be resolved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<String>,
}
