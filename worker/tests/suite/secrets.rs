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
    script_running(vec![
        json!({"name": "run", "input": {"command": probe(out, "run")}}),
        json!({"name": "run", "input": {"command": format!("echo \"passed: ${PASSED}\"")}}),
    ])
}

/// The script of the agent: `first` tool calls, then the version flag of the sample task, and
/// submit.
fn script_running(first: Vec<serde_json::Value>) -> serde_json::Value {
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
        {"tool_calls": first},
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
    if pid_namespaces() {
        isolation(Start::Init);
    }
}

/// Whether `unshare` can make a PID namespace here; a failure under `CI=true`.
fn pid_namespaces() -> bool {
    let usable = std::process::Command::new("unshare")
        .args(["-p", "-f", "--mount-proc", "true"])
        .status()
        .is_ok_and(|status| status.success());
    if !usable && std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("unshare cannot make a PID namespace here");
    }
    if !usable {
        eprintln!("skipped: unshare cannot make a PID namespace here (CI=true makes this fail)");
    }
    usable
}

/// Runs `worker` as a child of the test, or as PID 1 of a new PID namespace.
fn run_as(world: &World, worker: &Worker, start: Start) -> Finished {
    match start {
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
    }
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
    let run = run_as(&world, &worker, start);
    assert_eq!(run.code, 0, "{start:?} stderr: {}", run.stderr);

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
fn a_secret_of_the_worker_or_a_short_one_cannot_be_passed_to_commands() {
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
    worker.set("OMOI_PASS_ENV", "NPM_TOKEN");
    worker.set("NPM_TOKEN", "npm-123");
    let run = worker.run();
    assert_eq!(run.code, 2);
    assert_eq!(
        run.stderr.trim(),
        "omoi-worker: OMOI_PASS_ENV: NPM_TOKEN is a secret of 7 bytes; secrets passed to \
         commands must be at least 8 bytes, or what the commands print could not be masked"
    );
    worker.set("OMOI_PASS_ENV", "GOOD,bad-name");
    let run = worker.run();
    assert_eq!(run.code, 2);
    assert_eq!(
        run.stderr.trim(),
        "omoi-worker: OMOI_PASS_ENV: \"bad-name\" is not a variable name (letters, digits and _)"
    );
}

/// A process the agent leaves behind (in a session of its own, so the end of its command does
/// not take it) sweeps every process's `environ` and `cmdline` for the git token while the
/// worker pushes over HTTP. Its patterns come from a file, so that its own command line holds
/// neither the token nor what it looks for. A canary process holding a pattern of its own in its
/// environment shows that the sweep does find what is there. The command ends once the sweeper
/// is in its own session (its first sweep), so that the end of the command's group misses it.
const SWEEPER: &str = r#"setsid sh -c '
end=$(( $(date +%s) + 120 ))
OMOI_SWEEP_CANARY=canary-$((NONCE + 0))-sweep sleep 150 &
canary=$!
echo "/proc/$canary/environ" > "$1/canary"
n=0
while [ ! -e "$1/stop" ] && [ "$(date +%s)" -lt "$end" ]; do
  grep -a -l -F -f "$2" /proc/[0-9]*/environ /proc/[0-9]*/cmdline >> "$1/hits" 2>/dev/null
  grep -a -l -e "remote-htt[p]" -e "git-credentia[l]" /proc/[0-9]*/cmdline >> "$1/seen" 2>/dev/null
  n=$((n + 1)); echo "$n" > "$1/sweeps"
done
kill "$canary"
echo done > "$1/ended"' sweeper WATCH PATTERNS > /dev/null 2>&1 < /dev/null &
while [ ! -s "WATCH/sweeps" ]; do sleep 0.05; done
echo started"#;

#[test]
fn a_process_left_by_the_agent_finds_the_git_token_in_no_environment_or_command_line() {
    sweep(Start::Child);
}

#[test]
fn a_process_left_by_the_agent_finds_no_git_token_when_the_worker_is_pid_1() {
    if pid_namespaces() {
        sweep(Start::Init);
    }
}

fn sweep(start: Start) {
    let world = World::new();
    // A token of its own: the other start's test runs beside this one, and under `unshare` the
    // token sits in the environment of the `unshare` process the test starts, outside the
    // worker's PID namespace but inside this sweep's view when this one runs as a child.
    let token = format!(
        "ghs_sweep{}0123456789abcdef",
        format!("{start:?}").to_lowercase()
    );
    let token = token.as_str();
    let server = omoi_tests::git::GitHttpServer::start(world.dir.path(), &basic_auth(token));
    let url = server.url("greet.git");
    let watch = world.dir.path().join("watch");
    let patterns = world.dir.path().join("patterns");
    std::fs::create_dir_all(&watch).unwrap();
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    // What the sweeper looks for: the token, the header git sends it in, and its canary.
    std::fs::write(
        &patterns,
        format!("{token}\n{}\ncanary-{nonce}-sweep\n", basic_auth(token)),
    )
    .unwrap();
    let sweeper = SWEEPER
        .replace("NONCE", &nonce.to_string())
        .replace("WATCH", &watch.display().to_string())
        .replace("PATTERNS", &patterns.display().to_string());
    let context = context("TSK-001", "Add a --version flag", &url, Some(VALIDATION));
    let script_file = world.dir.path().join("sweep-script.json");
    let script = script_running(vec![json!({"name": "run", "input": {"command": sweeper}})]);
    std::fs::write(&script_file, script.to_string()).unwrap();
    let mut worker = world.worker("ws", &context, "task-version-flag.json");
    worker.set("OMOI_SCRIPT", &script_file.display().to_string());
    worker.set("OMOI_GIT_TOKEN", token);
    let run = run_as(&world, &worker, start);
    std::fs::write(watch.join("stop"), "").unwrap();
    let ended = std::time::Instant::now();
    // As PID 1 the worker took every process of its namespace with it, the sweeper too.
    while start == Start::Child
        && !watch.join("ended").exists()
        && ended.elapsed() < std::time::Duration::from_secs(10)
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    assert!(
        server.auth_log().accepted >= 1,
        "the push carried the token"
    );
    assert_eq!(
        remote::subjects(&world.bare, BRANCH),
        ["TSK-001: Add a --version flag", "initial"]
    );
    let sweeps: u64 = read(&watch.join("sweeps")).trim().parse().unwrap_or(0);
    let started: Vec<String> = run
        .events
        .iter()
        .filter_map(|e| match &e.event {
            Event::AgentToolResult(r)
                if r.output_summary.contains("started")
                    || r.output_summary.starts_with("exit code") =>
            {
                Some(r.output_summary.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(started, ["exit code: 0\nstarted\n"]);
    let seen = read(&watch.join("seen"));
    assert!(
        !seen.is_empty(),
        "the sweeper never saw git's remote helper ({sweeps} sweeps): it did not run during the push"
    );
    // Every sweep found the canary, and nothing else.
    let canary = read(&watch.join("canary"));
    let mut hits: Vec<String> = read(&watch.join("hits"))
        .lines()
        .map(str::to_string)
        .collect();
    hits.sort();
    hits.dedup();
    assert_eq!(hits, [canary.trim()], "{sweeps} sweeps");
}

/// The `Authorization` header git sends for `token`.
fn basic_auth(token: &str) -> String {
    use base64::Engine;
    let pair = format!("x-access-token:{token}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}
