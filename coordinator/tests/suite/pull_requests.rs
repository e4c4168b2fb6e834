//! Pull requests against the fake GitHub: the client's requests as GitHub expects them, the open
//! pull request of a branch reused on 422, GitHub's refusals, and the scheduler opening one pull
//! request with the task checklist when every task of a spec completed.

use std::path::{Path, PathBuf};

use omoi_coordinator::github::{GitHub, GitHubError, GitHubRepo, NewPullRequest, github_repo};
use omoi_tests::fake_github::FakeGitHub;
use omoi_tests::git::{self as remote, BASE_BRANCH};
use pretty_assertions::assert_eq;
use serde_json::json;

use super::common::tasks::{
    landed, send, wait_for_spec, wait_for_task_sandbox, wait_for_task_sandboxes, written,
};
use super::common::{each_backend, phase_output};

const TOKEN: &str = "ghs_0123456789abcdef";

/// `<dir>/acme/greet.git`, seeded from the sample repository, with `branch` one commit ahead of
/// `main` when given.
pub(super) fn seeded(dir: &Path, branch: Option<&str>) -> PathBuf {
    let bare = remote::seed_bare_repo(
        &omoi_tests::fixtures::sample_repo(),
        &dir.join("acme/greet.git"),
    );
    if let Some(branch) = branch {
        push_notes(dir, &bare, branch);
    }
    bare
}

/// Pushes to `branch` of `bare` one commit (a task's, as a worker would have pushed it),
/// through a clone in `<dir>/work`.
pub(super) fn push_notes(dir: &Path, bare: &Path, branch: &str) {
    let work = dir.join("work");
    remote::git(
        dir,
        &[
            "clone",
            "--quiet",
            bare.to_str().unwrap(),
            work.to_str().unwrap(),
        ],
    );
    std::fs::write(work.join("NOTES.md"), "loud\n").unwrap();
    remote::git(&work, &["add", "NOTES.md"]);
    remote::git(&work, &["commit", "--quiet", "-m", "TSK-001: notes"]);
    remote::git(
        &work,
        &[
            "push",
            "--quiet",
            "origin",
            &format!("HEAD:refs/heads/{branch}"),
        ],
    );
}

fn new_pull_request(head: &str) -> NewPullRequest {
    NewPullRequest {
        title: "Add a --shout option to greet".into(),
        head: head.into(),
        base: BASE_BRANCH.into(),
        body: "The body.".into(),
        draft: false,
    }
}

async fn fake_for(bare: &Path) -> (FakeGitHub, GitHubRepo) {
    let fake = FakeGitHub::start(TOKEN).await;
    fake.add_repo("acme", "greet", bare);
    let repo = github_repo(&format!("file://{}", bare.display()), Some(&fake.url())).unwrap();
    assert_eq!(
        repo,
        GitHubRepo {
            api: fake.url(),
            owner: "acme".into(),
            name: "greet".into()
        }
    );
    (fake, repo)
}

#[tokio::test]
async fn the_client_opens_a_pull_request_as_github_expects_and_reuses_the_open_one() {
    let dir = tempfile::tempdir().unwrap();
    let bare = seeded(dir.path(), Some("omoi/spec-1"));
    let (fake, repo) = fake_for(&bare).await;
    let github = GitHub::new(TOKEN).unwrap();
    let new = new_pull_request("omoi/spec-1");

    let (created, fresh) = github.open_pull_request(&repo, &new).await.unwrap();
    assert!(fresh);
    assert_eq!(
        (created.number, created.html_url.as_str()),
        (1, fake.html_url("acme", "greet", 1).as_str())
    );
    // Again: GitHub answers 422 (one open pull request per head), the client finds that one.
    let (again, fresh) = github.open_pull_request(&repo, &new).await.unwrap();
    assert!(!fresh);
    assert_eq!(again, created);

    let requests = fake.requests();
    let summary: Vec<(&str, &str, u16)> = requests
        .iter()
        .map(|r| (r.method.as_str(), r.uri.as_str(), r.status))
        .collect();
    assert_eq!(
        summary,
        [
            ("POST", "/repos/acme/greet/pulls", 201),
            ("POST", "/repos/acme/greet/pulls", 422),
            (
                "GET",
                "/repos/acme/greet/pulls?head=acme:omoi/spec-1&state=open",
                200
            ),
        ]
    );
    for request in &requests {
        let header = |name: &str| request.headers.get(name).map(String::as_str);
        assert_eq!(
            header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
        assert_eq!(header("accept"), Some("application/vnd.github+json"));
        assert_eq!(header("x-github-api-version"), Some("2022-11-28"));
        assert!(header("user-agent").is_some_and(|ua| ua.starts_with("omoi/")));
    }
    assert_eq!(
        requests[0].body,
        Some(json!({
            "title": "Add a --shout option to greet",
            "head": "omoi/spec-1",
            "base": "main",
            "body": "The body.",
            "draft": false,
        }))
    );
    let pulls = fake.pulls();
    assert_eq!(pulls.len(), 1);
    assert_eq!(
        pulls[0].head_sha,
        remote::branch_sha(&bare, "omoi/spec-1").unwrap()
    );
}

#[tokio::test]
async fn github_refusals_come_back_with_what_github_said() {
    let dir = tempfile::tempdir().unwrap();
    let bare = seeded(dir.path(), Some("omoi/spec-1"));
    // A branch without commits of its own.
    remote::git(&bare, &["branch", "omoi/empty", BASE_BRANCH]);
    let (_fake, repo) = fake_for(&bare).await;

    let refusal = |result: Result<_, GitHubError>| match result {
        Err(e) => (e.is_retryable(), e.to_string()),
        Ok(ok) => panic!("GitHub accepted: {ok:?}"),
    };
    let wrong_token = GitHub::new("ghs_wrong").unwrap();
    assert_eq!(
        refusal(
            wrong_token
                .open_pull_request(&repo, &new_pull_request("omoi/spec-1"))
                .await
        ),
        (false, "GitHub answered 401: Bad credentials".to_string())
    );
    let github = GitHub::new(TOKEN).unwrap();
    assert_eq!(
        refusal(
            github
                .open_pull_request(&repo, &new_pull_request("omoi/missing"))
                .await
        ),
        (
            false,
            "GitHub answered 422: Validation Failed: head invalid".to_string()
        )
    );
    assert_eq!(
        refusal(
            github
                .open_pull_request(&repo, &new_pull_request("omoi/empty"))
                .await
        ),
        (
            false,
            "GitHub answered 422: Validation Failed: No commits between main and omoi/empty"
                .to_string()
        )
    );
}

#[tokio::test]
async fn when_every_task_completed_one_pull_request_is_opened_with_the_checklist() {
    each_backend(|db| async move {
        let dir = tempfile::tempdir().unwrap();
        let bare = seeded(dir.path(), None);
        let fake = FakeGitHub::start(TOKEN).await;
        fake.add_repo("acme", "greet", &bare);
        let project = json!({
            "name": "greet",
            "repo_url": format!("file://{}", bare.display()),
            "github_api_url": fake.url(),
            "git_token": TOKEN,
        });
        let w = written(&db, project, None, |_| {}).await;
        let branch = format!("omoi/{}", w.spec_id);
        // The tasks' commits (the workers would have pushed them).
        push_notes(dir.path(), &bare, &branch);

        let shas = [
            "1111111111111111",
            "2222222222222222",
            "3333333333333333",
            "4444444444444444",
        ];
        for (n, sha) in shas.iter().enumerate() {
            let sandbox = wait_for_task_sandbox(&w.provider, &format!("TSK-{:03}", n + 1)).await;
            send(&w.server, &sandbox, &landed(&sandbox, sha)).await;
        }

        let done = wait_for_spec(&w.api, &w.spec_id, "completed").await;
        let url = fake.html_url("acme", "greet", 1);
        assert_eq!(done["pull_request"], json!({"url": url, "number": 1}));
        assert_eq!(done["branch"], json!(branch));
        let pulls = fake.pulls();
        assert_eq!(pulls.len(), 1, "one pull request: {pulls:?}");
        assert_eq!(
            (
                pulls[0].title.as_str(),
                pulls[0].head.as_str(),
                pulls[0].base.as_str()
            ),
            ("Add a --shout option to greet", branch.as_str(), "main")
        );
        let overview = phase_output("design")["design"]["overview"]
            .as_str()
            .unwrap()
            .to_string();
        let expected = format!(
            "{overview}\n\n\
             ## Tasks\n\n\
             - [x] **TSK-001** Add the shout function — `111111111111`\n\
             - [x] **TSK-002** Parse the --shout option — `222222222222`\n\
             - [x] **TSK-003** Print through shout when asked — `333333333333`\n\
             - [x] **TSK-004** Test and document --shout — `444444444444`\n\
             \n## Requirements\n\n\
             - [x] **REQ-CLI-001** Shout option (TSK-001, TSK-002, TSK-003, TSK-004)\n\
             - [x] **REQ-CLI-002** Default output unchanged (TSK-003, TSK-004)\n\
             - [x] **REQ-CLI-003** Help mentions shout (TSK-002, TSK-004)\n\
             \nSpec `{}` on branch `{branch}`.\n\
             The spec itself is in `.kiro/specs/add-a-shout-option-to-greet/` (Kiro's \
             requirements.md, design.md and tasks.md).\n",
            w.spec_id
        );
        assert_eq!(pulls[0].body.as_deref(), Some(expected.as_str()));
        let posts = fake
            .requests()
            .iter()
            .filter(|r| r.method == "POST")
            .count();
        assert_eq!(posts, 1);
        w.server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_pull_request_github_refuses_fails_the_spec_with_github_s_answer() {
    each_backend(|db| async move {
        let dir = tempfile::tempdir().unwrap();
        let bare = seeded(dir.path(), None);
        let fake = FakeGitHub::start(TOKEN).await;
        fake.add_repo("acme", "greet", &bare);
        let project = json!({
            "name": "greet",
            "repo_url": format!("file://{}", bare.display()),
            "github_api_url": fake.url(),
            "git_token": "ghs_revoked",
        });
        let tasks = json!([phase_output("tasks")["tasks"]["tasks"][0].clone()]);
        let w = written(&db, project, Some(tasks), |_| {}).await;
        let started = wait_for_task_sandboxes(&w.provider, 1).await;
        send(
            &w.server,
            &started[0],
            &landed(&started[0], "1111111111111111"),
        )
        .await;
        let failed = wait_for_spec(&w.api, &w.spec_id, "failed").await;
        assert_eq!(
            failed["error"],
            "opening the pull request failed: GitHub answered 401: Bad credentials"
        );
        assert_eq!(failed["tasks"][0]["status"], "completed");
        w.server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_pull_request_github_fails_to_open_for_a_while_is_tried_again() {
    each_backend(|db| async move {
        let dir = tempfile::tempdir().unwrap();
        let bare = seeded(dir.path(), None);
        let fake = FakeGitHub::start(TOKEN).await;
        fake.add_repo("acme", "greet", &bare);
        let project = json!({
            "name": "greet",
            "repo_url": format!("file://{}", bare.display()),
            "github_api_url": fake.url(),
            "git_token": TOKEN,
        });
        let tasks = json!([phase_output("tasks")["tasks"]["tasks"][0].clone()]);
        let w = written(&db, project, Some(tasks), |_| {}).await;
        let branch = format!("omoi/{}", w.spec_id);
        remote::git(&bare, &["branch", &branch, BASE_BRANCH]);
        let work = dir.path().join("work");
        remote::git(
            dir.path(),
            &[
                "clone",
                "--quiet",
                "--branch",
                &branch,
                bare.to_str().unwrap(),
                work.to_str().unwrap(),
            ],
        );
        std::fs::write(work.join("NOTES.md"), "loud\n").unwrap();
        remote::git(&work, &["add", "NOTES.md"]);
        remote::git(&work, &["commit", "--quiet", "-m", "TSK-001: notes"]);
        remote::git(&work, &["push", "--quiet", "origin", &branch]);
        // GitHub has an outage: two answers of 502, then it works again.
        fake.fail_next(502, 2);
        let started = wait_for_task_sandboxes(&w.provider, 1).await;
        send(
            &w.server,
            &started[0],
            &landed(&started[0], "1111111111111111"),
        )
        .await;
        let done = wait_for_spec(&w.api, &w.spec_id, "completed").await;
        assert_eq!(done["pull_request"]["number"], 1);
        let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
        assert_eq!(statuses, [502, 502, 201]);
        w.server.stop().await;
    })
    .await;
}
