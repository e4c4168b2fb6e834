//! Review between phases: a spec stopped after a phase (`stop_after`) is approved to go on, or
//! the output of that phase is replaced by the user's, judged by the worker's own evaluator.

use omoi_protocol::artifact::PhaseOutput;
use omoi_protocol::context::PhaseContext;
use omoi_protocol::env as var;
use omoi_protocol::eval::{Evaluation, Issue};
use omoi_protocol::phase::Phase;

use crate::app::AppState;
use crate::error::{Error, Result, corrupt};
use crate::execution::{self, Start};
use crate::model::{Spec, SpecStatus};
use crate::store::ReviewedOutput;

/// What the evaluator made of a replaced output.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// It passed and is stored; the next phase starts from it.
    Accepted(Evaluation),
    /// It did not pass (a blocking issue, a score below the threshold) or it brings an issue
    /// the stored output did not have; nothing changed.
    Rejected(Evaluation),
}

/// The phase a spec is stopped after, or 409 naming why it is not stopped.
pub fn stopped_after(spec: &Spec) -> Result<Phase> {
    match (spec.status, spec.stop_after) {
        (SpecStatus::Pending, Some(phase)) if spec.current_phase == phase.next() => Ok(phase),
        _ => Err(Error::Conflict(format!(
            "spec {} is not stopped after a phase (it is {})",
            spec.id, spec.status
        ))),
    }
}

/// Continues a spec stopped after a phase, up to `stop_after` (or to the end).
pub async fn approve(state: &AppState, spec: &Spec, stop_after: Option<Phase>) -> Result<()> {
    let stopped = stopped_after(spec)?;
    if let Some(next_stop) = stop_after {
        if next_stop <= stopped {
            return Err(Error::Invalid(format!(
                "stop_after {next_stop} is not after {stopped}, where the spec stopped"
            )));
        }
    }
    execution::execute(state, spec, Start::User { stop_after }).await?;
    Ok(())
}

/// Replaces the output of `phase`, the phase `spec` stopped after, when the evaluator passes it.
/// The body is the phase's output document (what the agent submits for that phase).
pub async fn replace_output(
    state: &AppState,
    spec: &Spec,
    phase: Phase,
    body: serde_json::Value,
) -> Result<Verdict> {
    let stopped = stopped_after(spec)?;
    if phase != stopped {
        return Err(Error::Conflict(format!(
            "spec {} stopped after {stopped}; only that phase's output can be replaced",
            spec.id
        )));
    }
    let output = parse_output(phase, body)?;
    let (context, _) = state.store.checkpoint_context(spec).await?;
    let threshold = pass_threshold(state, spec).await?;
    // Explore's key files are checked in the repository the sandbox works in, which the
    // coordinator does not hold; `parse_output` refuses explore before this point.
    let judge = |output: &PhaseOutput| {
        omoi_worker::evaluate::evaluate(output, &context, std::path::Path::new("."), threshold)
    };
    let evaluation = judge(&output);
    let stored = stored_output(&context, phase).map(|stored| judge(&stored));
    if !acceptable(&evaluation, stored.as_ref()) {
        return Ok(Verdict::Rejected(evaluation));
    }
    let json = serde_json::to_string(&output).map_err(|e| corrupt("phase output", e))?;
    let replaced = state
        .store
        .replace_phase_output(ReviewedOutput {
            spec_id: &spec.id,
            phase,
            output: &json,
            score: evaluation.score,
        })
        .await?;
    if !replaced {
        return Err(Error::Conflict(format!(
            "spec {} moved on while its {phase} output was being judged",
            spec.id
        )));
    }
    Ok(Verdict::Accepted(evaluation))
}

/// The message of a rejected edit: the evaluator's feedback, after a first line saying why
/// when the edit would have passed the gate but brings new issues.
pub fn rejection_message(evaluation: &Evaluation) -> String {
    let feedback = omoi_worker::evaluate::feedback(evaluation);
    if evaluation.passed {
        format!(
            "The edit is refused: it brings issues the stored {} output did not have.\n{feedback}",
            evaluation.phase
        )
    } else {
        feedback
    }
}

/// Whether a person's output may replace the stored one: it passes the gate and brings no issue
/// the stored output did not have (an edit must not add what the evaluator would send an agent
/// back to fix, such as a requirement that is not EARS; issues already there stay the
/// reviewer's call).
fn acceptable(edited: &Evaluation, stored: Option<&Evaluation>) -> bool {
    let known = |issue: &Issue| stored.is_some_and(|s| s.issues.contains(issue));
    edited.passed && edited.issues.iter().all(known)
}

/// The stored output of an editable phase, from the checkpoint context.
fn stored_output(context: &PhaseContext, phase: Phase) -> Option<PhaseOutput> {
    match phase {
        Phase::Requirements => context.requirements.clone().map(PhaseOutput::Requirements),
        Phase::Design => context.design.clone().map(PhaseOutput::Design),
        Phase::Tasks => context.tasks.clone().map(PhaseOutput::Tasks),
        Phase::Explore | Phase::Sync | Phase::Complete => None,
    }
}

/// The phase output document for `phase`; 422 for a phase a person does not edit or a body
/// that is not that phase's document.
fn parse_output(phase: Phase, body: serde_json::Value) -> Result<PhaseOutput> {
    let parsed = match phase {
        Phase::Requirements => serde_json::from_value(body).map(PhaseOutput::Requirements),
        Phase::Design => serde_json::from_value(body).map(PhaseOutput::Design),
        Phase::Tasks => serde_json::from_value(body).map(PhaseOutput::Tasks),
        Phase::Explore => {
            return Err(Error::Invalid(
                "the explore output cannot be replaced: its key files are checked in the \
                 sandbox's repository; stop after requirements, design or tasks to edit"
                    .into(),
            ));
        }
        Phase::Sync | Phase::Complete => {
            return Err(Error::Invalid(format!(
                "the {phase} output is computed, not written; edit the tasks instead"
            )));
        }
    };
    parsed.map_err(|e| Error::Invalid(format!("the body is not a {phase} output: {e}")))
}

/// The pass threshold the spec's worker runs with: the project's `PASS_THRESHOLD`, else the
/// server's, else the worker's default.
async fn pass_threshold(state: &AppState, spec: &Spec) -> Result<f64> {
    let project = state
        .store
        .project_by_id(&spec.project_id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no project {}", spec.project_id)))?;
    let configured = project
        .worker_env
        .get(var::PASS_THRESHOLD)
        .or_else(|| state.settings.worker_env.get(var::PASS_THRESHOLD));
    let Some(value) = configured else {
        return Ok(omoi_worker::config::Limits::default().pass_threshold);
    };
    match value.trim().parse::<f64>() {
        Ok(n) if (0.0..=1.0).contains(&n) => Ok(n),
        _ => Err(Error::Invalid(format!(
            "the project's {} {value:?} is not a number in 0..=1",
            var::PASS_THRESHOLD
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use serde_json::json;

    #[test]
    fn only_requirements_design_and_tasks_documents_are_taken() {
        let explore = parse_output(Phase::Explore, json!({})).unwrap_err();
        assert_eq!(
            explore.to_string(),
            "the explore output cannot be replaced: its key files are checked in the sandbox's \
             repository; stop after requirements, design or tasks to edit"
        );
        assert_eq!(
            parse_output(Phase::Sync, json!({}))
                .unwrap_err()
                .to_string(),
            "the sync output is computed, not written; edit the tasks instead"
        );
        let wrong = parse_output(Phase::Requirements, json!({"requirements": 3})).unwrap_err();
        assert!(
            matches!(&wrong, Error::Invalid(m) if m.starts_with("the body is not a requirements output: ")),
            "{wrong}"
        );
        assert_eq!(
            parse_output(Phase::Requirements, json!({"requirements": []})).unwrap(),
            PhaseOutput::Requirements(serde_json::from_value(json!({"requirements": []})).unwrap())
        );
    }

    fn evaluation(passed: bool, issues: &[&str]) -> Evaluation {
        Evaluation {
            phase: Phase::Requirements,
            score: 0.9,
            passed,
            criteria: vec![],
            issues: issues
                .iter()
                .map(|message| Issue {
                    blocking: false,
                    subject: Some("REQ-CLI-001".into()),
                    message: (*message).into(),
                })
                .collect(),
            warnings: vec![],
            ears: vec![],
        }
    }

    #[test]
    fn an_edit_must_pass_and_bring_no_issue_the_stored_output_lacked() {
        let stored = evaluation(true, &["not EARS"]);
        assert!(acceptable(&evaluation(true, &[]), Some(&stored)));
        assert!(acceptable(&evaluation(true, &["not EARS"]), Some(&stored)));
        assert!(!acceptable(&evaluation(true, &["vague"]), Some(&stored)));
        assert!(!acceptable(&evaluation(false, &[]), Some(&stored)));
        assert!(!acceptable(&evaluation(true, &["not EARS"]), None));
    }
}
