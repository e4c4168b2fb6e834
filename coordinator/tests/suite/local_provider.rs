//! The local provider with a stand-in worker (a shell script): workspace copy or clone, env,
//! log file, status, terminate, list by label, and workers that outlive the coordinator.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use omoi_coordinator::sandbox::local::LocalProvider;
use omoi_coordinator::sandbox::{Limits, Provider, ProviderStatus, SandboxHandle, SpawnRequest};
use pretty_assertions::assert_eq;

use super::common::eventually;

/// A stand-in worker: records its directory and environment, then runs for a while (or exits
/// with `EXIT_WITH` at once).
///
/// Written once per test process, before any test of this file spawns: a script written while
/// another thread forks can still be open for writing in the child between its fork and exec,
/// and exec'ing it then fails with "Text file busy".
fn fake_worker() -> std::path::PathBuf {
    static WORKER: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    WORKER
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap().keep();
            let path = dir.join("fake-worker.sh");
            std::fs::write(
                &path,
                "#!/bin/sh\npwd > seen-dir\nenv | sort > seen-env\necho started\n\
                 if [ -n \"$EXIT_WITH\" ]; then exit \"$EXIT_WITH\"; fi\nsleep 30\n",
            )
            .unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            path
        })
        .clone()
}

fn request(id: &str, repo: &Path, env: &[(&str, &str)]) -> SpawnRequest {
    SpawnRequest {
        sandbox_id: id.into(),
        image: None,
        image_pull_secrets: Vec::new(),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        labels: BTreeMap::from([
            ("omoi.owner".to_string(), "omoi".to_string()),
            ("omoi.sandbox".to_string(), id.to_string()),
        ]),
        limits: Limits::default(),
        repo: Some(repo.display().to_string()),
    }
}

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test]
async fn a_plain_directory_is_copied_and_the_worker_runs_in_it_with_its_env() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(repo.join("src")).unwrap();
    std::fs::write(repo.join("src/lib.sh"), "echo hi\n").unwrap();
    let provider = LocalProvider::new(fake_worker(), &tmp.path().join("data"));

    let handle = provider
        .spawn(request("sb-1", &repo, &[("SPEC_ID", "spec-1")]))
        .await
        .unwrap();
    assert_eq!(handle, SandboxHandle("sb-1".into()));
    let workspace = provider.sandbox_dir("sb-1").join("workspace");
    assert_eq!(
        std::fs::read_to_string(workspace.join("src/lib.sh")).unwrap(),
        "echo hi\n"
    );
    // "started" in the log is the stand-in's last word before it sleeps: its files are written.
    eventually(
        WAIT,
        "the worker to record its env and say it started",
        || async {
            std::fs::read_to_string(provider.log_path("sb-1")).is_ok_and(|log| log == "started\n")
        },
    )
    .await;
    let env = std::fs::read_to_string(workspace.join("seen-env")).unwrap();
    assert!(env.lines().any(|l| l == "SPEC_ID=spec-1"), "{env}");
    assert!(
        env.lines()
            .any(|l| l == format!("WORKSPACE={}", workspace.display())),
        "{env}"
    );
    assert!(!env.contains("DATABASE_URL"), "{env}");
    assert_eq!(
        std::fs::read_to_string(workspace.join("seen-dir"))
            .unwrap()
            .trim(),
        workspace.display().to_string()
    );
    assert_eq!(
        provider.status(&handle).await.unwrap(),
        ProviderStatus::Running
    );

    let labels = BTreeMap::from([("omoi.owner".to_string(), "omoi".to_string())]);
    let listed = provider.list(&labels).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].handle.clone(), listed[0].status.clone()),
        (handle.clone(), ProviderStatus::Running)
    );
    let other = BTreeMap::from([("omoi.owner".to_string(), "x".to_string())]);
    assert_eq!(provider.list(&other).await.unwrap(), vec![]);

    provider.terminate(&handle).await.unwrap();
    assert!(matches!(
        provider.status(&handle).await.unwrap(),
        ProviderStatus::Exited { .. }
    ));
    assert_eq!(
        provider
            .status(&SandboxHandle("never".into()))
            .await
            .unwrap(),
        ProviderStatus::NotFound
    );
}

#[tokio::test]
async fn a_git_repository_is_cloned_and_the_exit_code_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(repo.join("README.md"), "# r\n").unwrap();
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(&repo)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["-c", "user.name=t", "-c", "user.email=t@e", "add", "."]);
    git(&[
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@e",
        "commit",
        "-qm",
        "init",
    ]);
    let provider = LocalProvider::new(fake_worker(), &tmp.path().join("data"));
    let handle = provider
        .spawn(request("sb-2", &repo, &[("EXIT_WITH", "3")]))
        .await
        .unwrap();
    let workspace = provider.sandbox_dir("sb-2").join("workspace");
    assert!(workspace.join(".git").is_dir());
    assert_eq!(
        std::fs::read_to_string(workspace.join("README.md")).unwrap(),
        "# r\n"
    );
    eventually(WAIT, "the worker to exit", || async {
        provider.status(&handle).await.unwrap() == ProviderStatus::Exited { code: Some(3) }
    })
    .await;

    let err = provider
        .spawn(request("sb-3", &tmp.path().join("missing"), &[]))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("spawning sandbox sb-3 failed: git clone"),
        "{err}"
    );
    let err = provider
        .spawn(request("../up", &repo, &[]))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "spawning sandbox ../up failed: the sandbox id is not a plain name"
    );
}

#[tokio::test]
async fn a_worker_that_outlives_its_coordinator_is_found_and_stopped_by_the_next() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let data = tmp.path().join("data");
    let worker = fake_worker();
    let first = LocalProvider::new(worker.clone(), &data);
    let handle = first.spawn(request("sb-4", &repo, &[])).await.unwrap();
    drop(first);

    let second = LocalProvider::new(worker, &data);
    assert_eq!(
        second.status(&handle).await.unwrap(),
        ProviderStatus::Running
    );
    let labels = BTreeMap::from([("omoi.sandbox".to_string(), "sb-4".to_string())]);
    assert_eq!(
        second.list(&labels).await.unwrap()[0].status,
        ProviderStatus::Running
    );
    second.terminate(&handle).await.unwrap();
    eventually(WAIT, "the orphan to stop", || async {
        second.status(&handle).await.unwrap() != ProviderStatus::Running
    })
    .await;
}
