//! The docker provider on the machine's Docker Engine with the `omoi-sandbox` image: a sandbox's
//! exit, logs and removal; a restarted provider finding and stopping a running sandbox; a whole
//! spec and its tasks in containers. The fault tests are in `docker_faults`, the support in
//! `common::docker` (which says when these tests are skipped). Every test runs on SQLite only:
//! what they test is the provider, not the store.

use std::collections::BTreeMap;
use std::time::Duration;

use omoi_coordinator::sandbox::docker::{DockerConfig, DockerProvider, exit};
use omoi_coordinator::sandbox::{
    Limits, ListedSandbox, Provider, ProviderStatus, SandboxHandle, SpawnRequest,
};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use super::common::docker::{
    SCRIPT_IN_SANDBOX, Sandboxes, all_completed, assert_every_event_once_in_order, launch,
    phase_summary, script, spec_sandboxes, tune, wait_for_status,
};
use super::common::{eventually, sqlite};

/// A spawn request for a worker that runs on its own (no coordinator): events go to its log.
fn local_run_request(sandbox_id: &str, env: &[(&str, &str)]) -> SpawnRequest {
    SpawnRequest {
        sandbox_id: sandbox_id.to_string(),
        image: None,
        image_pull_secrets: Vec::new(),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        labels: BTreeMap::from([
            ("omoi.owner".to_string(), "omoi".to_string()),
            ("omoi.sandbox".to_string(), sandbox_id.to_string()),
        ]),
        limits: Limits::default(),
        repo: Some(omoi_tests::fixtures::sample_repo().display().to_string()),
    }
}

#[tokio::test]
async fn a_docker_sandbox_keeps_its_logs_and_exit_after_it_is_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(sandboxes) = Sandboxes::start(&tmp.path().join("data"), |_| {}).await else {
        return;
    };
    let provider = &sandboxes.provider;
    // No SPEC_ID, no TASK_ID: the worker names the variables it needs and exits with 2.
    let handle = provider
        .spawn(local_run_request("sb-exit", &[]))
        .await
        .unwrap();
    assert_eq!(handle, SandboxHandle("omoi-sb-exit".into()));
    eventually(Duration::from_secs(60), "the sandbox to end", || async {
        provider.status(&handle).await.unwrap() != ProviderStatus::Running
    })
    .await;
    assert_eq!(
        provider.status(&handle).await.unwrap(),
        ProviderStatus::Exited { code: Some(2) }
    );
    // Removed, but its log and exit stay, for this provider and for the next one.
    sandboxes.close_and_assert_clean().await;
    let log = std::fs::read_to_string(provider.log_path("sb-exit")).unwrap();
    assert!(log.contains("SPEC_ID"), "{log}");
    let labels = BTreeMap::from([("omoi.owner".to_string(), "omoi".to_string())]);
    assert_eq!(provider.list(&labels).await.unwrap(), Vec::new());
    let next = Sandboxes::start(&sandboxes.data, |_| {}).await.unwrap();
    assert_eq!(next.provider.instance(), provider.instance());
    assert_eq!(
        next.provider.status(&handle).await.unwrap(),
        ProviderStatus::Exited { code: Some(2) }
    );
    assert_eq!(
        next.provider
            .status(&SandboxHandle("omoi-never".into()))
            .await
            .unwrap(),
        ProviderStatus::NotFound
    );
    next.provider.terminate(&handle).await.unwrap();
    next.close_and_assert_clean().await;
}

#[tokio::test]
async fn a_restarted_provider_lists_a_running_sandbox_and_stops_it() {
    let tmp = tempfile::tempdir().unwrap();
    let file = script(tmp.path(), |s| {
        s["explore"][0][0]["delay_ms"] = json!(120_000)
    });
    let Some(first) = Sandboxes::start(&tmp.path().join("data"), |c| c.files = vec![file]).await
    else {
        return;
    };
    let (title, _) = omoi_tests::fixtures::sample_request();
    let handle = first
        .provider
        .spawn(local_run_request(
            "sb-running",
            &[
                ("SPEC_ID", "spec-1"),
                ("SPEC_PHASE", "all"),
                ("SPEC_TITLE", &title),
                ("OMOI_LLM", "scripted"),
                ("OMOI_SCRIPT", SCRIPT_IN_SANDBOX),
            ],
        ))
        .await
        .unwrap();
    assert_eq!(
        first.provider.status(&handle).await.unwrap(),
        ProviderStatus::Running
    );

    // Another coordinator on the same data directory: the same instance, so it sees the sandbox.
    let second = DockerProvider::connect(DockerConfig::new(first.data.clone()))
        .await
        .unwrap();
    let labels = BTreeMap::from([("omoi.owner".to_string(), "omoi".to_string())]);
    let expected_labels: BTreeMap<String, String> = [
        ("omoi.owner", "omoi"),
        ("omoi.sandbox", "sb-running"),
        ("omoi.spec", "spec-1"),
        ("omoi.instance", first.provider.instance()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(
        second.list(&labels).await.unwrap(),
        vec![ListedSandbox {
            handle: handle.clone(),
            labels: expected_labels,
            status: ProviderStatus::Running,
        }]
    );
    let elsewhere = BTreeMap::from([("omoi.owner".to_string(), "another".to_string())]);
    assert_eq!(second.list(&elsewhere).await.unwrap(), Vec::new());

    second.terminate(&handle).await.unwrap();
    assert!(matches!(
        second.status(&handle).await.unwrap(),
        ProviderStatus::Exited { .. }
    ));
    assert_eq!(second.list(&labels).await.unwrap(), Vec::new());
    // The worker had started its spec (a local run prints its events to the log).
    let log = std::fs::read_to_string(first.provider.log_path("sb-running")).unwrap();
    assert!(log.contains(r#""type":"agent.started""#), "{log}");
    first.close_and_assert_clean().await;
}

#[tokio::test]
async fn a_spec_and_its_tasks_run_end_to_end_in_docker_sandboxes() {
    let tmp = tempfile::tempdir().unwrap();
    let file = script(tmp.path(), |_| {});
    let Some(sandboxes) =
        Sandboxes::start(&tmp.path().join("data"), |c| c.files = vec![file]).await
    else {
        return;
    };
    let db = sqlite();
    let launched = launch(&db, &sandboxes, |s| tune(s, 2)).await;
    let done = wait_for_status(&launched.api, &launched.spec_id, "completed").await;
    assert_eq!(phase_summary(&done), all_completed());
    let spec_sandbox = &spec_sandboxes(&done)[0];
    let sandbox = spec_sandbox["id"].as_str().unwrap().to_string();
    assert_eq!(
        (
            &spec_sandbox["status"],
            &spec_sandbox["provider"],
            &spec_sandbox["handle"],
        ),
        (
            &json!("completed"),
            &json!("docker"),
            &json!(format!("omoi-{sandbox}"))
        )
    );
    assert_every_event_once_in_order(&launched, &sandbox).await;

    // Every task ran in a container of its own, cloned the remote and pushed its commit.
    let tasks: Vec<(String, String)> = done["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["spec_task_id"].as_str().unwrap().to_string(),
                t["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        tasks,
        ["TSK-001", "TSK-002", "TSK-003", "TSK-004"]
            .iter()
            .map(|t| (t.to_string(), "completed".to_string()))
            .collect::<Vec<_>>()
    );
    let task_sandboxes: Vec<(&Value, &Value)> = done["sandboxes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s.get("task_id").is_some())
        .map(|s| (&s["provider"], &s["status"]))
        .collect();
    assert_eq!(
        task_sandboxes,
        vec![(&json!("docker"), &json!("completed")); 4]
    );
    let branch = done["branch"].as_str().unwrap();
    let commits = omoi_tests::git::subjects(&launched.git.remote, branch);
    assert_eq!(
        commits.iter().filter(|s| s.starts_with("TSK-")).count(),
        4,
        "{commits:?}"
    );

    launched.server.stop().await;
    sandboxes.close_and_assert_clean().await;
    // The container is gone; how it ended is kept beside its log.
    assert!(sandboxes.provider.log_path(&sandbox).is_file());
    let ended = exit::read_record(&sandboxes.provider.sandbox_dir(&sandbox))
        .await
        .unwrap();
    assert_eq!(
        (ended.exit_code, ended.oom_killed, ended.memory_limit_mb),
        (Some(0), false, Some(2048))
    );
}
