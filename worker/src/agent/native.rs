//! The native agent: omoi's own loop over a model [`Provider`]. Send the conversation and tool
//! schemas, run the tool calls, append the results, repeat until `submit` is accepted or a limit
//! ends the session.

use std::collections::HashSet;
use std::time::Duration;

use omoi_protocol::event::{
    AgentFileEdited, AgentMessage, AgentToolResult, AgentToolUse, AgentUsage, Event, Usage,
};
use tokio_util::sync::CancellationToken;

use super::compact;
use super::tools::{ToolBox, ToolOutcome, shorten};
use super::{Agent, EndReason, Limits, SessionOutcome, SessionSpec, SubmitHandler, SubmitVerdict};
use crate::error::Result;
use crate::events::Emitter;
use crate::inbox::Inbox;
use crate::llm::{
    BoxFuture, ChatRequest, ChatResponse, ContentBlock, LlmError, Message, Provider, Role,
    SessionInfo, TokenUsage, ToolSpec, pricing,
};

/// Tokens one answer may have.
const MAX_TOKENS: u32 = 8192;
/// Answers without a tool call that get a reminder; the next one ends the session.
const MAX_REMINDERS: u32 = 2;
/// The same call (tool and input) this many times in a row is a stall.
const REPEAT_LIMIT: u32 = 3;
/// This many turns in a row without a successful tool call or a submission is a stall.
const IDLE_TURN_LIMIT: u32 = 8;
/// Characters of tool inputs and outputs in events.
const SUMMARY_CHARS: usize = 200;

/// The native agent over one model provider `P`: the one the configuration names, or a borrowed
/// one in tests.
pub struct NativeAgent<P> {
    provider: P,
}

impl<P: Provider> NativeAgent<P> {
    pub fn new(provider: P) -> Self {
        NativeAgent { provider }
    }
}

impl<P: Provider> Agent for NativeAgent<P> {
    fn name(&self) -> &'static str {
        self.provider.name()
    }

    fn run_session<'a>(
        &'a self,
        spec: SessionSpec,
        submit: &'a dyn SubmitHandler,
        emitter: &'a Emitter,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<SessionOutcome>> {
        Box::pin(async move {
            let tools = ToolBox::new(&spec.workspace, spec.tools.access, spec.tools.run)?;
            Ok(run_session(&self.provider, spec, &tools, submit, emitter, cancel).await)
        })
    }
}

/// Runs one session to its end. Emits `agent.message`, `agent.tool_use`, `agent.tool_result`,
/// `agent.file_edited` and `agent.usage` through `emitter`.
async fn run_session(
    provider: &dyn Provider,
    spec: SessionSpec,
    tools: &ToolBox,
    submit: &dyn SubmitHandler,
    emitter: &Emitter,
    cancel: &CancellationToken,
) -> SessionOutcome {
    // Cancelled when the session ends in any way, so nothing it started outlives it.
    let session_cancel = cancel.child_token();
    let _stop = session_cancel.clone().drop_guard();
    let limit = spec.limits.timeout;
    let session = Session::new(
        Parts {
            provider,
            tools,
            submit,
            emitter,
            cancel: &session_cancel,
        },
        spec,
    );
    tokio::select! {
        biased;
        _ = cancel.cancelled() => ended(EndReason::Cancelled, "the session was cancelled"),
        result = tokio::time::timeout(limit, session.run()) => match result {
            Ok(outcome) => outcome,
            Err(_) => ended(
                EndReason::Timeout,
                format!("the session's time limit of {} ran out", seconds(limit)),
            ),
        },
    }
}

/// What a session works with, borrowed from its caller.
struct Parts<'a> {
    provider: &'a dyn Provider,
    tools: &'a ToolBox,
    submit: &'a dyn SubmitHandler,
    emitter: &'a Emitter,
    cancel: &'a CancellationToken,
}

fn ended(reason: EndReason, detail: impl Into<String>) -> SessionOutcome {
    SessionOutcome::Ended {
        reason,
        detail: detail.into(),
    }
}

fn seconds(duration: Duration) -> String {
    if duration >= Duration::from_secs(1) {
        format!("{} s", duration.as_secs())
    } else {
        format!("{} ms", duration.as_millis())
    }
}

/// The estimated cost in US dollars of one call: the one place the loop prices usage.
fn call_cost(model: &str, usage: TokenUsage, price: Option<pricing::Price>) -> f64 {
    pricing::cost(pricing::price_for(model, price), usage)
}

/// One running session: the conversation so far and the counters its limits look at.
struct Session<'a> {
    parts: Parts<'a>,
    limits: Limits,
    inbox: Inbox,
    request: ChatRequest,
    /// The name of the tool through which the model hands in its output.
    submit_name: String,
    /// Names of every tool the model may call, `submit` last.
    tool_names: Vec<String>,
    total: Usage,
    /// Answers in a row without a tool call.
    quiet_answers: u32,
    /// Turns in a row without a successful tool call or a submission.
    idle_turns: u32,
    /// The last call (tool and input) and how many times in a row it came.
    last_call: Option<(String, u32)>,
    /// The call id of the last rejected submission: its feedback is never compacted.
    last_feedback: HashSet<String>,
}

/// What one tool call of the model led to.
enum CallResult {
    Outcome(ToolOutcome),
    Accepted,
}

impl<'a> Session<'a> {
    fn new(parts: Parts<'a>, spec: SessionSpec) -> Self {
        let mut tools = parts.tools.specs();
        tools.push(ToolSpec {
            name: spec.submit.name.clone(),
            description: spec.submit.description,
            input_schema: spec.submit.schema,
        });
        let tool_names = tools.iter().map(|t| t.name.clone()).collect();
        Session {
            parts,
            limits: spec.limits,
            inbox: spec.inbox,
            request: ChatRequest {
                session: SessionInfo {
                    label: spec.label,
                    attempt: spec.attempt,
                },
                system: spec.system,
                messages: vec![Message::user_text(spec.prompt)],
                tools,
                max_tokens: MAX_TOKENS,
            },
            submit_name: spec.submit.name,
            tool_names,
            total: Usage::default(),
            quiet_answers: 0,
            idle_turns: 0,
            last_call: None,
            last_feedback: HashSet::new(),
        }
    }

    /// Shortens old tool output when the conversation nears the model's context window.
    fn compact(&mut self) {
        let window = self.parts.provider.context_window();
        if let Some(done) = compact::compact(&mut self.request, window, &self.last_feedback) {
            tracing::info!(
                window,
                before = done.before,
                after = done.after,
                shortened = done.shortened,
                "the conversation neared the model's context window: old tool output shortened"
            );
        }
    }

    /// Adds the messages injected since the last turn to the conversation, as the user's.
    fn take_injected(&mut self) {
        let injected = self.inbox.drain();
        if injected.is_empty() {
            return;
        }
        let blocks = injected.into_iter().map(|text| ContentBlock::Text {
            text: format!("Message from the user while you work: {text}"),
        });
        match self.request.messages.last_mut() {
            Some(last) if last.role == Role::User => last.content.extend(blocks),
            _ => self.request.messages.push(Message {
                role: Role::User,
                content: blocks.collect(),
            }),
        }
    }

    async fn run(mut self) -> SessionOutcome {
        let mut turns = 0u32;
        loop {
            if turns >= self.limits.max_turns {
                return ended(
                    EndReason::MaxTurns,
                    format!(
                        "reached the limit of {} turns without an accepted submission",
                        self.limits.max_turns
                    ),
                );
            }
            turns += 1;
            self.parts.emitter.count_turn();
            self.take_injected();
            self.compact();
            let call_cancel = self.parts.cancel.child_token();
            let response = match self
                .parts
                .provider
                .complete(&self.request, &call_cancel)
                .await
            {
                Ok(response) => response,
                Err(LlmError::Cancelled) => {
                    return ended(EndReason::Cancelled, "the session was cancelled");
                }
                Err(err) => {
                    return ended(
                        EndReason::Provider,
                        format!("the model provider failed: {err}"),
                    );
                }
            };
            self.account(&response);
            if let Some(outcome) = self.take_turn(response).await {
                return outcome;
            }
            if let Some(outcome) = self.check_limits() {
                return outcome;
            }
        }
    }

    /// Counts the call's usage and reports it.
    fn account(&mut self, response: &ChatResponse) {
        let model = if response.model.is_empty() {
            self.parts.provider.model()
        } else {
            &response.model
        };
        let call = Usage {
            input_tokens: response.usage.input_tokens,
            output_tokens: response.usage.output_tokens,
            cost_usd: call_cost(model, response.usage, self.limits.price),
        };
        self.total.input_tokens += call.input_tokens;
        self.total.output_tokens += call.output_tokens;
        self.total.cost_usd += call.cost_usd;
        self.parts.emitter.emit(Event::AgentUsage(AgentUsage {
            model: Some(model.to_owned()),
            call,
            total: self.total,
        }));
        self.parts.emitter.add_usage(call);
    }

    /// Handles one answer: reports its text, runs its tool calls, and appends both to the
    /// conversation. Returns the outcome when the answer ends the session.
    async fn take_turn(&mut self, response: ChatResponse) -> Option<SessionOutcome> {
        let mut calls = Vec::new();
        for block in &response.content {
            match block {
                ContentBlock::Text { text } if !text.trim().is_empty() => {
                    self.parts
                        .emitter
                        .emit(Event::AgentMessage(AgentMessage { text: text.clone() }));
                }
                ContentBlock::ToolUse { id, name, input } => {
                    calls.push((id.clone(), name.clone(), input.clone()));
                }
                ContentBlock::Text { .. } | ContentBlock::ToolResult { .. } => {}
            }
        }
        let empty = response.content.iter().all(|block| match block {
            ContentBlock::Text { text } => text.trim().is_empty(),
            ContentBlock::ToolUse { .. } | ContentBlock::ToolResult { .. } => false,
        });
        let content = if empty {
            // APIs refuse an assistant message without content; the turn still counts.
            vec![ContentBlock::Text {
                text: "(empty answer)".into(),
            }]
        } else {
            response.content
        };
        self.request.messages.push(Message {
            role: Role::Assistant,
            content,
        });

        if calls.is_empty() {
            self.idle_turns += 1;
            self.quiet_answers += 1;
            if self.quiet_answers > MAX_REMINDERS {
                return Some(ended(
                    EndReason::NoSubmission,
                    format!(
                        "the model stopped calling tools without an accepted submission \
                         ({} answers in a row without a tool call)",
                        self.quiet_answers
                    ),
                ));
            }
            let opening = if empty {
                "Your answer was empty."
            } else {
                "You answered without calling a tool."
            };
            let submit = &self.submit_name;
            self.request.messages.push(Message::user_text(format!(
                "{opening} Continue the work with the tools; when it is done, call `{submit}` \
                 with your output. The work only counts once `{submit}` accepts it."
            )));
            return None;
        }

        self.quiet_answers = 0;
        let mut progress = false;
        let mut results = Vec::new();
        for (id, name, input) in calls {
            self.parts.emitter.count_tool_call();
            self.parts.emitter.emit(Event::AgentToolUse(AgentToolUse {
                tool: name.clone(),
                call_id: id.clone(),
                input_summary: shorten(&input.to_string(), SUMMARY_CHARS),
            }));
            self.note_call(&name, &input);
            let outcome = match self.call(&name, &input).await {
                CallResult::Accepted => {
                    self.parts
                        .emitter
                        .emit(Event::AgentToolResult(AgentToolResult {
                            call_id: id,
                            ok: true,
                            output_summary: "accepted".into(),
                        }));
                    return Some(SessionOutcome::Submitted { input });
                }
                CallResult::Outcome(outcome) => outcome,
            };
            progress |= outcome.ok || (name == self.submit_name && input.is_object());
            if name == self.submit_name {
                self.last_feedback = HashSet::from([id.clone()]);
            }
            self.parts
                .emitter
                .emit(Event::AgentToolResult(AgentToolResult {
                    call_id: id.clone(),
                    ok: outcome.ok,
                    output_summary: shorten(&outcome.output, SUMMARY_CHARS),
                }));
            if let Some(edit) = outcome.edit {
                self.parts
                    .emitter
                    .emit(Event::AgentFileEdited(AgentFileEdited {
                        path: edit.path,
                        lines_added: edit.lines_added,
                        lines_removed: edit.lines_removed,
                    }));
            }
            results.push(ContentBlock::ToolResult {
                tool_use_id: id,
                content: outcome.output,
                is_error: !outcome.ok,
            });
        }
        self.request.messages.push(Message {
            role: Role::User,
            content: results,
        });
        if progress {
            self.idle_turns = 0;
        } else {
            self.idle_turns += 1;
        }
        None
    }

    /// Runs one tool call: `submit` here, the others in the tool box.
    async fn call(&self, name: &str, input: &serde_json::Value) -> CallResult {
        if !self.tool_names.iter().any(|known| known == name) {
            return CallResult::Outcome(ToolOutcome::failure(format!(
                "unknown tool `{name}`; the tools are: {}",
                self.tool_names.join(", ")
            )));
        }
        if !input.is_object() {
            return CallResult::Outcome(ToolOutcome::failure(format!(
                "input is not a JSON object: {}",
                shorten(&input.to_string(), SUMMARY_CHARS)
            )));
        }
        if name != self.submit_name {
            let tool_cancel = self.parts.cancel.child_token();
            return CallResult::Outcome(self.parts.tools.call(name, input, &tool_cancel).await);
        }
        match self.parts.submit.check(input).await {
            SubmitVerdict::Accepted => CallResult::Accepted,
            SubmitVerdict::Rejected { feedback } => {
                CallResult::Outcome(ToolOutcome::failure(feedback))
            }
        }
    }

    /// Remembers a call, for the repeat check.
    fn note_call(&mut self, name: &str, input: &serde_json::Value) {
        let key = format!("{name} {input}");
        match &mut self.last_call {
            Some((last, count)) if *last == key => *count += 1,
            _ => self.last_call = Some((key, 1)),
        }
    }

    /// The limits checked after every turn: stalls and the budget.
    fn check_limits(&self) -> Option<SessionOutcome> {
        if let Some((call, count)) = &self.last_call {
            if *count >= REPEAT_LIMIT {
                return Some(ended(
                    EndReason::Stalled,
                    format!(
                        "stalled: the same call `{}` came {count} times in a row",
                        shorten(call, SUMMARY_CHARS)
                    ),
                ));
            }
        }
        if self.idle_turns >= IDLE_TURN_LIMIT {
            return Some(ended(
                EndReason::Stalled,
                format!(
                    "stalled: {} turns in a row without a successful tool call or a submission",
                    self.idle_turns
                ),
            ));
        }
        if self.total.cost_usd >= self.limits.max_budget_usd {
            return Some(ended(
                EndReason::Budget,
                format!(
                    "the budget of ${:.2} is spent (${:.4} used)",
                    self.limits.max_budget_usd, self.total.cost_usd
                ),
            ));
        }
        None
    }
}
