//! Secret isolation through the real CLIs: a task run with Claude Code and with Codex whose
//! agent (the fake model's scripted tool call, run by the CLI's own shell tool) reads every
//! place a secret could be — its environment, every process's `/proc` environment and command
//! line (the worker's, the CLI's, PID 1's), git's credentials, the worker's `.omoi/` files, the
//! CLI's own home and config — finds none of the worker's secrets (the model key, the sandbox
//! and git tokens, a project's secrets), and no secret shows in an event, a log or a file. The
//! CLI itself holds only the session's throwaway credential. Claude Code runs its commands as
//! its own children, so its probe sees every process of the machine; Codex runs them in its own
//! sandbox (a PID namespace of its own), so its probe sees that namespace, the CLI's
//! environment and files.

use std::path::{Path, PathBuf};

use omoi_tests::fake_anthropic::FakeAnthropic;
use omoi_tests::fake_llm::{Reply, Turn};
use omoi_tests::fake_responses::FakeResponses;
use omoi_tests::git::{self as remote, files_containing};
use pretty_assertions::assert_eq;
use serde_json::json;

use super::cli_agents::{claude_vars, cli_binary, codex_vars};
use super::task::harness::*;

/// The shell lines that try each route, each writing what it got to `<out>/<route>` and its
/// errors to `<route>.err`.
fn probe(out: &Path) -> String {
    let out = out.display();
    let routes = [
        ("parent-environ", "tr '\\0' '\\n' < /proc/$PPID/environ"),
        (
            "all-environ",
            "for f in /proc/[0-9]*/environ; do tr '\\0' '\\n' < $f; done",
        ),
        ("init-environ", "tr '\\0' '\\n' < /proc/1/environ"),
        (
            "all-cmdline",
            "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $f; echo; done",
        ),
        ("env", "env"),
        (
            "git-credential",
            "printf 'protocol=https\\nhost=example.com\\n\\n' | GIT_TERMINAL_PROMPT=0 git credential fill",
        ),
        (
            "credential-files",
            "cat ~/.git-credentials ~/.config/git/credentials .git/config",
        ),
        ("state", "ls -a .omoi; cat .omoi/*"),
        (
            "cli-home",
            "ls -laR \"$HOME\"; find \"$HOME\" -type f -exec cat {} +",
        ),
        ("codex-home", "find \"$CODEX_HOME\" -type f -exec cat {} +"),
    ];
    routes
        .iter()
        .map(|(route, command)| format!("{{ {command}; }} > {out}/{route} 2> {out}/{route}.err\n"))
        .collect()
}

/// The edit of the greet task (the version flag and its test), as one shell command.
const EDIT: &str = concat!(
    r#"sed -i 's/^    \*)$/    --version)\n      echo "greet 1.0.0"\n      exit 0\n      ;;\n&/' bin/greet"#,
    r#" && sed -i '/--bogus$/a check "greet 1.0.0" --version' tests/run.sh"#,
);

/// The secrets a worker is started with besides the model key: its tokens and a project's.
fn planted() -> Vec<(&'static str, String)> {
    [
        ("SANDBOX_TOKEN", "sbx-cli-"),
        ("OMOI_GIT_TOKEN", "ghs_cli"),
        ("ACME_SIGNING_SECRET", "acme-sign-cli-"),
        ("ACME_DSN", "postgres://app:pw-cli-"),
    ]
    .into_iter()
    .map(|(name, prefix)| (name, format!("{prefix}0123456789abcdef")))
    .collect()
}

fn read(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}

/// Runs the task with the CLI of `vars`; the model (`replies`) probes, edits and submits.
/// `key` is the real model key the worker holds. Returns the probe's output directory and the
/// run.
async fn probed_task(
    world: &World,
    vars: Vec<(&'static str, String)>,
    key: &str,
) -> (PathBuf, Finished) {
    let out = world.dir.path().join("probe");
    std::fs::create_dir_all(&out).unwrap();
    let context = context(
        "TSK-001",
        "Add a --version flag",
        &world.file_url(),
        Some(VALIDATION),
    );
    let mut worker = world.worker("ws", &context, "task-version-flag.json");
    worker.set("MODEL", "test-model").set("MAX_ATTEMPTS", "1");
    for (name, value) in vars.iter().map(|(n, v)| (*n, v.clone())).chain(planted()) {
        worker.set(name, &value);
    }
    let run = tokio::task::spawn_blocking(move || worker.run())
        .await
        .unwrap();
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    // The task was done: the change is on the spec branch.
    assert_eq!(
        remote::changed_files(
            &world.bare,
            &remote::branch_sha(&world.bare, BRANCH).unwrap()
        ),
        ["bin/greet", "tests/run.sh"]
    );
    let secrets: Vec<String> = planted()
        .into_iter()
        .map(|(_, value)| value)
        .chain([key.to_string()])
        .collect();
    let workspace = world.dir.path().join("ws");
    for secret in &secrets {
        assert!(!run.stdout.contains(secret), "{secret} in events");
        assert!(!run.stderr.contains(secret), "{secret} in logs");
        for place in [&out, &workspace, &world.bare] {
            assert_eq!(
                files_containing(place, secret),
                Vec::<PathBuf>::new(),
                "{secret} in files"
            );
        }
    }
    // The probe really ran and read what it could.
    assert!(
        read(&out.join("env")).contains("PATH="),
        "{}",
        read(&out.join("env.err"))
    );
    assert!(!read(&out.join("all-cmdline")).is_empty());
    assert!(!read(&out.join("git-credential")).contains("password"));
    (out, run)
}

/// The probing turn, the editing turn and the submitting turn, with the CLI's shell tool.
fn replies(shell_call: impl Fn(&str, String) -> Turn, out: &Path) -> Vec<Reply> {
    vec![
        Reply::Turn(shell_call("call_probe", probe(out))),
        Reply::Turn(shell_call("call_edit", EDIT.to_string())),
        Reply::Turn(Turn::text("The tests pass.").with_tool_call(
            "call_submit",
            "mcp__omoi__submit",
            json!({"summary": VERSION_SUMMARY}),
        )),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_claude_code_runs_finds_a_secret() {
    let Some(bin) = cli_binary("OMOI_TEST_CLAUDE_BIN") else {
        return;
    };
    let world = World::new();
    let out = world.dir.path().join("probe");
    let bash = |id: &str, command: String| Turn::tool_call(id, "Bash", json!({"command": command}));
    let fake = FakeAnthropic::start(replies(bash, &out)).await;
    let key = omoi_tests::fake_anthropic::API_KEY;
    let (out, _) = probed_task(&world, claude_vars(&bin, fake.base_url()), key).await;
    assert_eq!(fake.violations(), Vec::<String>::new());
    // The CLI's environment: the proxy and its throwaway credential, never the key.
    let parent = read(&out.join("parent-environ"));
    let all = read(&out.join("all-environ"));
    for environ in [&parent, &all] {
        assert!(
            environ.contains("ANTHROPIC_API_KEY=omoi-session-"),
            "{environ}"
        );
        assert!(
            environ.contains("ANTHROPIC_BASE_URL=http://127.0.0.1:"),
            "{environ}"
        );
    }
    // Its own config was readable, and holds nothing secret (checked above with every file).
    assert!(read(&out.join("cli-home")).contains("mcpServers"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_codex_runs_finds_a_secret() {
    let Some(bin) = cli_binary("OMOI_TEST_CODEX_BIN") else {
        return;
    };
    let world = World::new();
    let out = world.dir.path().join("probe");
    let exec =
        |id: &str, command: String| Turn::tool_call(id, "exec_command", json!({"cmd": command}));
    let fake = FakeResponses::start(replies(exec, &out)).await;
    let key = omoi_tests::fake_responses::API_KEY;
    let (out, _) = probed_task(&world, codex_vars(&bin, fake.base_url()), key).await;
    assert_eq!(fake.violations(), Vec::<String>::new());
    // Its config names the proxy and the variable of its credential, not the key.
    let config = read(&out.join("codex-home"));
    assert!(config.contains("env_key = \"OMOI_PROXY_KEY\""), "{config}");
    assert!(
        config.contains("base_url = \"http://127.0.0.1:"),
        "{config}"
    );
}
