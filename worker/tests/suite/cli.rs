//! Integration tests of the `evaluate` and `schema` subcommands, through the built binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use omoi_protocol::artifact::{PhaseOutput, RequirementsOutput, TasksOutput};
use omoi_protocol::context::PhaseContext;
use omoi_protocol::eval::{Evaluation, Issue};
use omoi_protocol::phase::Phase;
use omoi_worker::evaluate::evaluate;
use pretty_assertions::assert_eq;

use super::common::{one_line_error, stdout_json};

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/evaluate")
}

fn worker(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_omoi-worker"))
        .args(args)
        .current_dir(data())
        .env_clear()
        .output()
        .unwrap()
}

fn read<T: serde::de::DeserializeOwned>(name: &str) -> T {
    serde_json::from_str(&std::fs::read_to_string(data().join(name)).unwrap()).unwrap()
}

/// The evaluation printed on stdout, after checking the exit code.
fn evaluation(output: &Output, code: i32) -> Evaluation {
    stdout_json(output, code)
}

/// Exit code 2, nothing on stdout, and one line on stderr.
fn bad_input(output: &Output) -> String {
    one_line_error(output, 2)
}

#[test]
fn good_requirements_pass_with_exit_0_and_print_the_evaluation() {
    let output = worker(&["evaluate", "requirements", "requirements_good.json"]);
    let printed = evaluation(&output, 0);
    let expected = evaluate(
        &PhaseOutput::Requirements(read::<RequirementsOutput>("requirements_good.json")),
        &PhaseContext::default(),
        &data(),
        0.7,
    );
    assert_eq!(printed, expected);
    assert_eq!(
        (printed.score, printed.passed, printed.issues.len()),
        (1.0, true, 0)
    );
}

#[test]
fn bad_requirements_fail_with_exit_1_and_name_the_problems() {
    let output = worker(&["evaluate", "requirements", "requirements_bad.json"]);
    let printed = evaluation(&output, 1);
    assert!(!printed.passed);
    let blocking: Vec<&Issue> = printed.issues.iter().filter(|i| i.blocking).collect();
    assert_eq!(
        blocking,
        vec![&Issue {
            blocking: true,
            subject: Some("REQ-BUILD-001".into()),
            message: "id used by 2 requirements: give each its own".into(),
        }]
    );
    assert_eq!(
        printed.warnings,
        vec![
            "REQ-BUILD-001: vague wording (quickly, user-friendly): state a measurable condition \
             instead"
                .to_string()
        ]
    );
    let expected = evaluate(
        &PhaseOutput::Requirements(read("requirements_bad.json")),
        &PhaseContext::default(),
        &data(),
        0.7,
    );
    assert_eq!(printed, expected);
}

#[test]
fn a_dependency_cycle_fails_the_tasks_gate_with_the_context() {
    let output = worker(&[
        "evaluate",
        "tasks",
        "tasks_cycle.json",
        "--context",
        "context.json",
    ]);
    let printed = evaluation(&output, 1);
    assert_eq!(
        printed.issues,
        vec![
            Issue {
                blocking: true,
                subject: Some("TSK-001".into()),
                message: "dependency cycle among TSK-001, TSK-002, TSK-003: TSK-001 → TSK-003 → \
                      TSK-002 → TSK-001 (each depends on the next); break it by removing a \
                      dependency"
                    .into(),
            },
            Issue {
                blocking: false,
                subject: Some("TSK-001".into()),
                message: "names files that are not in the workspace: src/render.rs; fix the \
                          paths, or mark a file the task creates as new (\"new:path\" or \
                          \"path (new)\")"
                    .into(),
            }
        ]
    );
    let expected = evaluate(
        &PhaseOutput::Tasks(read::<TasksOutput>("tasks_cycle.json")),
        &read::<PhaseContext>("context.json"),
        &data(),
        0.7,
    );
    assert_eq!(printed, expected);
}

#[test]
fn a_missing_key_file_fails_explore_in_the_given_workspace() {
    let workspace = data();
    let workspace = workspace.to_str().unwrap();
    let output = worker(&[
        "evaluate",
        "explore",
        "explore.json",
        "--workspace",
        workspace,
    ]);
    let printed = evaluation(&output, 1);
    assert_eq!(
        printed.issues,
        vec![Issue {
            blocking: true,
            subject: Some("src/missing.rs".into()),
            message: "does not exist in the workspace: list the files and name one that does"
                .into(),
        }]
    );
}

#[test]
fn the_threshold_flag_moves_the_gate() {
    let output = worker(&[
        "evaluate",
        "tasks",
        "tasks_cycle.json",
        "--threshold",
        "0",
        "--no-traceability",
    ]);
    // Without a context the cycle still blocks, whatever the threshold.
    assert!(!evaluation(&output, 1).passed);

    let output = worker(&[
        "evaluate",
        "requirements",
        "requirements_good.json",
        "--threshold",
        "1",
    ]);
    assert!(evaluation(&output, 0).passed);
}

#[test]
fn unreadable_invalid_and_mistyped_files_exit_2_with_one_line() {
    let stderr = bad_input(&worker(&["evaluate", "tasks", "no_such_file.json"]));
    assert!(
        stderr.contains("no_such_file.json: cannot read"),
        "{stderr}"
    );

    // A requirements file is not a tasks output: the message names the phase and the position.
    let stderr = bad_input(&worker(&["evaluate", "tasks", "requirements_good.json"]));
    assert!(
        stderr.contains("requirements_good.json: is not a tasks output: missing field `tasks`"),
        "{stderr}"
    );
    assert!(stderr.contains("line "), "{stderr}");

    let stderr = bad_input(&worker(&[
        "evaluate",
        "tasks",
        "tasks_cycle.json",
        "--context",
        "explore.json",
    ]));
    assert!(
        stderr.contains("explore.json: is not a phase context: missing field `title`"),
        "{stderr}"
    );

    let stderr = bad_input(&worker(&["evaluate", "complete", "tasks_cycle.json"]));
    assert!(stderr.contains("complete has no output"), "{stderr}");
}

#[test]
fn an_unknown_phase_exits_2_with_one_line() {
    let stderr = bad_input(&worker(&["evaluate", "planning", "tasks_cycle.json"]));
    assert!(
        stderr.contains(
            "unknown target \"planning\": expected explore, requirements, design, tasks, sync or \
             spec"
        ),
        "{stderr}"
    );
}

#[test]
fn schema_prints_the_phase_output_schema() {
    let output = worker(&["schema", "tasks"]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let expected =
        serde_json::to_value(omoi_protocol::schema::phase_output(Phase::Tasks).unwrap()).unwrap();
    assert_eq!(printed, expected);
}

#[test]
fn schema_of_complete_exits_2() {
    let stderr = bad_input(&worker(&["schema", "complete"]));
    assert!(stderr.contains("complete has no output"), "{stderr}");
}

/// Runs the worker with its stdout a pipe whose reader is already gone (`… | head` after
/// `head` has exited).
fn worker_into_closed_pipe(args: &[&str]) -> Output {
    let (reader, writer) = rustix::pipe::pipe().unwrap();
    drop(reader);
    Command::new(env!("CARGO_BIN_EXE_omoi-worker"))
        .args(args)
        .current_dir(data())
        .env_clear()
        .stdout(std::process::Stdio::from(writer))
        .output()
        .unwrap()
}

#[test]
fn every_subcommand_exits_quietly_into_a_closed_pipe() {
    for (args, code) in [
        (
            &["evaluate", "requirements", "requirements_good.json"][..],
            0,
        ),
        (
            &["evaluate", "requirements", "requirements_bad.json"][..],
            1,
        ),
        (&["schema", "tasks"][..], 0),
    ] {
        let output = worker_into_closed_pipe(args);
        assert_eq!(
            (
                output.status.code(),
                String::from_utf8_lossy(&output.stderr).into_owned()
            ),
            (Some(code), String::new()),
            "{args:?}"
        );
    }
}

/// How stderr is closed.
#[derive(Debug, Clone, Copy)]
enum Closed {
    /// A pipe whose reader is gone (`2>&1 | head` after `head` exited): writes fail with EPIPE.
    Pipe,
    /// No descriptor 2 at all (`2>&-`).
    Descriptor,
}

/// `command` with its stdout and stderr closed the `closed` way; its exit code.
fn exit_with_closed_output(mut command: Command, closed: Closed) -> Option<i32> {
    match closed {
        Closed::Pipe => {
            let (reader, writer) = rustix::pipe::pipe().unwrap();
            drop(reader);
            let (out_reader, out_writer) = rustix::pipe::pipe().unwrap();
            drop(out_reader);
            command
                .stdout(std::process::Stdio::from(out_writer))
                .stderr(std::process::Stdio::from(writer))
                .status()
                .unwrap()
                .code()
        }
        Closed::Descriptor => {
            let program = command.get_program().to_owned();
            let mut shell = Command::new("sh");
            shell
                .arg("-c")
                .arg("exec \"$0\" \"$@\" >&- 2>&-")
                .arg(program)
                .args(command.get_args())
                .env_clear()
                .envs(command.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))));
            if let Some(dir) = command.get_current_dir() {
                shell.current_dir(dir);
            }
            shell.status().unwrap().code()
        }
    }
}

#[test]
fn every_subcommand_and_a_run_end_as_usual_with_stdout_and_stderr_closed() {
    for closed in [Closed::Pipe, Closed::Descriptor] {
        // Errors, verdicts and a usage error, each said on stderr.
        for (args, code) in [
            (&["evaluate", "requirements", "no-such-file.json"][..], 2),
            (
                &["evaluate", "requirements", "requirements_bad.json"][..],
                1,
            ),
            (&["convert", "nowhere", "--to", "kiro", "--out", "x"][..], 2),
            (&["--no-such-flag"][..], 2),
        ] {
            let mut command = Command::new(env!("CARGO_BIN_EXE_omoi-worker"));
            command.args(args).current_dir(data()).env_clear();
            assert_eq!(
                exit_with_closed_output(command, closed),
                Some(code),
                "{closed:?} {args:?}"
            );
        }
        // A whole task run logging at debug, and a run refused for its configuration.
        let world = super::task::harness::World::new();
        let context = super::task::harness::context(
            "TSK-001",
            "Add a --version flag",
            &world.file_url(),
            Some(super::task::harness::VALIDATION),
        );
        let mut worker = world.worker("ws", &context, "task-version-flag.json");
        worker.set("OMOI_LOG", "debug");
        assert_eq!(
            exit_with_closed_output(worker.command(), closed),
            Some(0),
            "{closed:?} run"
        );
        assert_eq!(
            omoi_tests::git::subjects(&world.bare, super::task::harness::BRANCH),
            ["TSK-001: Add a --version flag", "initial"]
        );
        worker.set("OMOI_PASS_ENV", "bad-name");
        assert_eq!(
            exit_with_closed_output(worker.command(), closed),
            Some(2),
            "{closed:?} config"
        );
    }
}
