//! Following a spec live: the SSE stream (resumed with `Last-Event-ID` after a broken
//! connection) drawn as one progress line per phase with its attempt and score.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use omoi_protocol::event::{Event, RawEvent};
use omoi_protocol::phase::Phase;

use super::{CliResult, Client};
use crate::hub::StatusNotice;
use crate::model::SpecStatus;

/// How many reconnects in a row are tried before giving up.
const MAX_RECONNECTS: u32 = 10;

/// How a watched spec ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: SpecStatus,
    pub error: Option<String>,
}

impl Outcome {
    /// The process exit code: 0 when completed (or stopped for approval), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self.status {
            SpecStatus::Completed | SpecStatus::Pending => 0,
            SpecStatus::Executing | SpecStatus::Failed | SpecStatus::Cancelled => 1,
        }
    }
}

/// Follows a spec until it stops executing; draws progress on stderr.
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
                if notice.status != SpecStatus::Executing {
                    return Ok(Some(Outcome {
                        status: notice.status,
                        error: notice.error,
                    }));
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

/// One line per phase: a spinner on a terminal, plain lines otherwise.
struct Display {
    multi: Option<MultiProgress>,
    bars: BTreeMap<Phase, ProgressBar>,
}

impl Display {
    fn new() -> Display {
        Display {
            multi: std::io::stderr().is_terminal().then(MultiProgress::new),
            bars: BTreeMap::new(),
        }
    }

    fn event(&mut self, raw: &RawEvent) {
        let Ok(event) = raw.typed() else { return };
        match event {
            Event::SpecPhaseStarted(e) => {
                self.line(e.phase, format!("attempt {} running", e.attempt));
            }
            Event::SpecEvalResult(e) => {
                let verdict = if e.evaluation.passed {
                    "passed"
                } else {
                    "below the gate"
                };
                self.line(
                    e.evaluation.phase,
                    format!(
                        "attempt {}: score {:.2}, {verdict}",
                        e.attempt, e.evaluation.score
                    ),
                );
            }
            Event::SpecPhaseRetry(e) => {
                self.line(
                    e.phase,
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
                    e.phase,
                    format!(
                        "✓ score {:.2} after {} {attempts} ({:.1} s)",
                        e.score,
                        e.attempts,
                        e.duration_ms as f64 / 1000.0
                    ),
                );
            }
            Event::SpecPhaseFailed(e) => {
                self.done(e.phase, format!("✗ failed: {}", e.reason));
            }
            Event::AgentFailed(e) => self.note(format!("worker failed: {}", e.reason)),
            _ => {}
        }
    }

    fn line(&mut self, phase: Phase, message: String) {
        match &self.multi {
            Some(multi) => {
                let bar = self.bars.entry(phase).or_insert_with(|| {
                    let bar = multi.add(ProgressBar::new_spinner());
                    bar.set_style(
                        ProgressStyle::with_template("{spinner} {prefix:<13} {msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    bar.set_prefix(phase.as_str());
                    bar.enable_steady_tick(Duration::from_millis(120));
                    bar
                });
                bar.set_message(message);
            }
            None => eprintln!("{:<13} {message}", phase.as_str()),
        }
    }

    fn done(&mut self, phase: Phase, message: String) {
        self.line(phase, message.clone());
        if let Some(bar) = self.bars.get(&phase) {
            bar.finish_with_message(message);
        }
    }

    fn note(&self, message: String) {
        match &self.multi {
            Some(multi) => {
                let _ = multi.println(message);
            }
            None => eprintln!("{message}"),
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
