//! The real Claude Code and Codex CLIs, offline: each runs against a wire-true fake model behind
//! the worker's model proxy, reaches the gate through `omoi-worker mcp`, and its output stream
//! maps onto omoi's events. The binaries come from `scripts/fetch-agent-clis.sh`
//! (`OMOI_TEST_CLAUDE_BIN`, `OMOI_TEST_CODEX_BIN`); without them these tests say so and pass,
//! except under `CI=true`, where a missing binary fails them.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use omoi_tests::fake_anthropic::FakeAnthropic;
use omoi_tests::fake_llm::{Reply, Turn};
use omoi_tests::fake_responses::FakeResponses;
use omoi_worker::agent::{SubmitHandler, SubmitTool, SubmitVerdict};
use omoi_worker::cli_agent::gate::GateSocket;
use omoi_worker::cli_agent::proxy::{ModelProxy, ProxyConfig, Wire};
use omoi_worker::config::Secret;
use omoi_worker::llm::BoxFuture;
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

/// The CLI binary named by `variable`, or `None` (outside CI) when it is not there.
pub fn cli_binary(variable: &str) -> Option<PathBuf> {
    match std::env::var_os(variable).map(PathBuf::from) {
        Some(path) if path.is_file() => Some(path),
        other => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{variable} is {other:?}: run scripts/fetch-agent-clis.sh and export its paths"
            );
            eprintln!("{variable} is not set: skipping (scripts/fetch-agent-clis.sh)");
            None
        }
    }
}

/// The worker's variables for Claude Code at `bin` against the Anthropic fake at `base_url`.
pub fn claude_vars(bin: &Path, base_url: String) -> Vec<(&'static str, String)> {
    vec![
        ("OMOI_LLM", "claude-code".into()),
        ("CLAUDE_BIN", bin.display().to_string()),
        (
            "ANTHROPIC_API_KEY",
            omoi_tests::fake_anthropic::API_KEY.into(),
        ),
        ("ANTHROPIC_BASE_URL", base_url),
    ]
}

/// The worker's variables for Codex at `bin` against the Responses fake at `base_url`.
pub fn codex_vars(bin: &Path, base_url: String) -> Vec<(&'static str, String)> {
    vec![
        ("OMOI_LLM", "codex".into()),
        ("CODEX_BIN", bin.display().to_string()),
        ("OPENAI_API_KEY", omoi_tests::fake_responses::API_KEY.into()),
        ("OPENAI_BASE_URL", base_url),
    ]
}

/// Accepts `{"title": "good"}` and remembers every submission.
#[derive(Default)]
pub struct TitleGate {
    pub seen: std::sync::Mutex<Vec<Value>>,
}

/// The submit tool of [`TitleGate`].
pub fn title_tool() -> SubmitTool {
    SubmitTool {
        name: "submit".to_string(),
        description: "Hand in the title; the result is the gate's verdict.".to_string(),
        schema: json!({"type": "object", "properties": {"title": {"type": "string", "description": "The title."}},
               "required": ["title"], "additionalProperties": false}),
    }
}

impl SubmitHandler for TitleGate {
    fn check<'a>(&'a self, input: &'a Value) -> BoxFuture<'a, SubmitVerdict> {
        self.seen.lock().unwrap().push(input.clone());
        Box::pin(async move {
            if input["title"] == "good" {
                SubmitVerdict::Accepted
            } else {
                SubmitVerdict::Rejected {
                    feedback: format!("title {} is not good: use \"good\"", input["title"]),
                }
            }
        })
    }
}

/// What one CLI run printed.
#[derive(Debug)]
pub struct CliRun {
    pub code: Option<i32>,
    pub stdout: Vec<String>,
    pub stderr: String,
}

/// A proxy to `upstream` with `key`, a budget of $10.
async fn proxy_to(wire: Wire, upstream: String, key: &str) -> ModelProxy {
    let config = ProxyConfig {
        wire,
        upstream,
        key: Some(Secret::new(key)),
        budget_usd: 10.0,
        price: None,
    };
    ModelProxy::start(config, None).await.unwrap()
}

impl CliRun {
    /// The CLI exited 0 and the fake saw nothing the real API would refuse.
    fn assert_clean(&self, violations: &[String]) {
        assert_eq!(self.code, Some(0), "{}", self.describe());
        assert_eq!(violations, Vec::<String>::new(), "{}", self.describe());
    }

    /// The script's session ran: `hello.txt` written, a bad title and then a good one handed in.
    fn assert_wrote_and_submitted(&self, dirs: &Dirs, handler: &TitleGate) {
        assert_eq!(
            std::fs::read_to_string(dirs.workspace.join("hello.txt")).ok(),
            Some("hello\nworld\n".to_string()),
            "{}",
            self.describe()
        );
        assert_eq!(
            *handler.seen.lock().unwrap(),
            vec![json!({"title": "bad"}), json!({"title": "good"})]
        );
    }

    /// Everything the run printed, for a failure message.
    pub fn describe(&self) -> String {
        format!(
            "exit code {:?}\nstdout:\n{}\nstderr:\n{}",
            self.code,
            self.stdout.join("\n"),
            self.stderr
        )
    }
}

/// Runs `command` to its end while `gate` serves, within a minute.
pub async fn run_with_gate(
    mut command: tokio::process::Command,
    gate: &GateSocket,
    handler: &dyn SubmitHandler,
) -> CliRun {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = command.spawn().unwrap();
    let tool = title_tool();
    let output = tokio::select! {
        _ = gate.serve(&tool, handler) => unreachable!("the gate serves until dropped"),
        output = tokio::time::timeout(Duration::from_secs(90), child.wait_with_output()) => {
            output.expect("the CLI did not finish within 90 s").unwrap()
        }
    };
    CliRun {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_string)
            .collect(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The turns of a session that edits a file, submits a bad title, then a good one.
fn script(edit: Turn) -> Vec<Reply> {
    vec![
        Reply::Turn(edit),
        Reply::Turn(Turn::text("Submitting.").with_tool_call(
            "call_sub_1",
            "mcp__omoi__submit",
            json!({"title": "bad"}),
        )),
        Reply::Turn(Turn::tool_call(
            "call_sub_2",
            "mcp__omoi__submit",
            json!({"title": "good"}),
        )),
        Reply::Turn(Turn::text("Done.")),
    ]
}

fn worker_bin() -> &'static str {
    env!("CARGO_BIN_EXE_omoi-worker")
}

/// A fresh workspace and home for one CLI run.
struct Dirs {
    _root: tempfile::TempDir,
    workspace: PathBuf,
    home: PathBuf,
}

fn dirs() -> Dirs {
    let root = tempfile::tempdir().unwrap();
    let workspace = root.path().join("work");
    let home = root.path().join("home");
    std::fs::create_dir_all(&workspace).unwrap();
    std::fs::create_dir_all(&home).unwrap();
    Dirs {
        workspace,
        home,
        _root: root,
    }
}

fn claude_command(
    bin: &Path,
    dirs: &Dirs,
    proxy: &ModelProxy,
    gate: &GateSocket,
) -> tokio::process::Command {
    let mcp = json!({"mcpServers": {"omoi": {
        "type": "stdio", "command": worker_bin(),
        "args": ["mcp", "--socket", gate.path(), "--nonce", gate.nonce()],
    }}});
    let config = dirs.home.join("mcp.json");
    std::fs::write(&config, mcp.to_string()).unwrap();
    let mut command = tokio::process::Command::new(bin);
    command
        .current_dir(&dirs.workspace)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", &dirs.home)
        .env("IS_SANDBOX", "1")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("ENABLE_TOOL_SEARCH", "false")
        .env("ANTHROPIC_BASE_URL", proxy.base_url())
        .env("ANTHROPIC_API_KEY", proxy.credential())
        .args(["-p", "Write hello.txt, then submit the title."])
        .args(["--output-format", "stream-json", "--verbose"])
        .args([
            "--permission-mode",
            "bypassPermissions",
            "--max-turns",
            "10",
        ])
        .args([
            "--model",
            "claude-test-model",
            "--strict-mcp-config",
            "--mcp-config",
        ])
        .arg(&config);
    command
}

#[tokio::test]
async fn claude_code_edits_and_submits_through_the_proxy_and_the_gate() {
    let Some(bin) = cli_binary("OMOI_TEST_CLAUDE_BIN") else {
        return;
    };
    let dirs = dirs();
    let write = Turn::text("I will write the file.").with_tool_call(
        "toolu_write_1",
        "Write",
        json!({"file_path": dirs.workspace.join("hello.txt"), "content": "hello\nworld\n"}),
    );
    let fake = FakeAnthropic::start(script(write)).await;
    let proxy = proxy_to(
        Wire::Anthropic,
        fake.base_url(),
        omoi_tests::fake_anthropic::API_KEY,
    )
    .await;
    let gate = GateSocket::bind(&dirs.home).unwrap();
    let handler = TitleGate::default();
    let run = run_with_gate(claude_command(&bin, &dirs, &proxy, &gate), &gate, &handler).await;
    run.assert_clean(&fake.violations());
    run.assert_wrote_and_submitted(&dirs, &handler);
    assert_eq!(gate.accepted(), Some(json!({"title": "good"})));
    // The model saw the gate's schema, and the verdict came back as the tool result.
    let requests = fake.requests();
    let submit = requests[0].body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "mcp__omoi__submit")
        .cloned();
    assert_eq!(
        submit.map(|t| t["input_schema"]["properties"].clone()),
        Some(title_tool().schema["properties"].clone())
    );
    let feedback = &requests[2].body["messages"];
    assert!(
        feedback
            .to_string()
            .contains("title \\\"bad\\\" is not good"),
        "{feedback}"
    );
    assert_eq!(proxy.calls(), 4);
}

fn codex_command(
    bin: &Path,
    dirs: &Dirs,
    proxy: &ModelProxy,
    gate: &GateSocket,
) -> tokio::process::Command {
    let codex_home = dirs.home.join(".codex");
    std::fs::create_dir_all(&codex_home).unwrap();
    let config = format!(
        r#"model = "gpt-test"
model_provider = "omoi"

[model_providers.omoi]
name = "omoi"
base_url = "{base}"
wire_api = "responses"
env_key = "OMOI_PROXY_KEY"

[analytics]
enabled = false

[mcp_servers.omoi]
command = "{worker}"
args = ["mcp", "--socket", "{socket}", "--nonce", "{nonce}"]
default_tools_approval_mode = "approve"
"#,
        base = proxy.base_url(),
        worker = worker_bin(),
        socket = gate.path().display(),
        nonce = gate.nonce(),
    );
    std::fs::write(codex_home.join("config.toml"), config).unwrap();
    let mut command = tokio::process::Command::new(bin);
    command
        .current_dir(&dirs.workspace)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", &dirs.home)
        .env("CODEX_HOME", &codex_home)
        .env("OMOI_PROXY_KEY", proxy.credential())
        .args([
            "exec",
            "--json",
            "--skip-git-repo-check",
            "-s",
            "workspace-write",
        ])
        .args(["--disable", "plugins", "--disable", "remote_plugin"])
        .arg("Write hello.txt, then submit the title.");
    command
}

#[tokio::test]
async fn codex_runs_a_command_and_submits_through_the_proxy_and_the_gate() {
    let Some(bin) = cli_binary("OMOI_TEST_CODEX_BIN") else {
        return;
    };
    let dirs = dirs();
    let command = Turn::tool_call(
        "call_exec_1",
        "exec_command",
        json!({"cmd": "printf 'hello\\nworld\\n' > hello.txt"}),
    );
    let fake = FakeResponses::start(script(command)).await;
    let proxy = proxy_to(
        Wire::OpenAiResponses,
        fake.base_url(),
        omoi_tests::fake_responses::API_KEY,
    )
    .await;
    let gate = GateSocket::bind(&dirs.home).unwrap();
    let handler = TitleGate::default();
    let run = run_with_gate(codex_command(&bin, &dirs, &proxy, &gate), &gate, &handler).await;
    run.assert_clean(&fake.violations());
    let requests = fake.requests();
    run.assert_wrote_and_submitted(&dirs, &handler);
    let namespace = requests[0].body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["type"] == "namespace" && t["name"] == "mcp__omoi")
        .cloned();
    assert_eq!(
        namespace.map(|t| t["tools"][0]["parameters"]["properties"].clone()),
        Some(title_tool().schema["properties"].clone())
    );
    assert_eq!(proxy.calls(), 4);
}

/// Runs one session of `kind` against a fake at `upstream` (its key `key`); injects "Please
/// also say hello." once `first_request` resolves. Returns the outcome and the events.
async fn session_with_injection(
    kind: omoi_worker::cli_agent::command::CliKind,
    bin: PathBuf,
    upstream: String,
    key: &str,
    first_request: impl std::future::Future<Output = ()>,
) -> (
    omoi_worker::agent::SessionOutcome,
    Vec<omoi_protocol::event::Event>,
) {
    use omoi_worker::agent::{Agent, Limits, SessionSpec, ToolSet};
    use omoi_worker::cli_agent::agent::{CliAgent, CliAgentConfig};
    use omoi_worker::events::{Emitter, EventIds};
    use omoi_worker::inbox::Inbox;

    let dirs = dirs();
    let agent = CliAgent::new(CliAgentConfig {
        kind,
        bin,
        worker_bin: PathBuf::from(worker_bin()),
        model: Some("test-model".to_string()),
        upstream,
        key: Some(Secret::new(key)),
        runtime_dir: dirs.home.clone(),
        stall: Duration::from_secs(60),
    });
    let inbox = Inbox::default();
    let spec = SessionSpec {
        label: "explore".to_string(),
        attempt: 1,
        system: "You hand in a title.".to_string(),
        prompt: "Submit the title.".to_string(),
        submit: title_tool(),
        limits: Limits {
            max_turns: 10,
            max_budget_usd: 10.0,
            timeout: Duration::from_secs(90),
            price: None,
        },
        workspace: dirs.workspace.clone(),
        tools: ToolSet::read_write(),
        inbox: inbox.clone(),
    };
    let (emitter, mut events_rx) = Emitter::channel(EventIds {
        sandbox_id: "sb".to_string(),
        spec_id: None,
        task_id: None,
    });
    let cancel = tokio_util::sync::CancellationToken::new();
    let handler = TitleGate::default();
    let session = agent.run_session(spec, &handler, &emitter, &cancel);
    let inject = async {
        first_request.await;
        inbox.push("Please also say hello.".to_string());
    };
    let (outcome, ()) = tokio::join!(session, inject);
    let mut events = Vec::new();
    while let Ok(envelope) = events_rx.try_recv() {
        events.push(envelope.event);
    }
    // The session's private directory is gone with the session.
    let left: Vec<_> = std::fs::read_dir(&dirs.home).unwrap().flatten().collect();
    assert_eq!(left.len(), 0, "{left:?}");
    (outcome.unwrap(), events)
}

/// Resolves once `requests` has seen a request (within 30 s).
async fn first_request(requests: impl Fn() -> usize) {
    for _ in 0..1500 {
        if requests() > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_message_injected_mid_run_reaches_claude_code() {
    use omoi_worker::agent::SessionOutcome;
    use omoi_worker::cli_agent::command::CliKind;

    let Some(bin) = cli_binary("OMOI_TEST_CLAUDE_BIN") else {
        return;
    };
    let fake = FakeAnthropic::start([
        Reply::Turn(Turn::tool_call(
            "toolu_sleep",
            "Bash",
            json!({"command": "sleep 1"}),
        )),
        Reply::Turn(Turn::tool_call(
            "call_sub",
            "mcp__omoi__submit",
            json!({"title": "good"}),
        )),
    ])
    .await;
    let (outcome, events) = session_with_injection(
        CliKind::ClaudeCode,
        bin,
        fake.base_url(),
        omoi_tests::fake_anthropic::API_KEY,
        // While the first tool call runs.
        first_request(|| fake.requests().len()),
    )
    .await;
    assert_eq!(
        outcome,
        SessionOutcome::Submitted {
            input: json!({"title": "good"})
        },
        "{events:#?}"
    );
    assert_eq!(fake.violations(), Vec::<String>::new());
    let requests = fake.requests();
    assert_eq!(requests.len(), 2, "{events:#?}");
    let second = requests[1].body["messages"].to_string();
    assert!(second.contains("Please also say hello."), "{second}");
}

#[tokio::test]
async fn a_message_injected_into_codex_reaches_it_at_its_next_turn() {
    use omoi_worker::agent::SessionOutcome;
    use omoi_worker::cli_agent::command::CliKind;

    let Some(bin) = cli_binary("OMOI_TEST_CODEX_BIN") else {
        return;
    };
    // Codex runs a command (the message arrives meanwhile) and ends its turn without
    // submitting; the worker resumes its thread with the message, and it submits.
    let fake = FakeResponses::start([
        Reply::Turn(Turn::tool_call(
            "call_sleep",
            "exec_command",
            json!({"cmd": "sleep 1"}),
        )),
        Reply::Turn(Turn::text("I ran the command.")),
        Reply::Turn(Turn::tool_call(
            "call_sub",
            "mcp__omoi__submit",
            json!({"title": "good"}),
        )),
    ])
    .await;
    let (outcome, events) = session_with_injection(
        CliKind::Codex,
        bin,
        fake.base_url(),
        omoi_tests::fake_responses::API_KEY,
        first_request(|| fake.requests().len()),
    )
    .await;
    assert_eq!(
        outcome,
        SessionOutcome::Submitted {
            input: json!({"title": "good"})
        },
        "{events:#?}"
    );
    assert_eq!(fake.violations(), Vec::<String>::new());
    let requests = fake.requests();
    assert_eq!(requests.len(), 3, "{events:#?}");
    // The resumed turn carries the whole transcript, then the message.
    let resumed = requests[2].body["input"].to_string();
    assert!(resumed.contains("Submit the title."), "{resumed}");
    assert!(resumed.contains("sleep 1"), "{resumed}");
    assert!(resumed.contains("I ran the command."), "{resumed}");
    assert!(
        resumed.contains("Message from the user while you work: Please also say hello."),
        "{resumed}"
    );
    // The message was not in the turn before.
    assert!(!requests[1].body["input"].to_string().contains("say hello"));
}
