//! The harness of the task-mode suite: a bare remote seeded with the sample repository, the
//! task context of the greet spec, worker processes and builders of the expected events.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use base64::Engine;
use omoi_protocol::artifact::{
    Component, Priority, Requirement, RequirementKind, SpecTask, TaskKind,
};
use omoi_protocol::event::{
    Envelope, ErrorKind, Event, TaskCommitted, TaskCompleted, TaskFailed, TaskStarted,
    TaskValidation,
};
use omoi_protocol::task::TaskContext;
use omoi_tests::fixtures;
use omoi_tests::git::{self as remote, BASE_BRANCH};

pub const BRANCH: &str = "omoi/spec-greet";
pub const VALIDATION: &str = "sh tests/run.sh";
pub const VERSION_SUMMARY: &str =
    "Added a --version flag to bin/greet that prints \"greet 1.0.0\", with a test in tests/run.sh.";
/// What `sh tests/run.sh` prints once the version flag is in.
pub const TESTS_PASS: &str =
    "ok: greet \nok: greet --name Ada\nok: greet --bogus\nok: greet --version";

/// A bare remote seeded with the sample repository, and room for workspaces beside it.
pub struct World {
    pub dir: tempfile::TempDir,
    pub bare: PathBuf,
}

impl World {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bare = remote::seed_bare_repo(&fixtures::sample_repo(), &dir.path().join("greet.git"));
        World { dir, bare }
    }

    pub fn file_url(&self) -> String {
        format!("file://{}", self.bare.display())
    }

    pub fn base_sha(&self) -> String {
        remote::branch_sha(&self.bare, BASE_BRANCH).unwrap()
    }

    /// A worker for `task_id` in the empty workspace `dir/<name>`, replaying the fixture
    /// script `script`.
    pub fn worker(&self, name: &str, context: &TaskContext, script: &str) -> Worker {
        let workspace = self.dir.path().join(name);
        std::fs::create_dir_all(&workspace).unwrap();
        let json = serde_json::to_vec(context).unwrap();
        let env = vec![
            ("TASK_ID".to_string(), context.task.id.clone()),
            (
                "TASK_CONTEXT_B64".to_string(),
                base64::engine::general_purpose::STANDARD.encode(json),
            ),
            ("WORKSPACE".to_string(), workspace.display().to_string()),
            ("OMOI_LLM".to_string(), "scripted".to_string()),
            (
                "OMOI_SCRIPT".to_string(),
                fixtures::dir().join(script).display().to_string(),
            ),
            ("OMOI_RETRY_BASE_MS".to_string(), "1".to_string()),
            ("OMOI_LOG".to_string(), "warn".to_string()),
        ];
        Worker { workspace, env }
    }
}

/// The context of a task of the greet spec.
pub fn context(id: &str, title: &str, repo_url: &str, validation: Option<&str>) -> TaskContext {
    TaskContext {
        task: SpecTask {
            id: id.to_string(),
            title: title.to_string(),
            description: format!("{title} in the greet command."),
            kind: TaskKind::Implementation,
            priority: Priority::High,
            estimate_hours: 1.0,
            files: vec!["bin/greet".into(), "tests/run.sh".into()],
            acceptance_criteria: vec![
                "greet --version prints greet 1.0.0".into(),
                "sh tests/run.sh passes".into(),
            ],
            depends_on: Vec::new(),
            requirements: vec!["REQ-CLI-001".into()],
        },
        spec_id: "spec-greet".to_string(),
        spec_title: "Version flag for greet".to_string(),
        spec_description: "greet should say which version it is.".to_string(),
        requirements: vec![Requirement {
            id: "REQ-CLI-001".into(),
            title: "Version flag".into(),
            text: "When the user passes --version, the greet command shall print its version."
                .into(),
            kind: RequirementKind::Functional,
            priority: Priority::High,
            acceptance_criteria: vec![
                "greet --version prints greet 1.0.0".into(),
                "the exit code is 0".into(),
            ],
        }],
        components: vec![Component {
            name: "greet CLI".into(),
            responsibility: "Parses the options of greet.".into(),
            interfaces: vec!["bin/greet [--name NAME] [--version]".into()],
            requirements: vec!["REQ-CLI-001".into()],
        }],
        repo_url: repo_url.to_string(),
        base_branch: BASE_BRANCH.to_string(),
        branch: BRANCH.to_string(),
        validation_command: validation.map(str::to_string),
        spec_record: None,
    }
}

/// One worker process to run.
pub struct Worker {
    pub workspace: PathBuf,
    pub env: Vec<(String, String)>,
}

/// How a worker run ended.
pub struct Finished {
    pub code: i32,
    pub events: Vec<Envelope>,
    pub stdout: String,
    pub stderr: String,
}

impl Worker {
    pub fn set(&mut self, name: &str, value: &str) -> &mut Self {
        self.env.retain(|(n, _)| n != name);
        self.env.push((name.into(), value.into()));
        self
    }

    pub fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_omoi-worker"));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.workspace.parent().unwrap())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        command
    }

    pub fn run(&self) -> Finished {
        let output = self.command().output().unwrap();
        finished(
            output.status.code().unwrap_or(-1),
            output.stdout,
            output.stderr,
        )
    }

    /// Starts the worker; its stdout lines arrive on the receiver as they are written.
    pub fn spawn(&self) -> (Child, mpsc::Receiver<String>) {
        let mut child = self
            .command()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        (child, rx)
    }
}

pub fn finished(code: i32, stdout: Vec<u8>, stderr: Vec<u8>) -> Finished {
    let stdout = String::from_utf8(stdout).unwrap();
    let events = stdout.lines().map(parse_event).collect();
    Finished {
        code,
        events,
        stdout,
        stderr: String::from_utf8(stderr).unwrap(),
    }
}

pub fn parse_event(line: &str) -> Envelope {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not an event ({e}): {line}"))
}

/// Waits for a spawned worker: the lines already read, then the rest.
pub fn wait(mut child: Child, seen: Vec<String>, rx: mpsc::Receiver<String>) -> Finished {
    let mut stderr = Vec::new();
    std::io::Read::read_to_end(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    let status = child.wait().unwrap();
    let mut lines = seen;
    lines.extend(rx.iter());
    let stdout = lines.iter().map(|l| format!("{l}\n")).collect::<String>();
    finished(status.code().unwrap_or(-1), stdout.into_bytes(), stderr)
}

/// Reads events of a spawned worker until one matches; returns every line read.
pub fn read_until(rx: &mpsc::Receiver<String>, done: impl Fn(&Event) -> bool) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("no more events ({e}) after {seen:?}"));
        let hit = done(&parse_event(&line).event);
        seen.push(line);
        if hit {
            return seen;
        }
    }
}

/// The task events and the terminal event, as names.
pub fn skeleton(events: &[Envelope]) -> Vec<&'static str> {
    events
        .iter()
        .map(|e| e.event.type_name())
        .filter(|name| {
            name.starts_with("task.") || *name == "agent.completed" || *name == "agent.failed"
        })
        .collect()
}

pub fn task_events(events: &[Envelope]) -> Vec<Event> {
    events
        .iter()
        .map(|e| e.event.clone())
        .filter(|e| e.type_name().starts_with("task."))
        .collect()
}

pub fn started(id: &str, title: &str) -> Event {
    Event::TaskStarted(TaskStarted {
        task_id: id.into(),
        title: title.into(),
        branch: BRANCH.into(),
    })
}

pub fn validation(id: &str, exit_code: Option<i32>, output_tail: &str) -> Event {
    Event::TaskValidation(TaskValidation {
        task_id: id.into(),
        command: VALIDATION.into(),
        exit_code,
        output_tail: output_tail.into(),
    })
}

pub fn committed(id: &str, sha: &str) -> Event {
    Event::TaskCommitted(TaskCommitted {
        task_id: id.into(),
        sha: sha.into(),
        branch: BRANCH.into(),
    })
}

pub fn completed(id: &str, sha: &str, summary: &str) -> Event {
    Event::TaskCompleted(TaskCompleted {
        task_id: id.into(),
        sha: sha.into(),
        summary: summary.into(),
    })
}

pub fn failure(events: &[Envelope]) -> (TaskFailed, ErrorKind, String) {
    let task = events.iter().find_map(|e| match &e.event {
        Event::TaskFailed(f) => Some(f.clone()),
        _ => None,
    });
    let agent = events.iter().find_map(|e| match &e.event {
        Event::AgentFailed(f) => Some((f.kind, f.reason.clone())),
        _ => None,
    });
    let (task, (kind, reason)) = (task.unwrap(), agent.unwrap());
    (task, kind, reason)
}
