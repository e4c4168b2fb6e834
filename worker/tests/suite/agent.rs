//! Integration tests: the agent loop driven by the scripted provider in a temporary workspace.

use std::sync::Mutex;
use std::time::Duration;

use omoi_protocol::event::{
    AgentFileEdited, AgentMessage, AgentToolResult, AgentToolUse, AgentUsage, Counters, Event,
    Usage,
};
use omoi_worker::agent::{
    Agent, EndReason, Limits, NativeAgent, SUBMIT_TOOL, SessionOutcome, SessionSpec, SubmitHandler,
    SubmitTool, SubmitVerdict, ToolSet,
};
use omoi_worker::events::{Emitter, EventIds};
use omoi_worker::inbox::Inbox;
use omoi_worker::llm::scripted::ScriptedProvider;
use omoi_worker::llm::{
    BoxFuture, ChatRequest, ChatResponse, ContentBlock, LlmError, Message, Provider, Role,
};
use pretty_assertions::assert_eq;
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// Accepts `{"answer": 42}` and rejects everything else with feedback.
struct AnswerGate;

impl SubmitHandler for AnswerGate {
    fn check<'a>(&'a self, input: &'a serde_json::Value) -> BoxFuture<'a, SubmitVerdict> {
        Box::pin(std::future::ready(self.verdict(input)))
    }
}

impl AnswerGate {
    fn tool(&self) -> SubmitTool {
        SubmitTool {
            name: SUBMIT_TOOL.into(),
            description: "Hand in the answer.".into(),
            schema: json!({"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}),
        }
    }

    /// The verdict on one submission; no I/O beyond the workspace, so it runs inline.
    fn verdict(&self, input: &serde_json::Value) -> SubmitVerdict {
        if input["answer"] == 42 {
            SubmitVerdict::Accepted
        } else {
            SubmitVerdict::Rejected {
                feedback: format!("answer must be 42, not {}", input["answer"]),
            }
        }
    }
}

/// A provider that records every request and answers from a script, optionally as a priced
/// model (so that the budget has something to count).
struct Recorder {
    script: ScriptedProvider,
    model: Option<&'static str>,
    requests: Mutex<Vec<ChatRequest>>,
}

impl Recorder {
    fn new(script: serde_json::Value) -> Self {
        Recorder {
            script: ScriptedProvider::from_json(&script.to_string()).unwrap(),
            model: None,
            requests: Mutex::new(Vec::new()),
        }
    }

    fn requests(&self) -> Vec<ChatRequest> {
        self.requests.lock().unwrap().clone()
    }
}

impl Provider for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }

    fn model(&self) -> &str {
        self.model.unwrap_or("scripted")
    }

    fn complete<'a>(
        &'a self,
        request: &'a ChatRequest,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<ChatResponse, LlmError>> {
        self.requests.lock().unwrap().push(request.clone());
        Box::pin(async move {
            let mut response = self.script.complete(request, cancel).await?;
            if let Some(model) = self.model {
                response.model = model.into();
            }
            Ok(response)
        })
    }
}

struct Run {
    outcome: SessionOutcome,
    events: Vec<Event>,
    counters: Counters,
    workspace: tempfile::TempDir,
}

fn limits() -> Limits {
    Limits {
        max_turns: 20,
        max_budget_usd: 10.0,
        timeout: Duration::from_secs(60),
        price: None,
    }
}

async fn run_with(provider: &dyn Provider, limits: Limits, cancel: &CancellationToken) -> Run {
    run_with_inbox(provider, limits, cancel, Inbox::default()).await
}

async fn run_with_inbox(
    provider: &dyn Provider,
    limits: Limits,
    cancel: &CancellationToken,
    inbox: Inbox,
) -> Run {
    let workspace = tempfile::tempdir().unwrap();
    std::fs::write(workspace.path().join("README.md"), "# Demo\n").unwrap();
    let (emitter, mut rx) = Emitter::channel(EventIds {
        sandbox_id: "sb-1".into(),
        spec_id: Some("spec-1".into()),
        task_id: None,
    });
    let spec = SessionSpec {
        label: "explore".into(),
        attempt: 1,
        system: "You explore.".into(),
        prompt: "Explore the repository.".into(),
        submit: AnswerGate.tool(),
        limits,
        workspace: workspace.path().to_path_buf(),
        tools: ToolSet::read_write(),
        inbox,
    };
    let outcome = NativeAgent::new(provider)
        .run_session(spec, &AnswerGate, &emitter, cancel)
        .await
        .unwrap();
    let mut events = Vec::new();
    while let Ok(envelope) = rx.try_recv() {
        events.push(envelope.event);
    }
    Run {
        outcome,
        events,
        counters: emitter.status().counters,
        workspace,
    }
}

async fn run(provider: &dyn Provider) -> Run {
    run_with(provider, limits(), &CancellationToken::new()).await
}

fn types(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(Event::type_name).collect()
}

fn usage(input_tokens: u64, output_tokens: u64) -> Usage {
    Usage {
        input_tokens,
        output_tokens,
        cost_usd: 0.0,
    }
}

fn ended(reason: EndReason, detail: &str) -> SessionOutcome {
    SessionOutcome::Ended {
        reason,
        detail: detail.into(),
    }
}

/// The tool results the model saw in the last request.
fn last_results(provider: &Recorder) -> Vec<ContentBlock> {
    let requests = provider.requests();
    requests
        .last()
        .unwrap()
        .messages
        .last()
        .unwrap()
        .content
        .clone()
}

#[tokio::test]
async fn injected_messages_join_the_conversation_before_the_next_call() {
    let provider = Recorder::new(json!({"explore": [[
        {"tool_calls": [{"name": "submit", "input": {"answer": 42}}]}
    ]]}));
    let inbox = Inbox::default();
    inbox.push("Prefer the README over guessing.".into());
    let run = run_with_inbox(
        &provider,
        limits(),
        &CancellationToken::new(),
        inbox.clone(),
    )
    .await;
    assert_eq!(
        run.outcome,
        SessionOutcome::Submitted {
            input: json!({"answer": 42})
        }
    );
    let first = &provider.requests()[0];
    assert_eq!(
        first.messages,
        vec![Message {
            role: Role::User,
            content: vec![
                ContentBlock::Text {
                    text: "Explore the repository.".into()
                },
                ContentBlock::Text {
                    text: "Message from the user while you work: Prefer the README over guessing."
                        .into()
                },
            ],
        }]
    );
    assert_eq!(
        inbox.drain(),
        Vec::<String>::new(),
        "each message is taken once"
    );
}

#[tokio::test]
async fn submit_accepted_on_the_first_try() {
    let provider = Recorder::new(json!({"explore": [[{
        "text": "Looking around.",
        "tool_calls": [
            {"name": "list_files", "input": {}},
            {"name": "submit", "input": {"answer": 42}}
        ],
        "usage": {"input_tokens": 100, "output_tokens": 20}
    }]]}));
    let run = run(&provider).await;
    assert_eq!(
        run.outcome,
        SessionOutcome::Submitted {
            input: json!({"answer": 42})
        }
    );
    assert_eq!(
        run.events,
        vec![
            Event::AgentUsage(AgentUsage {
                model: Some("scripted".into()),
                call: usage(100, 20),
                total: usage(100, 20),
            }),
            Event::AgentMessage(AgentMessage {
                text: "Looking around.".into()
            }),
            Event::AgentToolUse(AgentToolUse {
                tool: "list_files".into(),
                call_id: "call_explore_1_1_1".into(),
                input_summary: "{}".into(),
            }),
            Event::AgentToolResult(AgentToolResult {
                call_id: "call_explore_1_1_1".into(),
                ok: true,
                output_summary: "README.md".into(),
            }),
            Event::AgentToolUse(AgentToolUse {
                tool: "submit".into(),
                call_id: "call_explore_1_1_2".into(),
                input_summary: "{\"answer\":42}".into(),
            }),
            Event::AgentToolResult(AgentToolResult {
                call_id: "call_explore_1_1_2".into(),
                ok: true,
                output_summary: "accepted".into(),
            }),
        ]
    );
    assert_eq!(
        run.counters,
        Counters {
            turns: 1,
            tool_calls: 2,
            usage: usage(100, 20),
        }
    );
    let request = &provider.requests()[0];
    assert_eq!(request.system, "You explore.");
    assert_eq!(
        request.messages,
        vec![Message::user_text("Explore the repository.")]
    );
    assert_eq!(
        request
            .tools
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>(),
        vec![
            "read_file",
            "list_files",
            "search",
            "run",
            "write_file",
            "edit_file",
            "submit"
        ]
    );
    let submit = request.tools.last().unwrap();
    assert_eq!(submit.description, "Hand in the answer.");
    assert_eq!(submit.input_schema, AnswerGate.tool().schema);
}

#[tokio::test]
async fn rejection_feedback_reaches_the_model_and_it_fixes_the_submission() {
    let provider = Recorder::new(json!({"explore": [[
        {"tool_calls": [{"name": "submit", "input": {"answer": 41}}]},
        {"text": "Fixing.", "tool_calls": [{"name": "submit", "input": {"answer": 42}}]}
    ]]}));
    let run = run(&provider).await;
    assert_eq!(
        run.outcome,
        SessionOutcome::Submitted {
            input: json!({"answer": 42})
        }
    );
    let requests = provider.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[1].messages[1..],
        [
            Message {
                role: Role::Assistant,
                content: vec![ContentBlock::ToolUse {
                    id: "call_explore_1_1_1".into(),
                    name: "submit".into(),
                    input: json!({"answer": 41}),
                }],
            },
            Message {
                role: Role::User,
                content: vec![ContentBlock::ToolResult {
                    tool_use_id: "call_explore_1_1_1".into(),
                    content: "answer must be 42, not 41".into(),
                    is_error: true,
                }],
            },
        ]
    );
    assert_eq!(
        types(&run.events),
        vec![
            "agent.usage",
            "agent.tool_use",
            "agent.tool_result",
            "agent.usage",
            "agent.message",
            "agent.tool_use",
            "agent.tool_result",
        ]
    );
}

#[tokio::test]
async fn answers_without_tool_calls_get_reminders_then_end_the_session() {
    let provider = Recorder::new(json!({"explore": [[
        {"text": "I think I am done."},
        {},
        {"text": "Really done."}
    ]]}));
    let run = run(&provider).await;
    assert_eq!(
        run.outcome,
        ended(
            EndReason::NoSubmission,
            "the model stopped calling tools without an accepted submission \
             (3 answers in a row without a tool call)"
        )
    );
    let requests = provider.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(
        requests[2].messages[1..],
        [
            Message {
                role: Role::Assistant,
                content: vec![ContentBlock::Text {
                    text: "I think I am done.".into()
                }],
            },
            Message::user_text(
                "You answered without calling a tool. Continue the work with the tools; when it \
                 is done, call `submit` with your output. The work only counts once `submit` \
                 accepts it."
            ),
            Message {
                role: Role::Assistant,
                content: vec![ContentBlock::Text {
                    text: "(empty answer)".into()
                }],
            },
            Message::user_text(
                "Your answer was empty. Continue the work with the tools; when it is done, call \
                 `submit` with your output. The work only counts once `submit` accepts it."
            ),
        ]
    );
    assert_eq!(
        types(&run.events),
        vec![
            "agent.usage",
            "agent.message",
            "agent.usage",
            "agent.usage",
            "agent.message"
        ]
    );
}

#[tokio::test]
async fn a_reminder_can_bring_the_model_back() {
    let provider = Recorder::new(json!({"explore": [[
        {"text": "Done?"},
        {"tool_calls": [{"name": "submit", "input": {"answer": 42}}]}
    ]]}));
    assert_eq!(
        run(&provider).await.outcome,
        SessionOutcome::Submitted {
            input: json!({"answer": 42})
        }
    );
}

#[tokio::test]
async fn malformed_input_and_unknown_tools_are_tool_errors() {
    let provider = Recorder::new(json!({"explore": [[
        {"tool_calls": [
            {"id": "a", "name": "read_file", "input": "{\"path\": \"README"},
            {"id": "b", "name": "delete_repo", "input": {}},
            {"id": "c", "name": "submit", "input": [42]},
            {"id": "d", "name": "read_file", "input": {"path": 7}}
        ]},
        {"tool_calls": [{"name": "submit", "input": {"answer": 42}}]}
    ]]}));
    let run = run(&provider).await;
    assert_eq!(
        run.outcome,
        SessionOutcome::Submitted {
            input: json!({"answer": 42})
        }
    );
    let result = |id: &str, content: &str| ContentBlock::ToolResult {
        tool_use_id: id.into(),
        content: content.into(),
        is_error: true,
    };
    assert_eq!(
        last_results(&provider),
        vec![
            result(
                "a",
                "input is not a JSON object: \"{\\\"path\\\": \\\"README\""
            ),
            result(
                "b",
                "unknown tool `delete_repo`; the tools are: read_file, list_files, search, run, \
                 write_file, edit_file, submit"
            ),
            result("c", "input is not a JSON object: [42]"),
            result(
                "d",
                "bad input for read_file: invalid type: integer `7`, expected a string"
            ),
        ]
    );
}

#[tokio::test]
async fn file_edits_are_reported() {
    let provider = Recorder::new(json!({"explore": [[
        {"tool_calls": [
            {"name": "write_file", "input": {"path": "notes/a.md", "content": "one\ntwo\n"}},
            {"name": "edit_file", "input": {"path": "notes/a.md", "old": "two", "new": "2\n3"}}
        ]},
        {"tool_calls": [{"name": "submit", "input": {"answer": 42}}]}
    ]]}));
    let run = run(&provider).await;
    assert_eq!(
        std::fs::read_to_string(run.workspace.path().join("notes/a.md")).unwrap(),
        "one\n2\n3\n"
    );
    let edits: Vec<&Event> = run
        .events
        .iter()
        .filter(|e| matches!(e, Event::AgentFileEdited(_)))
        .collect();
    assert_eq!(
        edits,
        vec![
            &Event::AgentFileEdited(AgentFileEdited {
                path: "notes/a.md".into(),
                lines_added: 2,
                lines_removed: 0
            }),
            &Event::AgentFileEdited(AgentFileEdited {
                path: "notes/a.md".into(),
                lines_added: 2,
                lines_removed: 1
            }),
        ]
    );
    assert_eq!(
        types(&run.events)[..7],
        [
            "agent.usage",
            "agent.tool_use",
            "agent.tool_result",
            "agent.file_edited",
            "agent.tool_use",
            "agent.tool_result",
            "agent.file_edited",
        ]
    );
}

#[tokio::test]
async fn max_turns_ends_the_session() {
    let turn = |n: u32| json!({"tool_calls": [{"name": "list_files", "input": {"glob": format!("*.{n}")}}]});
    let provider = Recorder::new(json!({"explore": [[turn(1), turn(2), turn(3)]]}));
    let run = run_with(
        &provider,
        Limits {
            max_turns: 2,
            ..limits()
        },
        &CancellationToken::new(),
    )
    .await;
    assert_eq!(
        run.outcome,
        ended(
            EndReason::MaxTurns,
            "reached the limit of 2 turns without an accepted submission"
        )
    );
    assert_eq!(provider.requests().len(), 2);
    assert_eq!(run.counters.turns, 2);
}

#[tokio::test]
async fn the_same_call_three_times_is_a_stall() {
    let same = json!({"tool_calls": [{"name": "read_file", "input": {"path": "README.md"}}]});
    let provider = Recorder::new(json!({"explore": [[same, same, same, same]]}));
    assert_eq!(
        run(&provider).await.outcome,
        ended(
            EndReason::Stalled,
            "stalled: the same call `read_file {\"path\":\"README.md\"}` came 3 times in a row"
        )
    );
    assert_eq!(provider.requests().len(), 3);
}

#[tokio::test]
async fn turns_without_progress_are_a_stall() {
    let turns: Vec<serde_json::Value> = (1..=10)
        .map(|n| json!({"tool_calls": [{"name": "read_file", "input": {"path": format!("missing-{n}.txt")}}]}))
        .collect();
    let provider = Recorder::new(json!({"explore": [turns]}));
    assert_eq!(
        run(&provider).await.outcome,
        ended(
            EndReason::Stalled,
            "stalled: 8 turns in a row without a successful tool call or a submission"
        )
    );
    assert_eq!(provider.requests().len(), 8);
}

#[tokio::test(start_paused = true)]
async fn the_session_times_out_while_the_model_thinks() {
    let provider = Recorder::new(json!({"explore": [[
        {"tool_calls": [{"name": "list_files", "input": {}}]},
        {"delay_ms": 600000, "tool_calls": [{"name": "submit", "input": {"answer": 42}}]}
    ]]}));
    let run = run_with(
        &provider,
        Limits {
            timeout: Duration::from_secs(30),
            ..limits()
        },
        &CancellationToken::new(),
    )
    .await;
    assert_eq!(
        run.outcome,
        ended(
            EndReason::Timeout,
            "the session's time limit of 30 s ran out"
        )
    );
    assert_eq!(provider.requests().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn cancellation_stops_the_session() {
    let provider = Recorder::new(json!({"explore": [[
        {"delay_ms": 600000, "tool_calls": [{"name": "submit", "input": {"answer": 42}}]}
    ]]}));
    let cancel = CancellationToken::new();
    let canceller = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        canceller.cancel();
    });
    let run = run_with(&provider, limits(), &cancel).await;
    assert_eq!(
        run.outcome,
        ended(EndReason::Cancelled, "the session was cancelled")
    );
}

#[tokio::test]
async fn provider_failure_ends_the_session_with_its_message() {
    let provider = Recorder::new(json!({"design": [[{"text": "wrong session"}]]}));
    assert_eq!(
        run(&provider).await.outcome,
        ended(
            EndReason::Provider,
            "the model provider failed: script: <inline script> has no entry for session \
             `explore` and no \"*\" fallback"
        )
    );
}

#[tokio::test]
async fn the_budget_ends_the_session() {
    let mut provider = Recorder::new(json!({"explore": [[
        {"tool_calls": [{"name": "list_files", "input": {}}],
         "usage": {"input_tokens": 1000000, "output_tokens": 0}},
        {"tool_calls": [{"name": "submit", "input": {"answer": 42}}]}
    ]]}));
    provider.model = Some("claude-sonnet-4-5");
    let run = run_with(
        &provider,
        Limits {
            max_budget_usd: 1.0,
            ..limits()
        },
        &CancellationToken::new(),
    )
    .await;
    assert_eq!(
        run.outcome,
        ended(
            EndReason::Budget,
            "the budget of $1.00 is spent ($3.0000 used)"
        )
    );
    assert_eq!(
        run.events[0],
        Event::AgentUsage(AgentUsage {
            model: Some("claude-sonnet-4-5".into()),
            call: Usage {
                input_tokens: 1_000_000,
                output_tokens: 0,
                cost_usd: 3.0
            },
            total: Usage {
                input_tokens: 1_000_000,
                output_tokens: 0,
                cost_usd: 3.0
            },
        })
    );
}
