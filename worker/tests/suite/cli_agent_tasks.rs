//! Task mode through the real CLIs: the built `omoi-worker` with `OMOI_LLM=claude-code` or
//! `codex` clones the greet repository, the CLI edits it against a wire-true fake model, hands
//! the task in through the gate's `submit` (which runs the validation command), and the worker
//! commits and pushes to the spec branch.

use omoi_protocol::event::{AgentFileEdited, Envelope, Event};
use omoi_tests::fake_anthropic::FakeAnthropic;
use omoi_tests::fake_llm::{Reply, Turn};
use omoi_tests::fake_responses::FakeResponses;
use omoi_tests::git::{self as remote, LoggedCommit};
use pretty_assertions::assert_eq;
use serde_json::json;

use super::cli_agents::cli_binary;
use super::task::harness::*;

const TITLE: &str = "Add a --version flag";

/// The turn that hands the task in through the gate's tool.
fn submit_turn() -> Reply {
    Reply::Turn(Turn::text("The tests pass.").with_tool_call(
        "call_submit",
        "mcp__omoi__submit",
        json!({"summary": VERSION_SUMMARY}),
    ))
}

/// Runs the task with `vars` on top of the harness's, off the async runtime.
async fn run_task(world: &World, vars: Vec<(&'static str, String)>) -> (Worker, Finished) {
    let context = context("TSK-001", TITLE, &world.file_url(), Some(VALIDATION));
    let mut worker = world.worker("ws", &context, "task-version-flag.json");
    worker.set("MODEL", "test-model").set("MAX_ATTEMPTS", "1");
    for (name, value) in &vars {
        worker.set(name, value);
    }
    tokio::task::spawn_blocking(move || {
        let run = worker.run();
        (worker, run)
    })
    .await
    .unwrap()
}

/// The task was validated, committed as one commit on the spec branch and pushed; the
/// workspace is a clean checkout of it.
fn assert_pushed(world: &World, worker: &Worker, run: &Finished) {
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    let log = remote::log(&world.bare, BRANCH);
    let sha = log[0].sha.clone();
    assert_eq!(
        log[0],
        LoggedCommit {
            sha: sha.clone(),
            subject: format!("TSK-001: {TITLE}"),
            body: VERSION_SUMMARY.into(),
            author: "omoi <omoi@localhost>".into(),
        }
    );
    assert_eq!(log[1].sha, world.base_sha());
    assert_eq!(
        remote::changed_files(&world.bare, &sha),
        ["bin/greet", "tests/run.sh"]
    );
    assert_eq!(
        task_events(&run.events),
        [
            started("TSK-001", TITLE),
            validation("TSK-001", Some(0), TESTS_PASS),
            committed("TSK-001", &sha),
            completed("TSK-001", &sha, VERSION_SUMMARY),
        ]
    );
    assert_eq!(remote::git(&worker.workspace, &["rev-parse", "HEAD"]), sha);
    assert_eq!(
        remote::git(&worker.workspace, &["status", "--porcelain"]),
        ""
    );
}

fn tools_used(events: &[Envelope]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.event {
            Event::AgentToolUse(t) => Some(t.tool.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_with_claude_code_edits_validates_commits_and_pushes() {
    let Some(bin) = cli_binary("OMOI_TEST_CLAUDE_BIN") else {
        return;
    };
    let world = World::new();
    let workspace = world.dir.path().join("ws");
    let greet = workspace.join("bin/greet");
    let tests = workspace.join("tests/run.sh");
    let fake = FakeAnthropic::start([
        Reply::Turn(
            Turn::text("I will read the command and its tests first.")
                .with_tool_call("toolu_read_1", "Read", json!({"file_path": greet}))
                .with_tool_call("toolu_read_2", "Read", json!({"file_path": tests})),
        ),
        Reply::Turn(
            Turn::text("Adding the flag and its test.")
                .with_tool_call(
                    "toolu_edit_1",
                    "Edit",
                    json!({
                        "file_path": greet,
                        "old_string": "    *)\n",
                        "new_string": "    --version)\n      echo \"greet 1.0.0\"\n      exit 0\n      ;;\n    *)\n",
                    }),
                )
                .with_tool_call(
                    "toolu_edit_2",
                    "Edit",
                    json!({
                        "file_path": tests,
                        "old_string": "check \"greet: unknown option: --bogus\" --bogus\n",
                        "new_string": "check \"greet: unknown option: --bogus\" --bogus\ncheck \"greet 1.0.0\" --version\n",
                    }),
                ),
        ),
        submit_turn(),
    ])
    .await;
    let (worker, run) = run_task(
        &world,
        vec![
            ("OMOI_LLM", "claude-code".into()),
            ("CLAUDE_BIN", bin.display().to_string()),
            (
                "ANTHROPIC_API_KEY",
                omoi_tests::fake_anthropic::API_KEY.into(),
            ),
            ("ANTHROPIC_BASE_URL", fake.base_url()),
        ],
    )
    .await;
    assert_pushed(&world, &worker, &run);
    assert_eq!(fake.violations(), Vec::<String>::new());
    assert_eq!(
        tools_used(&run.events),
        ["Read", "Read", "Edit", "Edit", "mcp__omoi__submit"]
    );
    // Paths are the workspace's, as with the native loop.
    let edited: Vec<AgentFileEdited> = run
        .events
        .iter()
        .filter_map(|e| match &e.event {
            Event::AgentFileEdited(f) => Some(f.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        edited,
        [
            AgentFileEdited {
                path: "bin/greet".into(),
                lines_added: 4,
                lines_removed: 0,
            },
            AgentFileEdited {
                path: "tests/run.sh".into(),
                lines_added: 1,
                lines_removed: 0,
            },
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_with_codex_edits_validates_commits_and_pushes() {
    let Some(bin) = cli_binary("OMOI_TEST_CODEX_BIN") else {
        return;
    };
    let world = World::new();
    let edit = concat!(
        r#"sed -i 's/^    \*)$/    --version)\n      echo "greet 1.0.0"\n      exit 0\n      ;;\n&/' bin/greet"#,
        r#" && sed -i '/--bogus$/a check "greet 1.0.0" --version' tests/run.sh"#,
    );
    let fake = FakeResponses::start([
        Reply::Turn(Turn::text("Adding the flag and its test.").with_tool_call(
            "call_exec_1",
            "exec_command",
            json!({"cmd": edit}),
        )),
        submit_turn(),
    ])
    .await;
    let (worker, run) = run_task(
        &world,
        vec![
            ("OMOI_LLM", "codex".into()),
            ("CODEX_BIN", bin.display().to_string()),
            ("OPENAI_API_KEY", omoi_tests::fake_responses::API_KEY.into()),
            ("OPENAI_BASE_URL", fake.base_url()),
        ],
    )
    .await;
    assert_pushed(&world, &worker, &run);
    assert_eq!(fake.violations(), Vec::<String>::new());
    assert_eq!(
        tools_used(&run.events),
        ["command_execution", "mcp__omoi__submit"]
    );
}
