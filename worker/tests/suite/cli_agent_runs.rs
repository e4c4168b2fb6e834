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

use super::cli_agents::{claude_vars, cli_binary, codex_vars};

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
pub(super) fn tools_used(events: &[Envelope]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.event {
            Event::AgentToolUse(t) => Some(t.tool.clone()),
            _ => None,
        })
        .collect()
}

/// Runs a spec on a fresh copy of the sample repository, off the async runtime.
async fn spec_on_sample(vars: Vec<(&'static str, String)>) -> (Option<i32>, Vec<Envelope>, String) {
    let dir = tempfile::tempdir().unwrap();
    let workspace = fixtures::copy_sample_repo(&dir.path().join("repo"));
    tokio::task::spawn_blocking(move || {
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        run_spec(&workspace, &vars)
    })
    .await
    .unwrap()
}

/// A whole spec passed, each phase handed in with one call of the gate's tool.
fn assert_full_spec(code: Option<i32>, events: &[Envelope], stderr: &str) {
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(outcome(events), (all_phases(), true));
    assert_eq!(tools_used(events), vec!["mcp__omoi__submit"; 4]);
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
    let (code, events, stderr) = spec_on_sample(claude_vars(&bin, fake.base_url())).await;
    assert_full_spec(code, &events, &stderr);
    assert_eq!(fake.violations(), Vec::<String>::new());
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
    let (code, events, stderr) = spec_on_sample(codex_vars(&bin, fake.base_url())).await;
    assert_full_spec(code, &events, &stderr);
    assert_eq!(fake.violations(), Vec::<String>::new());
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
    let claude = [
        ("OMOI_LLM", "claude-code"),
        ("CLAUDE_BIN", "/bin/sh"),
        ("ANTHROPIC_API_KEY", "k"),
    ];
    for (stall, problem) in [
        ("soon", "\"soon\" is not a whole number"),
        ("0", "0 is outside 1..=86400"),
        ("-5", "\"-5\" is not a whole number"),
        (
            "99999999999999999999999",
            "\"99999999999999999999999\" is not a whole number",
        ),
    ] {
        let mut vars = claude.to_vec();
        vars.push(("OMOI_STALL_SECS", stall));
        assert_eq!(
            config_error(&vars),
            format!("omoi-worker: OMOI_STALL_SECS: {problem}")
        );
    }
}

/// Runs the explore phase only with Claude Code against `replies`; returns the exit code, the
/// events, stderr and the fake.
async fn explore_with_claude(
    replies: Vec<Reply>,
    vars: &[(&'static str, &'static str)],
) -> Option<(Option<i32>, Vec<Envelope>, String, FakeAnthropic)> {
    let bin = cli_binary("OMOI_TEST_CLAUDE_BIN")?;
    let fake = FakeAnthropic::start(replies).await;
    let mut all = claude_vars(&bin, fake.base_url());
    all.push(("SPEC_STOP_AFTER", "explore".to_string()));
    all.extend(vars.iter().map(|(k, v)| (*k, v.to_string())));
    let (code, events, stderr) = spec_on_sample(all).await;
    Some((code, events, stderr, fake))
}

fn explore_output() -> serde_json::Value {
    fixtures::sample_outputs().remove(0).1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_that_fails_then_passes_in_one_claude_code_session() {
    let mut bad = explore_output();
    bad["key_files"][0]["path"] = "bin/missing".into();
    let replies = vec![
        Reply::Turn(Turn::tool_call("call_1", "mcp__omoi__submit", bad)),
        Reply::Turn(Turn::tool_call(
            "call_2",
            "mcp__omoi__submit",
            explore_output(),
        )),
    ];
    let Some((code, events, stderr, fake)) = explore_with_claude(replies, &[]).await else {
        return;
    };
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(fake.violations(), Vec::<String>::new());
    // One session, one phase attempt: the second call saw the gate's feedback.
    let attempts: Vec<u32> = events
        .iter()
        .filter_map(|e| match &e.event {
            Event::SpecPhaseStarted(s) => Some(s.attempt),
            _ => None,
        })
        .collect();
    assert_eq!(attempts, vec![1]);
    let results: Vec<bool> = events
        .iter()
        .filter_map(|e| match &e.event {
            Event::AgentToolResult(r) => Some(r.ok),
            _ => None,
        })
        .collect();
    assert_eq!(results, vec![false, true]);
    let second = fake.requests()[1].body["messages"].to_string();
    assert!(second.contains("bin/missing"), "{second}");
    assert_eq!(outcome(&events), (vec!["explore".to_string()], true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_budget_ends_the_claude_code_session() {
    // $1 per million input tokens: one call of 2M tokens spends the $1.50 budget.
    let replies = vec![Reply::Turn(
        Turn::text("Reading first.")
            .with_tool_call("call_1", "Bash", serde_json::json!({"command": "ls"}))
            .with_usage(2_000_000, 10),
    )];
    let vars = [
        ("MAX_BUDGET_USD", "1.5"),
        ("OMOI_PRICE_INPUT_PER_MTOK", "1"),
        ("OMOI_PRICE_OUTPUT_PER_MTOK", "1"),
    ];
    let Some((code, events, stderr, fake)) = explore_with_claude(replies, &vars).await else {
        return;
    };
    assert_eq!(code, Some(1), "{stderr}");
    let failed = events.iter().find_map(|e| match &e.event {
        Event::AgentFailed(f) => Some((f.kind, f.reason.clone())),
        _ => None,
    });
    // The session ends on the budget, and the failure says so: kind `budget`, not `gate`.
    assert_eq!(
        failed,
        Some((
            omoi_protocol::event::ErrorKind::Budget,
            "explore did not pass its gate: no passing output after 1 attempt: the budget of \
             $1.50 is spent ($2.0000 used)"
                .to_string()
        ))
    );
    // The call after the spent budget never reached the model.
    assert_eq!(fake.requests().len(), 1);
}

/// The kind and reason of the run's `agent.failed`.
fn failure(events: &[Envelope]) -> Option<(omoi_protocol::event::ErrorKind, String)> {
    events.iter().find_map(|e| match &e.event {
        Event::AgentFailed(f) => Some((f.kind, f.reason.clone())),
        _ => None,
    })
}

/// The model starts answering, then sends nothing more and never closes the answer: with a
/// stall window of 5 s (and a phase timeout of 10 minutes) the session ends as stalled, the
/// CLI killed, and the run fails with kind `timeout` and a reason that says what happened.
async fn a_silent_session_ends_as_stalled(vars: Vec<(&'static str, String)>, cli: &str) {
    let mut all = vars;
    all.extend(
        [
            ("SPEC_STOP_AFTER", "explore"),
            ("OMOI_STALL_SECS", "5"),
            ("PHASE_TIMEOUT_SECS", "600"),
        ]
        .map(|(k, v)| (k, v.to_string())),
    );
    let started = std::time::Instant::now();
    let (code, events, stderr) = spec_on_sample(all).await;
    let took = started.elapsed();
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(
        failure(&events),
        Some((
            omoi_protocol::event::ErrorKind::Timeout,
            format!(
                "explore did not pass its gate: no passing output after 1 attempt: stalled: \
                 {cli} printed nothing and the model sent or was sent nothing for 5 s \
                 (OMOI_STALL_SECS)"
            )
        ))
    );
    assert!(took < std::time::Duration::from_secs(120), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claude_code_session_whose_model_goes_silent_ends_as_stalled() {
    let Some(bin) = cli_binary("OMOI_TEST_CLAUDE_BIN") else {
        return;
    };
    let fake = FakeAnthropic::start([Reply::Stall {
        turn: Turn::text("Thinking about it for a long while."),
        events: 2,
    }])
    .await;
    a_silent_session_ends_as_stalled(claude_vars(&bin, fake.base_url()), "claude-code").await;
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_codex_session_whose_model_goes_silent_ends_as_stalled() {
    let Some(bin) = cli_binary("OMOI_TEST_CODEX_BIN") else {
        return;
    };
    let fake = FakeResponses::start([Reply::Stall {
        turn: Turn::text("Thinking about it for a long while."),
        events: 2,
    }])
    .await;
    a_silent_session_ends_as_stalled(codex_vars(&bin, fake.base_url()), "codex").await;
    assert_eq!(fake.requests().len(), 1);
}

/// Processes whose working directory is `dir` (or under it).
fn processes_in(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cwd) = std::fs::read_link(entry.path().join("cwd")) {
            if cwd.starts_with(dir) {
                found.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
    }
    found
}

/// Starts a spec with Claude Code in `workspace` and waits until the CLI called the model.
async fn start_until_model_called(
    bin: &Path,
    workspace: &Path,
    fake: &FakeAnthropic,
    vars: &[(&str, &str)],
) -> std::process::Child {
    let (title, _) = fixtures::sample_request();
    let base = fake.base_url();
    let mut all = vec![
        ("SPEC_ID", "cli-spec"),
        ("SPEC_PHASE", "all"),
        ("SPEC_TITLE", title.as_str()),
        ("WORKSPACE", workspace.to_str().unwrap()),
        ("OMOI_LLM", "claude-code"),
        ("CLAUDE_BIN", bin.to_str().unwrap()),
        ("ANTHROPIC_API_KEY", omoi_tests::fake_anthropic::API_KEY),
        ("ANTHROPIC_BASE_URL", base.as_str()),
    ];
    all.extend_from_slice(vars);
    let child = worker(&all)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..600 {
        if !fake.requests().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(fake.requests().len(), 1, "the CLI never called the model");
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_the_worker_stops_claude_code_and_everything_it_started() {
    let Some(bin) = cli_binary("OMOI_TEST_CLAUDE_BIN") else {
        return;
    };
    // The model starts answering, then goes quiet.
    let fake = FakeAnthropic::start([Reply::Stall {
        turn: Turn::text("Thinking about it for a long while."),
        events: 2,
    }])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let workspace = fixtures::copy_sample_repo(&dir.path().join("repo"));
    let child = start_until_model_called(&bin, &workspace, &fake, &[]).await;
    assert!(!processes_in(&workspace).is_empty());
    let pid = rustix::process::Pid::from_raw(i32::try_from(child.id()).unwrap()).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let last = String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .map(|line| serde_json::from_str::<Envelope>(line).unwrap().event);
    assert!(
        matches!(&last, Some(Event::AgentFailed(f)) if f.kind == omoi_protocol::event::ErrorKind::Cancelled),
        "{last:?}"
    );
    assert_eq!(
        processes_left_in(&workspace, std::time::Duration::from_secs(5)).await,
        Vec::<String>::new()
    );
}

/// The processes still in `dir` once `within` has passed or none is left. A SIGKILLed process
/// leaves `/proc` when the kernel has torn it down, which may come just after the worker exits;
/// one that stays (it left the process group) is still found.
async fn processes_left_in(dir: &Path, within: std::time::Duration) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let found = processes_in(dir);
        if found.is_empty() || tokio::time::Instant::now() >= deadline {
            return found;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_killed_mid_phase_costs_that_attempt_only() {
    let Some(bin) = cli_binary("OMOI_TEST_CLAUDE_BIN") else {
        return;
    };
    // The first session's model goes quiet (and its CLI is killed); the retry hands in.
    let fake = FakeAnthropic::start([
        Reply::Stall {
            turn: Turn::text("Working on it."),
            events: 2,
        },
        Reply::Turn(Turn::tool_call(
            "call_1",
            "mcp__omoi__submit",
            explore_output(),
        )),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let workspace = fixtures::copy_sample_repo(&dir.path().join("repo"));
    let vars = [
        ("SPEC_STOP_AFTER", "explore"),
        ("MAX_ATTEMPTS", "2"),
        ("OMOI_RETRY_BASE_MS", "1"),
    ];
    let child = start_until_model_called(&bin, &workspace, &fake, &vars).await;
    // Kill the CLI itself: the process in the workspace that runs the Claude binary.
    let cli: Vec<String> = processes_in(&workspace)
        .into_iter()
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == bin))
        .collect();
    assert_eq!(cli.len(), 1, "{cli:?}");
    let pid = rustix::process::Pid::from_raw(cli[0].parse().unwrap()).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let events: Vec<Envelope> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let attempts: Vec<u32> = events
        .iter()
        .filter_map(|e| match &e.event {
            Event::SpecPhaseStarted(s) => Some(s.attempt),
            _ => None,
        })
        .collect();
    assert_eq!(attempts, vec![1, 2]);
    assert_eq!(outcome(&events), (vec!["explore".to_string()], true));
    assert_eq!(fake.violations(), Vec::<String>::new());
}
