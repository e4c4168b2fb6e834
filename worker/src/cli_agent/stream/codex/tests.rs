//! Codex lines captured from the real CLI (0.163.0) against the fake Responses API → events.

use omoi_protocol::event::{AgentFileEdited, Event, Usage};
use pretty_assertions::assert_eq;

use super::*;
use crate::cli_agent::gate::ACCEPTED_TEXT;
use crate::cli_agent::stream::expect::{message, tool_result, tool_use};

/// A session that runs a command, submits a bad title, then a good one.
const SESSION: &str = include_str!("session.jsonl");

fn map(text: &str) -> Vec<Mapped> {
    let mut stream = CodexStream::new("/ws");
    text.lines().flat_map(|line| stream.line(line)).collect()
}

#[test]
fn a_captured_session_maps_onto_omois_events() {
    assert_eq!(
        map(SESSION),
        vec![
            Mapped::SessionId("01a2356d-f6f2-78c0-9804-66c806d8d113".to_string()),
            tool_use(
                "command_execution",
                "item_1",
                r#"/bin/bash -lc "printf 'hello\\nworld\\n' > hello.txt""#
            ),
            tool_result("item_1", true, ""),
            message("Submitting."),
            tool_use("mcp__omoi__submit", "item_3", r#"{"title":"bad"}"#),
            tool_result("item_3", false, "title \"bad\" is not good: use \"good\""),
            tool_use("mcp__omoi__submit", "item_4", r#"{"title":"good"}"#),
            tool_result("item_4", true, ACCEPTED_TEXT),
            message("Done."),
            Mapped::Finished(Finished {
                ok: true,
                detail: String::new(),
                reported: Usage {
                    input_tokens: 40,
                    output_tokens: 4,
                    cost_usd: 0.0,
                },
            }),
        ]
    );
}

#[test]
fn file_changes_a_failed_command_and_a_failed_turn() {
    let lines = [
        r#"{"type":"item.completed","item":{"id":"item_7","type":"file_change","changes":[{"path":"/ws/src/lib.rs","kind":"update"},{"path":"/elsewhere/x","kind":"add"}],"status":"completed"}}"#,
        r#"{"type":"item.completed","item":{"id":"item_8","type":"command_execution","command":"false","aggregated_output":"boom\n","exit_code":1,"status":"failed"}}"#,
        r#"{"type":"turn.failed","error":{"message":"stream disconnected before completion"}}"#,
    ];
    let edited = |path: &str| {
        Mapped::Event(Event::AgentFileEdited(AgentFileEdited {
            path: path.to_string(),
            lines_added: 0,
            lines_removed: 0,
        }))
    };
    assert_eq!(
        map(&lines.join("\n")),
        vec![
            edited("src/lib.rs"),
            edited("/elsewhere/x"),
            tool_use("command_execution", "item_8", "false"),
            tool_result("item_8", false, "boom\n"),
            Mapped::Finished(Finished {
                ok: false,
                detail: "stream disconnected before completion".to_string(),
                reported: Usage::default(),
            }),
        ]
    );
}

#[test]
fn malformed_and_unknown_lines_are_skipped() {
    let lines = [
        "",
        "Reading additional input from stdin...",
        "{\"type\":\"item.completed\"",
        r#"{"type":"thread.resumed","thread_id":"x"}"#,
        r#"{"type":"item.completed","item":{"id":"item_0","type":"error","message":"Model metadata for `gpt-test` not found."}}"#,
        r#"{"type":"item.completed","item":{"id":"item_9","type":"reasoning","text":"thinking"}}"#,
        r#"{"type":"error","message":"reconnecting"}"#,
        r#"{"type":"item.completed","item":{"id":"item_10","type":"agent_message","text":"after all that"}}"#,
    ];
    assert_eq!(map(&lines.join("\n")), vec![message("after all that")]);
}
