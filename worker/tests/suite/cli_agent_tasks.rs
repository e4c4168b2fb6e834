//! Task mode through the real CLIs: the built `omoi-worker` with `OMOI_LLM=claude-code` or
//! `codex` clones the greet repository, the CLI edits it against a wire-true fake model, hands
//! the task in through the gate's `submit` (which runs the validation command), and the worker
//! commits and pushes to the spec branch. Each run is traced (`strace -f`): every connection
//! the worker and the CLI's whole process tree open or send to must be the model proxy or,
//! from the worker, the model API.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};

use omoi_protocol::event::{AgentFileEdited, Event};
use omoi_tests::fake_anthropic::FakeAnthropic;
use omoi_tests::fake_llm::{Reply, Turn};
use omoi_tests::fake_responses::FakeResponses;
use omoi_tests::git::{self as remote, LoggedCommit};
use pretty_assertions::assert_eq;
use serde_json::json;

use super::cli_agent_runs::tools_used;
use super::cli_agents::{claude_vars, cli_binary, codex_vars};
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

/// Runs the task with `vars` on top of the harness's under `strace`, off the async runtime;
/// returns the worker, how it ended and the connections the run made.
async fn run_task(world: &World, vars: Vec<(&'static str, String)>) -> TaskRun {
    let context = context("TSK-001", TITLE, &world.file_url(), Some(VALIDATION));
    let mut worker = world.worker("ws", &context, "task-version-flag.json");
    worker.set("MODEL", "test-model").set("MAX_ATTEMPTS", "1");
    for (name, value) in &vars {
        worker.set(name, value);
    }
    let trace = world.dir.path().join("connections.trace");
    tokio::task::spawn_blocking(move || {
        let plain = worker.command();
        let mut traced = Command::new(strace());
        traced
            .env_clear()
            .envs(plain.get_envs().filter_map(|(k, v)| Some((k, v?))))
            .stdin(Stdio::null())
            .args([
                "-f",
                "-qq",
                "-e",
                "trace=connect,sendto,sendmsg,getsockname",
            ])
            .arg("-o")
            .arg(&trace)
            .arg(plain.get_program());
        let output = traced.output().unwrap();
        let run = finished(
            output.status.code().unwrap_or(-1),
            output.stdout,
            output.stderr,
        );
        let connections = Connections::parse(&std::fs::read_to_string(&trace).unwrap());
        TaskRun {
            worker,
            finished: run,
            connections,
        }
    })
    .await
    .unwrap()
}

/// `strace`, which these tests need.
fn strace() -> &'static Path {
    let path = Path::new("/usr/bin/strace");
    assert!(
        path.is_file(),
        "the CLI task tests need strace (apt-get install strace)"
    );
    path
}

/// What a traced run did on the network.
#[derive(Debug, Default)]
struct Connections {
    /// Every IPv4/IPv6 address and port connected or sent to.
    destinations: BTreeSet<(String, u16)>,
    /// The ports of the run's own sockets (`getsockname`): its listeners among them.
    own_ports: BTreeSet<u16>,
}

impl Connections {
    fn parse(trace: &str) -> Self {
        let mut connections = Connections::default();
        for line in trace.lines() {
            let Some(address) = inet_address(line) else {
                continue;
            };
            if line.contains("getsockname") {
                connections.own_ports.insert(address.1);
            } else {
                connections.destinations.insert(address);
            }
        }
        connections
    }

    /// Each destination named by what it is: the model API, the run's own model proxy, or
    /// (anything else) its address.
    fn named(&self, api_port: u16) -> BTreeSet<String> {
        self.destinations
            .iter()
            .map(|(address, port)| match (address.as_str(), *port) {
                ("127.0.0.1", p) if p == api_port => "the model API".to_string(),
                ("127.0.0.1", p) if self.own_ports.contains(&p) => "the model proxy".to_string(),
                (address, port) => format!("{address} port {port}"),
            })
            .collect()
    }
}

/// The IPv4 or IPv6 address and port in a line of `strace`, if any.
fn inet_address(line: &str) -> Option<(String, u16)> {
    let between = |start: &str, end: &str| {
        let from = line.find(start)? + start.len();
        let len = line[from..].find(end)?;
        Some(line[from..from + len].to_string())
    };
    let port = between("sin_port=htons(", ")").or_else(|| between("sin6_port=htons(", ")"))?;
    let address =
        between("inet_addr(\"", "\"").or_else(|| between("inet_pton(AF_INET6, \"", "\""))?;
    Some((address, port.parse().ok()?))
}

/// The port of a fake's base URL.
fn port_of(base_url: &str) -> u16 {
    let url = reqwest::Url::parse(base_url).unwrap();
    url.port().unwrap()
}

/// A traced task run.
struct TaskRun {
    worker: Worker,
    finished: Finished,
    connections: Connections,
}

impl TaskRun {
    /// The task was validated, committed as one commit on the spec branch and pushed (the
    /// workspace a clean checkout of it); the fake saw nothing the real API would reject; and
    /// the run talked to the model API at `api_base_url` (the worker's proxy upstream) and to
    /// its model proxy, and to nothing else.
    fn assert_pushed_only_through_the_proxy(
        &self,
        world: &World,
        violations: &[String],
        api_base_url: &str,
    ) {
        assert_pushed(world, &self.worker, &self.finished);
        assert_eq!(violations, Vec::<String>::new());
        assert_eq!(
            self.connections.named(port_of(api_base_url)),
            BTreeSet::from(["the model API".to_string(), "the model proxy".to_string()]),
            "{:?}",
            self.connections
        );
    }
}

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
    let run = run_task(&world, claude_vars(&bin, fake.base_url())).await;
    run.assert_pushed_only_through_the_proxy(&world, &fake.violations(), &fake.base_url());
    let run = run.finished;
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
    let run = run_task(&world, codex_vars(&bin, fake.base_url())).await;
    run.assert_pushed_only_through_the_proxy(&world, &fake.violations(), &fake.base_url());
    let run = run.finished;
    assert_eq!(
        tools_used(&run.events),
        ["command_execution", "mcp__omoi__submit"]
    );
}

#[test]
fn the_trace_names_every_destination_but_the_api_and_the_proxy_by_its_address() {
    let trace = r#"7 getsockname(9, {sa_family=AF_INET, sin_port=htons(40479), sin_addr=inet_addr("127.0.0.1")}, [16]) = 0
8 connect(5, {sa_family=AF_INET, sin_port=htons(40479), sin_addr=inet_addr("127.0.0.1")}, 16) = -1 EINPROGRESS (Operation now in progress)
7 connect(6, {sa_family=AF_INET, sin_port=htons(33639), sin_addr=inet_addr("127.0.0.1")}, 16) = 0
8 connect(3, {sa_family=AF_UNIX, sun_path="/var/run/nscd/socket"}, 110) = -1 ENOENT (No such file or directory)
8 connect(3, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("10.255.255.53")}, 16) = 0
9 connect(4, {sa_family=AF_INET6, sin6_port=htons(443), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "2607:6bc0::10", &sin6_addr), sin6_scope_id=0}, 28 <unfinished ...>
not a line of strace"#;
    assert_eq!(
        Connections::parse(trace).named(33639),
        BTreeSet::from([
            "the model API".to_string(),
            "the model proxy".to_string(),
            "10.255.255.53 port 53".to_string(),
            "2607:6bc0::10 port 443".to_string(),
        ])
    );
}
