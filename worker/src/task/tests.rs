//! Unit tests of task mode's git layer on real repositories: checkout, commit, push, rebase,
//! the credential helper, and the submit gate.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use omoi_protocol::event::{Event, TaskValidation};
use omoi_tests::git::{self as remote, BASE_BRANCH, files_containing};
use pretty_assertions::assert_eq;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use super::checkout::{self, Checkout, CheckoutSpec, remote_address};
use super::gate::{Judged, NO_CHANGE, TaskGate};
use super::git::{Git, Push, Rebase, check_branch_name, tail};
use super::*;
use crate::agent::SubmitHandler;
use crate::events::EventIds;

const BRANCH: &str = "omoi/spec-1";
const TOKEN: &str = "tok-3b1f9c0e-secret";

/// A bare remote seeded with a small tree, and room for workspaces beside it.
struct Remote {
    dir: tempfile::TempDir,
    bare: PathBuf,
}

impl Remote {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("source");
        std::fs::create_dir_all(&source).unwrap();
        std::fs::write(source.join("a.txt"), "alpha\n").unwrap();
        std::fs::write(source.join("b.txt"), "beta\n").unwrap();
        let bare = remote::seed_bare_repo(&source, &dir.path().join("remote.git"));
        Remote { dir, bare }
    }

    fn url(&self) -> String {
        format!("file://{}", self.bare.display())
    }

    /// An empty workspace with the worker's `.omoi/` in it.
    fn workspace(&self, name: &str) -> PathBuf {
        let ws = self.dir.path().join(name);
        crate::checkpoint::ensure_state_dir(&ws.join(".omoi")).unwrap();
        std::fs::write(ws.join(".omoi/spool.jsonl"), "{}\n").unwrap();
        ws
    }

    fn git(&self, ws: &Path) -> Git {
        Git::new(ws, Some(Secret::new(TOKEN)), CancellationToken::new())
    }

    async fn checkout(&self, git: &Git) -> Checkout {
        let url = self.url();
        checkout::prepare(
            git,
            &CheckoutSpec {
                repo_url: &url,
                base_branch: BASE_BRANCH,
                branch: BRANCH,
            },
        )
        .await
        .unwrap()
    }
}

fn main_sha(remote: &Remote) -> String {
    remote::branch_sha(&remote.bare, BASE_BRANCH).unwrap()
}

#[tokio::test]
async fn an_empty_workspace_gets_the_repository_and_a_new_branch_from_the_base() {
    let remote = Remote::new();
    let ws = remote.workspace("ws");
    let git = remote.git(&ws);
    let checkout = remote.checkout(&git).await;
    assert_eq!(
        checkout,
        Checkout {
            remote: remote.url(),
            start: main_sha(&remote),
            branch_existed: false,
            reused: false,
        }
    );
    assert_eq!(
        git.run(&["branch", "--show-current"]).await.unwrap(),
        BRANCH
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("a.txt")).unwrap(),
        "alpha\n"
    );
    assert_eq!(git.status().await.unwrap(), "", ".omoi/ is ignored");
    assert_eq!(files_containing(&ws, TOKEN), Vec::<PathBuf>::new());
}

#[tokio::test]
async fn the_spec_branch_is_taken_from_the_remote_when_it_exists_there() {
    let remote = Remote::new();
    let first = remote.workspace("first");
    let git = remote.git(&first);
    remote.checkout(&git).await;
    std::fs::write(first.join("a.txt"), "alpha 2\n").unwrap();
    let start = git.head().await.unwrap();
    let sha = git.commit_all(&start, "TSK-001: first", "").await.unwrap();
    assert_eq!(git.push(BRANCH).await.unwrap(), Push::Pushed);

    let second = remote.workspace("second");
    let checkout = remote.checkout(&remote.git(&second)).await;
    assert_eq!(checkout.start, sha);
    assert!(checkout.branch_existed);
    assert_eq!(
        std::fs::read_to_string(second.join("a.txt")).unwrap(),
        "alpha 2\n"
    );
}

#[tokio::test]
async fn an_existing_checkout_is_fetched_and_left_as_the_remote_has_it() {
    let remote = Remote::new();
    let ws = remote.workspace("ws");
    let git = remote.git(&ws);
    remote.checkout(&git).await;
    // Leftovers of an earlier run, and a commit that landed on the remote meanwhile.
    std::fs::write(ws.join("a.txt"), "half done\n").unwrap();
    std::fs::write(ws.join("stray.txt"), "stray\n").unwrap();
    let other = remote.workspace("other");
    let other_git = remote.git(&other);
    remote.checkout(&other_git).await;
    std::fs::write(other.join("b.txt"), "beta 2\n").unwrap();
    let start = other_git.head().await.unwrap();
    let landed = other_git
        .commit_all(&start, "TSK-002: b", "")
        .await
        .unwrap();
    assert_eq!(other_git.push(BRANCH).await.unwrap(), Push::Pushed);

    let checkout = remote.checkout(&git).await;
    assert_eq!(
        (checkout.start.as_str(), checkout.reused),
        (landed.as_str(), true)
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("a.txt")).unwrap(),
        "alpha\n"
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("b.txt")).unwrap(),
        "beta 2\n"
    );
    assert!(!ws.join("stray.txt").exists());
    assert!(ws.join(".omoi/spool.jsonl").exists(), ".omoi/ survives");
}

#[tokio::test]
async fn workspaces_that_cannot_hold_the_checkout_are_refused() {
    let remote = Remote::new();
    let other = Remote::new();
    let ws = remote.workspace("ws");
    remote.checkout(&remote.git(&ws)).await;
    let url = other.url();
    let err = checkout::prepare(
        &remote.git(&ws),
        &CheckoutSpec {
            repo_url: &url,
            base_branch: BASE_BRANCH,
            branch: BRANCH,
        },
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "WORKSPACE {} holds a checkout of {}, not of {url}",
            ws.display(),
            remote.url()
        )
    );

    let junk = remote.workspace("junk");
    std::fs::write(junk.join("notes.txt"), "x").unwrap();
    let err = checkout::prepare(
        &remote.git(&junk),
        &CheckoutSpec {
            repo_url: &remote.url(),
            base_branch: BASE_BRANCH,
            branch: BRANCH,
        },
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "WORKSPACE {} is neither empty nor a git checkout (it holds notes.txt)",
            junk.display()
        )
    );
}

#[tokio::test]
async fn a_missing_repository_or_base_branch_is_a_clear_error() {
    let remote = Remote::new();
    let ws = remote.workspace("ws");
    let missing = remote.dir.path().join("nowhere.git");
    let missing = missing.to_str().unwrap();
    let err = checkout::prepare(
        &remote.git(&ws),
        &CheckoutSpec {
            repo_url: missing,
            base_branch: BASE_BRANCH,
            branch: BRANCH,
        },
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with(&format!("cannot fetch the repository {missing}: git fetch")),
        "{err}"
    );
    assert!(
        err.contains("does not appear to be a git repository"),
        "{err}"
    );

    let ws = remote.workspace("ws2");
    let url = remote.url();
    let err = checkout::prepare(
        &remote.git(&ws),
        &CheckoutSpec {
            repo_url: &url,
            base_branch: "develop",
            branch: BRANCH,
        },
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("the repository {url} has neither the branch {BRANCH} nor the base branch develop")
    );
}

#[tokio::test]
async fn the_commit_holds_every_change_but_omoi_under_the_worker_identity() {
    let remote = Remote::new();
    let ws = remote.workspace("ws");
    let git = remote.git(&ws);
    let checkout = remote.checkout(&git).await;
    assert!(!git.changed_since(&checkout.start).await.unwrap());
    std::fs::write(ws.join("a.txt"), "alpha 2\n").unwrap();
    std::fs::create_dir_all(ws.join("src")).unwrap();
    std::fs::write(ws.join("src/new.txt"), "new\n").unwrap();
    // A commit the agent made on its own is folded into the task's one commit.
    git.run(&["add", "src/new.txt"]).await.unwrap();
    git.run(&["commit", "-q", "-m", "wip"]).await.unwrap();
    std::fs::remove_file(ws.join("b.txt")).unwrap();
    assert!(git.changed_since(&checkout.start).await.unwrap());

    let sha = git
        .commit_all(&checkout.start, "TSK-007: Add things", "Added src/new.txt.")
        .await
        .unwrap();
    assert_eq!(git.push(BRANCH).await.unwrap(), Push::Pushed);
    assert_eq!(
        remote::log(&remote.bare, BRANCH)[0],
        remote::LoggedCommit {
            sha: sha.clone(),
            subject: "TSK-007: Add things".into(),
            body: "Added src/new.txt.".into(),
            author: "omoi <omoi@localhost>".into(),
        }
    );
    assert_eq!(
        remote::changed_files(&remote.bare, &sha),
        ["a.txt", "b.txt", "src/new.txt"]
    );
    assert_eq!(
        remote::subjects(&remote.bare, BRANCH),
        ["TSK-007: Add things", "initial"]
    );
}

#[tokio::test]
async fn a_rejected_push_rebases_cleanly_or_names_the_conflicts() {
    let remote = Remote::new();
    let (one, two, three) = (
        remote.workspace("one"),
        remote.workspace("two"),
        remote.workspace("three"),
    );
    let (git_one, git_two, git_three) = (remote.git(&one), remote.git(&two), remote.git(&three));
    for git in [&git_one, &git_two, &git_three] {
        remote.checkout(git).await;
    }
    let start = main_sha(&remote);
    std::fs::write(one.join("a.txt"), "alpha from one\n").unwrap();
    let first = git_one
        .commit_all(&start, "TSK-001: one", "")
        .await
        .unwrap();
    assert_eq!(git_one.push(BRANCH).await.unwrap(), Push::Pushed);

    // Another file: rejected, then a clean rebase on top of the first.
    std::fs::write(two.join("b.txt"), "beta from two\n").unwrap();
    git_two
        .commit_all(&start, "TSK-002: two", "")
        .await
        .unwrap();
    assert_eq!(git_two.push(BRANCH).await.unwrap(), Push::Rejected);
    git_two.fetch().await.unwrap();
    let upstream = format!("refs/remotes/origin/{BRANCH}");
    assert_eq!(git_two.rebase(&upstream).await.unwrap(), Rebase::Done);
    assert_eq!(git_two.push(BRANCH).await.unwrap(), Push::Pushed);
    let landed = remote::branch_sha(&remote.bare, BRANCH).unwrap();
    assert_eq!(
        remote::subjects(&remote.bare, BRANCH),
        ["TSK-002: two", "TSK-001: one", "initial"]
    );
    assert_ne!(landed, first);

    // The same line as the first: the rebase stops, is aborted, and names the file.
    std::fs::write(three.join("a.txt"), "alpha from three\n").unwrap();
    let mine = git_three
        .commit_all(&start, "TSK-003: three", "")
        .await
        .unwrap();
    assert_eq!(git_three.push(BRANCH).await.unwrap(), Push::Rejected);
    git_three.fetch().await.unwrap();
    assert_eq!(
        git_three.rebase(&upstream).await.unwrap(),
        Rebase::Conflicts(vec!["a.txt".into()])
    );
    assert_eq!(
        git_three.head().await.unwrap(),
        mine,
        "the rebase was aborted"
    );
    assert_eq!(git_three.status().await.unwrap(), "");
    assert_eq!(remote::branch_sha(&remote.bare, BRANCH).unwrap(), landed);
}

#[tokio::test]
async fn git_never_gets_the_token_in_its_environment_or_arguments_and_never_prompts() {
    let dir = tempfile::tempdir().unwrap();
    let git = Git::new(
        dir.path(),
        Some(Secret::new(TOKEN)),
        CancellationToken::new(),
    );
    let socket = super::credential::CredentialSocket::bind_in(dir.path()).unwrap();
    let helper = socket.helper(Path::new("/usr/local/bin/omoi-worker"));
    for helper in [Some(helper.as_str()), None] {
        let command = git.command(&["credential", "fill"], helper);
        let args: Vec<String> = command
            .as_std()
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(!args.iter().any(|a| a.contains(TOKEN)), "{args:?}");
        let envs: Vec<String> = command
            .as_std()
            .get_envs()
            .map(|(k, v)| format!("{}={:?}", k.to_string_lossy(), v))
            .collect();
        assert!(!envs.iter().any(|e| e.contains(TOKEN)), "{envs:?}");
        assert!(
            !envs.iter().any(|e| e.starts_with("OMOI_GIT_TOKEN=")),
            "{envs:?}"
        );
    }
    // Without the helper git has no credential and does not prompt.
    let mut without = git.command(&["credential", "fill"], None);
    without.stdin(Stdio::piped());
    let mut child = without.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"protocol=https\nhost=git.example.com\n\n")
        .await
        .unwrap();
    drop(stdin);
    let output = child.wait_with_output().await.unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("terminal prompts disabled"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn messages_are_scrubbed_of_the_token() {
    let git = Git::new(
        Path::new("."),
        Some(Secret::new(TOKEN)),
        CancellationToken::new(),
    );
    assert_eq!(
        git.scrub(&format!("fatal: https://x:{TOKEN}@host/repo: denied")),
        "fatal: https://x:***@host/repo: denied"
    );
    let no_token = Git::new(
        Path::new("."),
        Some(Secret::new("")),
        CancellationToken::new(),
    );
    assert_eq!(no_token.scrub("as it is"), "as it is");
}

#[test]
fn branch_names_and_repository_addresses_are_checked() {
    for good in ["main", "omoi/spec-1", "feature/x.y", "release-1.0"] {
        assert_eq!(check_branch_name(good), Ok(()), "{good}");
    }
    for bad in [
        "", "-x", "a..b", "a b", "a:b", "a~1", "x.lock", "/a", "a/", ".hidden", "a/.b", "@",
    ] {
        assert!(check_branch_name(bad).is_err(), "{bad:?}");
    }
    for url in [
        "https://github.com/o/r.git",
        "git://127.0.0.1:9418/r.git",
        "file:///srv/r.git",
        "git@github.com:o/r.git",
    ] {
        assert_eq!(remote_address(url).unwrap(), url);
    }
    assert_eq!(remote_address("/srv/r.git").unwrap(), "/srv/r.git");
    assert!(
        remote_address("relative/r.git")
            .unwrap()
            .ends_with("/relative/r.git")
    );
    assert!(Path::new(&remote_address("relative/r.git").unwrap()).is_absolute());
    assert!(remote_address("--upload-pack=evil").is_err());
    assert!(remote_address("  ").is_err());
}

#[test]
fn tails_are_cut_on_characters() {
    assert_eq!(tail("short", 10), "short");
    assert_eq!(tail("ééééé", 2), "…éé");
}

#[test]
fn one_line_joins_whitespace() {
    assert_eq!(one_line(" Add\n  a flag\t"), "Add a flag");
}

/// The gate on a real checkout: no change, a failing and a passing validation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gate_rejects_no_change_and_failed_validation_and_accepts_a_pass() {
    let remote = Remote::new();
    let ws = remote.workspace("ws");
    let git = remote.git(&ws);
    let checkout = remote.checkout(&git).await;
    let (emitter, mut events) = Emitter::channel(EventIds {
        sandbox_id: "local".into(),
        spec_id: None,
        task_id: Some("TSK-001".into()),
    });
    let validation = Validation {
        command: "grep -q 2 a.txt || { echo 'a.txt needs a 2'; exit 1; }".into(),
        timeout: Duration::from_secs(60),
    };
    let cancel = CancellationToken::new();
    let gate = TaskGate {
        task_id: "TSK-001",
        git: &git,
        start: &checkout.start,
        validation: Some(&validation),
        emitter: &emitter,
        cancel: &cancel,
        last: Mutex::new(None),
    };
    let summary = json!({"summary": "Changed a."});
    assert!(matches!(
        gate.check(&json!({"summary": " "})).await,
        crate::agent::SubmitVerdict::Rejected { .. }
    ));
    assert_eq!(
        gate.check(&summary).await,
        crate::agent::SubmitVerdict::Rejected {
            feedback: NO_CHANGE.into()
        }
    );
    std::fs::write(ws.join("a.txt"), "alpha\n").unwrap();
    std::fs::write(ws.join("c.txt"), "new\n").unwrap();
    let crate::agent::SubmitVerdict::Rejected { feedback } = gate.check(&summary).await else {
        panic!("a failing validation rejects");
    };
    assert_eq!(
        feedback,
        format!(
            "The validation command `{}` exited with 1. Its output ends with:\n\na.txt needs a \
             2\n\nFix the problem and call submit again.",
            validation.command
        )
    );
    std::fs::write(ws.join("a.txt"), "alpha 2\n").unwrap();
    assert_eq!(
        gate.check(&summary).await,
        crate::agent::SubmitVerdict::Accepted
    );
    assert_eq!(
        gate.take_last(),
        Some(Judged::Accepted {
            summary: "Changed a.".into()
        })
    );
    drop(emitter);
    let mut validations = Vec::new();
    while let Some(envelope) = events.recv().await {
        if let Event::TaskValidation(v) = envelope.event {
            validations.push(v);
        }
    }
    let validation_event = |exit_code, output_tail: &str| TaskValidation {
        task_id: "TSK-001".into(),
        command: validation.command.clone(),
        exit_code: Some(exit_code),
        output_tail: output_tail.into(),
    };
    assert_eq!(
        validations,
        [
            validation_event(1, "a.txt needs a 2"),
            validation_event(0, "")
        ]
    );
}
