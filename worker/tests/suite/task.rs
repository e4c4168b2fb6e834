//! End to end: the real `omoi-worker` binary in task mode against real git remotes (bare
//! repositories over `file://`, `git daemon` and smart HTTP with basic auth), driven by
//! scripted models.

pub(super) mod harness;

use std::path::PathBuf;

use base64::Engine;
use omoi_protocol::artifact::{DesignOutput, RequirementsOutput, TasksOutput};
use omoi_protocol::event::{ErrorKind, Event, TaskFailed, TaskValidation};
use omoi_protocol::task::SpecRecord;
use omoi_tests::git::{self as remote, GitDaemon, GitHttpServer, LoggedCommit, files_containing};
use pretty_assertions::assert_eq;

use harness::*;

#[test]
fn a_task_edits_validates_commits_and_pushes_to_the_spec_branch() {
    let world = World::new();
    let title = "Add a --version flag";
    let context = context("TSK-001", title, &world.file_url(), Some(VALIDATION));
    let worker = world.worker("ws", &context, "task-version-flag.json");
    let run = worker.run();
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);

    let log = remote::log(&world.bare, BRANCH);
    let sha = log[0].sha.clone();
    assert_eq!(
        log,
        [
            LoggedCommit {
                sha: sha.clone(),
                subject: format!("TSK-001: {title}"),
                body: VERSION_SUMMARY.into(),
                author: "omoi <omoi@localhost>".into(),
            },
            LoggedCommit {
                sha: world.base_sha(),
                subject: "initial".into(),
                body: String::new(),
                author: "Test <test@localhost>".into(),
            }
        ]
    );
    assert_eq!(
        remote::changed_files(&world.bare, &sha),
        ["bin/greet", "tests/run.sh"]
    );
    assert!(remote::file_at(&world.bare, BRANCH, "bin/greet").contains("--version)"));
    assert_eq!(
        task_events(&run.events),
        [
            started("TSK-001", title),
            validation("TSK-001", Some(0), TESTS_PASS),
            committed("TSK-001", &sha),
            completed("TSK-001", &sha, VERSION_SUMMARY),
        ]
    );
    assert_eq!(
        skeleton(&run.events),
        [
            "task.started",
            "task.validation",
            "task.committed",
            "task.completed",
            "agent.completed"
        ]
    );
    let tools: Vec<&str> = run
        .events
        .iter()
        .filter_map(|e| match &e.event {
            Event::AgentToolUse(t) => Some(t.tool.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        tools,
        [
            "read_file",
            "read_file",
            "edit_file",
            "edit_file",
            "run",
            "submit"
        ]
    );
    assert!(
        run.events
            .iter()
            .all(|e| e.task_id.as_deref() == Some("TSK-001")
                && e.spec_id.as_deref() == Some("spec-greet"))
    );
    // The workspace is a checkout of the branch at the pushed commit, with nothing left over.
    assert_eq!(remote::git(&worker.workspace, &["rev-parse", "HEAD"]), sha);
    assert_eq!(
        remote::git(&worker.workspace, &["status", "--porcelain"]),
        ""
    );
}

#[test]
fn a_failed_validation_goes_back_to_the_agent_which_fixes_it() {
    let world = World::new();
    let title = "Add a --version flag";
    let context = context("TSK-001", title, &world.file_url(), Some(VALIDATION));
    let run = world
        .worker("ws", &context, "task-validation-retry.json")
        .run();
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    let sha = remote::branch_sha(&world.bare, BRANCH).unwrap();
    let failing = "ok: greet \nok: greet --name Ada\nok: greet --bogus\n\
                   FAIL: greet --version: expected 'greet 1.0.0', got 'greet: unknown option: --version'";
    assert_eq!(
        task_events(&run.events),
        [
            started("TSK-001", title),
            validation("TSK-001", Some(1), failing),
            validation("TSK-001", Some(0), TESTS_PASS),
            committed("TSK-001", &sha),
            completed("TSK-001", &sha, VERSION_SUMMARY),
        ]
    );
    // The model got the validation output as the result of its first submit.
    let rejected = run.events.iter().find_map(|e| match &e.event {
        Event::AgentToolResult(r) if !r.ok => Some(r.output_summary.clone()),
        _ => None,
    });
    assert!(
        rejected.as_deref().is_some_and(
            |r| r.starts_with("The validation command `sh tests/run.sh` exited with 1.")
        ),
        "{rejected:?}"
    );
    assert_eq!(
        remote::subjects(&world.bare, BRANCH),
        ["TSK-001: Add a --version flag", "initial"]
    );
}

/// Starts TSK-002 (it checks out the branch, then waits for `../go`), lands TSK-001 with
/// `first_script`, then lets TSK-002 go on. Returns both runs.
fn race(world: &World, first_script: &str) -> (Finished, Finished) {
    race_with(world, first_script, None)
}

/// [`race`], both tasks carrying `record`.
fn race_with(
    world: &World,
    first_script: &str,
    record: Option<SpecRecord>,
) -> (Finished, Finished) {
    let mut second_context = context(
        "TSK-002",
        "Describe the tests in the README",
        &world.file_url(),
        Some(VALIDATION),
    );
    second_context.spec_record = record.clone();
    let second = world.worker("ws-two", &second_context, "task-readme-after-go.json");
    let (child, rx) = second.spawn();
    // Once it runs its first tool, its checkout is done: it has the branch as it was.
    let seen = read_until(
        &rx,
        |e| matches!(e, Event::AgentToolUse(t) if t.tool == "run"),
    );

    let mut first_context = context(
        "TSK-001",
        "Add a --version flag",
        &world.file_url(),
        Some(VALIDATION),
    );
    first_context.spec_record = record;
    let first = world.worker("ws-one", &first_context, first_script).run();
    assert_eq!(first.code, 0, "stderr: {}", first.stderr);

    std::fs::write(world.dir.path().join("go"), "").unwrap();
    (first, wait(child, seen, rx))
}

#[test]
fn a_push_rejected_after_another_task_landed_is_rebased_validated_and_pushed() {
    let world = World::new();
    let (first, second) = race(&world, "task-version-flag.json");
    assert_eq!(second.code, 0, "stderr: {}", second.stderr);

    let log = remote::log(&world.bare, BRANCH);
    let subjects: Vec<&str> = log.iter().map(|c| c.subject.as_str()).collect();
    assert_eq!(
        subjects,
        [
            "TSK-002: Describe the tests in the README",
            "TSK-001: Add a --version flag",
            "initial"
        ]
    );
    let first_sha = log[1].sha.clone();
    let second_sha = log[0].sha.clone();
    assert_eq!(
        task_events(&first.events)[2..],
        [
            committed("TSK-001", &first_sha),
            completed("TSK-001", &first_sha, VERSION_SUMMARY)
        ]
    );
    // The second commit was made on the base, rejected, rebased onto the first, validated
    // again and pushed.
    let events = task_events(&second.events);
    let Event::TaskCommitted(before_rebase) = &events[2] else {
        panic!("{events:?}")
    };
    assert_ne!(before_rebase.sha, second_sha);
    let readme_only = "ok: greet \nok: greet --name Ada\nok: greet --bogus";
    assert_eq!(
        events,
        [
            started("TSK-002", "Describe the tests in the README"),
            validation("TSK-002", Some(0), readme_only),
            committed("TSK-002", &before_rebase.sha),
            validation("TSK-002", Some(0), TESTS_PASS),
            committed("TSK-002", &second_sha),
            completed("TSK-002", &second_sha, "Described the tests in the README."),
        ]
    );
    assert_eq!(
        remote::file_at(&world.bare, BRANCH, "README.md")
            .lines()
            .nth(2),
        Some("A tiny greeting command, written in POSIX shell, with tests.")
    );
    assert!(remote::file_at(&world.bare, BRANCH, "bin/greet").contains("--version)"));
}

#[test]
fn two_tasks_carrying_the_spec_record_it_once_with_the_first_commit_even_where_ignored() {
    let world = World::new();
    // The repository ignores `.kiro/`: the record is added all the same.
    let seed = world.dir.path().join("seed");
    remote::git(
        world.dir.path(),
        &[
            "clone",
            "--quiet",
            world.bare.to_str().unwrap(),
            seed.to_str().unwrap(),
        ],
    );
    std::fs::write(seed.join(".gitignore"), ".kiro/\n").unwrap();
    remote::git(&seed, &["add", ".gitignore"]);
    remote::git(&seed, &["commit", "--quiet", "-m", "ignore .kiro"]);
    remote::git(&seed, &["push", "--quiet", "origin", "HEAD"]);

    let first = context("TSK-001", "Add a --version flag", "", None);
    let second = context("TSK-002", "Describe the tests in the README", "", None);
    let record = SpecRecord {
        dir: ".kiro/specs/version-flag-for-greet".into(),
        requirements: RequirementsOutput {
            requirements: first.requirements.clone(),
        },
        design: DesignOutput {
            overview: "A --version flag in bin/greet.".into(),
            components: first.components.clone(),
            data_models: vec![],
            apis: vec![],
            error_handling: "Unknown options exit 2.".into(),
            testing_strategy: "tests/run.sh".into(),
            security: "Nothing secret.".into(),
        },
        tasks: TasksOutput {
            tasks: vec![first.task, second.task],
        },
    };
    let (first, second) = race_with(&world, "task-version-flag.json", Some(record.clone()));
    assert_eq!(first.code, 0, "stderr: {}", first.stderr);
    assert_eq!(second.code, 0, "stderr: {}", second.stderr);

    let log = remote::log(&world.bare, BRANCH);
    let subjects: Vec<&str> = log.iter().map(|c| c.subject.as_str()).collect();
    assert_eq!(
        subjects,
        [
            "TSK-002: Describe the tests in the README",
            "TSK-001: Add a --version flag",
            "ignore .kiro",
            "initial"
        ]
    );
    let files = |names: &[&str]| -> Vec<String> {
        let mut all: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        all.sort();
        all
    };
    assert_eq!(
        remote::changed_files(&world.bare, &log[1].sha),
        files(&[
            ".kiro/specs/version-flag-for-greet/design.md",
            ".kiro/specs/version-flag-for-greet/requirements.md",
            ".kiro/specs/version-flag-for-greet/tasks.md",
            "bin/greet",
            "tests/run.sh",
        ])
    );
    // The second task wrote the same files; rebased onto the first, its commit is its own work.
    assert_eq!(
        remote::changed_files(&world.bare, &log[0].sha),
        files(&["README.md"])
    );
    let tasks = remote::file_at(
        &world.bare,
        BRANCH,
        ".kiro/specs/version-flag-for-greet/tasks.md",
    );
    assert!(tasks.contains("- [ ] 1. Add a --version flag"), "{tasks}");
    assert!(
        tasks.contains("- [ ] 2. Describe the tests in the README"),
        "{tasks}"
    );
}

#[test]
fn a_conflicting_task_fails_naming_the_file_and_leaves_the_branch_alone() {
    let world = World::new();
    let (first, second) = race(&world, "task-readme-conflict.json");
    assert_eq!(first.code, 0);
    let landed = remote::branch_sha(&world.bare, BRANCH).unwrap();
    assert_eq!(second.code, 1, "stderr: {}", second.stderr);
    assert_eq!(
        skeleton(&second.events),
        [
            "task.started",
            "task.validation",
            "task.committed",
            "task.failed",
            "agent.failed"
        ]
    );
    let (failed, kind, reason) = failure(&second.events);
    let want_reason = format!(
        "rebasing onto origin/{BRANCH} stopped on conflicts in README.md; the task's commit was \
         not pushed"
    );
    assert_eq!(
        failed,
        TaskFailed {
            task_id: "TSK-002".into(),
            reason: want_reason.clone(),
            conflicts: vec!["README.md".into()],
        }
    );
    assert_eq!((kind, reason), (ErrorKind::Workspace, want_reason));
    assert_eq!(remote::branch_sha(&world.bare, BRANCH).unwrap(), landed);
    assert_eq!(
        remote::subjects(&world.bare, BRANCH),
        ["TSK-001: Add a --version flag", "initial"]
    );
}

#[test]
fn over_git_daemon_a_task_pushes_and_the_token_is_written_nowhere() {
    let world = World::new();
    let daemon = GitDaemon::start(world.dir.path());
    let token = "ghs_tokenDaemon0123456789abcdef";
    let context = context(
        "TSK-001",
        "Add a --version flag",
        &daemon.url("greet.git"),
        Some(VALIDATION),
    );
    let mut worker = world.worker("ws", &context, "task-version-flag.json");
    worker.set("OMOI_GIT_TOKEN", token);
    let run = worker.run();
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    assert_eq!(
        remote::subjects(&world.bare, BRANCH),
        ["TSK-001: Add a --version flag", "initial"]
    );
    assert_eq!(
        remote::git(&worker.workspace, &["config", "--get", "remote.origin.url"]),
        daemon.url("greet.git")
    );
    assert_eq!(
        files_containing(&worker.workspace, token),
        Vec::<PathBuf>::new()
    );
    assert!(!run.stdout.contains(token));
    assert!(!run.stderr.contains(token));
    assert_eq!(skeleton(&run.events).last(), Some(&"agent.completed"));
}

/// The `Authorization` header git sends for `token` through the credential helper.
fn basic_auth(token: &str) -> String {
    let pair = format!("x-access-token:{token}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

#[test]
fn over_http_the_token_reaches_the_server_through_the_credential_helper_only() {
    let world = World::new();
    let token = "ghs_tokenHttp0123456789abcdef";
    let server = GitHttpServer::start(world.dir.path(), &basic_auth(token));
    let url = server.url("greet.git");
    let context = context("TSK-001", "Add a --version flag", &url, Some(VALIDATION));
    let mut worker = world.worker("ws", &context, "task-version-flag.json");
    worker.set("OMOI_GIT_TOKEN", token);
    let run = worker.run();
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    assert_eq!(
        remote::subjects(&world.bare, BRANCH),
        ["TSK-001: Add a --version flag", "initial"]
    );
    // git asked without credentials, got the challenge, and came back with the token.
    let auth = server.auth_log();
    assert!(auth.accepted >= 2, "{auth:?}");
    assert!(!auth.refused.is_empty(), "{auth:?}");
    assert!(auth.refused.iter().all(Option::is_none), "{auth:?}");
    assert_eq!(
        remote::git(&worker.workspace, &["config", "--get", "remote.origin.url"]),
        url
    );
    assert_eq!(
        files_containing(&worker.workspace, token),
        Vec::<PathBuf>::new()
    );
    assert!(!run.stdout.contains(token));
    assert!(!run.stderr.contains(token));
}

#[test]
fn over_http_without_a_token_the_task_fails_without_prompting() {
    let world = World::new();
    let server = GitHttpServer::start(world.dir.path(), &basic_auth("the-right-token"));
    let url = server.url("greet.git");
    let context = context("TSK-001", "Add a --version flag", &url, Some(VALIDATION));
    let run = world.worker("ws", &context, "task-version-flag.json").run();
    assert_eq!(run.code, 1, "stderr: {}", run.stderr);
    let (failed, kind, _) = failure(&run.events);
    assert_eq!(kind, ErrorKind::Workspace);
    assert!(
        failed.reason.starts_with(&format!(
            "cannot fetch the repository {url}: git fetch --quiet --prune origin failed: "
        )),
        "{}",
        failed.reason
    );
    assert!(
        failed.reason.contains("terminal prompts disabled"),
        "{}",
        failed.reason
    );
    assert_eq!(server.auth_log().accepted, 0);
}

#[test]
fn a_repository_that_does_not_exist_fails_the_task_with_a_clear_reason() {
    let world = World::new();
    let missing = world.dir.path().join("missing.git");
    let context = context(
        "TSK-001",
        "Add a --version flag",
        missing.to_str().unwrap(),
        Some(VALIDATION),
    );
    let run = world.worker("ws", &context, "task-version-flag.json").run();
    assert_eq!(run.code, 1, "stderr: {}", run.stderr);
    assert_eq!(
        skeleton(&run.events),
        ["task.started", "task.failed", "agent.failed"]
    );
    let (failed, kind, reason) = failure(&run.events);
    assert_eq!(kind, ErrorKind::Workspace);
    assert_eq!(failed.reason, reason);
    assert!(
        reason.starts_with(&format!(
            "cannot fetch the repository {}: git fetch --quiet --prune origin failed: ",
            missing.display()
        )),
        "{reason}"
    );
    assert!(
        reason.contains("does not appear to be a git repository"),
        "{reason}"
    );
    assert!(
        run.stderr.contains("cannot fetch the repository"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_hanging_validation_command_is_killed_at_the_timeout_and_reported() {
    let world = World::new();
    let hanging = "echo checking; sleep 600";
    let context = context(
        "TSK-001",
        "Add a --version flag",
        &world.file_url(),
        Some(hanging),
    );
    let mut worker = world.worker("ws", &context, "task-version-flag.json");
    worker
        .set("VALIDATION_TIMEOUT_SECS", "3")
        .set("MAX_ATTEMPTS", "1");
    let run = worker.run();
    assert_eq!(run.code, 1, "stderr: {}", run.stderr);
    let validations: Vec<Event> = task_events(&run.events)
        .into_iter()
        .filter(|e| matches!(e, Event::TaskValidation(_)))
        .collect();
    assert_eq!(
        validations,
        [Event::TaskValidation(TaskValidation {
            task_id: "TSK-001".into(),
            command: hanging.into(),
            exit_code: None,
            output_tail: "checking\n[the command timed out after 3 s and was killed with \
                          everything it started]"
                .into(),
        })]
    );
    assert_eq!(
        skeleton(&run.events),
        [
            "task.started",
            "task.validation",
            "task.failed",
            "agent.failed"
        ]
    );
    let (failed, _, _) = failure(&run.events);
    assert!(
        failed
            .reason
            .contains("the last submission was rejected: The validation command `echo checking; sleep 600` timed out after 3 s"),
        "{}",
        failed.reason
    );
    assert_eq!(
        remote::branch_sha(&world.bare, BRANCH),
        None,
        "nothing was pushed"
    );
}
