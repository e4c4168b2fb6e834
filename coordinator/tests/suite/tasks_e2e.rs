//! End to end on real git with the real `omoi-worker`, the local provider and the scripted model:
//! a spec of six tasks in a diamond lands six commits in dependency order with the validation
//! passing at the tip, independent tasks run at the same time, a task that fails validation twice
//! is retried while its dependents wait, and a GitHub remote gets one pull request.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use omoi_coordinator::Settings;
use omoi_coordinator::model::StreamEvent;
use omoi_coordinator::sandbox::local::LocalProvider;
use omoi_tests::fake_github::FakeGitHub;
use omoi_tests::git::{self as remote, BASE_BRANCH};
use pretty_assertions::assert_eq;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::common::tasks::quick;
use super::common::{Api, TestDb, TestServer, each_backend, eventually};
use super::worker_e2e::{tune, worker_bin};

const WAIT: Duration = Duration::from_secs(180);

/// The diamond: TSK-001 first; TSK-002, TSK-003, TSK-004 after it; TSK-005 after 002 and 003;
/// TSK-006 after 004 and 005.
const DIAMOND: [(&str, &[&str]); 6] = [
    ("TSK-001", &[]),
    ("TSK-002", &["TSK-001"]),
    ("TSK-003", &["TSK-001"]),
    ("TSK-004", &["TSK-001"]),
    ("TSK-005", &["TSK-002", "TSK-003"]),
    ("TSK-006", &["TSK-004", "TSK-005"]),
];

fn diamond_script() -> Value {
    let text =
        std::fs::read_to_string(omoi_tests::fixtures::dir().join("diamond-script.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

struct Run {
    server: TestServer,
    api: Api,
    spec_id: String,
    bare: PathBuf,
}

/// A coordinator with the local provider, a project on `<tmp>/acme/greet.git` (seeded from the
/// sample repository; validation `sh tests/run.sh`) with `project` merged in, and the sample
/// request launched with `script`.
async fn launch(
    db: &TestDb,
    tmp: &Path,
    script: &Value,
    project: Value,
    extra: impl FnOnce(&mut Settings),
) -> Run {
    let bare = remote::seed_bare_repo(
        &omoi_tests::fixtures::sample_repo(),
        &tmp.join("acme/greet.git"),
    );
    let script = omoi_tests::fixtures::write_script(tmp, "script.json", script);
    let provider = Arc::new(LocalProvider::new(worker_bin(), &tmp.join("data")));
    let server = TestServer::start(db, provider, |s| {
        tune(s, &script);
        quick(s);
        extra(s);
    })
    .await;
    let (_, api) = server.user("ada").await;
    let mut body = json!({
        "name": "greet",
        "repo_url": format!("file://{}", bare.display()),
        "validation_command": "sh tests/run.sh",
    });
    for (key, value) in project.as_object().unwrap() {
        body[key] = value.clone();
    }
    let (status, project) = api.post("/projects", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{project}");
    let (title, description) = omoi_tests::fixtures::sample_request();
    let (status, spec) = api
        .post(
            "/specs/launch",
            &json!({"project_id": project["id"], "title": title, "description": description}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{spec}");
    Run {
        server,
        api,
        spec_id: spec["id"].as_str().unwrap().to_string(),
        bare,
    }
}

async fn completed(run: &Run) -> Value {
    eventually(WAIT, "the spec to complete", || async {
        let (_, d) = run.api.get(&format!("/specs/{}", run.spec_id)).await;
        assert!(
            d["status"] != "failed" && d["status"] != "cancelled",
            "the spec ended {}: {}\ntasks: {}",
            d["status"],
            d["error"],
            d["tasks"]
        );
        d["status"] == "completed"
    })
    .await;
    run.api.get(&format!("/specs/{}", run.spec_id)).await.1
}

async fn history(run: &Run) -> Vec<StreamEvent> {
    let (status, page) = run
        .api
        .get(&format!("/specs/{}/events?limit=1000", run.spec_id))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["has_more"], false);
    serde_json::from_value(page["events"].clone()).unwrap()
}

/// The events of one type for one task, in stream order.
fn of_task<'a>(events: &'a [StreamEvent], task: &str, kind: &str) -> Vec<&'a StreamEvent> {
    events
        .iter()
        .filter(|e| e.event.kind == kind && e.event.task_id.as_deref() == Some(task))
        .collect()
}

/// From the first `task.started` of a task to its `task.completed`, in the workers' clocks.
fn interval(events: &[StreamEvent], task: &str) -> (DateTime<Utc>, DateTime<Utc>) {
    let started = of_task(events, task, "task.started");
    let completed = of_task(events, task, "task.completed");
    assert_eq!(completed.len(), 1, "{task} completed once");
    (started[0].event.at, completed[0].event.at)
}

/// Checks that every failed attempt of `task` lost a race of two pushes to the branch (the
/// remote refused to lock the ref another push was updating), the one failure independent tasks
/// may meet; a retry lands them.
fn only_push_races(events: &[StreamEvent], task: &str) {
    let failures: Vec<&str> = of_task(events, task, "task.failed")
        .iter()
        .map(|e| e.event.data["reason"].as_str().unwrap_or_default())
        .collect();
    assert!(
        failures.iter().all(|r| r.contains("cannot lock ref")),
        "{task} failed: {failures:?}"
    );
}

/// The commits the spec added to `main`, oldest first: `(sha, subject)`.
fn spec_commits(bare: &Path, branch: &str) -> Vec<(String, String)> {
    let mut commits: Vec<(String, String)> = remote::log(bare, branch)
        .into_iter()
        .take_while(|c| c.subject != "initial")
        .map(|c| (c.sha, c.subject))
        .collect();
    commits.reverse();
    commits
}

/// Clones the tip of `branch` and runs the validation command there.
fn validate_tip(tmp: &Path, bare: &Path, branch: &str) -> std::process::Output {
    let checkout = tmp.join("tip");
    remote::git(
        tmp,
        &[
            "clone",
            "--quiet",
            "--branch",
            branch,
            bare.to_str().unwrap(),
            checkout.to_str().unwrap(),
        ],
    );
    std::process::Command::new("sh")
        .arg("tests/run.sh")
        .current_dir(&checkout)
        .output()
        .unwrap()
}

#[tokio::test]
async fn six_tasks_in_a_diamond_land_in_dependency_order_and_independent_ones_run_together() {
    each_backend(|db| async move {
        let tmp = tempfile::tempdir().unwrap();
        let run = launch(&db, tmp.path(), &diamond_script(), json!({}), |_| {}).await;
        let done = completed(&run).await;
        let branch = format!("omoi/{}", run.spec_id);
        assert_eq!(done["branch"], json!(branch));
        assert_eq!(done.get("pull_request"), None);

        // Six commits on the spec branch, one per task, each after its dependencies.
        let commits = spec_commits(&run.bare, &branch);
        let titles: BTreeMap<&str, &str> = done["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["spec_task_id"].as_str().unwrap(),
                    t["title"].as_str().unwrap(),
                )
            })
            .collect();
        let mut subjects: Vec<String> = commits.iter().map(|(_, s)| s.clone()).collect();
        subjects.sort();
        let expected: Vec<String> = titles
            .iter()
            .map(|(id, title)| format!("{id}: {title}"))
            .collect();
        assert_eq!(subjects, expected);
        let position = |task: &str| {
            commits
                .iter()
                .position(|(_, s)| s.starts_with(&format!("{task}:")))
                .unwrap()
        };
        for (task, deps) in DIAMOND {
            for dep in deps {
                assert!(
                    position(dep) < position(task),
                    "{dep} lands before {task}: {commits:?}"
                );
            }
        }
        // Each task's commit is the one on the branch; the last one is the tip.
        let events = history(&run).await;
        for task in done["tasks"].as_array().unwrap() {
            let id = task["spec_task_id"].as_str().unwrap();
            assert_eq!(task["status"], "completed", "{id}");
            only_push_races(&events, id);
            assert_eq!(
                task["commit_sha"],
                json!(commits[position(id)].0),
                "{id}'s commit"
            );
        }
        assert_eq!(
            remote::branch_sha(&run.bare, &branch),
            Some(commits[5].0.clone())
        );
        assert_eq!(
            remote::branch_sha(&run.bare, BASE_BRANCH),
            Some(remote::log(&run.bare, BASE_BRANCH)[0].sha.clone())
        );

        // The validation command passes at the tip, with every new check.
        let tests = validate_tip(tmp.path(), &run.bare, &branch);
        assert!(tests.status.success(), "{tests:?}");
        assert_eq!(
            String::from_utf8_lossy(&tests.stdout),
            "ok: greet \nok: greet --name Ada\nok: greet --bogus\nok: greet --shout\n\
             ok: greet --shout --name Ada\nok: greet --name Ada --shout\nok: greet --help\n\
             ok: shout\n"
        );

        // The final spec landed with the first task's commit, as a Kiro spec folder that reads
        // back through the gate with no blocking issue.
        let folder = ".kiro/specs/add-a-shout-option-to-greet";
        let recorded: Vec<String> = ["requirements.md", "design.md", "tasks.md"]
            .iter()
            .map(|f| format!("{folder}/{f}"))
            .collect();
        let first = remote::changed_files(&run.bare, &commits[0].0);
        for file in &recorded {
            assert!(
                first.contains(file),
                "{file} in TSK-001's commit: {first:?}"
            );
            for (sha, subject) in &commits[1..] {
                let changed = remote::changed_files(&run.bare, sha);
                assert!(!changed.contains(file), "{file} changed again by {subject}");
            }
        }
        let gate = std::process::Command::new(worker_bin())
            .args(["evaluate", "spec"])
            .arg(tmp.path().join("tip").join(folder))
            .arg("--workspace")
            .arg(tmp.path().join("tip"))
            .output()
            .unwrap();
        let evaluation = String::from_utf8_lossy(&gate.stdout);
        assert_eq!(gate.status.code(), Some(0), "{evaluation}\n{gate:?}");
        let report: Value = serde_json::from_str(&evaluation).unwrap();
        assert_eq!(report["format"], "kiro", "{report}");
        let blocking: Vec<&Value> = report["evaluations"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|e| e["issues"].as_array().unwrap())
            .filter(|i| i["blocking"] == true)
            .collect();
        assert!(blocking.is_empty(), "{blocking:?}");
        let final_spec = &done["final_spec"];
        let written =
            std::fs::read_to_string(tmp.path().join("tip").join(folder).join("tasks.md")).unwrap();
        for task in final_spec["tasks"]["tasks"].as_array().unwrap() {
            let title = task["title"].as_str().unwrap();
            assert!(written.contains(title), "{title} in tasks.md:\n{written}");
        }

        // TSK-002 and TSK-003 (both after TSK-001 only) ran at the same time.
        let (start_2, end_2) = interval(&events, "TSK-002");
        let (start_3, end_3) = interval(&events, "TSK-003");
        assert!(
            start_2 < end_3 && start_3 < end_2,
            "TSK-002 {start_2}..{end_2} and TSK-003 {start_3}..{end_3} overlap"
        );
        // And nothing started before what it depends on completed.
        for (task, deps) in DIAMOND {
            let (start, _) = interval(&events, task);
            for dep in deps {
                let (_, dep_end) = interval(&events, dep);
                assert!(dep_end <= start, "{task} started after {dep} completed");
            }
        }
        run.server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_task_failing_validation_twice_is_retried_and_its_dependents_wait_for_it() {
    each_backend(|db| async move {
        let tmp = tempfile::tempdir().unwrap();
        // TSK-003's first two sandboxes break the greeting before submitting; the third does not.
        let mark = tmp.path().join("tsk-003-attempts");
        let breaker = format!(
            "n=$(( $(cat '{0}' 2>/dev/null || echo 0) + 1 )); echo $n > '{0}'; \
             if [ $n -lt 3 ]; then sed -i 's/Hello/Hullo/' lib/greet.sh; fi",
            mark.display()
        );
        let mut script = diamond_script();
        let turns = script["task:TSK-003"][0].as_array_mut().unwrap();
        turns[0]["tool_calls"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "run", "input": {"command": breaker}}));
        turns[0].as_object_mut().unwrap().remove("delay_ms");
        for _ in 0..3 {
            turns.push(json!({"text": "I do not see why the validation fails."}));
        }
        // One agent attempt per sandbox: a rejected submission fails the task's attempt. Room
        // beyond the three attempts for a lost push race (see `only_push_races`).
        let project = json!({"worker_env": {"MAX_ATTEMPTS": "1"}});
        let run = launch(&db, tmp.path(), &script, project, |s| {
            s.task_policy.max_attempts = 5;
        })
        .await;
        let done = completed(&run).await;

        let task = |id: &str| {
            done["tasks"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["spec_task_id"] == id)
                .unwrap()
                .clone()
        };
        assert_eq!(task("TSK-003")["status"], "completed");
        let events = history(&run).await;
        for id in ["TSK-001", "TSK-002", "TSK-004", "TSK-005", "TSK-006"] {
            only_push_races(&events, id);
        }
        // Two validations failed, then it passed (again after a rebase, when another task had
        // pushed first).
        let exits: Vec<Value> = of_task(&events, "TSK-003", "task.validation")
            .iter()
            .map(|e| e.event.data["exit_code"].clone())
            .collect();
        assert_eq!(exits[..3], [json!(1), json!(1), json!(0)], "{exits:?}");
        assert!(exits[3..].iter().all(|e| *e == json!(0)), "{exits:?}");
        let failures: Vec<&str> = of_task(&events, "TSK-003", "task.failed")
            .iter()
            .map(|e| e.event.data["reason"].as_str().unwrap())
            .collect();
        assert!(
            failures.len() >= 2
                && failures[..2].iter().all(|r| r.contains("Hullo, world!"))
                && failures[2..].iter().all(|r| r.contains("cannot lock ref")),
            "{failures:?}"
        );
        // One sandbox per attempt.
        let attempts = task("TSK-003")["attempts"].as_u64().unwrap();
        assert_eq!(attempts, failures.len() as u64 + 1);
        assert_eq!(
            of_task(&events, "TSK-003", "task.started").len() as u64,
            attempts
        );
        let tsk_003 = task("TSK-003")["id"].clone();
        let sandboxes = done["sandboxes"].as_array().unwrap();
        assert_eq!(
            sandboxes.iter().filter(|s| s["task_id"] == tsk_003).count() as u64,
            attempts
        );
        // TSK-005 (after TSK-003) and TSK-006 started only once TSK-003 had completed.
        let landed = of_task(&events, "TSK-003", "task.completed")[0].cursor;
        for dependent in ["TSK-005", "TSK-006"] {
            let started = of_task(&events, dependent, "task.started");
            assert!(started[0].cursor > landed, "{dependent} waited for TSK-003");
        }
        let tests = validate_tip(tmp.path(), &run.bare, &format!("omoi/{}", run.spec_id));
        assert!(tests.status.success(), "{tests:?}");
        run.server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_spec_on_a_github_remote_ends_with_one_pull_request_from_its_branch() {
    each_backend(|db| async move {
        let tmp = tempfile::tempdir().unwrap();
        let fake = FakeGitHub::start("ghs_e2e_token").await;
        let script = omoi_tests::fixtures::sample_script_json();
        let project = json!({"github_api_url": fake.url(), "git_token": "ghs_e2e_token"});
        let run = launch(&db, tmp.path(), &script, project, |_| {}).await;
        fake.add_repo("acme", "greet", &run.bare);
        let done = completed(&run).await;
        let branch = format!("omoi/{}", run.spec_id);
        assert_eq!(
            done["pull_request"],
            json!({"url": fake.html_url("acme", "greet", 1), "number": 1})
        );
        let pulls = fake.pulls();
        assert_eq!(pulls.len(), 1);
        assert_eq!(
            (pulls[0].head.as_str(), pulls[0].base.as_str()),
            (branch.as_str(), "main")
        );
        assert_eq!(
            Some(pulls[0].head_sha.clone()),
            remote::branch_sha(&run.bare, &branch)
        );
        assert_eq!(
            spec_commits(&run.bare, &branch).len(),
            4,
            "{:?}",
            spec_commits(&run.bare, &branch)
        );
        let tests = validate_tip(tmp.path(), &run.bare, &branch);
        assert!(tests.status.success(), "{tests:?}");
        run.server.stop().await;
    })
    .await;
}
