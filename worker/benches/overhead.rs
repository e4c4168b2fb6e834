//! Overhead of the worker's own layers, printed as bench figure lines (`scripts/bench.sh`):
//! one provider call against the fake API server on loopback (request built, sent, streamed
//! answer parsed), the time the model proxy of a CLI agent adds to such a call, and the agent
//! loop's own time per turn with an in-memory model.

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
