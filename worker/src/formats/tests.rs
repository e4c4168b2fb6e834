//! Round trips of the spec formats on folders written the way Kiro and spec-kit write them, what
//! each reader makes of them, and readers fed arbitrary input.

use std::path::{Path, PathBuf};

use omoi_protocol::artifact::{Priority, Requirement, RequirementKind, SpecTask, TaskKind};
use pretty_assertions::assert_eq;

use super::*;
use crate::evaluate::graph::tests::Random;

fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/specs")
        .join(path)
}

fn kiro_fixture() -> PathBuf {
    fixture("kiro/api-rate-limiting")
}

fn speckit_fixture() -> PathBuf {
    fixture("spec-kit/003-api-rate-limiting")
}

/// Writes `spec` in `format` into a fresh folder named `name` and reads it back.
fn round_trip(spec: &Spec, format: Format, name: &str) -> Spec {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join(name);
    write(spec, format, &out).unwrap();
    let (detected, back) = read(&out, None).unwrap();
    assert_eq!(detected, format);
    back
}

fn ids(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn formats_are_detected_from_their_files() {
    assert_eq!(detect(&kiro_fixture()).unwrap(), Format::Kiro);
    assert_eq!(detect(&speckit_fixture()).unwrap(), Format::SpecKit);
    let dir = tempfile::tempdir().unwrap();
    let message = detect(dir.path()).unwrap_err().to_string();
    assert!(message.contains("holds no spec"), "{message}");
    std::fs::write(dir.path().join("tasks.md"), "- [ ] 1. x").unwrap();
    let message = detect(dir.path()).unwrap_err().to_string();
    assert!(
        message.ends_with("pass --format kiro or --format spec-kit"),
        "{message}"
    );
    let missing = dir.path().join("missing");
    assert_eq!(
        detect(&missing).unwrap_err().to_string(),
        format!("{}: is not a directory", missing.display())
    );
    assert_eq!("speckit".parse::<Format>(), Ok(Format::SpecKit));
    assert_eq!(
        "yaml".parse::<Format>(),
        Err("unknown format \"yaml\": expected omoi, kiro or spec-kit".into())
    );
}

#[test]
fn a_kiro_spec_reads_into_requirements_design_and_tasks() {
    let (_, spec) = read(&kiro_fixture(), None).unwrap();
    assert_eq!(spec.title, "api-rate-limiting");
    assert!(spec.description.starts_with("The public API has no limit"));
    let requirements = &spec.requirements.as_ref().unwrap().requirements;
    assert_eq!(requirements.len(), 3);
    assert_eq!(
        requirements[1],
        Requirement {
            id: "REQ-SPEC-002".into(),
            title: "As a client developer, I want to see my remaining quota on every response, \
                    so that I can slow down before I am throttled."
                .into(),
            text: "WHEN the API answers a request THEN the API SHALL include the headers \
                   X-RateLimit-Limit, X-RateLimit-Remaining and X-RateLimit-Reset"
                .into(),
            kind: RequirementKind::Functional,
            priority: Priority::Medium,
            acceptance_criteria: vec![
                "IF the client is not identified by an API key THEN the API SHALL count its \
                 requests by source IP address"
                    .into()
            ],
        }
    );
    let design = spec.design.as_ref().unwrap();
    let served: Vec<(&str, Vec<String>)> = design
        .components
        .iter()
        .map(|c| (c.name.as_str(), c.requirements.clone()))
        .collect();
    assert_eq!(
        served,
        vec![
            (
                "RateLimitMiddleware",
                ids(&["REQ-SPEC-001", "REQ-SPEC-002"])
            ),
            ("LimitStore", ids(&["REQ-SPEC-003"])),
            ("AdminLimitsEndpoint", ids(&["REQ-SPEC-003"])),
        ]
    );
    assert_eq!(
        design.components[0].interfaces,
        ids(&[
            "`fn check(client: &ClientId, now: Instant) -> Decision`",
            "`fn headers(decision: &Decision) -> HeaderMap`"
        ])
    );
    assert!(
        design
            .overview
            .contains("\n\n## Architecture\n\n```mermaid")
    );
    assert_eq!(design.data_models[0].fields.len(), 4);
    assert!(design.security.is_empty());
    let tasks = &spec.tasks.as_ref().unwrap().tasks;
    let shape: Vec<(&str, &str, Vec<String>, Vec<String>)> = tasks
        .iter()
        .map(|t| {
            (
                t.id.as_str(),
                t.title.as_str(),
                t.depends_on.clone(),
                t.requirements.clone(),
            )
        })
        .collect();
    assert_eq!(
        shape,
        vec![
            (
                "TSK-001",
                "Add the client limit table and store",
                vec![],
                ids(&["REQ-SPEC-003"])
            ),
            (
                "TSK-002",
                "Count requests per client in a fixed window",
                ids(&["TSK-001"]),
                ids(&["REQ-SPEC-001", "REQ-SPEC-002"])
            ),
            (
                "TSK-003",
                "Answer 429 and add quota headers",
                ids(&["TSK-002"]),
                ids(&["REQ-SPEC-001", "REQ-SPEC-002"])
            ),
            (
                "TSK-004",
                "Add the admin endpoint for limits",
                ids(&["TSK-003"]),
                ids(&["REQ-SPEC-003"])
            ),
            (
                "TSK-005",
                "Write integration tests against Redis",
                ids(&["TSK-004"]),
                ids(&["REQ-SPEC-001", "REQ-SPEC-003"])
            ),
        ]
    );
    assert_eq!(
        tasks[0].acceptance_criteria,
        ids(&[
            "Create the migration for the `client_limits` table",
            "Implement `LimitStore` with a 10 second cache"
        ])
    );
    assert_eq!(spec.notes, vec![]);
}

#[test]
fn a_speckit_feature_reads_into_requirements_design_and_tasks() {
    let (_, spec) = read(&speckit_fixture(), None).unwrap();
    assert_eq!(spec.title, "API rate limiting");
    assert!(spec.description.starts_with("Limit each API client"));
    let requirements = &spec.requirements.as_ref().unwrap().requirements;
    assert_eq!(requirements.len(), 5);
    assert_eq!(
        requirements[2],
        Requirement {
            id: "REQ-FR-003".into(),
            title: "System MUST count requests without an API key by source IP".into(),
            text: "System SHALL count requests without an API key by source IP address.".into(),
            kind: RequirementKind::Functional,
            priority: Priority::Medium,
            acceptance_criteria: ids(&[
                "two keyless clients on different addresses have separate counters",
                "a keyless client is limited like a keyed one"
            ]),
        }
    );
    let design = spec.design.as_ref().unwrap();
    assert_eq!(
        design.components[1].requirements,
        ids(&["REQ-FR-004", "REQ-FR-005"])
    );
    assert_eq!(design.data_models[0].name, "ClientLimit");
    assert_eq!(
        design.testing_strategy,
        "cargo test; integration tests against Redis and PostgreSQL in containers"
    );
    let tasks = &spec.tasks.as_ref().unwrap().tasks;
    assert_eq!(
        tasks[0].files,
        ids(&["new:migrations/0007_client_limits.sql"])
    );
    assert_eq!(
        tasks[2],
        SpecTask {
            id: "TSK-003".into(),
            title: "Implement the window counter and middleware in \
                    src/ratelimit/middleware.rs (FR-001, FR-002, FR-003)"
                .into(),
            description: "Implement the window counter and middleware in \
                          src/ratelimit/middleware.rs (FR-001, FR-002, FR-003)"
                .into(),
            kind: TaskKind::Implementation,
            priority: Priority::High,
            estimate_hours: 0.0,
            files: ids(&["src/ratelimit/middleware.rs"]),
            acceptance_criteria: ids(&[
                "Given a client with a limit of 100 per minute, When it sends its 101st request \
                 in the minute, Then the API answers 429 with Retry-After.",
                "Given a client under its limit, When it sends a request, Then the response \
                 carries its remaining quota."
            ]),
            depends_on: ids(&["TSK-001"]),
            requirements: ids(&["REQ-FR-001", "REQ-FR-002", "REQ-FR-003"]),
        }
    );
}

/// A `tasks.md` as spec-kit's template lays it out: phases in order, `[P]` on the tasks that may
/// run together, no dependency lines, prose dependencies and a fenced example after the tasks.
const SPECKIT_PHASED_TASKS: &str = "# Tasks: Photo albums

**Input**: Design documents from `/specs/002-photo-albums/`
**Prerequisites**: plan.md (required), research.md, data-model.md, contracts/

## Format: `[ID] [P?] Description`
- **[P]**: Can run in parallel (different files, no dependencies)

## Phase 3.1: Setup
- [ ] T001 Create project structure per implementation plan
- [ ] T002 Initialize a Python project with FastAPI dependencies
- [ ] T003 [P] Configure linting and formatting tools in pyproject.toml

## Phase 3.2: Tests First (TDD) ⚠️ MUST COMPLETE BEFORE 3.3
**CRITICAL: These tests MUST be written and MUST FAIL before ANY implementation**
- [ ] T004 [P] Contract test POST /api/albums in tests/contract/test_albums_post.py
- [ ] T005 [P] Contract test GET /api/albums in tests/contract/test_albums_get.py
- [ ] T006 [P] Integration test album creation in tests/integration/test_album.py

## Phase 3.3: Core Implementation (ONLY after tests are failing)
- [ ] T007 [P] Album model in src/models/album.py
- [ ] T008 [P] Photo model in src/models/photo.py
- [ ] T009 AlbumService CRUD in src/services/album_service.py
- [ ] T010 POST /api/albums endpoint in src/api/albums.py

## Phase 3.4: Integration
- [ ] T011 Connect AlbumService to SQLite in src/db.py

## Phase 3.5: Polish
- [ ] T012 [P] Unit tests for validation in tests/unit/test_validation.py
- [ ] T013 [P] Update docs/api.md

## Dependencies
- Tests (T004-T006) before implementation (T007-T010)
- T007 blocks T009

## Parallel Example
```
# Launch T004-T006 together:
Task: \"Contract test POST /api/albums in tests/contract/test_albums_post.py\"
```
";

#[test]
fn speckit_phase_order_and_parallel_marks_become_dependencies_and_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let feature = dir.path().join("002-photo-albums");
    std::fs::create_dir(&feature).unwrap();
    std::fs::write(feature.join("tasks.md"), SPECKIT_PHASED_TASKS).unwrap();
    let (_, spec) = read(&feature, Some(Format::SpecKit)).unwrap();
    assert_eq!(spec.notes, vec![]);
    let tasks = &spec.tasks.as_ref().unwrap().tasks;
    let deps: Vec<(&str, Vec<&str>)> = tasks
        .iter()
        .map(|t| {
            (
                t.id.as_str(),
                t.depends_on.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        deps,
        vec![
            ("TSK-001", vec![]),
            ("TSK-002", vec!["TSK-001"]),
            ("TSK-003", vec!["TSK-002"]),
            ("TSK-004", vec!["TSK-003"]),
            ("TSK-005", vec!["TSK-003"]),
            ("TSK-006", vec!["TSK-003"]),
            ("TSK-007", vec!["TSK-004", "TSK-005", "TSK-006"]),
            ("TSK-008", vec!["TSK-004", "TSK-005", "TSK-006"]),
            ("TSK-009", vec!["TSK-007", "TSK-008"]),
            ("TSK-010", vec!["TSK-009"]),
            ("TSK-011", vec!["TSK-010"]),
            ("TSK-012", vec!["TSK-011"]),
            ("TSK-013", vec!["TSK-011"]),
        ]
    );
    assert_eq!(
        tasks[3].title,
        "Contract test POST /api/albums in tests/contract/test_albums_post.py"
    );

    // Written back: one phase per wave, [P] where tasks share a phase, and the same graph.
    let back = round_trip(&spec, Format::SpecKit, "002-photo-albums");
    assert_eq!(back.tasks, spec.tasks);
    let written = render(&spec, Format::SpecKit).unwrap();
    let text = &written
        .iter()
        .find(|(name, _)| *name == "tasks.md")
        .unwrap()
        .1;
    assert!(
        text.contains("\n## Phase 4\n\n- [ ] T004 [P] Contract test POST"),
        "{text}"
    );
    assert!(
        text.contains("\n## Phase 3\n\n- [ ] T003 Configure linting"),
        "{text}"
    );
    assert_eq!(text.matches("\n## Phase ").count(), 9, "{text}");
    // And through Kiro, which runs tasks in order unless told otherwise.
    let with_requirements = Spec {
        requirements: Some(omoi_protocol::artifact::RequirementsOutput {
            requirements: vec![],
        }),
        ..spec.clone()
    };
    let via_kiro = round_trip(&with_requirements, Format::Kiro, "photo-albums");
    assert_eq!(via_kiro.tasks, spec.tasks);
}

#[test]
fn speckit_tasks_without_phases_run_in_order_with_parallel_runs_together() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tasks.md"),
        "# Tasks\n\n- [ ] T001 [P] One\n- [ ] T002 [p] Two\n- [ ] T003 Three\n  - Depends on: \
         none\n- [ ] T004 Four\n",
    )
    .unwrap();
    let (_, spec) = read(dir.path(), Some(Format::SpecKit)).unwrap();
    let deps: Vec<Vec<String>> = spec
        .tasks
        .unwrap()
        .tasks
        .into_iter()
        .map(|t| t.depends_on)
        .collect();
    assert_eq!(deps, vec![vec![], vec![], vec![], ids(&["TSK-003"])]);
}

#[test]
fn each_format_round_trips_what_it_holds() {
    let (_, kiro) = read(&kiro_fixture(), None).unwrap();
    assert_eq!(round_trip(&kiro, Format::Kiro, "api-rate-limiting"), kiro);
    assert_eq!(round_trip(&kiro, Format::Omoi, "x"), kiro);
    let (_, speckit) = read(&speckit_fixture(), None).unwrap();
    assert_eq!(round_trip(&speckit, Format::SpecKit, "y"), speckit);
    assert_eq!(round_trip(&speckit, Format::Omoi, "y"), speckit);
}

#[test]
fn a_spec_crosses_formats_and_comes_back_whole() {
    let (_, kiro) = read(&kiro_fixture(), None).unwrap();
    let via_speckit = round_trip(&kiro, Format::SpecKit, "api-rate-limiting");
    let back = round_trip(&via_speckit, Format::Kiro, "api-rate-limiting");
    assert_eq!(back, kiro);

    let (_, speckit) = read(&speckit_fixture(), None).unwrap();
    let via_kiro = round_trip(&speckit, Format::Kiro, "API rate limiting");
    let back = round_trip(&via_kiro, Format::SpecKit, "z");
    assert_eq!(back, speckit);
}

#[test]
fn omoi_json_notes_unknown_fields_by_path() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tasks.json"),
        r#"{"tasks": [{"id": "TSK-001", "title": "t", "description": "d",
            "type": "implementation", "priority": "low", "estimate_hours": 1,
            "acceptance_criteria": ["a"], "requirements": [], "depends-on": ["TSK-002"]}],
            "extra": 1}"#,
    )
    .unwrap();
    let (format, spec) = read(dir.path(), None).unwrap();
    assert_eq!(format, Format::Omoi);
    assert_eq!(
        spec.notes,
        vec![
            Note {
                subject: "tasks.json: tasks[0].depends-on".into(),
                message: "unknown field \"depends-on\": it is not part of a tasks output and was \
                          ignored (did you mean depends_on?)"
                    .into(),
                blocking: true,
            },
            Note {
                subject: "tasks.json: extra".into(),
                message: "unknown field \"extra\": it is not part of a tasks output and was \
                          ignored"
                    .into(),
                blocking: true,
            },
        ]
    );
    std::fs::write(dir.path().join("design.json"), "{\"overview\": 1}").unwrap();
    let message = read(dir.path(), None).unwrap_err().to_string();
    assert!(
        message.starts_with(&format!(
            "{}: is not a design output: invalid type",
            dir.path().join("design.json").display()
        )),
        "{message}"
    );
}

#[test]
fn markdown_readers_note_what_they_cannot_read() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("requirements.md"),
        "# Requirements Document\n\n### Requirement 1\n\n**Priority:** urgent\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("tasks.md"),
        "- [ ] 1. Do it\n  - _Estimate: soon_\n",
    )
    .unwrap();
    let (_, spec) = read(dir.path(), Some(Format::Kiro)).unwrap();
    let notes: Vec<String> = spec
        .notes
        .iter()
        .map(|n| format!("{}: {}", n.subject, n.message))
        .collect();
    assert_eq!(
        notes,
        vec![
            "requirements.md: Requirement 1: priority \"urgent\" is not one omoi knows; it was \
             left out",
            "requirements.md: Requirement 1: has no acceptance criteria: its EARS text is empty",
            "tasks.md: line 1: estimate \"soon\" is not a number of hours (e.g. 4h)",
        ]
    );
}

/// Text made of the pieces spec documents are made of, in random order and nesting.
fn random_markdown(random: &mut Random, lines: usize) -> String {
    const PIECES: [&str; 26] = [
        "# ",
        "## ",
        "### Requirement ",
        "#### Acceptance Criteria",
        "- [ ] ",
        "  - [ ] 2.",
        "- ",
        "    - ",
        "1. ",
        "**FR-0",
        "**: ",
        "_Requirements: ",
        "Depends on: ",
        "_Estimate: ",
        "```",
        "WHEN x THEN the system SHALL y",
        "T00",
        "REQ-",
        "(TSK-",
        ")",
        "é😀",
        ", ",
        "h_",
        "**Input**: ",
        "[P] ",
        "## Phase ",
    ];
    let mut text = String::new();
    for _ in 0..lines {
        for _ in 0..random.below(5) {
            text.push_str(PIECES[random.below(PIECES.len())]);
            text.push_str(&random.below(20).to_string());
        }
        text.push('\n');
    }
    text
}

#[test]
fn readers_survive_arbitrary_input() {
    let mut random = Random::new(11);
    let dir = tempfile::tempdir().unwrap();
    for round in 0..300 {
        let lines = if round % 50 == 0 {
            20_000
        } else {
            1 + random.below(40)
        };
        for name in [
            "requirements.md",
            "design.md",
            "tasks.md",
            "spec.md",
            "plan.md",
        ] {
            std::fs::write(dir.path().join(name), random_markdown(&mut random, lines)).unwrap();
        }
        for format in [Format::Kiro, Format::SpecKit] {
            let (_, spec) = read(dir.path(), Some(format)).unwrap();
            // Whatever was read renders in every format, and evaluates.
            for target in Format::ALL {
                render(&spec, target).unwrap();
            }
            let context = spec.context();
            if let (Some(r), Some(t)) = (&context.requirements, &context.tasks) {
                crate::evaluate::sync::analyze(r, t);
            }
        }
    }
}
