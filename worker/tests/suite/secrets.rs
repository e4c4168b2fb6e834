//! Secret isolation through the real binary: a task whose agent (`run` tool) and validation
//! command try every route to the worker's secrets — its `/proc` files, every process's
//! environment, their own environment, git's credentials, the worker's state files — get
//! permission errors or nothing, and no secret value shows in an event, a log or a file.

use std::path::{Path, PathBuf};

use omoi_protocol::event::Event;
use omoi_tests::git::{self as remote, files_containing};
use pretty_assertions::assert_eq;
use serde_json::json;

use super::task::harness::*;

/// A variable of the worker's environment and the value the test gives it.
struct Planted {
    name: &'static str,
    value: String,
}

/// The secrets a worker is started with: its own, and a project's under names it does not know.
fn planted(tag: &str) -> Vec<Planted> {
    [
        ("ANTHROPIC_API_KEY", "sk-ant-api03-"),
        ("OPENAI_API_KEY", "sk-proj-"),
        ("SANDBOX_TOKEN", "sbx-"),
        ("OMOI_GIT_TOKEN", "ghs_"),
        ("ACME_SIGNING_SECRET", "acme-sign-"),
        ("ACME_DSN", "postgres://app:pw-"),
    ]
    .into_iter()
    .map(|(name, prefix)| Planted {
        name,
        value: format!("{prefix}{tag}{}", "0123456789abcdef"),
    })
    .collect()
}

/// A secret the project lets through to commands (`OMOI_PASS_ENV`): commands see it, events
/// show it masked.
const PASSED: &str = "ACME_DEPLOY_TOKEN";

/// The shell lines that try each route; each writes what it got to `<out>/<prefix>-<route>`
/// and its errors to `<route>.err`.
fn probe(out: &Path, prefix: &str) -> String {
    let out = out.display();
    let routes = [
        ("environ", "tr '\\0' '\\n' < /proc/$PPID/environ"),
        ("cmdline", "tr '\\0' ' ' < /proc/$PPID/cmdline"),
        ("mem", "head -c 4096 /proc/$PPID/mem"),
        ("all-environ", "cat /proc/*/environ"),
        ("init-environ", "tr '\\0' '\\n' < /proc/1/environ"),
        ("env", "env"),
        ("caps", "grep -E '^Cap(Prm|Eff|Bnd|Amb)' /proc/self/status"),
        (
            "git-credential",
            "printf 'protocol=https\\nhost=example.com\\n\\n' | git credential fill",
        ),
        (
            "credential-files",
            "cat ~/.git-credentials ~/.config/git/credentials .git/config",
        ),
        ("state", "ls -a .omoi; cat .omoi/*"),
    ];
    routes
        .iter()
        .map(|(route, command)| {
            format!("{{ {command}; }} > {out}/{prefix}-{route} 2> {out}/{prefix}-{route}.err\n")
        })
        .collect()
}

/// The script of the agent: the probe through the `run` tool, an echo of the passed secret,
/// then the version flag of the sample task, and submit.
fn script(out: &Path) -> serde_json::Value {
    let edit_greet = json!({"name": "edit_file", "input": {
        "path": "bin/greet",
        "old": "    -h|--help)\n      echo \"usage: greet [--name NAME]\"\n      exit 0\n      ;;\n",
        "new": "    -h|--help)\n      echo \"usage: greet [--name NAME]\"\n      exit 0\n      ;;\n    --version)\n      echo \"greet 1.0.0\"\n      exit 0\n      ;;\n"
    }});
    let edit_tests = json!({"name": "edit_file", "input": {
        "path": "tests/run.sh",
        "old": "check \"greet: unknown option: --bogus\" --bogus\n",
        "new": "check \"greet: unknown option: --bogus\" --bogus\ncheck \"greet 1.0.0\" --version\n"
    }});
    json!({"task:TSK-001": [[
        {"tool_calls": [
            {"name": "run", "input": {"command": probe(out, "run")}},
            {"name": "run", "input": {"command": format!("echo \"passed: ${PASSED}\"")}},
        ]},
        {"tool_calls": [edit_greet, edit_tests]},
        {"tool_calls": [{"name": "submit", "input": {"summary": VERSION_SUMMARY}}]}
    ]]})
}

fn read(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}

/// The bounding set a probe printed, as a number.
fn bounding_set(caps: &str) -> u64 {
    let line = caps.lines().find(|l| l.starts_with("CapBnd:")).unwrap();
    u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
}

/// Bit of `CAP_SYS_PTRACE` in a capability set.
const CAP_SYS_PTRACE: u64 = 1 << 19;

/// How the worker is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// As a child of the test.
    Child,
    /// As PID 1 of a new PID namespace (`unshare`), as in a container: its own init.
    Init,
}

#[test]
fn nothing_an_agent_or_a_validation_command_runs_obtains_a_secret() {
    isolation(Start::Child);
}

#[test]
fn nothing_a_command_runs_obtains_a_secret_when_the_worker_is_pid_1() {
    let usable = std::process::Command::new("unshare")
        .args(["-p", "-f", "--mount-proc", "true"])
        .status()
        .is_ok_and(|status| status.success());
    if !usable && std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("unshare cannot make a PID namespace here");
    }
    if !usable {
        eprintln!("skipped: unshare cannot make a PID namespace here (CI=true makes this fail)");
        return;
    }
    isolation(Start::Init);
}

fn isolation(start: Start) {
    let world = World::new();
    let out = world.dir.path().join("probe");
    std::fs::create_dir_all(&out).unwrap();
    // Values of their own: a test running beside this one holds its own in its environment.
    let tag = format!("{start:?}").to_lowercase();
    let secrets = planted(&tag);
    let passed_value = format!("acme-deploy-{tag}-0123456789abcdef");
    let passed_value = passed_value.as_str();
    let validation = format!("{}sh tests/run.sh", probe(&out, "validation"));
    let context = context(
        "TSK-001",
        "Add a --version flag",
        &world.file_url(),
        Some(&validation),
    );
    let script_file = world.dir.path().join("probe-script.json");
    std::fs::write(&script_file, script(&out).to_string()).unwrap();
    let mut worker = world.worker("ws", &context, "task-version-flag.json");
    worker.set("OMOI_SCRIPT", &script_file.display().to_string());
    for secret in &secrets {
        worker.set(secret.name, &secret.value);
    }
    worker.set(PASSED, passed_value);
    worker.set("OMOI_PASS_ENV", PASSED);
    let run = match start {
        Start::Child => worker.run(),
        Start::Init => {
            let mut command = std::process::Command::new("unshare");
            command
                .args([
                    "-p",
                    "-f",
                    "--mount-proc",
                    env!("CARGO_BIN_EXE_omoi-worker"),
                ])
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("HOME", world.dir.path())
                .envs(worker.env.iter().map(|(k, v)| (k, v)))
                .stdin(std::process::Stdio::null());
            let output = command.output().unwrap();
            finished(
                output.status.code().unwrap_or(-1),
                output.stdout,
                output.stderr,
            )
        }
    };
    assert_eq!(run.code, 0, "{start:?} stderr: {}", run.stderr);

    for f in ["run-caps", "run-environ.err", "run-mem.err", "run-cmdline"] {
        eprintln!("DEBUG {f}: {}", read(&out.join(f)));
    }
    // No secret anywhere: events, logs, what the commands wrote, the workspace, the remote.
    let places: [&Path; 3] = [&out, &worker.workspace, &world.bare];
    for secret in &secrets {
        assert!(
            !run.stdout.contains(&secret.value),
            "{} in events",
            secret.name
        );
        assert!(
            !run.stderr.contains(&secret.value),
            "{} in logs",
            secret.name
        );
        for place in places {
            assert_eq!(
                files_containing(place, &secret.value),
                Vec::<PathBuf>::new(),
                "{} in files",
                secret.name
            );
        }
    }
    for prefix in ["run", "validation"] {
        let got = |route: &str| read(&out.join(format!("{prefix}-{route}")));
        let err = |route: &str| read(&out.join(format!("{prefix}-{route}.err")));
        // The worker's memory: refused.
        assert_eq!(got("mem"), "", "{prefix}");
        assert!(
            err("mem").contains("Permission denied"),
            "{prefix}: {}",
            err("mem")
        );
        // The worker's environment block: refused where being undumpable closes it, and
        // otherwise erased of everything a child does not get anyway.
        let environ = got("environ");
        let mut names: Vec<&str> = environ
            .lines()
            .filter_map(|line| line.split_once('=').map(|(name, _)| name))
            .collect();
        names.sort();
        let refused = err("environ").contains("Permission denied");
        assert!(
            refused && names.is_empty() || !refused && names == [PASSED, "HOME", "PATH"],
            "{prefix}: {names:?} {}",
            err("environ")
        );
        // Its command line: no secret (checked above with every file).
        assert!(got("cmdline").contains("omoi-worker"), "{prefix}");
        // No command may trace or read another process whatever its user.
        assert_eq!(bounding_set(&got("caps")) & CAP_SYS_PTRACE, 0, "{prefix}");
        // Its own environment: the allow list and the passed variable, nothing else.
        let env = got("env");
        let mut names: Vec<&str> = env
            .lines()
            .filter_map(|line| line.split_once('=').map(|(name, _)| name))
            .filter(|name| !["PWD", "OLDPWD", "SHLVL", "_"].contains(name))
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                PASSED,
                "GIT_PAGER",
                "GIT_TERMINAL_PROMPT",
                "HOME",
                "PAGER",
                "PATH"
            ],
            "{prefix}"
        );
        assert!(env.contains(passed_value), "{prefix}");
        // Git has no credential to give.
        assert!(!got("git-credential").contains("password"), "{prefix}");
    }
    // The passed secret reached the command, and its value is masked in the events.
    assert!(!run.stdout.contains(passed_value));
    let results: Vec<String> = run
        .events
        .iter()
        .filter_map(|e| match &e.event {
            Event::AgentToolResult(r) if r.output_summary.contains("passed:") => {
                Some(r.output_summary.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(results, ["exit code: 0\npassed: ***\n"]);
    assert_eq!(
        remote::changed_files(
            &world.bare,
            &remote::branch_sha(&world.bare, BRANCH).unwrap()
        ),
        ["bin/greet", "tests/run.sh"]
    );
}

#[test]
fn a_secret_of_the_worker_cannot_be_passed_to_commands() {
    let world = World::new();
    let context = context("TSK-001", "Add a --version flag", &world.file_url(), None);
    let mut worker = world.worker("ws", &context, "task-version-flag.json");
    worker.set("OMOI_PASS_ENV", "PATH,OMOI_GIT_TOKEN");
    let run = worker.run();
    assert_eq!(run.code, 2);
    assert_eq!(
        run.stderr.trim(),
        "omoi-worker: OMOI_PASS_ENV: OMOI_GIT_TOKEN is a secret of the worker and is never \
         passed to commands"
    );
    worker.set("OMOI_PASS_ENV", "GOOD,bad-name");
    let run = worker.run();
    assert_eq!(run.code, 2);
    assert_eq!(
        run.stderr.trim(),
        "omoi-worker: OMOI_PASS_ENV: \"bad-name\" is not a variable name (letters, digits and _)"
    );
}
