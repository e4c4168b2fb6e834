//! Task mode (DESIGN §3.6): check out the spec branch, let the agent implement one task, validate,
//! commit `TSK-NNN: <title>`, and push; a rejected push is fetched, rebased, validated and pushed
//! again, a bounded number of times.
//!
//! Invariant: every run that emitted `task.started` ends with exactly one `task.completed` or
//! `task.failed`.

pub mod checkout;
pub mod credential;
pub mod gate;
pub mod git;
pub mod prompt;
pub mod record;
pub mod validate;

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use omoi_protocol::event::{Event, TaskCommitted, TaskCompleted, TaskFailed, TaskStarted};
use omoi_protocol::task::TaskContext;
use tokio_util::sync::CancellationToken;

use crate::agent::{self, Agent, EndReason, SessionOutcome, SessionSpec, ToolSet};
use crate::config::{Limits, Secret};
use crate::error::{Error, Result};
use crate::events::Emitter;

use checkout::{Checkout, CheckoutSpec};
use gate::{Judged, TaskGate, run_validation};
use git::{Git, Push, Rebase};

/// Rounds of push → (rejected) fetch, rebase, validate before the task gives up.
pub const MAX_PUSH_ROUNDS: u32 = 5;

/// One task run.
pub struct TaskRun<'a> {
    pub task_id: &'a str,
    pub context: &'a TaskContext,
    pub git_token: Option<&'a Secret>,
    /// Where the checkout lives: empty (`.omoi/` aside) or a checkout of the repository.
    pub workspace: &'a Path,
    /// `max_attempts`, `retry_base`, the session limits and `validation_timeout`.
    pub limits: Limits,
    pub agent: &'a dyn Agent,
    pub emitter: &'a Emitter,
    pub cancel: &'a CancellationToken,
    /// Messages the user injects while the task runs.
    pub inbox: crate::inbox::Inbox,
}

/// The validation command of a task and how long one run may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validation {
    pub command: String,
    pub timeout: Duration,
}

/// A task that landed on the spec branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskOutcome {
    /// The pushed commit.
    pub sha: String,
    pub branch: String,
    /// The agent's summary (the commit body).
    pub summary: String,
    /// Pushes it took (more than 1 when other tasks landed first).
    pub push_rounds: u32,
}

/// Why a task failed, with the files in conflict when a rebase could not be resolved.
#[derive(Debug)]
struct Failure {
    error: Error,
    conflicts: Vec<String>,
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure {
            error,
            conflicts: Vec::new(),
        }
    }
}

/// Runs the task to its end: `task.started`, then `task.completed` or `task.failed`.
pub async fn run(task: TaskRun<'_>) -> Result<TaskOutcome> {
    task.emitter.emit(Event::TaskStarted(TaskStarted {
        task_id: task.task_id.to_string(),
        title: task.context.task.title.clone(),
        branch: task.context.branch.clone(),
    }));
    let git = Git::new(
        task.workspace,
        task.git_token.cloned(),
        task.cancel.child_token(),
    );
    match land(&task, &git).await {
        Ok(outcome) => {
            task.emitter.emit(Event::TaskCompleted(TaskCompleted {
                task_id: task.task_id.to_string(),
                sha: outcome.sha.clone(),
                summary: outcome.summary.clone(),
            }));
            Ok(outcome)
        }
        Err(failure) => {
            let error = scrubbed(&git, failure.error);
            task.emitter.emit(Event::TaskFailed(TaskFailed {
                task_id: task.task_id.to_string(),
                reason: error.to_string(),
                conflicts: failure.conflicts,
            }));
            Err(error)
        }
    }
}

/// Checkout, implement, commit, push.
async fn land(task: &TaskRun<'_>, git: &Git) -> Result<TaskOutcome, Failure> {
    let context = task.context;
    let checkout = checkout::prepare(
        git,
        &CheckoutSpec {
            repo_url: &context.repo_url,
            base_branch: &context.base_branch,
            branch: &context.branch,
        },
    )
    .await?;
    let validation = context
        .validation_command
        .as_deref()
        .map(str::trim)
        .filter(|command| !command.is_empty())
        .map(|command| Validation {
            command: command.to_string(),
            timeout: task.limits.validation_timeout,
        });
    let summary = implement(task, git, &checkout, validation.as_ref()).await?;
    // The final spec lands with the first task's commit (DESIGN §9); forced, so a repository
    // that ignores `.kiro` still gets it.
    if let Some(dir) = record::write(task.workspace, context)? {
        git.run(&["add", "--force", "--", &dir]).await?;
        tracing::info!(%dir, "the spec is recorded with this task's commit");
    }
    let subject = format!("{}: {}", context.task.id, one_line(&context.task.title));
    let sha = git.commit_all(&checkout.start, &subject, &summary).await?;
    task.emitter.emit(Event::TaskCommitted(TaskCommitted {
        task_id: task.task_id.to_string(),
        sha: sha.clone(),
        branch: context.branch.clone(),
    }));
    let (sha, push_rounds) = push(task, git, sha, validation.as_ref()).await?;
    Ok(TaskOutcome {
        sha,
        branch: context.branch.clone(),
        summary,
        push_rounds,
    })
}

/// Agent sessions until one has a submission accepted; returns its summary.
async fn implement(
    task: &TaskRun<'_>,
    git: &Git,
    checkout: &Checkout,
    validation: Option<&Validation>,
) -> Result<String> {
    let system = prompt::system(validation.map(|v| v.command.as_str()));
    let mut feedback: Option<String> = None;
    let attempts = task.limits.max_attempts.max(1);
    for attempt in 1..=attempts {
        let gate = TaskGate {
            task_id: task.task_id,
            git,
            start: &checkout.start,
            validation,
            emitter: task.emitter,
            cancel: task.cancel,
            last: Mutex::new(None),
        };
        let session = SessionSpec {
            label: format!("task:{}", task.task_id),
            attempt,
            system: system.clone(),
            prompt: prompt::first_message(task.context, feedback.as_deref()),
            submit: gate.tool(),
            limits: agent::Limits {
                max_turns: task.limits.max_turns,
                max_budget_usd: task.limits.max_budget_usd,
                timeout: task.limits.phase_timeout,
                price: task.limits.price,
            },
            workspace: task.workspace.to_path_buf(),
            tools: ToolSet::read_write(),
            inbox: task.inbox.clone(),
        };
        let outcome = task
            .agent
            .run_session(session, &gate, task.emitter, task.cancel)
            .await?;
        let last = gate.take_last();
        let (reason, detail) = match (outcome, last) {
            (SessionOutcome::Submitted { .. }, Some(Judged::Accepted { summary })) => {
                return Ok(summary);
            }
            (SessionOutcome::Submitted { .. }, _) => {
                return Err(Error::Internal(
                    "a task submission was accepted without a verdict".into(),
                ));
            }
            (
                SessionOutcome::Ended {
                    reason: EndReason::Cancelled,
                    ..
                },
                _,
            ) => return Err(Error::Cancelled),
            (SessionOutcome::Ended { reason, detail }, last) => {
                let detail = match last {
                    Some(Judged::Rejected { feedback }) => {
                        format!("{detail}; the last submission was rejected: {feedback}")
                    }
                    _ => detail,
                };
                (reason, detail)
            }
        };
        if attempt == attempts {
            return Err(reason.into_error(format!(
                "task {} has no accepted submission after {attempt} attempt{}: {detail}",
                task.task_id,
                if attempt == 1 { "" } else { "s" }
            )));
        }
        let status = git.status().await.unwrap_or_default();
        let mut next = format!("The previous attempt ended: {detail}");
        if !status.is_empty() {
            next.push_str(&format!(
                "\n\nThe working tree keeps the changes it made (git status --porcelain):\n{status}"
            ));
        }
        feedback = Some(next);
        let backoff = task
            .limits
            .retry_base
            .saturating_mul(1 << (attempt - 1).min(16));
        tokio::select! {
            _ = task.cancel.cancelled() => return Err(Error::Cancelled),
            _ = tokio::time::sleep(backoff) => {}
        }
    }
    Err(Error::Internal("MAX_ATTEMPTS is zero".into()))
}

/// Pushes `sha` (the checked-out `HEAD`); a rejected push is fetched, rebased, validated and
/// pushed again. Returns the pushed commit and the number of pushes.
async fn push(
    task: &TaskRun<'_>,
    git: &Git,
    mut sha: String,
    validation: Option<&Validation>,
) -> Result<(String, u32), Failure> {
    let branch = &task.context.branch;
    let upstream = format!("refs/remotes/origin/{branch}");
    for round in 1..=MAX_PUSH_ROUNDS {
        if git.push(branch).await? == Push::Pushed {
            return Ok((sha, round));
        }
        if round == MAX_PUSH_ROUNDS {
            break;
        }
        tracing::info!(round, %branch, "push rejected: the branch moved on; rebasing");
        git.fetch().await?;
        if let Rebase::Conflicts(files) = git.rebase(&upstream).await? {
            return Err(Failure {
                error: Error::Workspace(format!(
                    "rebasing onto origin/{branch} stopped on conflicts in {}; the task's commit \
                     was not pushed",
                    files.join(", ")
                )),
                conflicts: files,
            });
        }
        if let Some(validation) = validation {
            let run =
                run_validation(task.task_id, validation, git, task.emitter, task.cancel).await;
            if !run.passed() {
                return Err(Error::Workspace(format!(
                    "after rebasing onto origin/{branch}, the validation command `{}` {}: {}",
                    validation.command,
                    run.describe(),
                    git::tail(&run.output_tail, 2000)
                ))
                .into());
            }
        }
        sha = git.head().await?;
        task.emitter.emit(Event::TaskCommitted(TaskCommitted {
            task_id: task.task_id.to_string(),
            sha: sha.clone(),
            branch: branch.clone(),
        }));
    }
    Err(Error::Workspace(format!(
        "the push to {branch} was rejected {MAX_PUSH_ROUNDS} times: other commits kept landing first"
    ))
    .into())
}

/// The error with the token scrubbed from its words, for `task.failed` and `agent.failed`.
fn scrubbed(git: &Git, error: Error) -> Error {
    match error {
        Error::Workspace(message) => Error::Workspace(git.scrub(&message)),
        Error::Session { kind, detail } => Error::Session {
            kind,
            detail: git.scrub(&detail),
        },
        Error::Internal(message) => Error::Internal(git.scrub(&message)),
        other => other,
    }
}

/// `text` on one line: whitespace runs (newlines included) become one space.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests;
