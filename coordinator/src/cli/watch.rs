//! Following a spec live: the SSE stream (resumed with `Last-Event-ID` after a broken
//! connection) drawn as one progress line per phase with its attempt and score, then one per
//! task with its attempt, validation and commit.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use omoi_protocol::event::{Event, RawEvent};
use omoi_protocol::phase::Phase;

use super::{CliResult, Client, output};
use crate::hub::StatusNotice;
use crate::model::{PullRequestRef, SpecStatus};
use crate::pull_request::short_sha;

/// How many reconnects in a row are tried before giving up.
const MAX_RECONNECTS: u32 = 10;

/// How a watched spec ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: SpecStatus,
    pub error: Option<String>,
    /// The spec branch, once bridged.
    pub branch: Option<String>,
    /// The pull request, when one was opened.
    pub pull_request: Option<PullRequestRef>,
}

impl Outcome {
    /// The process exit code: 0 when completed (or stopped for approval), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self.status {
            SpecStatus::Completed | SpecStatus::Pending => 0,
            SpecStatus::Executing
            | SpecStatus::Implementing
            | SpecStatus::Failed
            | SpecStatus::Cancelled => 1,
        }
    }

    /// What the spec produced, for the last line of a watch: the pull request or the branch.
    pub fn result(&self) -> Option<String> {
        match (&self.pull_request, &self.branch) {
            (Some(pr), _) => Some(format!("pull request {}", pr.url)),
            (None, Some(branch)) if self.status == SpecStatus::Completed => {
                Some(format!("branch {branch}"))
            }
            _ => None,
        }
    }
}

/// Follows a spec until it is neither executing nor implementing; draws progress on stderr.
pub async fn watch(client: &Client, spec_id: &str) -> CliResult<Outcome> {
    let mut display = Display::new();
    let mut last_cursor = 0;
    let mut failures = 0;
    loop {
        match follow(client, spec_id, &mut last_cursor, &mut display).await {
            Ok(Some(outcome)) => {
                display.finish();
                return Ok(outcome);
            }
            Ok(None) => failures = 0,
            Err(e) if failures < MAX_RECONNECTS => {
                failures += 1;
                tracing::debug!(error = %e, "event stream broke; reconnecting");
            }
            Err(e) => {
                display.finish();
                return Err(e);
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Reads one connection of the stream; `Some` when the spec stopped executing, `None` when the
/// stream ended first.
async fn follow(
    client: &Client,
    spec_id: &str,
    last_cursor: &mut i64,
    display: &mut Display,
) -> CliResult<Option<Outcome>> {
    let response = client.event_stream(spec_id, *last_cursor).await?;
    let mut stream = response.bytes_stream().eventsource();
    while let Some(item) = stream.next().await {
        let Ok(message) = item else {
            return Ok(None);
        };
        if message.event == "status" {
            if let Ok(notice) = serde_json::from_str::<StatusNotice>(&message.data) {
                if !notice.status.is_active() {
                    return Ok(Some(Outcome {
                        status: notice.status,
                        error: notice.error,
                        branch: notice.branch,
                        pull_request: notice.pull_request,
                    }));
                }
                if notice.status == SpecStatus::Implementing {
                    display.implementing(notice.branch.as_deref());
                }
            }
            continue;
        }
        if let Ok(cursor) = message.id.parse::<i64>() {
            *last_cursor = cursor;
        }
        if let Ok(raw) = serde_json::from_str::<RawEvent>(&message.data) {
            display.event(&raw);
        }
    }
    Ok(None)
}

/// What one progress line follows: a phase, then each task (by its `TSK-NNN`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Line {
    Phase(Phase),
    Task(String),
}

impl Line {
    fn label(&self) -> &str {
        match self {
            Line::Phase(phase) => phase.as_str(),
            Line::Task(id) => id,
        }
    }
}

/// One line per phase and task: a spinner on a terminal, plain lines otherwise.
struct Display {
    multi: Option<MultiProgress>,
    bars: BTreeMap<Line, ProgressBar>,
    /// Attempts seen per task (`task.started` events).
    attempts: BTreeMap<String, u32>,
    implementing_noted: bool,
}

impl Display {
    fn new() -> Display {
        Display {
            multi: std::io::stderr().is_terminal().then(MultiProgress::new),
            bars: BTreeMap::new(),
            attempts: BTreeMap::new(),
            implementing_noted: false,
        }
    }

    fn implementing(&mut self, branch: Option<&str>) {
        if !self.implementing_noted {
            self.implementing_noted = true;
            self.note(match branch {
                Some(branch) => format!("the spec is written; its tasks commit to {branch}"),
                None => "the spec is written; its tasks run next".to_string(),
            });
        }
    }

    fn event(&mut self, raw: &RawEvent) {
        let Ok(event) = raw.typed() else { return };
        match event {
            Event::SpecPhaseStarted(e) => {
                self.line(
                    Line::Phase(e.phase),
                    format!("attempt {} running", e.attempt),
                );
            }
            Event::SpecEvalResult(e) => {
                let verdict = if e.evaluation.passed {
                    "passed"
                } else {
                    "below the gate"
                };
                self.line(
                    Line::Phase(e.evaluation.phase),
                    format!(
                        "attempt {}: score {:.2}, {verdict}",
                        e.attempt, e.evaluation.score
                    ),
                );
            }
            Event::SpecPhaseRetry(e) => {
                self.line(
                    Line::Phase(e.phase),
                    format!("retrying (attempt {}): {}", e.attempt, e.reason),
                );
            }
            Event::SpecPhaseCompleted(e) => {
                let attempts = if e.attempts == 1 {
                    "attempt"
                } else {
                    "attempts"
                };
                self.done(
                    Line::Phase(e.phase),
                    format!(
                        "✓ score {:.2} after {} {attempts} ({:.1} s)",
                        e.score,
                        e.attempts,
                        e.duration_ms as f64 / 1000.0
                    ),
                );
            }
            Event::SpecPhaseFailed(e) => {
                self.done(Line::Phase(e.phase), format!("✗ failed: {}", e.reason));
            }
            Event::TaskStarted(e) => {
                let attempt = self.attempts.entry(e.task_id.clone()).or_default();
                *attempt += 1;
                let message = format!("attempt {attempt} running: {}", e.title);
                self.line(Line::Task(e.task_id), message);
            }
            Event::TaskValidation(e) => {
                let message = match e.exit_code {
                    Some(0) => format!("validation `{}` passed", e.command),
                    Some(code) => format!("validation `{}` failed (exit {code})", e.command),
                    None => format!("validation `{}` did not finish", e.command),
                };
                self.line(Line::Task(e.task_id), message);
            }
            Event::TaskCommitted(e) => {
                let message = format!("committed {}", short_sha(&e.sha));
                self.line(Line::Task(e.task_id), message);
            }
            Event::TaskCompleted(e) => {
                let attempts = self.attempts.get(&e.task_id).copied().unwrap_or(1);
                let plural = if attempts == 1 { "" } else { "s" };
                let message = format!("✓ {} after {attempts} attempt{plural}", short_sha(&e.sha));
                self.done(Line::Task(e.task_id), message);
            }
            Event::TaskFailed(e) => {
                let attempt = self.attempts.get(&e.task_id).copied().unwrap_or(1);
                let message = format!("✗ attempt {attempt} failed: {}", e.reason);
                self.line(Line::Task(e.task_id), message);
            }
            // A task worker's failure is its task's line already.
            Event::AgentFailed(e) if raw.task_id.is_none() => {
                self.note(format!("worker failed: {}", e.reason));
            }
            _ => {}
        }
    }

    fn line(&mut self, line: Line, message: String) {
        let message = shown(&message);
        match &self.multi {
            Some(multi) => {
                let label = line.label().to_string();
                let bar = self.bars.entry(line).or_insert_with(|| {
                    let bar = multi.add(ProgressBar::new_spinner());
                    bar.set_style(
                        ProgressStyle::with_template("{spinner} {prefix:<13} {msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    bar.set_prefix(label);
                    bar.enable_steady_tick(Duration::from_millis(120));
                    bar
                });
                bar.set_message(message);
            }
            None => output::note(format_args!("{:<13} {message}", line.label())),
        }
    }

    fn done(&mut self, line: Line, message: String) {
        self.line(line.clone(), message.clone());
        if let Some(bar) = self.bars.get(&line) {
            bar.finish_with_message(shown(&message));
        }
    }

    fn note(&self, message: String) {
        let message = shown(&message);
        match &self.multi {
            Some(multi) => {
                let _ = multi.println(message);
            }
            None => output::note(format_args!("{message}")),
        }
    }

    fn finish(&mut self) {
        for bar in self.bars.values() {
            if !bar.is_finished() {
                bar.abandon();
            }
        }
    }
}

/// A progress message as the terminal shows it: what agents and users wrote into it (titles,
/// errors, commands) has its control and bidi characters escaped (line breaks and tabs stay).
fn shown(message: &str) -> String {
    crate::text::escape(message, crate::text::Lines::Multi).into_owned()
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    #[test]
    fn progress_messages_show_controls_and_bidi_escaped() {
        assert_eq!(
            super::shown("failed: \u{1b}[2Jgone\u{202e}txt\nnext\u{7}"),
            "failed: \\u{1b}[2Jgone\\u{202e}txt\nnext\\u{7}"
        );
        assert_eq!(
            super::shown("attempt 1 running: «x»"),
            "attempt 1 running: «x»"
        );
    }
}
