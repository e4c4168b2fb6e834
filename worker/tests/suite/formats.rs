//! Integration tests of whole spec folders through the built binary: `evaluate spec`, `sync`,
//! `convert`, `schema context`, and the refusal of a gate that cannot trace.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use omoi_protocol::artifact::SyncOutput;
use omoi_protocol::context::PhaseContext;
use omoi_protocol::eval::Issue;
use omoi_worker::evaluate::sync::analyze;
use omoi_worker::formats::{self, Format};
use pretty_assertions::assert_eq;

use super::common::{one_line_error, stdout_json};

fn specs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/specs")
}

fn worker(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_omoi-worker"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .output()
        .unwrap()
}

fn printed(output: &Output, code: i32) -> serde_json::Value {
    stdout_json(output, code)
}

fn refused(output: &Output, code: i32) -> String {
    one_line_error(output, code)
}

/// The Kiro example converted to omoi's JSON in `dir`.
fn kiro_as_omoi(dir: &Path) {
    let kiro = specs().join("kiro/api-rate-limiting");
    let out = dir.to_str().unwrap();
    let output = worker(&kiro, &["convert", ".", "--to", "omoi", "--out", out]);
    assert_eq!(output.status.code(), Some(0));
}

/// Each evaluation's phase, passed flag and blocking issues.
fn verdicts(value: &serde_json::Value) -> Vec<(String, bool, usize)> {
    value["evaluations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let blocking = e["issues"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|i| i["blocking"] == true)
                .count();
            (
                e["phase"].as_str().unwrap().to_string(),
                e["passed"].as_bool().unwrap(),
                blocking,
            )
        })
        .collect()
}

fn all_pass() -> Vec<(String, bool, usize)> {
    ["requirements", "design", "tasks", "sync"]
        .iter()
        .map(|p| (p.to_string(), true, 0))
        .collect()
}

#[test]
fn a_kiro_spec_passes_every_gate_with_its_ears_readings() {
    let dir = specs().join("kiro/api-rate-limiting");
    let result = printed(&worker(&dir, &["evaluate", "spec", "."]), 0);
    assert_eq!(result["format"], "kiro");
    assert_eq!(result["missing"], serde_json::json!([]));
    assert_eq!(verdicts(&result), all_pass());
    let readings = result["evaluations"][0]["ears"].as_array().unwrap();
    assert_eq!(readings.len(), 3);
    assert_eq!(
        readings[0],
        serde_json::json!({
            "requirement": "REQ-SPEC-001",
            "pattern": "event-driven",
            "clauses": [{"keyword": "when", "text": "a client sends more than its limit of \
                requests within one minute"}],
            "system": "the API",
            "response": "answer further requests with status 429"
        })
    );
    assert_eq!(result["sync"]["ready_for_execution"], true);
}

#[test]
fn a_speckit_feature_passes_every_gate_and_names_the_files_it_misses() {
    let dir = specs().join("spec-kit/003-api-rate-limiting");
    let result = printed(
        &worker(&dir, &["evaluate", "spec", ".", "--format", "spec-kit"]),
        0,
    );
    assert_eq!(result["format"], "spec-kit");
    assert_eq!(verdicts(&result), all_pass());
    let tasks = &result["evaluations"][2];
    let files: Vec<&serde_json::Value> = tasks["issues"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["message"].as_str().unwrap().starts_with("names files"))
        .map(|i| &i["subject"])
        .collect();
    assert_eq!(files, vec!["TSK-002", "TSK-003", "TSK-004"]);
}

#[test]
fn sync_prints_the_analysis_of_a_spec_folder() {
    let dir = specs().join("kiro/api-rate-limiting");
    let output = worker(&dir, &["sync", "."]);
    let printed: SyncOutput = serde_json::from_value(printed(&output, 0)).unwrap();
    let (_, spec) = formats::read(&dir, None).unwrap();
    let expected = analyze(
        spec.requirements.as_ref().unwrap(),
        spec.tasks.as_ref().unwrap(),
    );
    assert_eq!(printed, expected);
    assert_eq!(
        printed.topological_order,
        ["TSK-001", "TSK-002", "TSK-003", "TSK-004", "TSK-005"]
    );
}

#[test]
fn convert_writes_another_format_that_gates_the_same() {
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("specs/003-api-rate-limiting");
    let target_arg = target.to_str().unwrap();
    let dir = specs().join("kiro/api-rate-limiting");
    let output = worker(
        &dir,
        &["convert", ".", "--to", "spec-kit", "--out", target_arg],
    );
    assert_eq!(output.status.code(), Some(0));
    let listed: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(
        listed,
        ["spec.md", "plan.md", "tasks.md"].map(|f| target.join(f).display().to_string())
    );
    let text = std::fs::read_to_string(target.join("tasks.md")).unwrap();
    assert!(
        text.contains("# Tasks: api-rate-limiting\n\n## Phase 1\n\n- [ ] T001 Add the client limit table and store\n"),
        "{text}"
    );
    let result = printed(&worker(&dir, &["evaluate", "spec", target_arg]), 0);
    assert_eq!(verdicts(&result), all_pass());

    let back = out.path().join("omoi");
    let output = worker(
        &dir,
        &[
            "convert",
            target_arg,
            "--to",
            "omoi",
            "--out",
            back.to_str().unwrap(),
        ],
    );
    assert_eq!(output.status.code(), Some(0));
    let (_, original) = formats::read(&dir, None).unwrap();
    let (format, returned) = formats::read(&back, None).unwrap();
    assert_eq!(format, Format::Omoi);
    assert_eq!(returned.requirements, original.requirements);
    assert_eq!(returned.design, original.design);
    assert_eq!(returned.tasks, original.tasks);
}

#[test]
fn an_unknown_field_fails_the_spec_gate_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    kiro_as_omoi(dir.path());
    let tasks_file = dir.path().join("tasks.json");
    let text = std::fs::read_to_string(&tasks_file).unwrap().replacen(
        "\"depends_on\"",
        "\"depends-on\"",
        1,
    );
    std::fs::write(&tasks_file, text).unwrap();
    let result = printed(&worker(dir.path(), &["evaluate", "spec", "."]), 1);
    let issues: Vec<Issue> =
        serde_json::from_value(result["evaluations"][2]["issues"].clone()).unwrap();
    assert!(
        issues.contains(&Issue {
            blocking: true,
            subject: Some("tasks.json: tasks[0].depends-on".into()),
            message: "unknown field \"depends-on\": it is not part of a tasks output and was \
                      ignored (did you mean depends_on?)"
                .into(),
        }),
        "{issues:#?}"
    );
}

#[test]
fn a_gate_that_cannot_trace_exits_3_unless_told_to_skip_tracing() {
    let dir = tempfile::tempdir().unwrap();
    kiro_as_omoi(dir.path());
    for phase in ["design", "tasks"] {
        let file = format!("{phase}.json");
        let stderr = refused(&worker(dir.path(), &["evaluate", phase, &file]), 3);
        assert!(
            stderr.contains(&format!("the {phase} gate needs the requirements")),
            "{stderr}"
        );
        let output = worker(dir.path(), &["evaluate", phase, &file, "--no-traceability"]);
        let result = printed(&output, 0);
        assert!(
            result["warnings"]
                .as_array()
                .unwrap()
                .iter()
                .any(|w| w.as_str().unwrap().contains("was not checked"))
        );
    }
}

#[test]
fn schema_context_prints_the_phase_context_schema() {
    let output = worker(&specs(), &["schema", "context"]);
    let printed = printed(&output, 0);
    assert_eq!(
        printed,
        serde_json::to_value(schemars::schema_for!(PhaseContext)).unwrap()
    );
    let stderr = refused(&worker(&specs(), &["schema", "contexts"]), 2);
    assert!(stderr.contains("unknown schema \"contexts\""), "{stderr}");
}

#[test]
fn bad_spec_folders_and_flags_exit_2_with_one_line() {
    let empty = tempfile::tempdir().unwrap();
    let stderr = refused(&worker(empty.path(), &["evaluate", "spec", "."]), 2);
    assert!(stderr.contains("holds no spec"), "{stderr}");
    let stderr = refused(&worker(empty.path(), &["sync", "missing"]), 2);
    assert!(stderr.contains("missing: is not a directory"), "{stderr}");
    let stderr = refused(
        &worker(
            empty.path(),
            &["convert", ".", "--to", "yaml", "--out", "x"],
        ),
        2,
    );
    assert!(stderr.contains("unknown format \"yaml\""), "{stderr}");
    let stderr = refused(
        &worker(
            empty.path(),
            &["evaluate", "spec", ".", "--context", "c.json"],
        ),
        2,
    );
    assert!(
        stderr.contains("--context: a spec folder holds its own"),
        "{stderr}"
    );
}

#[test]
fn the_readme_context_example_is_a_complete_phase_context() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let start = readme.find("For a tasks file:\n\n```json\n").unwrap();
    let block = &readme[start..];
    let block = &block[block.find("{").unwrap()..block.find("\n```\n").unwrap()];
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("context.json"), block).unwrap();
    let mut notes = Vec::new();
    let context: PhaseContext = formats::omoi::parse(
        block,
        &dir.path().join("context.json"),
        "a phase context",
        &mut notes,
    )
    .unwrap();
    assert_eq!(notes, vec![]);
    // The design it holds passes its gate against its requirements, the documentation
    // requirement met by the overview's words.
    let design = serde_json::to_string(context.design.as_ref().unwrap()).unwrap();
    std::fs::write(dir.path().join("design.json"), design).unwrap();
    let output = worker(
        dir.path(),
        &[
            "evaluate",
            "design",
            "design.json",
            "--context",
            "context.json",
        ],
    );
    let result = printed(&output, 0);
    assert_eq!(result["issues"], serde_json::json!([]));
}
