//! The offline `scripted` provider: replays model turns from a JSON script (`OMOI_SCRIPT`).
//!
//! The script maps a session label (`explore`, `task:TSK-001`, … or the `"*"` fallback) to
//! attempts, and each attempt to turns. The provider is stateless: it answers a request with
//! turn `n` of the attempt, where `n` is the number of assistant messages already in the
//! request. The format is described in `docs/scripted-provider.md`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::{
    BoxFuture, ChatRequest, ChatResponse, ContentBlock, LlmError, Provider, Role, StopReason,
    TokenUsage,
};
use crate::error::{Error, Result};

/// The label whose attempts serve any session the script does not name.
pub const FALLBACK_LABEL: &str = "*";

/// What the scripted provider reports as its model.
pub const SCRIPTED_MODEL: &str = "scripted";

/// A provider that replays a script.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptedProvider {
    /// Where the script came from, for messages.
    source: String,
    sessions: BTreeMap<String, Vec<Vec<Turn>>>,
}

/// One scripted model answer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Turn {
    text: Option<String>,
    #[serde(default)]
    tool_calls: Vec<ToolCall>,
    delay_ms: Option<u64>,
    usage: Option<ScriptedUsage>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct ToolCall {
    id: Option<String>,
    name: String,
    #[serde(default = "empty_object")]
    input: serde_json::Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptedUsage {
    input_tokens: u64,
    output_tokens: u64,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

impl ScriptedProvider {
    /// Reads the script at `path`. A malformed script is an `OMOI_SCRIPT` config error that
    /// names the file and where in it the problem is.
    pub fn load(path: &Path) -> Result<ScriptedProvider> {
        let text = std::fs::read_to_string(path).map_err(|err| {
            Error::config(
                omoi_protocol::env::OMOI_SCRIPT,
                format!("cannot read {}: {err}", path.display()),
            )
        })?;
        parse(&path.display().to_string(), &text)
    }

    /// Parses a script given as text (tests, embedding).
    pub fn from_json(text: &str) -> Result<ScriptedProvider> {
        parse("<inline script>", text)
    }

    fn answer(&self, request: &ChatRequest) -> Result<(&Turn, usize), LlmError> {
        let label = &request.session.label;
        let attempts = self
            .sessions
            .get(label)
            .or_else(|| self.sessions.get(FALLBACK_LABEL))
            .ok_or_else(|| {
                LlmError::Script(format!(
                    "{} has no entry for session `{label}` and no \"*\" fallback",
                    self.source
                ))
            })?;
        // Past the last attempt, the last one is replayed (attempts count from 1).
        let attempt_index = (request.session.attempt.max(1) as usize - 1).min(attempts.len() - 1);
        let turns = &attempts[attempt_index];
        let turn_index = request
            .messages
            .iter()
            .filter(|m| m.role == Role::Assistant)
            .count();
        let turn = turns.get(turn_index).ok_or_else(|| {
            LlmError::Script(format!(
                "{}: session `{label}` attempt {} has {} turns, and the model was asked for turn {}",
                self.source,
                attempt_index + 1,
                turns.len(),
                turn_index + 1
            ))
        })?;
        Ok((turn, turn_index))
    }
}

impl Provider for ScriptedProvider {
    fn name(&self) -> &'static str {
        "scripted"
    }

    fn model(&self) -> &str {
        SCRIPTED_MODEL
    }

    fn complete<'a>(
        &'a self,
        request: &'a ChatRequest,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<ChatResponse, LlmError>> {
        Box::pin(async move {
            if cancel.is_cancelled() {
                return Err(LlmError::Cancelled);
            }
            let (turn, turn_index) = self.answer(request)?;
            if let Some(delay) = turn.delay_ms {
                tokio::select! {
                    _ = cancel.cancelled() => return Err(LlmError::Cancelled),
                    _ = tokio::time::sleep(Duration::from_millis(delay)) => {}
                }
            }
            let mut content = Vec::new();
            if let Some(text) = &turn.text {
                content.push(ContentBlock::Text { text: text.clone() });
            }
            for (n, call) in turn.tool_calls.iter().enumerate() {
                let id = call.id.clone().unwrap_or_else(|| {
                    format!(
                        "call_{}_{}_{}_{}",
                        request.session.label,
                        request.session.attempt,
                        turn_index + 1,
                        n + 1
                    )
                });
                content.push(ContentBlock::ToolUse {
                    id,
                    name: call.name.clone(),
                    input: call.input.clone(),
                });
            }
            let usage = match turn.usage {
                Some(usage) => TokenUsage {
                    input_tokens: usage.input_tokens,
                    output_tokens: usage.output_tokens,
                    ..TokenUsage::default()
                },
                None => estimate_usage(request, &content),
            };
            Ok(ChatResponse {
                stop_reason: if turn.tool_calls.is_empty() {
                    StopReason::EndTurn
                } else {
                    StopReason::ToolUse
                },
                content,
                usage,
                model: SCRIPTED_MODEL.to_owned(),
            })
        })
    }
}

/// A deterministic stand-in for real token counts: about four characters per token of the
/// request (system, messages, tools) and of the answer.
fn estimate_usage(request: &ChatRequest, answer: &[ContentBlock]) -> TokenUsage {
    let mut input_chars = request.system.chars().count();
    for message in &request.messages {
        input_chars += message.content.iter().map(json_chars).sum::<usize>();
    }
    input_chars += request.tools.iter().map(json_chars).sum::<usize>();
    let output_chars: usize = answer.iter().map(json_chars).sum();
    TokenUsage {
        input_tokens: (input_chars as u64).div_ceil(4),
        output_tokens: (output_chars as u64).div_ceil(4),
        ..TokenUsage::default()
    }
}

/// The length in characters of a value's JSON form.
fn json_chars<T: serde::Serialize>(value: &T) -> usize {
    serde_json::to_string(value).map_or(0, |s| s.chars().count())
}

fn parse(source: &str, text: &str) -> Result<ScriptedProvider> {
    let problem =
        |what: String| Error::config(omoi_protocol::env::OMOI_SCRIPT, format!("{source}: {what}"));
    let root: serde_json::Value =
        serde_json::from_str(text).map_err(|err| problem(format!("not valid JSON: {err}")))?;
    let serde_json::Value::Object(labels) = root else {
        return Err(problem(
            "the script must be a JSON object keyed by session label".into(),
        ));
    };
    if labels.is_empty() {
        return Err(problem("the script names no session".into()));
    }
    let mut sessions = BTreeMap::new();
    for (label, attempts) in labels {
        let at = format!("[{label:?}]");
        let serde_json::Value::Array(attempts) = attempts else {
            return Err(problem(format!("{at}: must be an array of attempts")));
        };
        if attempts.is_empty() {
            return Err(problem(format!("{at}: needs at least one attempt")));
        }
        let mut parsed_attempts = Vec::new();
        for (a, turns) in attempts.into_iter().enumerate() {
            let at = format!("{at}[{a}]");
            let serde_json::Value::Array(turns) = turns else {
                return Err(problem(format!(
                    "{at}: an attempt must be an array of turns"
                )));
            };
            if turns.is_empty() {
                return Err(problem(format!("{at}: an attempt needs at least one turn")));
            }
            let mut parsed_turns = Vec::new();
            for (t, turn) in turns.into_iter().enumerate() {
                let turn: Turn = serde_json::from_value(turn)
                    .map_err(|err| problem(format!("{at}[{t}]: {err}")))?;
                parsed_turns.push(turn);
            }
            parsed_attempts.push(parsed_turns);
        }
        sessions.insert(label, parsed_attempts);
    }
    Ok(ScriptedProvider {
        source: source.to_owned(),
        sessions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::{Message, SessionInfo};
    use pretty_assertions::assert_eq;
    use serde_json::json;

    fn request(label: &str, attempt: u32, assistant_turns: usize) -> ChatRequest {
        let mut messages = vec![Message::user_text("go")];
        for _ in 0..assistant_turns {
            messages.push(Message {
                role: Role::Assistant,
                content: vec![ContentBlock::Text { text: "..".into() }],
            });
            messages.push(Message::user_text("more"));
        }
        ChatRequest {
            session: SessionInfo {
                label: label.into(),
                attempt,
            },
            system: "sys".into(),
            messages,
            tools: Vec::new(),
            max_tokens: 100,
        }
    }

    const SCRIPT: &str = r#"{
        "explore": [
            [
                {"text": "looking", "tool_calls": [{"name": "list_files", "input": {}}],
                 "usage": {"input_tokens": 10, "output_tokens": 5}},
                {"tool_calls": [{"id": "mine", "name": "submit", "input": {"summary": "x"}}],
                 "usage": {"input_tokens": 20, "output_tokens": 6}}
            ],
            [
                {"text": "second attempt", "usage": {"input_tokens": 1, "output_tokens": 1}}
            ]
        ],
        "*": [[{"text": "fallback", "usage": {"input_tokens": 2, "output_tokens": 3}}]]
    }"#;

    async fn ask(
        provider: &ScriptedProvider,
        request: &ChatRequest,
    ) -> Result<ChatResponse, LlmError> {
        provider.complete(request, &CancellationToken::new()).await
    }

    #[tokio::test]
    async fn picks_the_turn_by_assistant_messages() {
        let provider = ScriptedProvider::from_json(SCRIPT).unwrap();
        assert_eq!(provider.model(), "scripted");
        assert_eq!(
            ask(&provider, &request("explore", 1, 0)).await.unwrap(),
            ChatResponse {
                content: vec![
                    ContentBlock::Text {
                        text: "looking".into()
                    },
                    ContentBlock::ToolUse {
                        id: "call_explore_1_1_1".into(),
                        name: "list_files".into(),
                        input: json!({}),
                    },
                ],
                stop_reason: StopReason::ToolUse,
                usage: TokenUsage {
                    input_tokens: 10,
                    output_tokens: 5,
                    ..TokenUsage::default()
                },
                model: "scripted".into(),
            }
        );
        assert_eq!(
            ask(&provider, &request("explore", 1, 1)).await.unwrap(),
            ChatResponse {
                content: vec![ContentBlock::ToolUse {
                    id: "mine".into(),
                    name: "submit".into(),
                    input: json!({"summary": "x"}),
                }],
                stop_reason: StopReason::ToolUse,
                usage: TokenUsage {
                    input_tokens: 20,
                    output_tokens: 6,
                    ..TokenUsage::default()
                },
                model: "scripted".into(),
            }
        );
    }

    #[tokio::test]
    async fn attempts_past_the_end_replay_the_last_and_unknown_labels_fall_back() {
        let provider = ScriptedProvider::from_json(SCRIPT).unwrap();
        let text = |r: ChatResponse| match &r.content[..] {
            [ContentBlock::Text { text }] => text.clone(),
            other => panic!("unexpected content {other:?}"),
        };
        assert_eq!(
            text(ask(&provider, &request("explore", 2, 0)).await.unwrap()),
            "second attempt"
        );
        assert_eq!(
            text(ask(&provider, &request("explore", 7, 0)).await.unwrap()),
            "second attempt"
        );
        assert_eq!(
            text(
                ask(&provider, &request("task:TSK-001", 1, 0))
                    .await
                    .unwrap()
            ),
            "fallback"
        );
    }

    #[tokio::test]
    async fn missing_label_or_turn_is_a_script_error() {
        let provider =
            ScriptedProvider::from_json(r#"{"design": [[{"text": "only turn"}]]}"#).unwrap();
        assert_eq!(
            ask(&provider, &request("tasks", 1, 0)).await,
            Err(LlmError::Script(
                "<inline script> has no entry for session `tasks` and no \"*\" fallback".into()
            ))
        );
        assert_eq!(
            ask(&provider, &request("design", 1, 1)).await,
            Err(LlmError::Script(
                "<inline script>: session `design` attempt 1 has 1 turns, and the model was asked for turn 2"
                    .into()
            ))
        );
    }

    #[tokio::test]
    async fn usage_defaults_to_an_estimate() {
        let provider = ScriptedProvider::from_json(r#"{"*": [[{"text": "hi"}]]}"#).unwrap();
        let mut req = request("x", 1, 0);
        req.system = "abcd".into();
        req.messages.clear();
        let response = ask(&provider, &req).await.unwrap();
        // {"type":"text","text":"hi"} is 27 characters.
        assert_eq!(
            response.usage,
            TokenUsage {
                input_tokens: 1,
                output_tokens: 7,
                ..TokenUsage::default()
            }
        );
        assert_eq!(response.stop_reason, StopReason::EndTurn);
    }

    #[tokio::test(start_paused = true)]
    async fn delay_waits_and_is_cancellable() {
        let provider =
            ScriptedProvider::from_json(r#"{"*": [[{"text": "late", "delay_ms": 60000}]]}"#)
                .unwrap();
        let started = tokio::time::Instant::now();
        let response = ask(&provider, &request("x", 1, 0)).await.unwrap();
        assert_eq!(
            response.content,
            vec![ContentBlock::Text {
                text: "late".into()
            }]
        );
        assert!(started.elapsed() >= Duration::from_secs(60));

        let cancel = CancellationToken::new();
        let req = request("x", 1, 0);
        let call = provider.complete(&req, &cancel);
        let canceller = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            canceller.cancel();
        });
        assert_eq!(call.await, Err(LlmError::Cancelled));
    }

    fn load_error(text: &str) -> String {
        ScriptedProvider::from_json(text).unwrap_err().to_string()
    }

    #[test]
    fn malformed_scripts_say_where() {
        assert_eq!(
            load_error("{\"explore\": [[{\"text\": 1,}]]"),
            "OMOI_SCRIPT: <inline script>: not valid JSON: trailing comma at line 1 column 26"
        );
        assert_eq!(
            load_error("[]"),
            "OMOI_SCRIPT: <inline script>: the script must be a JSON object keyed by session label"
        );
        assert_eq!(
            load_error("{}"),
            "OMOI_SCRIPT: <inline script>: the script names no session"
        );
        assert_eq!(
            load_error(r#"{"explore": {"text": "x"}}"#),
            "OMOI_SCRIPT: <inline script>: [\"explore\"]: must be an array of attempts"
        );
        assert_eq!(
            load_error(r#"{"explore": []}"#),
            "OMOI_SCRIPT: <inline script>: [\"explore\"]: needs at least one attempt"
        );
        assert_eq!(
            load_error(r#"{"explore": [{"text": "x"}]}"#),
            "OMOI_SCRIPT: <inline script>: [\"explore\"][0]: an attempt must be an array of turns"
        );
        assert_eq!(
            load_error(r#"{"explore": [[{"text": "x"}], []]}"#),
            "OMOI_SCRIPT: <inline script>: [\"explore\"][1]: an attempt needs at least one turn"
        );
        assert_eq!(
            load_error(r#"{"explore": [[{"text": "x"}, {"tool_call": []}]]}"#),
            "OMOI_SCRIPT: <inline script>: [\"explore\"][0][1]: unknown field `tool_call`, \
             expected one of `text`, `tool_calls`, `delay_ms`, `usage`"
        );
        assert_eq!(
            load_error(r#"{"task:TSK-001": [[{"tool_calls": [{"input": {}}]}]]}"#),
            "OMOI_SCRIPT: <inline script>: [\"task:TSK-001\"][0][0]: missing field `name`"
        );
        assert_eq!(
            load_error(r#"{"*": [[{"delay_ms": "soon"}]]}"#),
            "OMOI_SCRIPT: <inline script>: [\"*\"][0][0]: invalid type: string \"soon\", expected u64"
        );
    }

    #[test]
    fn load_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("script.json");
        std::fs::write(&path, "{\"explore\": 3}").unwrap();
        assert_eq!(
            ScriptedProvider::load(&path).unwrap_err().to_string(),
            format!(
                "OMOI_SCRIPT: {}: [\"explore\"]: must be an array of attempts",
                path.display()
            )
        );
        let missing = dir.path().join("missing.json");
        let err = ScriptedProvider::load(&missing).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("OMOI_SCRIPT: cannot read {}: ", missing.display())),
            "{err}"
        );
        std::fs::write(&path, SCRIPT).unwrap();
        assert_eq!(
            ScriptedProvider::load(&path)
                .unwrap()
                .sessions
                .keys()
                .collect::<Vec<_>>(),
            vec!["*", "explore"]
        );
    }
}
