//! Repositories a user may name, with the docker provider: the same refusals at project creation
//! as with any provider, and a hostile repository under an allowed directory (a symbolic link to
//! a file of the host and one out of the repository, hooks and an fsmonitor command in its own
//! git directory, a submodule of a private repository of the host, a file named like an option,
//! a large file) reaches the container as plain files only: nothing of it runs, on the host or in
//! the sandbox, and nothing of the host is readable through it.

use std::collections::BTreeMap;
use std::path::Path;

use omoi_coordinator::sandbox::{Limits, Provider, ProviderStatus, SpawnRequest};
use pretty_assertions::assert_eq;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::common::docker::{SCRIPT_IN_SANDBOX, Sandboxes, WAIT, script};
use super::common::{TestServer, error, eventually, sqlite};

/// Runs git in `dir` with the test's identity; panics on failure.
fn git(dir: &Path, args: &[&str]) {
    let output = std::process::Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "protocol.file.allow=always",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The hostile repository under `allowed`, and the host files it points at or would write.
struct Hostile {
    repo: std::path::PathBuf,
    host_secret: String,
    markers: [std::path::PathBuf; 2],
}

fn hostile_repository(tmp: &Path, allowed: &Path) -> Hostile {
    let host_secret = format!("host-secret-{}", std::process::id());
    let secret_file = tmp.join("host-secret.txt");
    std::fs::write(&secret_file, &host_secret).unwrap();
    // A private repository of the host, named as a submodule.
    let private = tmp.join("private");
    std::fs::create_dir_all(&private).unwrap();
    git(&private, &["init", "--quiet"]);
    std::fs::write(private.join("private.txt"), &host_secret).unwrap();
    git(&private, &["add", "."]);
    git(&private, &["commit", "--quiet", "-m", "private"]);

    let repo = omoi_tests::fixtures::copy_sample_repo(&allowed.join("hostile"));
    git(&repo, &["init", "--quiet", "--initial-branch=main"]);
    std::os::unix::fs::symlink(&secret_file, repo.join("leak")).unwrap();
    std::os::unix::fs::symlink("..", repo.join("up")).unwrap();
    std::fs::write(
        repo.join("--upload-pack=touch owned"),
        "a name like an option\n",
    )
    .unwrap();
    std::fs::write(repo.join("big.bin"), vec![b'x'; 8 << 20]).unwrap();
    git(&repo, &["add", "--all"]);
    git(
        &repo,
        &[
            "submodule",
            "add",
            "--quiet",
            &private.display().to_string(),
            "sub",
        ],
    );
    git(&repo, &["commit", "--quiet", "-m", "hostile"]);
    // What would run on the host if anything ran the repository's own git directory.
    let markers = [tmp.join("hook-ran"), tmp.join("fsmonitor-ran")];
    for hook in ["post-checkout", "post-merge", "pre-commit", "post-update"] {
        let path = repo.join(".git/hooks").join(hook);
        std::fs::write(
            &path,
            format!("#!/bin/sh\ntouch {}\n", markers[0].display()),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    git(
        &repo,
        &[
            "config",
            "core.fsmonitor",
            &format!("touch {}; false", markers[1].display()),
        ],
    );
    Hostile {
        repo,
        host_secret,
        markers,
    }
}

/// What the agent's command finds of the hostile parts, as counts (its output holds no secret).
const PROBE: &str = r#"printf 'leak=%s\n' "$(cat leak 2>/dev/null | grep -c host-secret)"
printf 'up=%s\n' "$(ls up/ 2>/dev/null | grep -c -e allowed -e host-secret -e hostile)"
printf 'sub=%s\n' "$(ls -A sub 2>/dev/null | wc -l)"
printf 'dash=%s\n' "$(cat -- '--upload-pack=touch owned' | wc -l)"
printf 'big=%s\n' "$(wc -c < big.bin)"
printf 'hooks=%s\n' "$(grep -l -F hook-ran .git/hooks/* 2>/dev/null | wc -l)"
printf 'fsmonitor=%s\n' "$(git config --get core.fsmonitor | wc -l)"
printf 'owned=%s\n' "$(ls owned /work/owned 2>/dev/null | wc -l)""#;

#[tokio::test]
async fn a_hostile_repository_reaches_a_docker_sandbox_as_plain_files_only() {
    let tmp = tempfile::tempdir().unwrap();
    let allowed = tmp.path().join("allowed");
    std::fs::create_dir_all(&allowed).unwrap();
    let file = script(tmp.path(), |s| {
        let turns = s["explore"][0].as_array_mut().unwrap();
        turns.insert(
            0,
            json!({"tool_calls": [
                {"name": "run", "input": {"command": PROBE}},
                {"name": "read_file", "input": {"path": "leak"}},
                {"name": "read_file", "input": {"path": "up/script.json"}},
            ]}),
        );
    });
    let Some(sandboxes) =
        Sandboxes::start(&tmp.path().join("data"), |c| c.files = vec![file]).await
    else {
        return;
    };
    let hostile = hostile_repository(tmp.path(), &allowed);
    let provider = &sandboxes.provider;
    let (title, _) = omoi_tests::fixtures::sample_request();
    let env: BTreeMap<String, String> = [
        ("SPEC_ID", "spec-hostile"),
        ("SPEC_PHASE", "explore"),
        ("SPEC_STOP_AFTER", "explore"),
        ("SPEC_TITLE", title.as_str()),
        ("OMOI_LLM", "scripted"),
        ("OMOI_SCRIPT", SCRIPT_IN_SANDBOX),
        ("OMOI_LOG", "warn"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let handle = provider
        .spawn(SpawnRequest {
            sandbox_id: "sb-hostile".into(),
            image: None,
            image_pull_secrets: Vec::new(),
            env,
            labels: BTreeMap::from([
                ("omoi.owner".to_string(), "omoi".to_string()),
                ("omoi.sandbox".to_string(), "sb-hostile".to_string()),
            ]),
            limits: Limits::default(),
            repo: Some(hostile.repo.display().to_string()),
        })
        .await
        .unwrap();
    eventually(WAIT, "the sandbox to end", || async {
        provider.status(&handle).await.unwrap() != ProviderStatus::Running
    })
    .await;
    let status = provider.status(&handle).await.unwrap();
    // A link that climbs out of the container's /work: the Engine refuses the archive, and the
    // sandbox does not start, with the reason.
    let climbing = omoi_tests::fixtures::copy_sample_repo(&allowed.join("climbing"));
    std::os::unix::fs::symlink("../../..", climbing.join("up")).unwrap();
    let refused = provider
        .spawn(SpawnRequest {
            sandbox_id: "sb-climbing".into(),
            image: None,
            image_pull_secrets: Vec::new(),
            env: BTreeMap::new(),
            labels: BTreeMap::from([
                ("omoi.owner".to_string(), "omoi".to_string()),
                ("omoi.sandbox".to_string(), "sb-climbing".to_string()),
            ]),
            limits: Limits::default(),
            repo: Some(climbing.display().to_string()),
        })
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("uploading the repository") && refused.contains("invalid symlink"),
        "{refused}"
    );
    sandboxes.close_and_assert_clean().await;
    let log = std::fs::read_to_string(provider.log_path("sb-hostile")).unwrap();
    assert_eq!(status, ProviderStatus::Exited { code: Some(0) }, "{log}");
    let results: Vec<Value> = log
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|event| event["type"] == "agent.tool_result")
        .map(|event| event["data"].clone())
        .collect();
    assert!(results.len() >= 3, "{log}");
    // The links lead to nothing of the host: the container has no such file, and the tools
    // refuse a path that leaves the workspace.
    assert_eq!(
        results[0]["output_summary"],
        "exit code: 0\nleak=0\nup=0\nsub=0\ndash=1\nbig=8388608\nhooks=0\nfsmonitor=0\nowned=0\n",
        "{log}"
    );
    for refused in &results[1..3] {
        assert_eq!(refused["ok"], false, "{refused}");
    }
    assert!(!log.contains(&hostile.host_secret), "{log}");
    // Nothing of the repository's own git directory ran on the host either.
    for marker in &hostile.markers {
        assert!(!marker.exists(), "{} exists", marker.display());
    }
}

#[tokio::test]
async fn repositories_are_checked_at_project_creation_with_the_docker_provider_too() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(sandboxes) = Sandboxes::start(&tmp.path().join("data"), |_| {}).await else {
        return;
    };
    let allowed = std::fs::canonicalize(tmp.path()).unwrap().join("allowed");
    std::fs::create_dir_all(allowed.join("repo")).unwrap();
    std::os::unix::fs::symlink("/etc", allowed.join("etc")).unwrap();
    let db = sqlite();
    let server = TestServer::start(&db, sandboxes.provider.clone(), |s| {
        s.allow_local_repos = vec![allowed.clone()];
    })
    .await;
    let (_, api) = server.user("ada").await;
    let outside = |url: &str| {
        error(
            "invalid",
            &format!(
                "repo_url {url} is outside the directories this server allows local \
                 repositories in"
            ),
        )
    };
    let link = allowed.join("etc").display().to_string();
    // Beside the allowed directory: where the provider keeps its sandboxes' files.
    let beside = std::fs::canonicalize(tmp.path())
        .unwrap()
        .display()
        .to_string();
    for (url, expected) in [
        ("/etc".to_string(), outside("/etc")),
        ("file:///etc".to_string(), outside("/etc")),
        (link.clone(), outside(&link)),
        (beside.clone(), outside(&beside)),
        (
            "-oProxyCommand=touch /tmp/owned".to_string(),
            error("invalid", "repo_url must not begin with '-'"),
        ),
        (
            "ext::sh".to_string(),
            error(
                "invalid",
                "repo_url \"ext::sh\" is not a git URL (https://, ssh://, git://, \
                 user@host:path) nor an absolute path",
            ),
        ),
    ] {
        let body = json!({"name": "p", "repo_url": url, "provider": "docker"});
        assert_eq!(
            api.post("/projects", &body).await,
            (StatusCode::UNPROCESSABLE_ENTITY, expected),
            "{url}"
        );
    }
    for url in [
        allowed.join("repo").display().to_string(),
        "https://git.example/r.git".to_string(),
        "git@git.example:r.git".to_string(),
    ] {
        let body = json!({"name": "p", "repo_url": url, "provider": "docker"});
        let (status, created) = api.post("/projects", &body).await;
        assert_eq!(status, StatusCode::CREATED, "{url}: {created}");
    }
    server.stop().await;
    sandboxes.close_and_assert_clean().await;
}
