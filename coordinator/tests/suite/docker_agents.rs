//! Claude Code in a container: the docker provider runs a spec's sandbox from
//! `omoi-sandbox-agents` (the sandbox image with the CLIs, `scripts/build-images.sh
//! --with-agents`), the worker in it drives the real Claude Code against a wire-true fake model on
//! the sandbox network's gateway, and each phase is handed in through the gate's MCP tool.
//! Skipped without the Engine or the image, unless `CI=true` or `OMOI_TEST_DOCKER=1`.

use std::time::Duration;

use omoi_tests::fake_anthropic::{API_KEY, FakeAnthropic};
use omoi_tests::fake_llm::{Reply, Turn};
use pretty_assertions::assert_eq;
use reqwest::StatusCode;
use serde_json::json;

use super::common::docker::{GatewayGit, Sandboxes, all_completed, detail, phase_summary};
use super::common::{TestServer, eventually, sqlite};

/// The image `scripts/build-images.sh --with-agents` tags.
const AGENTS_IMAGE: &str = "omoi-sandbox-agents:latest";

/// Each phase's session hands in the sample output with one call of the gate's tool.
fn spec_turns() -> Vec<Reply> {
    omoi_tests::fixtures::sample_outputs()
        .into_iter()
        .enumerate()
        .map(|(n, (phase, output))| {
            Reply::Turn(Turn::text(format!("Handing in {phase}.")).with_tool_call(
                &format!("toolu_{n}"),
                "mcp__omoi__submit",
                output,
            ))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spec_runs_with_claude_code_inside_a_docker_sandbox() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(sandboxes) = Sandboxes::start(&tmp.path().join("data"), |c| {
        c.image = AGENTS_IMAGE.to_string();
    })
    .await
    else {
        return;
    };
    let gateway = sandboxes.provider.gateway();
    let fake = FakeAnthropic::start_on(gateway, spec_turns()).await;
    let git = GatewayGit::start(gateway, &sandboxes.data.join("git"));
    let listener = tokio::net::TcpListener::bind((gateway, 0)).await.unwrap();
    let db = sqlite();
    let base_url = fake.base_url();
    let server = TestServer::start_on(listener, &db, sandboxes.provider.clone(), |s| {
        s.heartbeat_secs = 2;
        for (name, value) in [
            ("OMOI_LLM", "claude-code"),
            ("ANTHROPIC_API_KEY", API_KEY),
            ("ANTHROPIC_BASE_URL", base_url.as_str()),
            ("MODEL", "claude-test-model"),
            ("MAX_ATTEMPTS", "1"),
        ] {
            s.worker_env.insert(name.into(), value.into());
        }
    })
    .await;
    let (_, api) = server.user("ada").await;
    let (status, project) = api
        .post(
            "/projects",
            &json!({"name": "sample", "repo_url": git.url()}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{project}");
    let (title, description) = omoi_tests::fixtures::sample_request();
    // Stopped after SYNC: the spec's phases are what this test is about, not its tasks.
    let (status, spec) = api
        .post(
            "/specs/launch",
            &json!({"project_id": project["id"], "title": title, "description": description,
                    "stop_after": "sync"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{spec}");
    let spec_id = spec["id"].as_str().unwrap().to_string();

    eventually(
        Duration::from_secs(300),
        "every phase to complete",
        || async {
            let d = detail(&api, &spec_id).await;
            assert!(
                d["status"] != "failed",
                "the spec failed: {}; the model saw {} requests, violations {:?}",
                d["error"],
                fake.requests().len(),
                fake.violations()
            );
            d["phases"].as_array().is_some_and(|p| p.len() == 5)
                && phase_summary(&d) == all_completed()
        },
    )
    .await;
    let done = detail(&api, &spec_id).await;
    assert_eq!(phase_summary(&done), all_completed());

    // The model was called by Claude Code, through the worker's proxy, which added the key.
    assert_eq!(fake.violations(), Vec::<String>::new());
    let requests = fake.requests();
    assert_eq!(requests.len(), 4);
    for request in &requests {
        assert!(
            request.headers["user-agent"].starts_with("claude-cli/"),
            "{:?}",
            request.headers
        );
        assert_eq!(
            request.headers.get("x-api-key").map(String::as_str),
            Some(API_KEY)
        );
    }
    // The stored events say what Claude Code did: the gate's tool, once per phase, and the
    // usage the proxy counted.
    let (_, page) = api
        .get(&format!("/specs/{spec_id}/events?limit=1000"))
        .await;
    let events = page["events"].as_array().unwrap();
    let of_type = |kind: &str| {
        events
            .iter()
            .filter(|e| e["event"]["type"] == kind)
            .collect::<Vec<_>>()
    };
    let tools: Vec<&str> = of_type("agent.tool_use")
        .iter()
        .map(|e| e["event"]["data"]["tool"].as_str().unwrap())
        .collect();
    assert_eq!(tools, vec!["mcp__omoi__submit"; 4]);
    assert_eq!(of_type("agent.usage").len(), 4);

    server.stop().await;
    sandboxes.close_and_assert_clean().await;
}
