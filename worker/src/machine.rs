//! The spec state machine: EXPLORE → REQUIREMENTS → DESIGN → TASKS → SYNC → COMPLETE, with the
//! evaluator as a gate after each phase and a checkpoint after each pass.
//!
//! Invariant: a phase's `spec.phase_completed` event is emitted before its checkpoint file is
//! written, so a restart may repeat a completion event but never lose one.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use omoi_protocol::artifact::{
    DesignOutput, ExploreOutput, FinalSpec, PhaseOutput, RequirementsOutput, TasksOutput,
};
use omoi_protocol::context::{Checkpoint, PhaseContext};
use omoi_protocol::eval::Evaluation;
use omoi_protocol::event::{
    ErrorKind, Event, SpecEvalResult, SpecExecutionFailed, SpecExecutionStarted,
    SpecPhaseCompleted, SpecPhaseFailed, SpecPhaseRetry, SpecPhaseStarted,
};
use omoi_protocol::phase::Phase;
use tokio_util::sync::CancellationToken;

use crate::agent::{
    self, Agent, BoxFuture, SUBMIT_TOOL, SessionOutcome, SessionSpec, SubmitHandler, SubmitTool,
    SubmitVerdict, ToolSet,
};
use crate::checkpoint;
use crate::config::Limits;
use crate::error::{Error, Result};
use crate::evaluate;
use crate::events::Emitter;
use crate::inbox::Inbox;

use crate::prompts;

/// One spec run, from its start phase through COMPLETE.
pub struct SpecRun<'a> {
    pub spec_id: &'a str,
    pub start: Phase,
    pub stop_after: Option<Phase>,
    pub context: PhaseContext,
    pub workspace: &'a Path,
    pub limits: Limits,
    pub agent: &'a dyn Agent,
    pub emitter: &'a Emitter,
    pub cancel: &'a CancellationToken,
    /// Messages the user injects while the spec runs.
    pub inbox: Inbox,
}

/// How a spec run ended without error.
#[derive(Debug, Clone, PartialEq)]
pub enum SpecOutcome {
    /// Every phase passed; the final spec was emitted.
    Completed(Box<FinalSpec>),
    /// `SPEC_STOP_AFTER` was reached.
    Stopped { after: Phase },
}

/// Where a run really starts: a checkpoint in the workspace beyond the requested start wins.
pub fn resume_point(
    spec_id: &str,
    workspace: &Path,
    start: Phase,
    context: PhaseContext,
) -> (Phase, PhaseContext) {
    match checkpoint::load(workspace, spec_id) {
        Some(saved) => match saved.completed.next() {
            Some(next) if next > start => {
                tracing::info!(%next, "resuming from the checkpoint in the workspace");
                (next, saved.context)
            }
            _ => (start, context),
        },
        None => (start, context),
    }
}

/// Runs the state machine.
pub async fn run(spec: SpecRun<'_>) -> Result<SpecOutcome> {
    let (start, mut context) = resume_point(
        spec.spec_id,
        spec.workspace,
        spec.start,
        spec.context.clone(),
    );
    spec.emitter
        .emit(Event::SpecExecutionStarted(SpecExecutionStarted {
            title: context.title.clone(),
            phases: start.from_here().collect(),
        }));
    for phase in start.from_here() {
        if spec.cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        spec.emitter.set_phase(Some(phase));
        let output = match phase {
            Phase::Explore | Phase::Requirements | Phase::Design | Phase::Tasks => {
                generated_phase(&spec, phase, &context).await?
            }
            Phase::Sync => sync_phase(&spec, &context)?,
            Phase::Complete => {
                let final_spec = context.final_spec().ok_or_else(|| {
                    Error::Internal("COMPLETE reached without every earlier output".into())
                })?;
                checkpoint::save_spec(spec.workspace, &final_spec)?;
                spec.emitter
                    .emit(Event::SpecExecutionCompleted(Box::new(final_spec.clone())));
                return Ok(SpecOutcome::Completed(Box::new(final_spec)));
            }
        };
        context.set(output.output.clone());
        spec.emitter
            .emit(Event::SpecPhaseCompleted(SpecPhaseCompleted {
                phase,
                score: output.score,
                attempts: output.attempts,
                duration_ms: output.duration.as_millis() as u64,
                output: output.output,
            }));
        checkpoint::save(
            spec.workspace,
            &Checkpoint {
                spec_id: spec.spec_id.to_string(),
                completed: phase,
                context: context.clone(),
            },
        )?;
        if spec.stop_after == Some(phase) {
            return Ok(SpecOutcome::Stopped { after: phase });
        }
    }
    Err(Error::Internal(
        "the state machine ended without COMPLETE".into(),
    ))
}

/// A phase that passed its gate.
struct Passed {
    output: PhaseOutput,
    score: f64,
    attempts: u32,
    duration: Duration,
}

async fn generated_phase(
    spec: &SpecRun<'_>,
    phase: Phase,
    context: &PhaseContext,
) -> Result<Passed> {
    let started = Instant::now();
    let mut feedback: Option<String> = None;
    let mut last_score = None;
    for attempt in 1..=spec.limits.max_attempts {
        spec.emitter
            .emit(Event::SpecPhaseStarted(SpecPhaseStarted { phase, attempt }));
        let gate = PhaseGate {
            phase,
            attempt,
            context,
            workspace: spec.workspace,
            threshold: spec.limits.pass_threshold,
            emitter: spec.emitter,
            last: Mutex::new(None),
        };
        let session = SessionSpec {
            label: phase.as_str().to_string(),
            attempt,
            system: prompts::system(phase),
            prompt: prompts::first_message(phase, context, feedback.as_deref()),
            submit: gate.tool(),
            limits: agent::Limits {
                max_turns: spec.limits.max_turns,
                max_budget_usd: spec.limits.max_budget_usd,
                timeout: spec.limits.phase_timeout,
                price: spec.limits.price,
            },
            workspace: spec.workspace.to_path_buf(),
            tools: ToolSet::read_only(),
            inbox: spec.inbox.clone(),
        };
        let outcome = spec
            .agent
            .run_session(session, &gate, spec.emitter, spec.cancel)
            .await?;
        let last = gate.take_last();
        if let Some(last) = &last {
            last_score = Some(last.evaluation.score);
        }
        let reason = match (outcome, last) {
            (SessionOutcome::Submitted { .. }, Some(last)) if last.evaluation.passed => {
                return Ok(Passed {
                    output: last.output,
                    score: last.evaluation.score,
                    attempts: attempt,
                    duration: started.elapsed(),
                });
            }
            (SessionOutcome::Submitted { .. }, _) => {
                return Err(Error::Internal(
                    "a submission was accepted without a passing evaluation".into(),
                ));
            }
            (
                SessionOutcome::Ended {
                    reason: agent::EndReason::Cancelled,
                    ..
                },
                _,
            ) => {
                return Err(Error::Cancelled);
            }
            (SessionOutcome::Ended { reason, detail }, last) => {
                if let Some(last) = last {
                    feedback = Some(last.feedback);
                }
                (reason, detail)
            }
        };
        let (ended, reason) = reason;
        if attempt == spec.limits.max_attempts {
            let feedback = feedback.unwrap_or_default();
            let failure = format!(
                "no passing output after {attempt} attempt{}: {reason}",
                if attempt == 1 { "" } else { "s" }
            );
            spec.emitter.emit(Event::SpecPhaseFailed(SpecPhaseFailed {
                phase,
                reason: failure.clone(),
                last_score,
                feedback,
            }));
            spec.emitter
                .emit(Event::SpecExecutionFailed(SpecExecutionFailed {
                    phase,
                    reason: failure.clone(),
                }));
            return Err(Error::Gate {
                phase,
                reason: failure,
                kind: ended.error_kind(),
            });
        }
        spec.emitter.emit(Event::SpecPhaseRetry(SpecPhaseRetry {
            phase,
            attempt: attempt + 1,
            reason: reason.clone(),
            feedback: feedback.clone().unwrap_or_default(),
        }));
        let backoff = spec
            .limits
            .retry_base
            .saturating_mul(1 << (attempt - 1).min(16));
        tokio::select! {
            _ = spec.cancel.cancelled() => return Err(Error::Cancelled),
            _ = tokio::time::sleep(backoff) => {}
        }
    }
    Err(Error::Internal("MAX_ATTEMPTS is zero".into()))
}

fn sync_phase(spec: &SpecRun<'_>, context: &PhaseContext) -> Result<Passed> {
    let started = Instant::now();
    spec.emitter.emit(Event::SpecPhaseStarted(SpecPhaseStarted {
        phase: Phase::Sync,
        attempt: 1,
    }));
    let (Some(requirements), Some(tasks)) = (&context.requirements, &context.tasks) else {
        return Err(Error::Internal("SYNC needs requirements and tasks".into()));
    };
    let output = PhaseOutput::Sync(evaluate::sync::analyze(requirements, tasks));
    let evaluation =
        evaluate::evaluate(&output, context, spec.workspace, spec.limits.pass_threshold);
    spec.emitter.emit(Event::SpecEvalResult(SpecEvalResult {
        attempt: 1,
        evaluation: evaluation.clone(),
    }));
    if evaluation.passed {
        return Ok(Passed {
            output,
            score: evaluation.score,
            attempts: 1,
            duration: started.elapsed(),
        });
    }
    let feedback = evaluate::feedback(&evaluation);
    let reason = format!("the spec is not ready for execution: {feedback}");
    spec.emitter.emit(Event::SpecPhaseFailed(SpecPhaseFailed {
        phase: Phase::Sync,
        reason: reason.clone(),
        last_score: Some(evaluation.score),
        feedback,
    }));
    spec.emitter
        .emit(Event::SpecExecutionFailed(SpecExecutionFailed {
            phase: Phase::Sync,
            reason: reason.clone(),
        }));
    Err(Error::Gate {
        phase: Phase::Sync,
        reason,
        kind: ErrorKind::Gate,
    })
}

/// The last submission the gate judged.
struct Judged {
    output: PhaseOutput,
    evaluation: Evaluation,
    feedback: String,
}

/// The `submit` tool of a phase: parse, evaluate, report, and remember the last verdict.
struct PhaseGate<'a> {
    phase: Phase,
    attempt: u32,
    context: &'a PhaseContext,
    workspace: &'a Path,
    threshold: f64,
    emitter: &'a Emitter,
    last: Mutex<Option<Judged>>,
}

impl PhaseGate<'_> {
    /// The submit tool of the phase: its output schema.
    fn tool(&self) -> SubmitTool {
        SubmitTool {
            name: SUBMIT_TOOL.to_string(),
            description: format!(
                "Submit the {} output. It is checked at once: the answer says whether it passed \
                 and what to fix.",
                self.phase.as_str().to_uppercase()
            ),
            schema: omoi_protocol::schema::phase_output(self.phase)
                .and_then(|schema| serde_json::to_value(schema).ok())
                .unwrap_or_else(|| serde_json::json!({"type": "object"})),
        }
    }

    fn take_last(&self) -> Option<Judged> {
        self.last
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }
}

impl SubmitHandler for PhaseGate<'_> {
    fn check<'a>(&'a self, input: &'a serde_json::Value) -> BoxFuture<'a, SubmitVerdict> {
        Box::pin(std::future::ready(self.verdict(input)))
    }
}

impl PhaseGate<'_> {
    /// The verdict on one submission; no I/O beyond the workspace, so it runs inline.
    fn verdict(&self, input: &serde_json::Value) -> SubmitVerdict {
        let output = match parse_output(self.phase, input) {
            Ok(output) => output,
            Err(feedback) => return SubmitVerdict::Rejected { feedback },
        };
        let evaluation = evaluate::evaluate(&output, self.context, self.workspace, self.threshold);
        self.emitter.emit(Event::SpecEvalResult(SpecEvalResult {
            attempt: self.attempt,
            evaluation: evaluation.clone(),
        }));
        let feedback = evaluate::feedback(&evaluation);
        let verdict = if evaluation.passed {
            SubmitVerdict::Accepted
        } else {
            SubmitVerdict::Rejected {
                feedback: feedback.clone(),
            }
        };
        *self
            .last
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Judged {
            output,
            evaluation,
            feedback,
        });
        verdict
    }
}

/// Reads a submission as the phase's output type; the error is feedback for the model.
pub fn parse_output(
    phase: Phase,
    input: &serde_json::Value,
) -> std::result::Result<PhaseOutput, String> {
    fn parse<T: serde::de::DeserializeOwned>(
        phase: Phase,
        input: &serde_json::Value,
    ) -> std::result::Result<T, String> {
        T::deserialize(input).map_err(|e| {
            format!(
                "The submission does not match the {} schema: {e}. Submit an object with \
                 exactly the fields of the submit tool's input schema.",
                phase.as_str().to_uppercase()
            )
        })
    }
    match phase {
        Phase::Explore => parse::<ExploreOutput>(phase, input).map(PhaseOutput::Explore),
        Phase::Requirements => {
            parse::<RequirementsOutput>(phase, input).map(PhaseOutput::Requirements)
        }
        Phase::Design => parse::<DesignOutput>(phase, input).map(PhaseOutput::Design),
        Phase::Tasks => parse::<TasksOutput>(phase, input).map(PhaseOutput::Tasks),
        Phase::Sync | Phase::Complete => Err(format!("{phase} has no submitted output")),
    }
}
