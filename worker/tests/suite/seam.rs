//! The agent seam: spec and task mode run with agents that are not the native loop — ones that
//! hand in their work through the `SubmitHandler`, as a CLI agent's `submit` tool would.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use omoi_protocol::context::PhaseContext;
use omoi_protocol::event::{Event, SpecEvalResult};
use omoi_protocol::phase::Phase;
use omoi_tests::fixtures;
use omoi_tests::git as remote;
use omoi_worker::agent::{
    Access, Agent, BoxFuture, EndReason, SUBMIT_TOOL, SessionOutcome, SessionSpec, SubmitHandler,
    SubmitVerdict,
};
use omoi_worker::config::Limits;
use omoi_worker::error::Result;
use omoi_worker::events::{Emitter, EventIds};
use omoi_worker::machine::{self, SpecOutcome, SpecRun};
use omoi_worker::task::gate::NO_CHANGE;
use omoi_worker::task::{self, TaskOutcome, TaskRun};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::task::harness::{BRANCH, World, context as task_context};

/// What the agent saw of one session.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    label: String,
    attempt: u32,
    submit_tool: String,
    access: Access,
    workspace: PathBuf,
    verdicts: Vec<SubmitVerdict>,
}

/// Hands in its prepared submissions for a session's label, in order, until one is accepted.
struct HandIn {
    submissions: BTreeMap<String, Vec<Value>>,
    seen: Mutex<Vec<Seen>>,
}

impl Agent for HandIn {
    fn name(&self) -> &'static str {
        "hand-in"
    }

    fn run_session<'a>(
        &'a self,
        spec: SessionSpec,
        submit: &'a dyn SubmitHandler,
        _emitter: &'a Emitter,
        _cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<SessionOutcome>> {
        Box::pin(async move {
            let mut seen = Seen {
                label: spec.label.clone(),
                attempt: spec.attempt,
                submit_tool: spec.submit.name.clone(),
                access: spec.tools.access,
                workspace: spec.workspace.clone(),
                verdicts: Vec::new(),
            };
            let inputs = self
                .submissions
                .get(&spec.label)
                .cloned()
                .unwrap_or_default();
            let mut outcome = SessionOutcome::Ended {
                reason: EndReason::NoSubmission,
                detail: "nothing more to hand in".into(),
            };
            for input in inputs {
                let verdict = submit.check(&input).await;
                seen.verdicts.push(verdict.clone());
                if verdict == SubmitVerdict::Accepted {
                    outcome = SessionOutcome::Submitted { input };
                    break;
                }
            }
            self.seen.lock().unwrap().push(seen);
            Ok(outcome)
        })
    }
}

/// The submitted output of each generated phase in the sample script, by session label.
fn sample_outputs() -> BTreeMap<String, Value> {
    fixtures::sample_outputs()
        .into_iter()
        .map(|(phase, output)| (phase.as_str().to_string(), output))
        .collect()
}

#[tokio::test]
async fn spec_mode_runs_with_an_agent_that_is_not_the_native_loop() {
    let dir = tempfile::tempdir().unwrap();
    let workspace = fixtures::copy_sample_repo(&dir.path().join("repo"))
        .canonicalize()
        .unwrap();
    let (title, description) = fixtures::sample_request();
    let outputs = sample_outputs();
    // EXPLORE first gets a submission that is not its schema, then the real one.
    let mut submissions: BTreeMap<String, Vec<Value>> = outputs
        .iter()
        .map(|(label, output)| (label.clone(), vec![output.clone()]))
        .collect();
    let explore = submissions.get_mut("explore").unwrap();
    explore.insert(0, json!({"key_files": "not a list"}));
    let agent = HandIn {
        submissions,
        seen: Mutex::new(Vec::new()),
    };
    let (emitter, mut events) = Emitter::channel(EventIds {
        sandbox_id: "sb-seam".into(),
        spec_id: Some("spec-seam".into()),
        task_id: None,
    });
    let outcome = machine::run(SpecRun {
        spec_id: "spec-seam",
        start: Phase::Explore,
        stop_after: None,
        context: PhaseContext {
            title,
            description,
            ..PhaseContext::default()
        },
        workspace: &workspace,
        limits: Limits::default(),
        agent: &agent,
        emitter: &emitter,
        cancel: &CancellationToken::new(),
        inbox: Default::default(),
    })
    .await
    .unwrap();

    let SpecOutcome::Completed(final_spec) = outcome else {
        panic!("the spec did not complete: {outcome:?}");
    };
    assert_eq!(
        serde_json::to_value(&final_spec.explore).unwrap(),
        outputs["explore"]
    );
    let seen = agent.seen.lock().unwrap().clone();
    let rejected = |seen: &Seen| match &seen.verdicts[0] {
        SubmitVerdict::Rejected { feedback } => feedback.clone(),
        SubmitVerdict::Accepted => String::new(),
    };
    let explore_feedback = rejected(&seen[0]);
    assert!(
        explore_feedback.starts_with("The submission does not match the EXPLORE schema"),
        "{explore_feedback}"
    );
    let session = |label: &str, verdicts: Vec<SubmitVerdict>| Seen {
        label: label.into(),
        attempt: 1,
        submit_tool: SUBMIT_TOOL.into(),
        access: Access::ReadOnly,
        workspace: workspace.clone(),
        verdicts,
    };
    assert_eq!(
        seen,
        vec![
            session(
                "explore",
                vec![
                    SubmitVerdict::Rejected {
                        feedback: explore_feedback.clone()
                    },
                    SubmitVerdict::Accepted
                ]
            ),
            session("requirements", vec![SubmitVerdict::Accepted]),
            session("design", vec![SubmitVerdict::Accepted]),
            session("tasks", vec![SubmitVerdict::Accepted]),
        ]
    );
    let mut evaluated = Vec::new();
    while let Ok(envelope) = events.try_recv() {
        if let Event::SpecEvalResult(SpecEvalResult { evaluation, .. }) = envelope.event {
            evaluated.push((evaluation.phase, evaluation.passed));
        }
    }
    assert_eq!(
        evaluated,
        vec![
            (Phase::Explore, true),
            (Phase::Requirements, true),
            (Phase::Design, true),
            (Phase::Tasks, true),
            (Phase::Sync, true),
        ]
    );
}

/// Hands in a task before and after changing a file, as a CLI agent would through `submit`.
struct EditThenSubmit {
    path: &'static str,
    content: &'static str,
    summary: &'static str,
    verdicts: Mutex<Vec<SubmitVerdict>>,
}

impl Agent for EditThenSubmit {
    fn name(&self) -> &'static str {
        "edit-then-submit"
    }

    fn run_session<'a>(
        &'a self,
        spec: SessionSpec,
        submit: &'a dyn SubmitHandler,
        _emitter: &'a Emitter,
        _cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<SessionOutcome>> {
        Box::pin(async move {
            let input = json!({ "summary": self.summary });
            let early = submit.check(&input).await;
            std::fs::write(spec.workspace.join(self.path), self.content).unwrap();
            let verdict = submit.check(&input).await;
            self.verdicts
                .lock()
                .unwrap()
                .extend([early, verdict.clone()]);
            Ok(match verdict {
                SubmitVerdict::Accepted => SessionOutcome::Submitted { input },
                SubmitVerdict::Rejected { feedback } => SessionOutcome::Ended {
                    reason: EndReason::NoSubmission,
                    detail: feedback,
                },
            })
        })
    }
}

#[tokio::test]
async fn task_mode_runs_with_an_agent_that_is_not_the_native_loop() {
    let world = World::new();
    let context = task_context("TSK-001", "Add a NOTES file", &world.file_url(), None);
    let workspace = world.dir.path().join("task-workspace");
    std::fs::create_dir_all(&workspace).unwrap();
    let agent = EditThenSubmit {
        path: "NOTES",
        content: "greet has notes now\n",
        summary: "Added NOTES.",
        verdicts: Mutex::new(Vec::new()),
    };
    let (emitter, _events) = Emitter::channel(EventIds {
        sandbox_id: "sb-seam-task".into(),
        spec_id: Some("spec-greet".into()),
        task_id: Some("TSK-001".into()),
    });
    let outcome = task::run(TaskRun {
        task_id: "TSK-001",
        context: &context,
        git_token: None,
        workspace: &workspace,
        limits: Limits::default(),
        agent: &agent,
        emitter: &emitter,
        cancel: &CancellationToken::new(),
        inbox: Default::default(),
    })
    .await
    .unwrap();

    assert_eq!(
        agent.verdicts.lock().unwrap().clone(),
        vec![
            SubmitVerdict::Rejected {
                feedback: NO_CHANGE.into()
            },
            SubmitVerdict::Accepted
        ]
    );
    assert_eq!(
        outcome,
        TaskOutcome {
            sha: remote::branch_sha(&world.bare, BRANCH).unwrap(),
            branch: BRANCH.into(),
            summary: "Added NOTES.".into(),
            push_rounds: 1,
        }
    );
    // `file_at` gives the text as git prints it, trimmed.
    assert_eq!(
        remote::file_at(&world.bare, BRANCH, "NOTES"),
        "greet has notes now"
    );
}
