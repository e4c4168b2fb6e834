//! Test support for bridged tasks with the fake provider: a written spec (its final spec
//! ingested), the task sandboxes the scheduler spawned, and the events a task worker sends.

use std::sync::Arc;
use std::time::Duration;

use omoi_coordinator::Settings;
use omoi_protocol::event::RawEvent;
use omoi_protocol::task::TaskContext;
use pretty_assertions::assert_eq;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{Api, FakeProvider, TestDb, TestServer, event, eventually, phase_output};

pub const WAIT: Duration = Duration::from_secs(15);

/// Fast scheduling for tests: short intervals and backoff.
pub fn quick(settings: &mut Settings) {
    settings.scheduler_interval = Duration::from_millis(50);
    settings.task_policy.retry_base = Duration::from_millis(200);
    settings.task_policy.retry_cap = Duration::from_secs(1);
}

/// The final spec of the sample script, with `tasks` when given (else the script's four).
pub fn final_spec(tasks: Option<Value>) -> Value {
    let mut spec = json!({"title": "Add a --shout option to greet", "description": "Loudly."});
    for phase in ["explore", "requirements", "design", "tasks"] {
        spec[phase] = phase_output(phase)[phase].clone();
    }
    if let Some(tasks) = tasks {
        spec["tasks"] = json!({ "tasks": tasks });
    }
    spec["sync"] = json!({
        "coverage": [], "coverage_percent": 100.0, "uncovered": [],
        "topological_order": [], "parallel_groups": [], "critical_path": [],
        "critical_path_hours": 0.0, "total_hours": 0.0, "ready_for_execution": true
    });
    spec
}

/// A spec written by a (fake) spec sandbox.
pub struct Written {
    pub server: TestServer,
    pub provider: Arc<FakeProvider>,
    pub api: Api,
    pub project_id: String,
    pub spec_id: String,
}

/// A server with one project (`project` is its body) and one spec whose final spec (`tasks`, or
/// the sample's) arrived.
pub async fn written(
    db: &TestDb,
    project: Value,
    tasks: Option<Value>,
    tune: impl FnOnce(&mut Settings),
) -> Written {
    let provider = FakeProvider::new();
    let server = TestServer::start(db, provider.clone(), |s| {
        quick(s);
        tune(s);
    })
    .await;
    let (_, api) = server.user("ada").await;
    let (status, project) = api.post("/projects", &project).await;
    assert_eq!(status, StatusCode::CREATED, "{project}");
    let project_id = project["id"].as_str().unwrap().to_string();
    let spec_id = write_spec(&server, &provider, &api, &project_id, tasks).await;
    Written {
        server,
        provider,
        api,
        project_id,
        spec_id,
    }
}

/// Launches a spec in `project_id` and ingests its final spec as its sandbox would.
pub async fn write_spec(
    server: &TestServer,
    provider: &FakeProvider,
    api: &Api,
    project_id: &str,
    tasks: Option<Value>,
) -> String {
    let (status, spec) = api
        .post(
            "/specs/launch",
            &json!({"project_id": project_id, "title": "Add a --shout option to greet"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{spec}");
    let spec_id = spec["id"].as_str().unwrap().to_string();
    // The spec's sandbox (task sandboxes of other specs may be spawned meanwhile).
    let env = provider
        .spawned()
        .into_iter()
        .find(|r| r.env.get("SPEC_ID") == Some(&spec_id))
        .unwrap()
        .env;
    let (sandbox, token) = (env["SANDBOX_ID"].clone(), env["SANDBOX_TOKEN"].clone());
    let batch = written_batch(&sandbox, &spec_id, tasks);
    let (status, ack) = server.api(Some(&token)).ingest(&sandbox, &batch).await;
    assert_eq!((status, ack), (StatusCode::OK, json!({"acked_seq": 2})));
    spec_id
}

/// What a spec sandbox sends when it wrote the spec: the final spec (`tasks`, or the sample's),
/// then its end.
pub fn written_batch(sandbox: &str, spec_id: &str, tasks: Option<Value>) -> Vec<RawEvent> {
    vec![
        event(
            sandbox,
            spec_id,
            1,
            "spec.execution_completed",
            final_spec(tasks),
        ),
        event(sandbox, spec_id, 2, "agent.completed", completed_data()),
    ]
}

pub fn completed_data() -> Value {
    json!({"success": true, "counters": {"turns": 1, "tool_calls": 1,
           "usage": {"input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0}}})
}

/// A task sandbox the scheduler spawned.
#[derive(Debug, Clone)]
pub struct TaskSandbox {
    /// `TSK-NNN`.
    pub task: String,
    pub sandbox_id: String,
    pub token: String,
    pub spec_id: String,
    pub context: TaskContext,
}

/// The task sandboxes spawned so far, in spawn order.
pub fn task_sandboxes(provider: &FakeProvider) -> Vec<TaskSandbox> {
    provider
        .spawned()
        .iter()
        .filter(|r| r.env.contains_key("TASK_ID"))
        .map(|r| {
            use base64::Engine;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(&r.env["TASK_CONTEXT_B64"])
                .unwrap();
            let context: TaskContext = serde_json::from_slice(&bytes).unwrap();
            TaskSandbox {
                task: r.env["TASK_ID"].clone(),
                sandbox_id: r.env["SANDBOX_ID"].clone(),
                token: r.env["SANDBOX_TOKEN"].clone(),
                spec_id: context.spec_id.clone(),
                context,
            }
        })
        .collect()
}

/// Waits until `n` task sandboxes were spawned and returns them.
pub async fn wait_for_task_sandboxes(provider: &FakeProvider, n: usize) -> Vec<TaskSandbox> {
    eventually(WAIT, &format!("{n} task sandboxes"), || async {
        task_sandboxes(provider).len() >= n
    })
    .await;
    task_sandboxes(provider)
}

/// The first sandbox of the task `task` (`TSK-NNN`), once it has started: tasks that become
/// ready together may start in any order.
pub async fn wait_for_task_sandbox(provider: &FakeProvider, task: &str) -> TaskSandbox {
    eventually(WAIT, &format!("a sandbox of {task}"), || async {
        task_sandboxes(provider).iter().any(|s| s.task == task)
    })
    .await;
    task_sandboxes(provider)
        .into_iter()
        .find(|s| s.task == task)
        .unwrap()
}

/// An event of a task sandbox.
pub fn task_event(sandbox: &TaskSandbox, seq: u64, kind: &str, data: Value) -> RawEvent {
    RawEvent {
        task_id: Some(sandbox.task.clone()),
        ..event(&sandbox.sandbox_id, &sandbox.spec_id, seq, kind, data)
    }
}

/// Sends a batch as the task sandbox.
pub async fn send(server: &TestServer, sandbox: &TaskSandbox, events: &[RawEvent]) {
    let (status, ack) = server
        .api(Some(&sandbox.token))
        .ingest(&sandbox.sandbox_id, events)
        .await;
    assert_eq!(status, StatusCode::OK, "{ack}");
}

/// What a worker sends for a task that lands commit `sha`.
pub fn landed(sandbox: &TaskSandbox, sha: &str) -> Vec<RawEvent> {
    let branch = sandbox.context.branch.clone();
    vec![
        task_event(
            sandbox,
            1,
            "agent.started",
            json!({"version": "0.1.0", "mode": "task"}),
        ),
        task_event(
            sandbox,
            2,
            "task.started",
            json!({"task_id": sandbox.task, "title": sandbox.context.task.title, "branch": branch}),
        ),
        task_event(
            sandbox,
            3,
            "task.validation",
            json!({"task_id": sandbox.task, "command": "sh tests/run.sh", "exit_code": 0}),
        ),
        task_event(
            sandbox,
            4,
            "task.committed",
            json!({"task_id": sandbox.task, "sha": sha, "branch": branch}),
        ),
        task_event(
            sandbox,
            5,
            "task.completed",
            json!({"task_id": sandbox.task, "sha": sha, "summary": "done"}),
        ),
        task_event(sandbox, 6, "agent.completed", completed_data()),
    ]
}

/// What a worker sends for a task whose attempt failed with `reason`.
pub fn failed(sandbox: &TaskSandbox, reason: &str) -> Vec<RawEvent> {
    vec![
        task_event(
            sandbox,
            1,
            "task.started",
            json!({"task_id": sandbox.task, "title": sandbox.context.task.title,
                   "branch": sandbox.context.branch}),
        ),
        task_event(
            sandbox,
            2,
            "task.failed",
            json!({"task_id": sandbox.task, "reason": reason}),
        ),
        task_event(
            sandbox,
            3,
            "agent.failed",
            json!({"kind": "workspace", "reason": reason}),
        ),
    ]
}

/// `(TSK id, status, attempts)` of every task of a spec, in TSK order.
pub async fn task_states(api: &Api, spec_id: &str) -> Vec<(String, String, u64)> {
    let (status, tasks) = api.get(&format!("/specs/{spec_id}/tasks")).await;
    assert_eq!(status, StatusCode::OK);
    tasks
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["spec_task_id"].as_str().unwrap().to_string(),
                t["status"].as_str().unwrap().to_string(),
                t["attempts"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// The expected value of [`task_states`].
pub fn states(expected: &[(&str, &str, u64)]) -> Vec<(String, String, u64)> {
    expected
        .iter()
        .map(|(t, s, n)| (t.to_string(), s.to_string(), *n))
        .collect()
}

/// Waits until the spec has `status`.
pub async fn wait_for_spec(api: &Api, spec_id: &str, status: &str) -> Value {
    eventually(WAIT, &format!("the spec to be {status}"), || async {
        api.get(&format!("/specs/{spec_id}")).await.1["status"] == status
    })
    .await;
    api.get(&format!("/specs/{spec_id}")).await.1
}
