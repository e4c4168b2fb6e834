//! Every event and artifact survives JSON and keeps its wire shape.

use chrono::{TimeZone, Utc};
use omoi_protocol::artifact::*;
use omoi_protocol::context::{Checkpoint, PhaseContext};
use omoi_protocol::eval::{
    Criterion, EarsClause, EarsKeyword, EarsPattern, EarsReading, Evaluation, Issue,
};
use omoi_protocol::event::*;
use omoi_protocol::phase::Phase;
use pretty_assertions::assert_eq;
use serde_json::json;

fn envelope(event: Event) -> Envelope {
    Envelope {
        v: ENVELOPE_VERSION,
        sandbox_id: "sb-1".into(),
        seq: 7,
        at: Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
        spec_id: Some("spec-1".into()),
        task_id: None,
        event,
    }
}

fn sample_spec() -> FinalSpec {
    FinalSpec {
        title: "t".into(),
        description: "d".into(),
        explore: ExploreOutput {
            summary: "s".into(),
            project_type: "cli".into(),
            tech_stack: vec!["sh".into()],
            key_files: vec![KeyFile {
                path: "bin/greet".into(),
                purpose: "entry".into(),
            }],
            conventions: vec![],
            entry_points: vec!["bin/greet".into()],
            test_layout: "tests/run.sh".into(),
            questions: vec![],
        },
        requirements: RequirementsOutput {
            requirements: vec![Requirement {
                id: "REQ-CLI-001".into(),
                title: "x".into(),
                text: "The greet command shall greet.".into(),
                kind: RequirementKind::Functional,
                priority: Priority::High,
                acceptance_criteria: vec!["a".into(), "b".into()],
            }],
        },
        design: DesignOutput {
            overview: "o".into(),
            components: vec![Component {
                name: "c".into(),
                responsibility: "r".into(),
                interfaces: vec![],
                requirements: vec!["REQ-CLI-001".into()],
            }],
            data_models: vec![DataModel {
                name: "m".into(),
                description: "d".into(),
                fields: vec!["f".into()],
            }],
            apis: vec![ApiItem {
                name: "a".into(),
                signature: "s".into(),
                description: "d".into(),
            }],
            error_handling: "e".into(),
            testing_strategy: "t".into(),
            security: "s".into(),
        },
        tasks: TasksOutput {
            tasks: vec![SpecTask {
                id: "TSK-001".into(),
                title: "t".into(),
                description: "d".into(),
                kind: TaskKind::Implementation,
                priority: Priority::Medium,
                estimate_hours: 1.5,
                files: vec![],
                acceptance_criteria: vec!["a".into()],
                depends_on: vec![],
                requirements: vec!["REQ-CLI-001".into()],
            }],
        },
        sync: SyncOutput {
            coverage: vec![CoverageEntry {
                requirement: "REQ-CLI-001".into(),
                tasks: vec!["TSK-001".into()],
            }],
            coverage_percent: 100.0,
            uncovered: vec![],
            topological_order: vec!["TSK-001".into()],
            parallel_groups: vec![vec!["TSK-001".into()]],
            critical_path: vec!["TSK-001".into()],
            critical_path_hours: 1.5,
            total_hours: 1.5,
            ready_for_execution: true,
            issues: vec![],
        },
    }
}

fn every_event() -> Vec<Event> {
    let counters = Counters {
        turns: 3,
        tool_calls: 2,
        usage: Usage {
            input_tokens: 10,
            output_tokens: 5,
            cost_usd: 0.25,
        },
    };
    let evaluation = Evaluation {
        phase: Phase::Requirements,
        score: 0.5,
        passed: false,
        criteria: vec![Criterion {
            name: "ears".into(),
            weight: 1.0,
            score: 0.5,
            detail: "1 of 2".into(),
        }],
        issues: vec![Issue {
            blocking: true,
            subject: Some("REQ-X-1".into()),
            message: "bad id".into(),
        }],
        warnings: vec!["vague".into()],
        ears: vec![EarsReading {
            requirement: "REQ-X-1".into(),
            pattern: EarsPattern::Complex,
            clauses: vec![
                EarsClause {
                    keyword: EarsKeyword::While,
                    text: "offline".into(),
                },
                EarsClause {
                    keyword: EarsKeyword::When,
                    text: "the user saves".into(),
                },
            ],
            system: "the app".into(),
            response: "queue the change".into(),
        }],
    };
    let spec = sample_spec();
    vec![
        Event::AgentStarted(AgentStarted {
            version: "0.1.0".into(),
            mode: WorkerMode::Spec,
            start_phase: Some(Phase::Explore),
            capabilities: vec!["llm:scripted".into()],
        }),
        Event::AgentHeartbeat(AgentHeartbeat {
            phase: Some(Phase::Design),
            task_id: None,
            counters,
        }),
        Event::AgentMessage(AgentMessage { text: "hi".into() }),
        Event::AgentToolUse(AgentToolUse {
            tool: "read_file".into(),
            call_id: "c1".into(),
            input_summary: "{\"path\":\"a\"}".into(),
        }),
        Event::AgentToolResult(AgentToolResult {
            call_id: "c1".into(),
            ok: true,
            output_summary: "text".into(),
        }),
        Event::AgentFileEdited(AgentFileEdited {
            path: "a".into(),
            lines_added: 2,
            lines_removed: 1,
        }),
        Event::AgentUsage(AgentUsage {
            model: Some("m".into()),
            call: counters.usage,
            total: counters.usage,
        }),
        Event::AgentMessageInjected(AgentMessageInjected {
            text: "stop".into(),
        }),
        Event::AgentCompleted(AgentCompleted {
            success: true,
            counters,
            stopped_after: Some(Phase::Design),
        }),
        Event::AgentFailed(AgentFailed {
            kind: ErrorKind::Config,
            reason: "SPEC_PHASE: unknown".into(),
            counters,
        }),
        Event::SpecExecutionStarted(SpecExecutionStarted {
            title: "t".into(),
            phases: Phase::ALL.to_vec(),
        }),
        Event::SpecPhaseStarted(SpecPhaseStarted {
            phase: Phase::Explore,
            attempt: 1,
        }),
        Event::SpecEvalResult(SpecEvalResult {
            attempt: 2,
            evaluation,
        }),
        Event::SpecPhaseRetry(SpecPhaseRetry {
            phase: Phase::Requirements,
            attempt: 2,
            reason: "r".into(),
            feedback: "f".into(),
        }),
        Event::SpecPhaseCompleted(SpecPhaseCompleted {
            phase: Phase::Explore,
            score: 0.9,
            attempts: 1,
            duration_ms: 12,
            output: PhaseOutput::Explore(spec.explore.clone()),
        }),
        Event::SpecPhaseFailed(SpecPhaseFailed {
            phase: Phase::Tasks,
            reason: "cycle".into(),
            last_score: Some(0.4),
            feedback: "f".into(),
        }),
        Event::SpecExecutionCompleted(Box::new(spec)),
        Event::SpecExecutionFailed(SpecExecutionFailed {
            phase: Phase::Sync,
            reason: "uncovered".into(),
        }),
        Event::TaskStarted(TaskStarted {
            task_id: "TSK-001".into(),
            title: "t".into(),
            branch: "omoi/spec-1".into(),
        }),
        Event::TaskValidation(TaskValidation {
            task_id: "TSK-001".into(),
            command: "make test".into(),
            exit_code: Some(0),
            output_tail: "ok".into(),
        }),
        Event::TaskCommitted(TaskCommitted {
            task_id: "TSK-001".into(),
            sha: "abc".into(),
            branch: "omoi/spec-1".into(),
        }),
        Event::TaskCompleted(TaskCompleted {
            task_id: "TSK-001".into(),
            sha: "abc".into(),
            summary: "done".into(),
        }),
        Event::TaskFailed(TaskFailed {
            task_id: "TSK-001".into(),
            reason: "conflict".into(),
            conflicts: vec!["a".into()],
        }),
    ]
}

#[test]
fn every_event_round_trips_through_json_and_raw_form() {
    let events = every_event();
    for event in events {
        let original = envelope(event);
        let text = serde_json::to_string(&original).unwrap();
        let back: Envelope = serde_json::from_str(&text).unwrap();
        assert_eq!(back, original);
        let raw: RawEvent = serde_json::from_str(&text).unwrap();
        assert_eq!(raw.kind, original.event.type_name());
        assert_eq!(raw.typed().unwrap(), original.event);
        assert_eq!(
            serde_json::to_value(&raw).unwrap(),
            serde_json::to_value(&original).unwrap()
        );
    }
}

#[test]
fn envelope_wire_shape_is_flat() {
    let value = serde_json::to_value(envelope(Event::SpecPhaseStarted(SpecPhaseStarted {
        phase: Phase::Design,
        attempt: 2,
    })))
    .unwrap();
    assert_eq!(
        value,
        json!({
            "v": 1,
            "sandbox_id": "sb-1",
            "seq": 7,
            "at": "2026-01-02T03:04:05Z",
            "spec_id": "spec-1",
            "type": "spec.phase_started",
            "data": {"phase": "design", "attempt": 2}
        })
    );
}

#[test]
fn eval_result_flattens_the_evaluation() {
    let Event::SpecEvalResult(result) = every_event().remove(12) else {
        panic!("event 12 is the eval result")
    };
    let value = serde_json::to_value(Event::SpecEvalResult(result)).unwrap();
    assert_eq!(value["data"]["attempt"], 2);
    assert_eq!(value["data"]["phase"], "requirements");
    assert_eq!(value["data"]["passed"], false);
    assert_eq!(value["data"]["issues"][0]["blocking"], true);
}

#[test]
fn unknown_types_are_kept_raw_and_not_typed() {
    let text = r#"{"v":1,"sandbox_id":"s","seq":1,"at":"2026-01-02T03:04:05Z","type":"agent.future_thing","data":{"x":[1,2]}}"#;
    let raw: RawEvent = serde_json::from_str(text).unwrap();
    assert_eq!(raw.kind, "agent.future_thing");
    assert_eq!(raw.data, json!({"x": [1, 2]}));
    assert!(raw.typed().is_err());
    assert!(serde_json::from_str::<Envelope>(text).is_err());
}

#[test]
fn bad_envelopes_are_rejected() {
    for text in [
        r#"{"v":1,"seq":1,"at":"2026-01-02T03:04:05Z","type":"agent.message","data":{"text":"x"}}"#,
        r#"{"v":1,"sandbox_id":"s","seq":-1,"at":"2026-01-02T03:04:05Z","type":"agent.message","data":{"text":"x"}}"#,
        r#"{"v":1,"sandbox_id":"s","seq":1,"at":"yesterday","type":"agent.message","data":{"text":"x"}}"#,
        r#"{"v":1,"sandbox_id":"s","seq":1,"at":"2026-01-02T03:04:05Z","type":"agent.message","data":{"words":"x"}}"#,
    ] {
        assert!(serde_json::from_str::<Envelope>(text).is_err(), "{text}");
    }
}

#[test]
fn context_tracks_missing_outputs_and_final_spec() {
    let spec = sample_spec();
    let mut context = PhaseContext {
        title: "t".into(),
        description: "d".into(),
        ..PhaseContext::default()
    };
    assert_eq!(
        context.missing_before(Phase::Design),
        vec![Phase::Explore, Phase::Requirements]
    );
    assert_eq!(context.final_spec(), None);
    context.set(PhaseOutput::Explore(spec.explore.clone()));
    context.set(PhaseOutput::Requirements(spec.requirements.clone()));
    context.set(PhaseOutput::Design(spec.design.clone()));
    context.set(PhaseOutput::Tasks(spec.tasks.clone()));
    assert_eq!(context.missing_before(Phase::Sync), vec![]);
    context.set(PhaseOutput::Sync(spec.sync.clone()));
    assert_eq!(context.final_spec(), Some(spec));
    let checkpoint = Checkpoint {
        spec_id: "s".into(),
        completed: Phase::Sync,
        context,
    };
    let text = serde_json::to_string(&checkpoint).unwrap();
    assert_eq!(
        serde_json::from_str::<Checkpoint>(&text).unwrap(),
        checkpoint
    );
}

#[test]
fn phase_output_is_tagged_by_phase() {
    let output = PhaseOutput::Tasks(TasksOutput { tasks: vec![] });
    assert_eq!(output.phase(), Phase::Tasks);
    assert_eq!(
        serde_json::to_value(&output).unwrap(),
        json!({"tasks": {"tasks": []}})
    );
}
