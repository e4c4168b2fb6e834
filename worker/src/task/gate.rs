//! The `submit` tool of a task session: a submission is accepted when the working tree holds a
//! change and the validation command passes; otherwise the model gets the reason as feedback.

use std::sync::Mutex;

use omoi_protocol::event::{Event, TaskValidation};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::agent::{BoxFuture, SUBMIT_TOOL, SubmitHandler, SubmitTool, SubmitVerdict};
use crate::error::Result;
use crate::events::Emitter;

use super::Validation;
use super::git::Git;
use super::validate::{self, ValidationRun};

/// The feedback for a submission without any change.
pub const NO_CHANGE: &str = "No change was made: the working tree is the same as at the start \
of the task. Implement the task with write_file or edit_file, then call submit again.";

/// Checks task submissions and remembers the last verdict.
pub struct TaskGate<'a> {
    pub task_id: &'a str,
    pub git: &'a Git,
    /// The commit the task started from.
    pub start: &'a str,
    pub validation: Option<&'a Validation>,
    pub emitter: &'a Emitter,
    pub cancel: &'a CancellationToken,
    pub last: Mutex<Option<Judged>>,
}

/// The last submission the gate judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judged {
    Accepted { summary: String },
    Rejected { feedback: String },
}

impl TaskGate<'_> {
    pub fn take_last(&self) -> Option<Judged> {
        self.last
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }

    fn remember(&self, judged: Judged) {
        *self
            .last
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(judged);
    }

    async fn judge(&self, summary: &str) -> Result<Judged> {
        if !self.git.changed_since(self.start).await? {
            return Ok(Judged::Rejected {
                feedback: NO_CHANGE.to_string(),
            });
        }
        let Some(validation) = self.validation else {
            return Ok(Judged::Accepted {
                summary: summary.to_string(),
            });
        };
        let run = run_validation(
            self.task_id,
            validation,
            self.git,
            self.emitter,
            self.cancel,
        )
        .await;
        if run.passed() {
            return Ok(Judged::Accepted {
                summary: summary.to_string(),
            });
        }
        Ok(Judged::Rejected {
            feedback: format!(
                "The validation command `{}` {}. Its output ends with:\n\n{}\n\nFix the problem \
                 and call submit again.",
                validation.command,
                run.describe(),
                run.output_tail
            ),
        })
    }
}

impl TaskGate<'_> {
    /// The submit tool of a task: a summary, which becomes the commit body.
    pub fn tool(&self) -> SubmitTool {
        SubmitTool {
            name: SUBMIT_TOOL.to_string(),
            description: self.description(),
            schema: self.schema(),
        }
    }

    fn schema(&self) -> serde_json::Value {
        json!({
            "type": "object",
            "properties": {
                "summary": {
                    "type": "string",
                    "description": "What you changed and why, in a few sentences: the body of the commit message."
                }
            },
            "required": ["summary"],
            "additionalProperties": false
        })
    }

    fn description(&self) -> String {
        let check = match self.validation {
            Some(validation) => format!(
                "the validation command `{}` runs in the repository and must pass",
                validation.command
            ),
            None => "the changes are taken as they are".to_string(),
        };
        format!(
            "Hand in the task when it is done. The working tree must hold your changes; {check}. \
             The answer says what failed, so you can fix it and submit again. On success the \
             worker commits and pushes the changes."
        )
    }
}

impl SubmitHandler for TaskGate<'_> {
    fn check<'a>(&'a self, input: &'a serde_json::Value) -> BoxFuture<'a, SubmitVerdict> {
        Box::pin(async move {
            let summary = input
                .get("summary")
                .and_then(|summary| summary.as_str())
                .map(str::trim)
                .unwrap_or_default();
            if summary.is_empty() {
                return SubmitVerdict::Rejected {
                    feedback: "submit needs `summary`: a non-empty string saying what you changed."
                        .into(),
                };
            }
            let judged = match self.judge(summary).await {
                Ok(judged) => judged,
                Err(err) => Judged::Rejected {
                    feedback: format!("The submission could not be checked: {err}"),
                },
            };
            self.remember(judged.clone());
            match judged {
                Judged::Accepted { .. } => SubmitVerdict::Accepted,
                Judged::Rejected { feedback } => SubmitVerdict::Rejected { feedback },
            }
        })
    }
}

/// Runs the validation command in the checkout and reports it as `task.validation`.
pub async fn run_validation(
    task_id: &str,
    validation: &Validation,
    git: &Git,
    emitter: &Emitter,
    cancel: &CancellationToken,
) -> ValidationRun {
    let mut run = validate::run(&validation.command, git.dir(), validation.timeout, cancel).await;
    run.output_tail = git.scrub(&run.output_tail);
    emitter.emit(Event::TaskValidation(TaskValidation {
        task_id: task_id.to_string(),
        command: validation.command.clone(),
        exit_code: run.exit_code(),
        output_tail: run.output_tail.clone(),
    }));
    run
}
