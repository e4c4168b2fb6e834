//! Integration tests: the Anthropic and OpenAI providers against fake servers that speak the
//! real wire formats (JSON and SSE) and check every request. Time is paused: retry waits and
//! stalls pass in virtual time.

// The helpers below run inside tests: a failed setup must fail the test, loudly.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use omoi_tests::fake_anthropic::{self, FakeAnthropic};
use omoi_tests::fake_llm::{RecordedRequest, Reply, Turn};
use omoi_tests::fake_openai::{self, FakeOpenAi};
use omoi_worker::llm::anthropic::AnthropicProvider;
use omoi_worker::llm::http::CallOptions;
use omoi_worker::llm::openai::OpenAiProvider;
use omoi_worker::llm::retry::RetryPolicy;
use omoi_worker::llm::{
    ChatRequest, ChatResponse, ContentBlock, HttpProviderConfig, LlmError, Message, Provider, Role,
    SessionInfo, StopReason, TokenUsage, ToolSpec,
};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const MODEL: &str = "test-model";
const IDLE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Api {
    Anthropic,
    OpenAi,
}

enum Fake {
    Anthropic(FakeAnthropic),
    OpenAi(FakeOpenAi),
}

impl Fake {
    fn requests(&self) -> Vec<RecordedRequest> {
        match self {
            Fake::Anthropic(fake) => fake.requests(),
            Fake::OpenAi(fake) => fake.requests(),
        }
    }

    fn violations(&self) -> Vec<String> {
        match self {
            Fake::Anthropic(fake) => fake.violations(),
            Fake::OpenAi(fake) => fake.violations(),
        }
    }
}

fn options(stream: bool) -> CallOptions {
    CallOptions {
        retry: RetryPolicy {
            max_retries: 3,
            min_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(60),
        },
        idle_timeout: IDLE,
        stream,
    }
}

async fn setup(api: Api, replies: Vec<Reply>, options: CallOptions) -> (Fake, Box<dyn Provider>) {
    let config = |api_key: &str, base_url: String| HttpProviderConfig {
        api_key: api_key.to_string(),
        base_url,
        model: MODEL.to_string(),
        request_timeout: Duration::from_secs(600),
        max_retries: 3,
        context_window: None,
    };
    match api {
        Api::Anthropic => {
            let fake = FakeAnthropic::start(replies).await;
            let provider = AnthropicProvider::new(config(fake_anthropic::API_KEY, fake.base_url()))
                .unwrap()
                .with_options(options);
            (Fake::Anthropic(fake), Box::new(provider))
        }
        Api::OpenAi => {
            let fake = FakeOpenAi::start(replies).await;
            let provider = OpenAiProvider::new(config(fake_openai::API_KEY, fake.base_url()))
                .unwrap()
                .with_options(options);
            (Fake::OpenAi(fake), Box::new(provider))
        }
    }
}

fn tools() -> Vec<ToolSpec> {
    vec![
        ToolSpec {
            name: "read_file".into(),
            description: "Reads a file.".into(),
            input_schema: json!({"type": "object", "properties": {"path": {"type": "string"}},
                                 "required": ["path"]}),
        },
        ToolSpec {
            name: "write_file".into(),
            description: "Writes a file.".into(),
            input_schema: json!({"type": "object", "properties": {
                "path": {"type": "string"}, "content": {"type": "string"}},
                "required": ["path", "content"]}),
        },
    ]
}

fn request(messages: Vec<Message>) -> ChatRequest {
    ChatRequest {
        session: SessionInfo {
            label: "explore".into(),
            attempt: 1,
        },
        system: "You are a careful engineer.".into(),
        messages,
        tools: tools(),
        max_tokens: 4096,
    }
}

fn simple_request() -> ChatRequest {
    request(vec![Message::user_text("Add a greeting.")])
}

fn text_response(text: &str, input_tokens: u64, output_tokens: u64) -> ChatResponse {
    ChatResponse {
        content: vec![ContentBlock::Text { text: text.into() }],
        stop_reason: StopReason::EndTurn,
        usage: TokenUsage {
            input_tokens,
            output_tokens,
            ..TokenUsage::default()
        },
        model: MODEL.into(),
    }
}

async fn complete(
    provider: &dyn Provider,
    request: &ChatRequest,
) -> Result<ChatResponse, LlmError> {
    provider.complete(request, &CancellationToken::new()).await
}

/// Runs one test body for each provider, and for each also checks that the fake saw nothing
/// the real API would reject.
macro_rules! for_each_api {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(start_paused = true)]
                async fn anthropic() {
                    super::$name(super::Api::Anthropic).await;
                }

                #[tokio::test(start_paused = true)]
                async fn openai() {
                    super::$name(super::Api::OpenAi).await;
                }
            }
        )*
    };
}

for_each_api!(
    streamed_text_turn_with_usage,
    json_text_turn,
    streamed_tool_calls_are_assembled,
    json_tool_calls,
    history_maps_to_the_wire_format,
    rate_limit_then_success_honours_retry_after,
    server_errors_then_success_back_off,
    bad_request_is_an_api_error_with_its_message,
    retries_end_with_the_last_error,
    stalled_stream_times_out_and_is_retried,
    stalled_json_answer_times_out_and_is_retried,
    malformed_tool_arguments_arrive_as_a_string,
    empty_answer_and_truncation,
    cancellation_aborts_a_stalled_call,
    cancellation_aborts_a_retry_wait,
);

async fn streamed_text_turn_with_usage(api: Api) {
    let text = "Hello, world! This text arrives in many small deltas, ünïcödé included.";
    let (fake, provider) = setup(
        api,
        vec![Reply::Turn(Turn::text(text).with_usage(1234, 56))],
        options(true),
    )
    .await;
    let response = complete(provider.as_ref(), &simple_request()).await;
    assert_eq!(response, Ok(text_response(text, 1234, 56)));
    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].body["stream"], json!(true));
    assert_eq!(fake.violations(), Vec::<String>::new());
}

async fn json_text_turn(api: Api) {
    let (fake, provider) = setup(
        api,
        vec![Reply::Turn(Turn::text("Whole answer.").with_usage(10, 3))],
        options(false),
    )
    .await;
    let response = complete(provider.as_ref(), &simple_request()).await;
    assert_eq!(response, Ok(text_response("Whole answer.", 10, 3)));
    let body = &fake.requests()[0].body;
    assert_eq!(body["stream"], json!(false));
    assert_eq!(body.get("stream_options"), None);
    assert_eq!(fake.violations(), Vec::<String>::new());
}

fn two_calls_turn() -> Turn {
    Turn::text("Let me look.")
        .with_tool_call("call_a", "read_file", json!({"path": "src/main.rs"}))
        .with_tool_call(
            "call_b",
            "write_file",
            json!({"path": "notes/plan.md", "content": "# Plan\n\n- step \"one\"\n"}),
        )
        .with_usage(300, 42)
}

fn two_calls_response() -> ChatResponse {
    ChatResponse {
        content: vec![
            ContentBlock::Text {
                text: "Let me look.".into(),
            },
            ContentBlock::ToolUse {
                id: "call_a".into(),
                name: "read_file".into(),
                input: json!({"path": "src/main.rs"}),
            },
            ContentBlock::ToolUse {
                id: "call_b".into(),
                name: "write_file".into(),
                input: json!({"path": "notes/plan.md", "content": "# Plan\n\n- step \"one\"\n"}),
            },
        ],
        stop_reason: StopReason::ToolUse,
        usage: TokenUsage {
            input_tokens: 300,
            output_tokens: 42,
            ..TokenUsage::default()
        },
        model: MODEL.into(),
    }
}

async fn streamed_tool_calls_are_assembled(api: Api) {
    let (fake, provider) = setup(api, vec![Reply::Turn(two_calls_turn())], options(true)).await;
    let response = complete(provider.as_ref(), &simple_request()).await;
    assert_eq!(response, Ok(two_calls_response()));
    assert_eq!(fake.violations(), Vec::<String>::new());
}

async fn json_tool_calls(api: Api) {
    let (fake, provider) = setup(api, vec![Reply::Turn(two_calls_turn())], options(false)).await;
    let response = complete(provider.as_ref(), &simple_request()).await;
    assert_eq!(response, Ok(two_calls_response()));
    assert_eq!(fake.violations(), Vec::<String>::new());
}

/// A history with text, two tool calls (one with unparsable input), their results (one an
/// error), an injected user message and an empty assistant answer.
fn history() -> Vec<Message> {
    vec![
        Message::user_text("Add a greeting."),
        Message {
            role: Role::Assistant,
            content: vec![
                ContentBlock::Text {
                    text: "I will look first.".into(),
                },
                ContentBlock::ToolUse {
                    id: "call_1".into(),
                    name: "read_file".into(),
                    input: json!({"path": "src/main.rs"}),
                },
                ContentBlock::ToolUse {
                    id: "call_2".into(),
                    name: "write_file".into(),
                    input: json!("{\"path\": "),
                },
            ],
        },
        Message {
            role: Role::User,
            content: vec![
                ContentBlock::ToolResult {
                    tool_use_id: "call_1".into(),
                    content: "fn main() {}".into(),
                    is_error: false,
                },
                ContentBlock::ToolResult {
                    tool_use_id: "call_2".into(),
                    content: "the input is not valid JSON".into(),
                    is_error: true,
                },
            ],
        },
        Message {
            role: Role::Assistant,
            content: vec![],
        },
        Message::user_text("Please also add a test."),
    ]
}

fn expected_body(api: Api) -> Value {
    let read_schema = json!({"type": "object", "properties": {"path": {"type": "string"}},
                             "required": ["path"]});
    let write_schema = json!({"type": "object", "properties": {
        "path": {"type": "string"}, "content": {"type": "string"}},
        "required": ["path", "content"]});
    match api {
        Api::Anthropic => json!({
            "model": MODEL,
            "max_tokens": 4096,
            "system": [{"type": "text", "text": "You are a careful engineer.",
                        "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "Add a greeting."}]},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "I will look first."},
                    {"type": "tool_use", "id": "call_1", "name": "read_file",
                     "input": {"path": "src/main.rs"}},
                    {"type": "tool_use", "id": "call_2", "name": "write_file", "input": {}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "fn main() {}"},
                    {"type": "tool_result", "tool_use_id": "call_2",
                     "content": "the input is not valid JSON", "is_error": true},
                    {"type": "text", "text": "Please also add a test.",
                     "cache_control": {"type": "ephemeral"}}
                ]}
            ],
            "tools": [
                {"name": "read_file", "description": "Reads a file.", "input_schema": read_schema},
                {"name": "write_file", "description": "Writes a file.", "input_schema": write_schema,
                 "cache_control": {"type": "ephemeral"}}
            ],
            "stream": true
        }),
        Api::OpenAi => json!({
            "model": MODEL,
            "messages": [
                {"role": "system", "content": "You are a careful engineer."},
                {"role": "user", "content": "Add a greeting."},
                {"role": "assistant", "content": "I will look first.", "tool_calls": [
                    {"id": "call_1", "type": "function",
                     "function": {"name": "read_file", "arguments": "{\"path\":\"src/main.rs\"}"}},
                    {"id": "call_2", "type": "function",
                     "function": {"name": "write_file", "arguments": "{}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "fn main() {}"},
                {"role": "tool", "tool_call_id": "call_2",
                 "content": "Error: the input is not valid JSON"},
                {"role": "user", "content": "Please also add a test."}
            ],
            "tools": [
                {"type": "function", "function": {"name": "read_file",
                    "description": "Reads a file.", "parameters": read_schema}},
                {"type": "function", "function": {"name": "write_file",
                    "description": "Writes a file.", "parameters": write_schema}}
            ],
            "max_tokens": 4096,
            "stream": true,
            "stream_options": {"include_usage": true}
        }),
    }
}

async fn history_maps_to_the_wire_format(api: Api) {
    let (fake, provider) = setup(api, vec![Reply::Turn(Turn::text("Done."))], options(true)).await;
    let response = complete(provider.as_ref(), &request(history())).await;
    assert!(response.is_ok(), "{response:?}");
    let requests = fake.requests();
    assert_eq!(requests[0].body, expected_body(api));
    match api {
        Api::Anthropic => {
            assert_eq!(requests[0].path, "/v1/messages");
            assert_eq!(requests[0].headers["x-api-key"], fake_anthropic::API_KEY);
            assert_eq!(requests[0].headers["anthropic-version"], "2023-06-01");
        }
        Api::OpenAi => {
            assert_eq!(requests[0].path, "/v1/chat/completions");
            let bearer = format!("Bearer {}", fake_openai::API_KEY);
            assert_eq!(requests[0].headers["authorization"], bearer);
        }
    }
    assert_eq!(fake.violations(), Vec::<String>::new());
}

async fn rate_limit_then_success_honours_retry_after(api: Api) {
    let replies = vec![
        Reply::RateLimited {
            retry_after: "7".into(),
        },
        Reply::Turn(Turn::text("After the wait.").with_usage(5, 4)),
    ];
    let (fake, provider) = setup(api, replies, options(true)).await;
    let start = Instant::now();
    let response = complete(provider.as_ref(), &simple_request()).await;
    let waited = start.elapsed();
    assert_eq!(response, Ok(text_response("After the wait.", 5, 4)));
    assert!(
        waited >= Duration::from_secs(7) && waited < Duration::from_secs(8),
        "{waited:?}"
    );
    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].body, requests[1].body);
    assert_eq!(fake.violations(), Vec::<String>::new());
}

async fn server_errors_then_success_back_off(api: Api) {
    let replies = vec![
        Reply::ServerError { status: 500 },
        Reply::ServerError { status: 529 },
        Reply::Turn(Turn::text("Recovered.").with_usage(5, 2)),
    ];
    let (fake, provider) = setup(api, replies, options(true)).await;
    let start = Instant::now();
    let response = complete(provider.as_ref(), &simple_request()).await;
    let waited = start.elapsed();
    assert_eq!(response, Ok(text_response("Recovered.", 5, 2)));
    // Backoff 1 s then 2 s, each with up to as much jitter again.
    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_secs(6),
        "{waited:?}"
    );
    assert_eq!(fake.requests().len(), 3);
    assert_eq!(fake.violations(), Vec::<String>::new());
}

async fn bad_request_is_an_api_error_with_its_message(api: Api) {
    let message = "max_tokens: 100000 > 64000, which is the maximum allowed";
    let replies = vec![
        Reply::BadRequest {
            message: message.into(),
        },
        Reply::Turn(Turn::text("never sent")),
    ];
    let (fake, provider) = setup(api, replies, options(true)).await;
    let response = complete(provider.as_ref(), &simple_request()).await;
    assert_eq!(
        response,
        Err(LlmError::Api {
            status: 400,
            message: message.into()
        })
    );
    assert_eq!(fake.requests().len(), 1);
    assert_eq!(fake.violations(), Vec::<String>::new());
}

async fn retries_end_with_the_last_error(api: Api) {
    let replies = vec![Reply::ServerError { status: 503 }; 4];
    let (fake, provider) = setup(api, replies, options(true)).await;
    let response = complete(provider.as_ref(), &simple_request()).await;
    let message = match api {
        Api::Anthropic => "Internal server error",
        Api::OpenAi => "The server had an error while processing your request. Sorry about that!",
    };
    assert_eq!(
        response,
        Err(LlmError::Server {
            status: 503,
            message: message.into()
        })
    );
    assert_eq!(fake.requests().len(), 4);
    assert_eq!(fake.violations(), Vec::<String>::new());
}

async fn stalled_stream_times_out_and_is_retried(api: Api) {
    let replies = vec![
        Reply::Stall {
            turn: Turn::text("This answer stops half way."),
            events: 3,
        },
        Reply::Turn(Turn::text("Second try.").with_usage(8, 2)),
    ];
    let (fake, provider) = setup(api, replies, options(true)).await;
    let start = Instant::now();
    let response = complete(provider.as_ref(), &simple_request()).await;
    let waited = start.elapsed();
    assert_eq!(response, Ok(text_response("Second try.", 8, 2)));
    // The idle limit, then a backoff of 1–2 s.
    assert!(waited >= IDLE + Duration::from_secs(1), "{waited:?}");
    assert!(waited < IDLE + Duration::from_secs(2), "{waited:?}");
    assert_eq!(fake.requests().len(), 2);
    assert_eq!(fake.violations(), Vec::<String>::new());
}

async fn stalled_json_answer_times_out_and_is_retried(api: Api) {
    let replies = vec![
        Reply::Stall {
            turn: Turn::text("unused"),
            events: 0,
        },
        Reply::Turn(Turn::text("Second try.").with_usage(8, 2)),
    ];
    let (fake, provider) = setup(api, replies, options(false)).await;
    let response = complete(provider.as_ref(), &simple_request()).await;
    assert_eq!(response, Ok(text_response("Second try.", 8, 2)));
    assert_eq!(fake.requests().len(), 2);
    assert_eq!(fake.violations(), Vec::<String>::new());
}

async fn malformed_tool_arguments_arrive_as_a_string(api: Api) {
    let raw = "{\"path\": \"a.txt\", \"content\": ";
    let turn = Turn::empty().with_raw_tool_call("call_x", "write_file", raw);
    let (fake, provider) = setup(api, vec![Reply::Turn(turn)], options(true)).await;
    let response = complete(provider.as_ref(), &simple_request())
        .await
        .unwrap();
    assert_eq!(
        response.content,
        vec![ContentBlock::ToolUse {
            id: "call_x".into(),
            name: "write_file".into(),
            input: Value::String(raw.into()),
        }]
    );
    assert_eq!(response.stop_reason, StopReason::ToolUse);
    assert_eq!(fake.violations(), Vec::<String>::new());
}

async fn empty_answer_and_truncation(api: Api) {
    let replies = vec![
        Reply::Turn(Turn::empty().with_usage(9, 0)),
        Reply::Turn(Turn::text("Cut sho").with_usage(9, 4096).truncated()),
    ];
    let (fake, provider) = setup(api, replies, options(true)).await;
    let empty = complete(provider.as_ref(), &simple_request()).await;
    assert_eq!(
        empty,
        Ok(ChatResponse {
            content: vec![],
            stop_reason: StopReason::EndTurn,
            usage: TokenUsage {
                input_tokens: 9,
                output_tokens: 0,
                ..TokenUsage::default()
            },
            model: MODEL.into(),
        })
    );
    let cut = complete(provider.as_ref(), &simple_request())
        .await
        .unwrap();
    assert_eq!(cut.stop_reason, StopReason::MaxTokens);
    assert_eq!(fake.violations(), Vec::<String>::new());
}

async fn cancellation_aborts_a_stalled_call(api: Api) {
    let replies = vec![Reply::Stall {
        turn: Turn::text("Never finished."),
        events: 2,
    }];
    let (fake, provider) = setup(api, replies, options(true)).await;
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        trigger.cancel();
    });
    let start = Instant::now();
    let response = provider.complete(&simple_request(), &cancel).await;
    assert_eq!(response, Err(LlmError::Cancelled));
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    assert_eq!(fake.requests().len(), 1);
}

async fn cancellation_aborts_a_retry_wait(api: Api) {
    let replies = vec![
        Reply::RateLimited {
            retry_after: "50".into(),
        },
        Reply::Turn(Turn::text("never asked for")),
    ];
    let (fake, provider) = setup(api, replies, options(true)).await;
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        trigger.cancel();
    });
    let response = provider.complete(&simple_request(), &cancel).await;
    assert_eq!(response, Err(LlmError::Cancelled));
    assert_eq!(fake.requests().len(), 1);
}
