//! Whole worker runs with `OMOI_LLM=claude-code` and `OMOI_LLM=codex`: the built `omoi-worker`
//! starts the real CLI per phase, against a wire-true fake model behind its model proxy; the
//! CLI hands each phase's output in through `omoi-worker mcp`. Also the config errors of the
//! two agents.

use std::path::Path;
use std::process::{Command, Stdio};

use omoi_protocol::event::{Envelope, Event};
use omoi_tests::fake_anthropic::FakeAnthropic;
use omoi_tests::fake_llm::{Reply, Turn};
use omoi_tests::fake_responses::FakeResponses;
use omoi_tests::fixtures;
use pretty_assertions::assert_eq;

use super::cli_agents::cli_binary;

/// The built worker with a clean environment and `vars`.
fn worker(vars: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_omoi-worker"));
    command
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("OMOI_LOG", "warn")
        .envs(vars.iter().copied())
        .stdin(Stdio::null());
    command
}

/// A full spec's turns: each phase's session submits the sample output at once.
fn spec_turns() -> Vec<Reply> {
    fixtures::sample_outputs()
        .into_iter()
        .enumerate()
        .map(|(n, (phase, output))| {
            Reply::Turn(Turn::text(format!("Handing in {phase}.")).with_tool_call(
                &format!("call_{n}"),
                "mcp__omoi__submit",
                output,
            ))
        })
        .collect()
}

/// Runs a whole spec on a copy of the sample repository; returns the exit code and events.
fn run_spec(workspace: &Path, vars: &[(&str, &str)]) -> (Option<i32>, Vec<Envelope>, String) {
    let (title, description) = fixtures::sample_request();
    let mut all = vec![
        ("SPEC_ID", "cli-spec"),
        ("SPEC_PHASE", "all"),
        ("SPEC_TITLE", title.as_str()),
        ("SPEC_DESCRIPTION", description.as_str()),
        ("WORKSPACE", workspace.to_str().unwrap()),
        ("MODEL", "claude-test-model"),
        ("MAX_ATTEMPTS", "1"),
    ];
    all.extend_from_slice(vars);
    let output = worker(&all).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let events = stdout
        .lines()
        .map(|line| serde_json::from_str::<Envelope>(line).unwrap())
        .collect();
    (
        output.status.code(),
        events,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The phases completed, and whether the run ended in `agent.completed` with success.
fn outcome(events: &[Envelope]) -> (Vec<String>, bool) {
    let completed = events
        .iter()
        .filter_map(|e| match &e.event {
            Event::SpecPhaseCompleted(c) => Some(c.phase.to_string()),
            _ => None,
        })
        .collect();
    let success = matches!(
        events.last().map(|e| &e.event),
        Some(Event::AgentCompleted(done)) if done.success
    );
    (completed, success)
}

/// The tools the agent called, in order.
fn tools_used(events: &[Envelope]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.event {
            Event::AgentToolUse(t) => Some(t.tool.clone()),
            _ => None,
        })
        .collect()
}

fn all_phases() -> Vec<String> {
    ["explore", "requirements", "design", "tasks", "sync"]
        .map(str::to_string)
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spec_with_claude_code() {
    let Some(bin) = cli_binary("OMOI_TEST_CLAUDE_BIN") else {
        return;
    };
    let fake = FakeAnthropic::start(spec_turns()).await;
    let dir = tempfile::tempdir().unwrap();
    let workspace = fixtures::copy_sample_repo(&dir.path().join("repo"));
    let base = fake.base_url();
    let (code, events, stderr) = tokio::task::spawn_blocking(move || {
        run_spec(
            &workspace,
            &[
                ("OMOI_LLM", "claude-code"),
                ("CLAUDE_BIN", bin.to_str().unwrap()),
                ("ANTHROPIC_API_KEY", omoi_tests::fake_anthropic::API_KEY),
                ("ANTHROPIC_BASE_URL", &base),
            ],
        )
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(fake.violations(), Vec::<String>::new());
    assert_eq!(outcome(&events), (all_phases(), true));
    assert_eq!(tools_used(&events), vec!["mcp__omoi__submit"; 4]);
    let usage = events
        .iter()
        .filter(|e| matches!(e.event, Event::AgentUsage(_)))
        .count();
    assert_eq!(usage, 4);
    // The CLI had the proxy's credential, never the key: every request the fake saw carries
    // the key the proxy added, and the CLI's own requests went to the proxy.
    for request in fake.requests() {
        assert_eq!(
            request.headers.get("x-api-key").map(String::as_str),
            Some(omoi_tests::fake_anthropic::API_KEY)
        );
        assert!(
            request.headers["user-agent"].starts_with("claude-cli/"),
            "{:?}",
            request.headers
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spec_with_codex() {
    let Some(bin) = cli_binary("OMOI_TEST_CODEX_BIN") else {
        return;
    };
    let fake = FakeResponses::start(spec_turns()).await;
    let dir = tempfile::tempdir().unwrap();
    let workspace = fixtures::copy_sample_repo(&dir.path().join("repo"));
    let base = fake.base_url();
    let (code, events, stderr) = tokio::task::spawn_blocking(move || {
        run_spec(
            &workspace,
            &[
                ("OMOI_LLM", "codex"),
                ("CODEX_BIN", bin.to_str().unwrap()),
                ("OPENAI_API_KEY", omoi_tests::fake_responses::API_KEY),
                ("OPENAI_BASE_URL", &base),
            ],
        )
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(fake.violations(), Vec::<String>::new());
    assert_eq!(outcome(&events), (all_phases(), true));
    assert_eq!(tools_used(&events), vec!["mcp__omoi__submit"; 4]);
    for request in fake.requests() {
        assert!(
            request.headers["user-agent"].starts_with("codex_exec/"),
            "{:?}",
            request.headers
        );
    }
}

/// Exit 2 and the one line on stderr.
fn config_error(vars: &[(&str, &str)]) -> String {
    let mut all = vec![
        ("SPEC_ID", "s"),
        ("SPEC_PHASE", "all"),
        ("SPEC_TITLE", "t"),
        ("WORKSPACE", "/tmp"),
    ];
    all.extend_from_slice(vars);
    let output = worker(&all).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    String::from_utf8_lossy(&output.stderr).trim().to_string()
}

#[test]
fn a_missing_or_unusable_cli_is_a_config_error_naming_its_variable() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain");
    std::fs::write(&plain, "not a program").unwrap();
    let garbage = dir.path().join("garbage");
    std::fs::write(&garbage, [0u8, 1, 2, 3]).unwrap();
    std::fs::set_permissions(&garbage, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (plain, garbage) = (plain.to_str().unwrap(), garbage.to_str().unwrap());
    assert_eq!(
        config_error(&[
            ("OMOI_LLM", "claude-code"),
            ("CLAUDE_BIN", "/nonexistent/claude"),
            ("ANTHROPIC_API_KEY", "k"),
        ]),
        "omoi-worker: CLAUDE_BIN: /nonexistent/claude is not an executable file"
    );
    assert_eq!(
        config_error(&[
            ("OMOI_LLM", "codex"),
            ("CODEX_BIN", plain),
            ("OPENAI_API_KEY", "k")
        ]),
        format!("omoi-worker: CODEX_BIN: {plain} is not an executable file")
    );
    // Executable but not startable: found when the first session starts.
    assert_eq!(
        config_error(&[
            ("OMOI_LLM", "codex"),
            ("CODEX_BIN", garbage),
            ("OPENAI_API_KEY", "k")
        ]),
        format!("omoi-worker: CODEX_BIN: cannot start {garbage}: Exec format error (os error 8)")
    );
    assert_eq!(
        config_error(&[
            ("OMOI_LLM", "codex"),
            ("OPENAI_API_KEY", "k"),
            ("PATH", "/nonexistent")
        ]),
        "omoi-worker: CODEX_BIN: not set and no `codex` on PATH; name the binary"
    );
    assert_eq!(
        config_error(&[("OMOI_LLM", "claude-code"), ("CLAUDE_BIN", "/bin/sh")]),
        "omoi-worker: ANTHROPIC_API_KEY: required with OMOI_LLM=claude-code"
    );
}
