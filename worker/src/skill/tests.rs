//! Tests of the spec-skill mode, driven by the scripted provider on the sample repository.

use std::time::Duration;

use omoi_protocol::event::Envelope;
use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedReceiver;

use super::*;
use crate::agent::NativeAgent;
use crate::events::EventIds;
use crate::llm::scripted::ScriptedProvider;

/// The output of each generated phase, as the sample script submits it (it passes the gate).
fn sample_outputs() -> Vec<(Phase, Value)> {
    omoi_tests::fixtures::sample_outputs()
}

fn write_call(phase: Phase, content: &str) -> Value {
    json!({"name": "write_file", "input": {"path": document_path(phase), "content": content}})
}

/// The native agent over a script of one session.
fn provider(turns: Value) -> NativeAgent<ScriptedProvider> {
    NativeAgent::new(
        ScriptedProvider::from_json(&json!({ SESSION_LABEL: [turns] }).to_string()).unwrap(),
    )
}

struct Setup {
    _dir: tempfile::TempDir,
    request: SkillRequest,
    emitter: Emitter,
    events: UnboundedReceiver<Envelope>,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let workspace = omoi_tests::fixtures::copy_sample_repo(&dir.path().join("repo"));
    let (title, description) = omoi_tests::fixtures::sample_request();
    let (emitter, events) = Emitter::channel(EventIds {
        sandbox_id: "sb-skill".into(),
        spec_id: None,
        task_id: None,
    });
    Setup {
        _dir: dir,
        request: SkillRequest {
            workspace: workspace.canonicalize().unwrap(),
            title,
            description,
            limits: Limits {
                max_turns: 10,
                max_budget_usd: 1.0,
                timeout: Duration::from_secs(60),
                price: None,
            },
            threshold: 0.7,
            inbox: Default::default(),
        },
        emitter,
        events,
    }
}

/// The evaluations reported as `spec.eval_result`, in order.
fn reported(events: &mut UnboundedReceiver<Envelope>) -> Vec<Evaluation> {
    let mut evaluations = Vec::new();
    while let Ok(envelope) = events.try_recv() {
        if let Event::SpecEvalResult(result) = envelope.event {
            assert_eq!(result.attempt, 1);
            evaluations.push(result.evaluation);
        }
    }
    evaluations
}

#[tokio::test]
async fn writes_the_documents_and_reports_their_evaluations() {
    let mut setup = setup();
    let outputs = sample_outputs();
    let writes: Vec<Value> = outputs
        .iter()
        .map(|(phase, output)| write_call(*phase, &serde_json::to_string_pretty(output).unwrap()))
        .collect();
    let submit = json!({"summary": "A --shout option for greet, in four documents."});
    let provider = provider(json!([
        {"text": "Looking around first.", "tool_calls": [{"name": "list_files", "input": {}}]},
        {"tool_calls": writes},
        {"tool_calls": [{"name": SUBMIT_TOOL, "input": submit}]}
    ]));
    let cancel = CancellationToken::new();
    let report = run_spec_skill(&provider, &setup.request, &setup.emitter, &cancel)
        .await
        .unwrap();

    // The expected result: each document scored with the context of the ones before it.
    let workspace = setup.request.workspace.as_path();
    let mut context = PhaseContext {
        title: setup.request.title.clone(),
        description: setup.request.description.clone(),
        ..PhaseContext::default()
    };
    let mut documents = Vec::new();
    for (phase, output) in &outputs {
        let output = parse_document(*phase, &output.to_string()).unwrap();
        let evaluation = evaluate::evaluate(&output, &context, workspace, 0.7);
        context.set(output);
        documents.push(DocumentReport {
            phase: *phase,
            path: document_path(*phase),
            status: DocumentStatus::Evaluated(evaluation),
        });
    }
    let analysis = evaluate::sync::analyze(
        context.requirements.as_ref().unwrap(),
        context.tasks.as_ref().unwrap(),
    );
    let sync_evaluation = evaluate::evaluate(
        &PhaseOutput::Sync(analysis.clone()),
        &context,
        workspace,
        0.7,
    );
    let expected = SkillReport {
        session: SessionOutcome::Submitted { input: submit },
        documents,
        sync: Some((analysis.clone(), sync_evaluation.clone())),
    };
    assert_eq!(report, expected);
    assert!(report.all_passed(), "the sample spec passes: {report:#?}");
    assert_eq!(report.present(), Phase::GENERATED.to_vec());
    assert_eq!(
        report.summary(),
        Some("A --shout option for greet, in four documents.")
    );

    let mut evaluations: Vec<Evaluation> = expected
        .documents
        .iter()
        .map(|d| match &d.status {
            DocumentStatus::Evaluated(e) => e.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    evaluations.push(sync_evaluation);
    assert_eq!(reported(&mut setup.events), evaluations);

    let written = std::fs::read_to_string(workspace.join(SPECS_DIR).join("sync.json")).unwrap();
    assert_eq!(
        serde_json::from_str::<SyncOutput>(&written).unwrap(),
        analysis
    );
}

#[tokio::test]
async fn missing_and_invalid_documents_are_reported_not_fatal() {
    let mut setup = setup();
    let explore = sample_outputs().remove(0).1;
    let bad_requirements = r#"{"requirements": [{"id": 1}]}"#;
    let provider = provider(json!([
        {"tool_calls": [
            write_call(Phase::Explore, &explore.to_string()),
            write_call(Phase::Requirements, bad_requirements)
        ]},
        {"tool_calls": [{"name": SUBMIT_TOOL, "input": {"summary": "done"}}]},
        {"text": "I cannot do more."},
        {"text": "Really."},
        {"text": "Stopping."}
    ]));
    let cancel = CancellationToken::new();
    let report = run_spec_skill(&provider, &setup.request, &setup.emitter, &cancel)
        .await
        .unwrap();

    assert!(
        matches!(
            report.session,
            SessionOutcome::Ended {
                reason: EndReason::NoSubmission,
                ..
            }
        ),
        "{:?}",
        report.session
    );
    let context = PhaseContext {
        title: setup.request.title.clone(),
        description: setup.request.description.clone(),
        ..PhaseContext::default()
    };
    let explore_output = parse_document(Phase::Explore, &explore.to_string()).unwrap();
    let explore_evaluation =
        evaluate::evaluate(&explore_output, &context, &setup.request.workspace, 0.7);
    let parse_error = serde_json::from_str::<RequirementsOutput>(bad_requirements).unwrap_err();
    let problem = format!("not the phase's output: {parse_error}");
    let missing = "the document was not written".to_string();
    assert_eq!(
        report.documents,
        vec![
            DocumentReport {
                phase: Phase::Explore,
                path: ".omoi/specs/explore.json".into(),
                status: DocumentStatus::Evaluated(explore_evaluation.clone()),
            },
            DocumentReport {
                phase: Phase::Requirements,
                path: ".omoi/specs/requirements.json".into(),
                status: DocumentStatus::Invalid {
                    problem: problem.clone()
                },
            },
            DocumentReport {
                phase: Phase::Design,
                path: ".omoi/specs/design.json".into(),
                status: DocumentStatus::Missing,
            },
            DocumentReport {
                phase: Phase::Tasks,
                path: ".omoi/specs/tasks.json".into(),
                status: DocumentStatus::Missing,
            },
        ]
    );
    assert_eq!(report.sync, None);
    assert!(!report.all_passed());
    assert_eq!(report.present(), vec![Phase::Explore, Phase::Requirements]);
    assert_eq!(report.summary(), None);

    let envelopes: Vec<Envelope> = std::iter::from_fn(|| setup.events.try_recv().ok()).collect();
    let rejection = envelopes
        .iter()
        .find_map(|e| match &e.event {
            Event::AgentToolResult(result) if !result.ok => Some(result.output_summary.clone()),
            _ => None,
        })
        .unwrap();
    assert!(
        rejection.starts_with(
            "The specification is not complete yet:\n- .omoi/specs/requirements.json: not the \
             phase's output"
        ),
        "{rejection}"
    );
    let evaluations: Vec<Evaluation> = envelopes
        .into_iter()
        .filter_map(|e| match e.event {
            Event::SpecEvalResult(result) => Some(result.evaluation),
            _ => None,
        })
        .collect();
    assert_eq!(
        evaluations,
        vec![
            explore_evaluation,
            unusable(
                Phase::Requirements,
                ".omoi/specs/requirements.json",
                problem
            ),
            unusable(Phase::Design, ".omoi/specs/design.json", missing.clone()),
            unusable(Phase::Tasks, ".omoi/specs/tasks.json", missing),
        ]
    );
}

#[tokio::test]
async fn cancellation_ends_the_run_without_a_report() {
    let mut setup = setup();
    let provider = provider(json!([{"text": "slow", "delay_ms": 60000}]));
    let cancel = CancellationToken::new();
    cancel.cancel();
    let result = run_spec_skill(&provider, &setup.request, &setup.emitter, &cancel).await;
    assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");
    assert_eq!(reported(&mut setup.events), vec![]);
}

#[tokio::test]
async fn a_missing_workspace_is_an_error() {
    let mut setup = setup();
    setup.request.workspace = setup.request.workspace.join("does-not-exist");
    let provider = provider(json!([{"text": "never asked"}]));
    let result = run_spec_skill(
        &provider,
        &setup.request,
        &setup.emitter,
        &CancellationToken::new(),
    )
    .await;
    assert!(matches!(result, Err(Error::Io { .. })), "{result:?}");
}

#[test]
fn submit_checks_the_summary_and_every_document() {
    let dir = tempfile::tempdir().unwrap();
    let check = DocumentsCheck {
        specs_dir: dir.path().to_path_buf(),
    };
    for (phase, output) in sample_outputs() {
        std::fs::write(dir.path().join(file_name(phase)), output.to_string()).unwrap();
    }
    assert_eq!(
        check.verdict(&json!({"summary": "ok"})),
        SubmitVerdict::Accepted
    );
    std::fs::remove_file(dir.path().join("design.json")).unwrap();
    std::fs::write(dir.path().join("tasks.json"), "not json").unwrap();
    let tasks_error = serde_json::from_str::<TasksOutput>("not json").unwrap_err();
    assert_eq!(
        check.verdict(&json!({"summary": " "})),
        SubmitVerdict::Rejected {
            feedback: format!(
                "The specification is not complete yet:\n\
                 - summary: a non-empty string is required\n\
                 - .omoi/specs/design.json: missing\n\
                 - .omoi/specs/tasks.json: not the phase's output: {tasks_error}\n\
                 Fix these, then call `submit` again."
            )
        }
    );
}

#[test]
fn the_system_prompt_names_every_document_with_its_schema() {
    let prompt = system_prompt();
    for phase in Phase::GENERATED {
        let schema = omoi_protocol::schema::phase_output(phase).unwrap();
        let schema = serde_json::to_string(&schema).unwrap();
        let section = format!(
            "## Schema of .omoi/specs/{}.json\n\n```json\n{schema}\n```\n",
            phase.as_str()
        );
        assert!(prompt.contains(&section), "no schema section for {phase}");
    }
}
