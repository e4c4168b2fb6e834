//! Claude Code lines captured from the real CLI (2.1.332) against the fake Anthropic API, with
//! the temporary paths replaced by `/ws` → events.

use omoi_protocol::event::{AgentFileEdited, Event, Usage};
use pretty_assertions::assert_eq;
use serde_json::json;

use super::*;
use crate::cli_agent::gate::ACCEPTED_TEXT;
use crate::cli_agent::stream::expect::{message, tool_result, tool_use};

/// A session that writes `hello.txt`, submits a bad title, then a good one.
const SESSION: &str = include_str!("session.jsonl");

fn map(text: &str) -> Vec<Mapped> {
    let mut stream = ClaudeStream::new("/ws");
    text.lines().flat_map(|line| stream.line(line)).collect()
}

#[test]
fn a_captured_session_maps_onto_omois_events() {
    assert_eq!(
        map(SESSION),
        vec![
            Mapped::SessionId("0c7804c5-7b1e-4e9c-8cf4-4a7934e7c079".to_string()),
            message("I will write the file."),
            tool_use(
                "Write",
                "toolu_write_1",
                &json!({"file_path": "/ws/hello.txt", "content": "hello\nworld\n"}).to_string()
            ),
            tool_result(
                "toolu_write_1",
                true,
                "File created successfully at: /ws/hello.txt (file state is current in your context — no need to Read it back)"
            ),
            Mapped::Event(Event::AgentFileEdited(AgentFileEdited {
                path: "hello.txt".to_string(),
                lines_added: 2,
                lines_removed: 0,
            })),
            message("Submitting."),
            tool_use("mcp__omoi__submit", "call_sub_1", r#"{"title":"bad"}"#),
            tool_result(
                "call_sub_1",
                false,
                "title \"bad\" is not good: use \"good\""
            ),
            tool_use("mcp__omoi__submit", "call_sub_2", r#"{"title":"good"}"#),
            tool_result("call_sub_2", true, ACCEPTED_TEXT),
            message("Done."),
            Mapped::Finished(Finished {
                ok: true,
                detail: "Done.".to_string(),
                reported: Usage {
                    input_tokens: 40,
                    output_tokens: 4,
                    cost_usd: 0.00024,
                },
            }),
        ]
    );
}

#[test]
fn an_edit_counts_the_lines_of_its_patch() {
    let mut stream = ClaudeStream::new("/ws");
    stream.line(r#"{"type":"assistant","message":{"id":"msg_1","content":[{"type":"tool_use","id":"toolu_e","name":"Edit","input":{"file_path":"/ws/src/a.rs","old_string":"a","new_string":"b\nc"}}]}}"#);
    let mapped = stream.line(r#"{"type":"user","message":{"role":"user","content":[{"tool_use_id":"toolu_e","type":"tool_result","content":"The file /ws/src/a.rs has been updated."}]},"tool_use_result":{"filePath":"/ws/src/a.rs","oldString":"a","newString":"b\nc","structuredPatch":[{"oldStart":1,"oldLines":2,"newStart":1,"newLines":3,"lines":["-a","+b","+c"," d"]}]}}"#);
    assert_eq!(
        mapped,
        vec![
            tool_result("toolu_e", true, "The file /ws/src/a.rs has been updated."),
            Mapped::Event(Event::AgentFileEdited(AgentFileEdited {
                path: "src/a.rs".to_string(),
                lines_added: 2,
                lines_removed: 1,
            })),
        ]
    );
}

#[test]
fn an_error_result_names_what_went_wrong() {
    // As the CLI prints it when `--max-turns` runs out.
    let line = r#"{"type":"result","subtype":"error_max_turns","is_error":true,"num_turns":1,"stop_reason":"tool_use","terminal_reason":"max_turns","errors":["Reached maximum number of turns (1)"],"total_cost_usd":0.0008,"usage":{"input_tokens":100,"output_tokens":20,"cache_creation_input_tokens":0,"cache_read_input_tokens":0}}"#;
    assert_eq!(
        map(line),
        vec![Mapped::Finished(Finished {
            ok: false,
            detail: "error_max_turns: Reached maximum number of turns (1)".to_string(),
            reported: Usage {
                input_tokens: 100,
                output_tokens: 20,
                cost_usd: 0.0008,
            },
        })]
    );
}

#[test]
fn malformed_and_unknown_lines_are_skipped() {
    let lines = [
        "",
        "not json at all",
        "{\"type\":\"assistant\",",
        "[1,2,3]",
        r#"{"type":"telemetry","data":{}}"#,
        r#"{"type":"system","subtype":"ui_invalidate"}"#,
        r#"{"type":"assistant","message":{"content":"a string, not blocks"}}"#,
        r#"{"type":"assistant","message":{"content":[{"type":"thinking","thinking":"hm"},{"type":"text","text":"  "}]}}"#,
    ];
    assert_eq!(map(&lines.join("\n")), vec![]);
    // The stream goes on after them.
    assert_eq!(
        map(&format!(
            "garbage\n{}",
            r#"{"type":"assistant","message":{"content":[{"type":"text","text":"still here"}]}}"#
        )),
        vec![message("still here")]
    );
}
