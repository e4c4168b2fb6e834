//! Overhead of the worker's own layers, printed as bench figure lines (`scripts/bench.sh`):
//! one provider call against the fake API server on loopback (request built, sent, streamed
//! answer parsed), the time the model proxy of a CLI agent adds to such a call, the agent
//! loop's own time per turn with an in-memory model, prompt caching over a 30-turn session
//! (billed ÷ unbilled input, the largest prompt), and per CLI agent (when its binary is named
//! by `OMOI_TEST_CLAUDE_BIN` / `OMOI_TEST_CODEX_BIN`) the time to its first model request and
//! the worker's own time per turn.

// A benchmark harness: a failed setup must stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use omoi_tests::fake_llm::{Reply, Turn};
use omoi_worker::agent::{
    Agent, Limits, NativeAgent, SUBMIT_TOOL, SessionSpec, SubmitHandler, SubmitTool, SubmitVerdict,
    ToolSet,
};
use omoi_worker::cli_agent::proxy::{ModelProxy, ProxyConfig, Wire};
use omoi_worker::config::Secret;
use omoi_worker::events::{Emitter, EventIds};
use omoi_worker::llm::anthropic::AnthropicProvider;
use omoi_worker::llm::openai::OpenAiProvider;
use omoi_worker::llm::scripted::ScriptedProvider;
use omoi_worker::llm::{
    BoxFuture, ChatRequest, HttpProviderConfig, Message, Provider, SessionInfo, ToolSpec,
};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const CALLS: usize = 300;
const TURNS: usize = 200;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        provider_calls().await;
        proxy_overhead().await;
        loop_turns().await;
        caching().await;
        cli_agents().await;
    });
}

fn figure(name: &str, mut micros: Vec<f64>, target_ms: f64) {
    micros.sort_by(f64::total_cmp);
    let at = |q: f64| micros[((micros.len() - 1) as f64 * q).round() as usize] / 1e3;
    println!(
        "{}",
        json!({
            "figure": name, "value": at(0.5), "unit": "ms", "target": target_ms,
            "spread": format!("p10 {:.3} … p90 {:.3} ({} runs)", at(0.1), at(0.9), micros.len()),
        })
    );
}

fn request() -> ChatRequest {
    ChatRequest {
        session: SessionInfo {
            label: "explore".into(),
            attempt: 1,
        },
        system: "You explore a repository. ".repeat(40),
        messages: vec![Message::user_text(
            "List the files, then submit. ".repeat(60),
        )],
        tools: vec![ToolSpec {
            name: "read_file".into(),
            description: "Reads a file.".into(),
            input_schema: json!({"type": "object", "properties": {"path": {"type": "string"}}}),
        }],
        max_tokens: 4096,
    }
}

fn turn() -> Turn {
    Turn::text("Reading the entry point first.")
        .with_tool_call("toolu_1", "read_file", json!({"path": "bin/greet"}))
        .with_usage(1200, 40)
}

fn settings(base_url: String, api_key: &str, model: &str) -> HttpProviderConfig {
    HttpProviderConfig {
        api_key: api_key.into(),
        base_url,
        model: model.into(),
        request_timeout: Duration::from_secs(30),
        max_retries: 0,
        context_window: None,
    }
}

/// Wall time of one streamed call against a fake on loopback: the provider layer plus the
/// fake's own work and two loopback hops, so an upper bound on the provider's overhead.
async fn provider_calls() {
    let replies = (0..CALLS + 10).map(|_| Reply::Turn(turn()));
    let anthropic = omoi_tests::fake_anthropic::FakeAnthropic::start(replies.clone()).await;
    let provider = AnthropicProvider::new(settings(
        anthropic.base_url(),
        omoi_tests::fake_anthropic::API_KEY,
        "claude-sonnet-4-5",
    ))
    .unwrap();
    figure(
        "provider call, Anthropic SSE via fake on loopback",
        time_calls(&provider).await,
        1.0,
    );
    assert_eq!(anthropic.violations(), Vec::<String>::new());

    let openai = omoi_tests::fake_openai::FakeOpenAi::start(replies).await;
    let provider = OpenAiProvider::new(settings(
        openai.base_url(),
        omoi_tests::fake_openai::API_KEY,
        "gpt-4.1",
    ))
    .unwrap();
    figure(
        "provider call, OpenAI SSE via fake on loopback",
        time_calls(&provider).await,
        1.0,
    );
    assert_eq!(openai.violations(), Vec::<String>::new());
}

async fn time_calls(provider: &dyn Provider) -> Vec<f64> {
    let request = request();
    let cancel = CancellationToken::new();
    // Warm the connection pool first: the figure is per call on a kept-alive connection.
    for _ in 0..10 {
        provider.complete(&request, &cancel).await.unwrap();
    }
    let mut sample = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let started = Instant::now();
        provider.complete(&request, &cancel).await.unwrap();
        sample.push(started.elapsed().as_secs_f64() * 1e6);
    }
    sample
}

/// What the model proxy adds to one streamed call: the same Anthropic call straight to the fake
/// and through the proxy (credential checked, key swapped, answer streamed back and metered,
/// one more loopback hop), alternated; the figure is the median of the pairwise differences.
async fn proxy_overhead() {
    let replies = (0..2 * CALLS + 20).map(|_| Reply::Turn(turn()));
    let fake = omoi_tests::fake_anthropic::FakeAnthropic::start(replies).await;
    let proxy = ModelProxy::start(
        ProxyConfig {
            wire: Wire::Anthropic,
            upstream: fake.base_url(),
            key: Some(Secret::new(omoi_tests::fake_anthropic::API_KEY)),
            budget_usd: 1e9,
            price: None,
        },
        None,
    )
    .await
    .unwrap();
    let model = "claude-sonnet-4-5";
    let direct = AnthropicProvider::new(settings(
        fake.base_url(),
        omoi_tests::fake_anthropic::API_KEY,
        model,
    ))
    .unwrap();
    let proxied =
        AnthropicProvider::new(settings(proxy.base_url(), proxy.credential(), model)).unwrap();
    let request = request();
    let cancel = CancellationToken::new();
    for _ in 0..10 {
        direct.complete(&request, &cancel).await.unwrap();
        proxied.complete(&request, &cancel).await.unwrap();
    }
    let mut sample = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let started = Instant::now();
        direct.complete(&request, &cancel).await.unwrap();
        let straight = started.elapsed();
        let started = Instant::now();
        proxied.complete(&request, &cancel).await.unwrap();
        let through = started.elapsed();
        sample.push((through.as_secs_f64() - straight.as_secs_f64()) * 1e6);
    }
    figure(
        "model proxy overhead per streamed call (Anthropic SSE, loopback)",
        sample,
        1.0,
    );
    assert_eq!(fake.violations(), Vec::<String>::new());
    assert_eq!(proxy.calls() as usize, CALLS + 10);
}

/// Never accepts: the session runs its full turn budget.
struct Never;

impl SubmitHandler for Never {
    fn check<'a>(&'a self, _input: &'a serde_json::Value) -> BoxFuture<'a, SubmitVerdict> {
        Box::pin(std::future::ready(SubmitVerdict::Rejected {
            feedback: "again".into(),
        }))
    }
}

/// The loop's own time per turn: an in-memory scripted model whose every turn reads a small
/// file (a different one each time, so no stall), events into a channel.
async fn loop_turns() {
    let workspace = tempfile::tempdir().unwrap();
    let mut turns = Vec::new();
    for n in 0..TURNS {
        let path = format!("f{n}.txt");
        std::fs::write(workspace.path().join(&path), "one line\n").unwrap();
        turns.push(json!({"tool_calls": [{"name": "read_file", "input": {"path": path}}]}));
    }
    let script = ScriptedProvider::from_json(&json!({ "explore": [turns] }).to_string()).unwrap();
    let agent = NativeAgent::new(script);
    let mut sample = Vec::new();
    for _ in 0..5 {
        let (emitter, mut rx) = Emitter::channel(EventIds {
            sandbox_id: "bench".into(),
            spec_id: None,
            task_id: None,
        });
        let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
        let spec = SessionSpec {
            label: "explore".into(),
            attempt: 1,
            system: "You explore.".into(),
            prompt: "Read every file.".into(),
            submit: SubmitTool {
                name: SUBMIT_TOOL.into(),
                description: "Submit.".into(),
                schema: json!({"type": "object"}),
            },
            limits: Limits {
                max_turns: TURNS as u32,
                max_budget_usd: 1e9,
                timeout: Duration::from_secs(600),
                price: None,
            },
            workspace: workspace.path().to_path_buf(),
            tools: ToolSet::read_only(),
            inbox: Default::default(),
        };
        let started = Instant::now();
        agent
            .run_session(spec, &Never, &emitter, &CancellationToken::new())
            .await
            .unwrap();
        sample.push(started.elapsed().as_secs_f64() * 1e6 / TURNS as f64);
        drop(emitter);
        drain.await.unwrap();
    }
    figure(
        "agent loop per turn (in-memory model, one read_file)",
        sample,
        1.0,
    );
}

/// Accepts the submission whatever it holds.
struct Always;

impl SubmitHandler for Always {
    fn check<'a>(&'a self, _input: &'a serde_json::Value) -> BoxFuture<'a, SubmitVerdict> {
        Box::pin(std::future::ready(SubmitVerdict::Accepted))
    }
}

/// Prompt caching over a 30-turn session of realistic size: the native loop with the real
/// system prompt and tool box against the fake Anthropic API metering each prompt through its
/// cache (breakpoints, minimum prefix, lookback as the API's). Each turn reads a different
/// 4 KB file with a sentence of text; the 30th submits. Figures: the input billed with caching
/// (writes 1.25×, reads 0.1×) ÷ the same input without it, and the largest prompt.
async fn caching() {
    const SESSION_TURNS: usize = 30;
    let workspace = tempfile::tempdir().unwrap();
    let mut replies = Vec::new();
    for n in 0..SESSION_TURNS - 1 {
        let path = format!("src/module_{n}.rs");
        let file = workspace.path().join(&path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        let body: String = (0..100)
            .map(|line| format!("    let value_{line} = compute({n}, {line}); // step {line}\n"))
            .collect();
        std::fs::write(&file, format!("pub fn module_{n}() {{\n{body}}}\n")).unwrap();
        replies.push(Reply::Turn(
            Turn::text(format!(
                "Module {n} computes its values step by step; the next module may use them, \
                 so I read it before deciding on the design."
            ))
            .with_tool_call(&format!("toolu_{n}"), "read_file", json!({"path": path}))
            .with_usage(0, 80),
        ));
    }
    replies.push(Reply::Turn(Turn::tool_call(
        "toolu_submit",
        SUBMIT_TOOL,
        json!({"overview": "done"}),
    )));
    let fake = omoi_tests::fake_anthropic::FakeAnthropic::start(replies).await;
    fake.meter_prompts();
    let provider = AnthropicProvider::new(settings(
        fake.base_url(),
        omoi_tests::fake_anthropic::API_KEY,
        "claude-sonnet-4-5",
    ))
    .unwrap();
    let agent = NativeAgent::new(provider);
    let (emitter, mut rx) = Emitter::channel(EventIds {
        sandbox_id: "bench".into(),
        spec_id: None,
        task_id: None,
    });
    let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let phase = omoi_protocol::phase::Phase::Design;
    let spec = SessionSpec {
        label: "design".into(),
        attempt: 1,
        system: omoi_worker::prompts::system(phase),
        prompt: "Design the feature: read the modules under src/ first.".into(),
        submit: SubmitTool {
            name: SUBMIT_TOOL.into(),
            description: "Submit the DESIGN output.".into(),
            schema: serde_json::to_value(schemars::schema_for!(
                omoi_protocol::artifact::DesignOutput
            ))
            .unwrap(),
        },
        limits: Limits {
            max_turns: 40,
            max_budget_usd: 1e9,
            timeout: Duration::from_secs(600),
            price: None,
        },
        workspace: workspace.path().to_path_buf(),
        tools: ToolSet::read_only(),
        inbox: Default::default(),
    };
    agent
        .run_session(spec, &Always, &emitter, &CancellationToken::new())
        .await
        .unwrap();
    drop(emitter);
    drain.await.unwrap();
    assert_eq!(fake.violations(), Vec::<String>::new());
    let usage = fake.prompt_usage();
    assert_eq!(usage.len(), SESSION_TURNS);
    let billed: f64 = usage.iter().map(|u| u.billed()).sum();
    let plain: u64 = usage.iter().map(|u| u.total()).sum();
    let largest = usage.iter().map(|u| u.total()).max().unwrap_or(0);
    println!(
        "{}",
        json!({
            "figure": "native loop, input billed with prompt caching ÷ without (30-turn session)",
            "value": billed / plain as f64, "unit": "ratio", "target": 0.25,
            "spread": format!("{plain} input tokens in all, {:.0} billed (one run, deterministic)", billed),
        })
    );
    println!(
        "{}",
        json!({
            "figure": "native loop, largest prompt of the 30-turn session",
            "value": largest, "unit": "tokens", "target": omoi_worker::llm::pricing::context_window("claude-sonnet-4-5"),
            "spread": format!("first {} tokens, last {} (one run)", usage[0].total(), usage[SESSION_TURNS - 1].total()),
        })
    );
}

/// The CLI binary a figure needs (`OMOI_TEST_CLAUDE_BIN`, `OMOI_TEST_CODEX_BIN`, as the tests
/// take them), or a line on stderr saying the figure is skipped.
fn cli_bin(variable: &str) -> Option<std::path::PathBuf> {
    let bin = std::env::var_os(variable).map(std::path::PathBuf::from);
    if bin.as_ref().is_none_or(|b| !b.is_file()) {
        eprintln!(
            "{variable} is not set: the CLI figures are skipped (scripts/fetch-agent-clis.sh)"
        );
        return None;
    }
    bin
}

/// Per CLI: the time from the start of a session (private directory, gate, proxy, spawn) to the
/// first model request reaching the model API, over sessions that hand in at once; and the
/// worker's own time per turn of that CLI: the proxy's added time on a streamed call of its
/// wire plus the mapping of one turn's output lines onto events.
async fn cli_agents() {
    use omoi_worker::cli_agent::agent::{CliAgent, CliAgentConfig};
    use omoi_worker::cli_agent::command::CliKind;

    for (kind, variable) in [
        (CliKind::ClaudeCode, "OMOI_TEST_CLAUDE_BIN"),
        (CliKind::Codex, "OMOI_TEST_CODEX_BIN"),
    ] {
        let Some(bin) = cli_bin(variable) else {
            continue;
        };
        let runtime_dir = tempfile::tempdir().unwrap();
        let mut sample = Vec::new();
        for _ in 0..5 {
            let workspace = tempfile::tempdir().unwrap();
            let submit = Reply::Turn(Turn::tool_call(
                "call_sub",
                "mcp__omoi__submit",
                json!({"title": "good"}),
            ));
            let (upstream, key, requests): (String, &str, Box<dyn Fn() -> usize + Send>) =
                match kind {
                    CliKind::ClaudeCode => {
                        let fake = omoi_tests::fake_anthropic::FakeAnthropic::start([submit]).await;
                        let url = fake.base_url();
                        (
                            url,
                            omoi_tests::fake_anthropic::API_KEY,
                            Box::new(move || fake.requests().len()),
                        )
                    }
                    CliKind::Codex => {
                        let fake = omoi_tests::fake_responses::FakeResponses::start([submit]).await;
                        let url = fake.base_url();
                        (
                            url,
                            omoi_tests::fake_responses::API_KEY,
                            Box::new(move || fake.requests().len()),
                        )
                    }
                };
            let agent = CliAgent::new(CliAgentConfig {
                kind,
                bin: bin.clone(),
                worker_bin: env!("CARGO_BIN_EXE_omoi-worker").into(),
                model: Some("test-model".into()),
                upstream,
                key: Some(Secret::new(key)),
                runtime_dir: runtime_dir.path().to_path_buf(),
                stall: Duration::from_secs(60),
            });
            let (emitter, mut rx) = Emitter::channel(EventIds {
                sandbox_id: "bench".into(),
                spec_id: None,
                task_id: None,
            });
            let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
            let spec = SessionSpec {
                label: "explore".into(),
                attempt: 1,
                system: "You hand in a title.".into(),
                prompt: "Submit the title.".into(),
                submit: SubmitTool {
                    name: SUBMIT_TOOL.into(),
                    description: "Hand in the title.".into(),
                    schema: json!({"type": "object", "properties": {"title": {"type": "string"}}}),
                },
                limits: Limits {
                    max_turns: 5,
                    max_budget_usd: 1e9,
                    timeout: Duration::from_secs(60),
                    price: None,
                },
                workspace: workspace.path().to_path_buf(),
                tools: ToolSet::read_write(),
                inbox: Default::default(),
            };
            let started = Instant::now();
            let first = async {
                while requests() == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                started.elapsed()
            };
            let cancel = CancellationToken::new();
            let (outcome, first) =
                tokio::join!(agent.run_session(spec, &Always, &emitter, &cancel), first);
            assert!(matches!(
                outcome.unwrap(),
                omoi_worker::agent::SessionOutcome::Submitted { .. }
            ));
            sample.push(first.as_secs_f64() * 1e6);
            drop(emitter);
            drain.await.unwrap();
        }
        figure(
            &format!("{}: session start → first model request", kind.name()),
            sample,
            2000.0,
        );
        per_turn(kind).await;
    }
}

/// The worker's own time per turn of a CLI agent: per sample, the proxy's added time on one
/// streamed call of the CLI's wire (pairwise, direct vs through the proxy) plus mapping the
/// lines of one turn of a recorded session of that CLI.
async fn per_turn(kind: omoi_worker::cli_agent::command::CliKind) {
    use omoi_worker::cli_agent::command::CliKind;
    use omoi_worker::cli_agent::stream::claude::ClaudeStream;
    use omoi_worker::cli_agent::stream::codex::CodexStream;

    let (wire, path, lines, turns): (Wire, &str, &str, usize) = match kind {
        CliKind::ClaudeCode => (
            Wire::Anthropic,
            "/v1/messages",
            include_str!("../src/cli_agent/stream/claude/session.jsonl"),
            4,
        ),
        CliKind::Codex => (
            Wire::OpenAiResponses,
            "/responses",
            include_str!("../src/cli_agent/stream/codex/session.jsonl"),
            3,
        ),
    };
    let replies = (0..2 * CALLS + 20).map(|_| Reply::Turn(turn()));
    // The fake stays up as long as `_fake` lives.
    let (_fake, upstream, key, body): (Box<dyn std::any::Any>, String, &str, serde_json::Value) =
        match kind {
            CliKind::ClaudeCode => {
                let fake = omoi_tests::fake_anthropic::FakeAnthropic::start(replies).await;
                let body = json!({"model": "m", "max_tokens": 1000, "stream": true,
                "system": "You explore. ".repeat(40),
                "messages": [{"role": "user", "content": "List the files, then submit. ".repeat(60)}]});
                let url = fake.base_url();
                (
                    Box::new(fake),
                    url,
                    omoi_tests::fake_anthropic::API_KEY,
                    body,
                )
            }
            CliKind::Codex => {
                let fake = omoi_tests::fake_responses::FakeResponses::start(replies).await;
                let body = json!({"model": "m", "stream": true, "store": false,
                "instructions": "You explore. ".repeat(40),
                "input": [{"type": "message", "role": "user",
                           "content": [{"type": "input_text", "text": "List the files, then submit. ".repeat(60)}]}]});
                let url = fake.base_url();
                (
                    Box::new(fake),
                    url,
                    omoi_tests::fake_responses::API_KEY,
                    body,
                )
            }
        };
    let proxy = ModelProxy::start(
        ProxyConfig {
            wire,
            upstream: upstream.clone(),
            key: Some(Secret::new(key)),
            budget_usd: 1e9,
            price: None,
        },
        None,
    )
    .await
    .unwrap();
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .build()
        .unwrap();
    let call = |base: String, credential: String| {
        let client = client.clone();
        let body = body.clone();
        async move {
            let url = format!("{}{path}", base.trim_end_matches('/'));
            let response = client
                .post(url)
                .header("content-type", "application/json")
                .header("x-api-key", &credential)
                .header("anthropic-version", "2023-06-01")
                .header("authorization", format!("Bearer {credential}"))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert!(response.status().is_success(), "{}", response.status());
            response.bytes().await.unwrap();
        }
    };
    for _ in 0..10 {
        call(upstream.clone(), key.to_string()).await;
        call(proxy.base_url(), proxy.credential().to_string()).await;
    }
    let lines: Vec<&str> = lines.lines().collect();
    let workspace = std::path::Path::new("/work/repo");
    let mut sample = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let started = Instant::now();
        call(upstream.clone(), key.to_string()).await;
        let straight = started.elapsed();
        let started = Instant::now();
        call(proxy.base_url(), proxy.credential().to_string()).await;
        let through = started.elapsed();
        let started = Instant::now();
        let mapped = match kind {
            CliKind::ClaudeCode => {
                let mut stream = ClaudeStream::new(workspace);
                lines.iter().map(|l| stream.line(l).len()).sum::<usize>()
            }
            CliKind::Codex => {
                let mut stream = CodexStream::new(workspace);
                lines.iter().map(|l| stream.line(l).len()).sum::<usize>()
            }
        };
        std::hint::black_box(mapped);
        let mapping = started.elapsed() / turns as u32;
        sample.push((through.as_secs_f64() - straight.as_secs_f64() + mapping.as_secs_f64()) * 1e6);
    }
    figure(
        &format!(
            "{}: worker's own time per turn (proxy + stream mapping)",
            kind.name()
        ),
        sample,
        1.0,
    );
}
