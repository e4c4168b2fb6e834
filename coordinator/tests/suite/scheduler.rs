//! The bridge and the scheduler with a fake provider: a written spec becomes tasks once, ready
//! tasks get sandboxes with the task context, task events move tasks along, failed and lost
//! attempts are retried with backoff, the last failure blocks the dependents and fails the spec,
//! the limits hold, and a spec whose tasks all completed reports its branch.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use omoi_coordinator::sandbox::ProviderStatus;
use omoi_protocol::artifact::{Component, FinalSpec, Requirement, SpecTask};
use omoi_protocol::task::{SpecRecord, TaskContext};
use pretty_assertions::assert_eq;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::common::tasks::{
    failed, landed, quick, send, states, task_sandboxes, task_states, wait_for_spec,
    wait_for_task_sandboxes, write_spec, written,
};
use super::common::{FakeProvider, TestServer, each_backend, phase_output};

fn sample_project() -> Value {
    json!({"name": "greet", "repo_url": "https://git.example/greet.git", "base_branch": "trunk",
           "validation_command": "sh tests/run.sh", "git_token": "ghs_secret",
           "worker_env": {"OMOI_LLM": "scripted", "MAX_ATTEMPTS": "2"}})
}

/// The sample script's task `id`, requirement `id` and components serving any of `requirements`.
fn sample_task(id: &str) -> SpecTask {
    let tasks = phase_output("tasks")["tasks"]["tasks"].clone();
    let task = tasks
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .unwrap()
        .clone();
    serde_json::from_value(task).unwrap()
}

fn sample_requirement(id: &str) -> Requirement {
    let all = phase_output("requirements")["requirements"]["requirements"].clone();
    let found = all
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap()
        .clone();
    serde_json::from_value(found).unwrap()
}

fn sample_components(names: &[&str]) -> Vec<Component> {
    let all: Vec<Component> =
        serde_json::from_value(phase_output("design")["design"]["components"].clone()).unwrap();
    names
        .iter()
        .map(|n| all.iter().find(|c| c.name == *n).unwrap().clone())
        .collect()
}

#[tokio::test]
async fn a_written_spec_is_bridged_once_and_its_ready_tasks_get_sandboxes_with_their_context() {
    each_backend(|db| async move {
        let w = written(&db, sample_project(), None, |_| {}).await;
        let started = wait_for_task_sandboxes(&w.provider, 2).await;

        // The same final spec again (a worker restarted in COMPLETE) bridges nothing twice.
        let spec_sandbox = w.provider.env(0);
        let replay = vec![super::common::event(
            &spec_sandbox["SANDBOX_ID"],
            &w.spec_id,
            3,
            "spec.execution_completed",
            super::common::tasks::final_spec(None),
        )];
        let (status, _) = w
            .server
            .api(Some(&spec_sandbox["SANDBOX_TOKEN"]))
            .ingest(&spec_sandbox["SANDBOX_ID"], &replay)
            .await;
        assert_eq!(status, StatusCode::OK);

        let (_, detail) = w.api.get(&format!("/specs/{}", w.spec_id)).await;
        assert_eq!(detail["status"], "implementing");
        assert_eq!(detail["branch"], json!(format!("omoi/{}", w.spec_id)));
        assert_eq!(
            task_states(&w.api, &w.spec_id).await,
            states(&[
                ("TSK-001", "running", 1),
                ("TSK-002", "running", 1),
                ("TSK-003", "pending", 0),
                ("TSK-004", "pending", 0),
            ])
        );
        let tickets: Vec<&Value> = detail["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| &t["ticket_id"])
            .collect();
        assert!(tickets.iter().all(|t| *t == tickets[0]), "{tickets:?}");

        // Each sandbox runs one task, with its context and the task environment; the tasks that
        // depend on no other carry the final spec, to record it in the repository.
        let final_spec: FinalSpec =
            serde_json::from_value(super::common::tasks::final_spec(None)).unwrap();
        let spec_record = SpecRecord {
            dir: ".kiro/specs/add-a-shout-option-to-greet".into(),
            requirements: final_spec.requirements,
            design: final_spec.design,
            tasks: final_spec.tasks,
        };
        for s in &started {
            assert_eq!(
                s.context.spec_record.as_ref(),
                Some(&spec_record),
                "{}",
                s.task
            );
        }
        let first = started.iter().find(|s| s.task == "TSK-001").unwrap();
        assert_eq!(
            first.context,
            TaskContext {
                task: sample_task("TSK-001"),
                spec_id: w.spec_id.clone(),
                spec_title: "Add a --shout option to greet".into(),
                spec_description: String::new(),
                requirements: vec![sample_requirement("REQ-CLI-001")],
                components: sample_components(&["option parser", "shout function", "output path"]),
                repo_url: "https://git.example/greet.git".into(),
                base_branch: "trunk".into(),
                branch: format!("omoi/{}", w.spec_id),
                validation_command: Some("sh tests/run.sh".into()),
                spec_record: Some(spec_record.clone()),
            }
        );
        let request = w
            .provider
            .spawned()
            .into_iter()
            .find(|r| r.env.get("SANDBOX_ID") == Some(&first.sandbox_id))
            .unwrap();
        let mut env = request.env.clone();
        let context = env.remove("TASK_CONTEXT_B64").unwrap();
        assert!(!context.is_empty());
        let expected: BTreeMap<String, String> = [
            ("EXECUTION_MODE", "implementation"),
            ("HEARTBEAT_SECS", "10"),
            ("MAX_ATTEMPTS", "2"),
            ("OMOIOS_API_URL", w.server.url.as_str()),
            ("OMOIOS_PROJECT_ID", w.project_id.as_str()),
            ("OMOI_GIT_TOKEN", "ghs_secret"),
            ("OMOI_LLM", "scripted"),
            ("SANDBOX_ID", first.sandbox_id.as_str()),
            ("SANDBOX_TOKEN", first.token.as_str()),
            ("TASK_ID", "TSK-001"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(env, expected);
        assert_eq!(request.repo, None);
        let task_id = detail["tasks"][0]["id"].as_str().unwrap();
        assert_eq!(
            request.labels,
            BTreeMap::from([
                ("omoi.owner".to_string(), "omoi".to_string()),
                ("omoi.sandbox".to_string(), first.sandbox_id.clone()),
                ("omoi.spec".to_string(), w.spec_id.clone()),
                ("omoi.task".to_string(), task_id.to_string()),
            ])
        );
        assert_eq!(detail["tasks"][0]["sandbox_id"], json!(first.sandbox_id));
        // The token is used, never served.
        let (_, projects) = w.api.get("/projects").await;
        assert_eq!(projects[0]["has_git_token"], true);
        assert!(projects[0].get("git_token").is_none(), "{projects}");
        w.server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn completed_tasks_start_their_dependents_and_the_last_one_ends_the_spec_with_its_branch() {
    each_backend(|db| async move {
        let w = written(&db, sample_project(), None, |_| {}).await;
        let started = wait_for_task_sandboxes(&w.provider, 2).await;
        let of = |tsk: &str| started.iter().find(|s| s.task == tsk).unwrap().clone();

        send(
            &w.server,
            &of("TSK-001"),
            &landed(&of("TSK-001"), "1111111111111111"),
        )
        .await;
        // TSK-003 waits for TSK-002 too.
        assert_eq!(
            task_states(&w.api, &w.spec_id).await,
            states(&[
                ("TSK-001", "completed", 1),
                ("TSK-002", "running", 1),
                ("TSK-003", "pending", 0),
                ("TSK-004", "pending", 0),
            ])
        );
        send(
            &w.server,
            &of("TSK-002"),
            &landed(&of("TSK-002"), "2222222222222222"),
        )
        .await;
        let started = wait_for_task_sandboxes(&w.provider, 3).await;
        assert_eq!(started[2].task, "TSK-003");
        // A task that waits for others starts from a branch that holds the spec already.
        assert_eq!(started[2].context.spec_record, None);
        send(
            &w.server,
            &started[2],
            &landed(&started[2], "3333333333333333"),
        )
        .await;
        let started = wait_for_task_sandboxes(&w.provider, 4).await;
        assert_eq!(started[3].task, "TSK-004");
        assert_eq!(
            task_states(&w.api, &w.spec_id).await,
            states(&[
                ("TSK-001", "completed", 1),
                ("TSK-002", "completed", 1),
                ("TSK-003", "completed", 1),
                ("TSK-004", "running", 1),
            ])
        );
        send(
            &w.server,
            &started[3],
            &landed(&started[3], "4444444444444444"),
        )
        .await;

        let done = wait_for_spec(&w.api, &w.spec_id, "completed").await;
        // A plain remote: the branch is the result, no pull request.
        assert_eq!(done["branch"], json!(format!("omoi/{}", w.spec_id)));
        assert_eq!(done.get("pull_request"), None);
        assert_eq!(done["error"], Value::Null);
        let commits: Vec<(&str, &str)> = done["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["spec_task_id"].as_str().unwrap(),
                    t["commit_sha"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            commits,
            [
                ("TSK-001", "1111111111111111"),
                ("TSK-002", "2222222222222222"),
                ("TSK-003", "3333333333333333"),
                ("TSK-004", "4444444444444444"),
            ]
        );
        let sandboxes: Vec<(&str, &str)> = done["sandboxes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["status"].as_str().unwrap(),
                    s["terminal"].as_str().unwrap_or("-"),
                )
            })
            .collect();
        assert_eq!(sandboxes, vec![("completed", "agent.completed"); 5]);
        w.server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_failed_attempt_is_retried_after_the_backoff_and_the_last_one_blocks_the_dependents() {
    each_backend(|db| async move {
        let w = written(&db, sample_project(), None, |s| {
            s.task_policy.max_attempts = 2;
        })
        .await;
        let started = wait_for_task_sandboxes(&w.provider, 2).await;
        let first = started
            .iter()
            .find(|s| s.task == "TSK-001")
            .unwrap()
            .clone();
        let failed_at = Instant::now();
        send(&w.server, &first, &failed(&first, "validation failed")).await;
        let (_, task) = w.api.get(&format!("/specs/{}/tasks", w.spec_id)).await;
        assert_eq!(
            (&task[0]["status"], &task[0]["attempts"], &task[0]["error"]),
            (&json!("ready"), &json!(1), &json!("validation failed"))
        );

        // The second attempt waits for the backoff (200 ms in these tests).
        let started = wait_for_task_sandboxes(&w.provider, 3).await;
        assert!(failed_at.elapsed() >= Duration::from_millis(200));
        let second = started[2].clone();
        assert_eq!(second.task, "TSK-001");
        assert_ne!(second.sandbox_id, first.sandbox_id);
        send(
            &w.server,
            &second,
            &failed(&second, "validation failed again"),
        )
        .await;

        let spec = wait_for_spec(&w.api, &w.spec_id, "failed").await;
        assert_eq!(
            spec["error"],
            "TSK-001 failed after 2 attempts: validation failed again"
        );
        assert_eq!(
            task_states(&w.api, &w.spec_id).await,
            states(&[
                ("TSK-001", "failed", 2),
                ("TSK-002", "running", 1),
                ("TSK-003", "blocked", 0),
                ("TSK-004", "blocked", 0),
            ])
        );

        // The independent task still lands; nothing new starts for a failed spec.
        let second_task = started
            .iter()
            .find(|s| s.task == "TSK-002")
            .unwrap()
            .clone();
        send(
            &w.server,
            &second_task,
            &landed(&second_task, "2222222222222222"),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(task_sandboxes(&w.provider).len(), 3);

        // A resume restarts the failed task with fresh attempts; completed work stays.
        let (status, _) = w
            .api
            .post(&format!("/specs/{}/execute", w.spec_id), &json!({}))
            .await;
        assert_eq!(status, StatusCode::OK);
        let started = wait_for_task_sandboxes(&w.provider, 4).await;
        assert_eq!(started[3].task, "TSK-001");
        assert_eq!(
            task_states(&w.api, &w.spec_id).await,
            states(&[
                ("TSK-001", "running", 1),
                ("TSK-002", "completed", 1),
                ("TSK-003", "pending", 0),
                ("TSK-004", "pending", 0),
            ])
        );
        let (_, spec) = w.api.get(&format!("/specs/{}", w.spec_id)).await;
        assert_eq!(
            (&spec["status"], &spec["error"]),
            (&json!("implementing"), &Value::Null)
        );
        w.server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_task_sandbox_that_cannot_be_spawned_fails_its_attempts_and_then_the_spec() {
    each_backend(|db| async move {
        let provider = FakeProvider::new();
        provider.fail_task_spawns();
        let server = TestServer::start(&db, provider.clone(), |s| {
            quick(s);
            s.task_policy.max_attempts = 2;
        })
        .await;
        let (_, api) = server.user("ada").await;
        let (status, project) = api.post("/projects", &sample_project()).await;
        assert_eq!(status, StatusCode::CREATED, "{project}");
        let project_id = project["id"].as_str().unwrap();
        let spec_id = write_spec(&server, &provider, &api, project_id, None).await;

        let spec = wait_for_spec(&api, &spec_id, "failed").await;
        let error = spec["error"].as_str().unwrap();
        assert!(
            error.starts_with("TSK-001 failed after 2 attempts: could not start a sandbox: ")
                && error.ends_with("no capacity"),
            "{error}"
        );
        let tasks = task_states(&api, &spec_id).await;
        assert_eq!(tasks[0], states(&[("TSK-001", "failed", 2)])[0]);
        // Each attempt had its own sandbox, recorded as failed with the provider's reason.
        let (_, detail) = api.get(&format!("/specs/{spec_id}")).await;
        let task_sandboxes: Vec<(&Value, &str)> = detail["sandboxes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["task_id"] == detail["tasks"][0]["id"])
            .map(|s| (&s["status"], s["reason"].as_str().unwrap()))
            .collect();
        assert_eq!(task_sandboxes.len(), 2, "{task_sandboxes:?}");
        for (status, reason) in task_sandboxes {
            assert_eq!(status, &json!("failed"));
            assert!(reason.ends_with("no capacity"), "{reason}");
        }
        assert_eq!(
            provider.spawned().len(),
            1,
            "only the spec's sandbox started"
        );
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_task_whose_sandbox_is_lost_is_retried_in_a_new_one() {
    each_backend(|db| async move {
        let w = written(&db, sample_project(), None, |_| {}).await;
        let started = wait_for_task_sandboxes(&w.provider, 2).await;
        let first = started
            .iter()
            .find(|s| s.task == "TSK-001")
            .unwrap()
            .clone();
        w.provider.set_status(
            &format!("fake-{}", first.sandbox_id),
            ProviderStatus::Exited { code: Some(137) },
        );
        let started = wait_for_task_sandboxes(&w.provider, 3).await;
        assert_eq!(started[2].task, "TSK-001");
        let (_, detail) = w.api.get(&format!("/specs/{}", w.spec_id)).await;
        let lost = detail["sandboxes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == json!(first.sandbox_id))
            .unwrap();
        assert_eq!(
            (&lost["status"], &lost["reason"]),
            (
                &json!("lost"),
                &json!("the worker exited with code 137 without a terminal event")
            )
        );
        let task = &detail["tasks"][0];
        assert_eq!(
            (&task["status"], &task["attempts"], &task["error"]),
            (
                &json!("running"),
                &json!(2),
                &json!(
                    "the sandbox was lost: the worker exited with code 137 without a terminal event"
                )
            )
        );
        assert_eq!(detail["status"], "implementing");
        w.server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn running_tasks_stay_within_the_per_project_and_the_total_limits() {
    each_backend(|db| async move {
        let w = written(&db, sample_project(), None, |s| {
            s.max_running_tasks = 2;
            s.max_running_tasks_per_project = 1;
        })
        .await;
        // A second project with a written spec: its tasks may run beside the first project's.
        let (_, other) = w
            .api
            .post(
                "/projects",
                &json!({"name": "other", "repo_url": "https://git.example/other.git"}),
            )
            .await;
        let other_spec = write_spec(
            &w.server,
            &w.provider,
            &w.api,
            other["id"].as_str().unwrap(),
            None,
        )
        .await;
        let started = wait_for_task_sandboxes(&w.provider, 2).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(task_sandboxes(&w.provider).len(), 2);
        let specs: Vec<&str> = started.iter().map(|s| s.spec_id.as_str()).collect();
        assert!(
            specs.contains(&w.spec_id.as_str()) && specs.contains(&other_spec.as_str()),
            "one task per project: {specs:?}"
        );
        // One lands: the next ready task of its project takes the free slot.
        let first = started
            .iter()
            .find(|s| s.spec_id == w.spec_id)
            .unwrap()
            .clone();
        send(&w.server, &first, &landed(&first, "1111111111111111")).await;
        let started = wait_for_task_sandboxes(&w.provider, 3).await;
        assert_eq!(started[2].spec_id, w.spec_id);
        assert_eq!(started[2].task, "TSK-002");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(task_sandboxes(&w.provider).len(), 3);
        w.server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_coordinator_with_no_task_slots_leaves_the_tasks_ready() {
    each_backend(|db| async move {
        let w = written(&db, sample_project(), None, |s| s.max_running_tasks = 0).await;
        // A few scheduler passes.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(task_sandboxes(&w.provider).len(), 0);
        assert_eq!(
            task_states(&w.api, &w.spec_id).await,
            states(&[
                ("TSK-001", "ready", 0),
                ("TSK-002", "ready", 0),
                ("TSK-003", "pending", 0),
                ("TSK-004", "pending", 0),
            ])
        );
        w.server.stop().await;
    })
    .await;
}
