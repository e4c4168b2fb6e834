//! The task's validation command: `sh -c` in the checkout through [`crate::process`] (so a
//! timeout kills everything it started), keeping the tail of its combined output.

use std::collections::VecDeque;
use std::path::Path;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::process::{self, Capture, End};

/// Bytes of output kept: the end of it, where test runners print their summary.
pub const OUTPUT_TAIL_BYTES: usize = 8 * 1024;

/// How a validation run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValidationEnd {
    Exited(i32),
    /// Killed by a signal it did not get from us.
    Signalled(i32),
    /// Killed at the timeout, with everything it started.
    TimedOut(Duration),
    Cancelled,
    /// `sh` could not be started.
    NotStarted(String),
}

/// One run of the validation command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationRun {
    pub end: ValidationEnd,
    /// The end of the combined output, with a last line saying how the run ended when it did
    /// not exit by itself.
    pub output_tail: String,
}

impl ValidationRun {
    pub fn passed(&self) -> bool {
        self.end == ValidationEnd::Exited(0)
    }

    /// The exit code, `None` when the command was killed or did not start.
    pub fn exit_code(&self) -> Option<i32> {
        match self.end {
            ValidationEnd::Exited(code) => Some(code),
            _ => None,
        }
    }

    /// How it ended, in words: `exited with 1`, `timed out after 5 s` …
    pub fn describe(&self) -> String {
        match &self.end {
            ValidationEnd::Exited(code) => format!("exited with {code}"),
            ValidationEnd::Signalled(signal) => format!("was killed by signal {signal}"),
            ValidationEnd::TimedOut(after) => format!(
                "timed out after {} and was killed with everything it started",
                duration_text(*after)
            ),
            ValidationEnd::Cancelled => "was cancelled".to_string(),
            ValidationEnd::NotStarted(err) => format!("could not start: {err}"),
        }
    }
}

/// `2 s`, or `300 ms` for a duration that is not whole seconds.
fn duration_text(duration: Duration) -> String {
    if duration.subsec_nanos() == 0 {
        format!("{} s", duration.as_secs())
    } else {
        format!("{} ms", duration.as_millis())
    }
}

/// Runs `command` with `sh -c` in `dir`, for at most `timeout`.
pub async fn run(
    command: &str,
    dir: &Path,
    timeout: Duration,
    cancel: &CancellationToken,
) -> ValidationRun {
    let capture = TailBuffer::new(OUTPUT_TAIL_BYTES);
    let finished = process::run_shell(command, dir, timeout, capture, cancel).await;
    let end = match finished.end {
        End::Exited(code) => ValidationEnd::Exited(code),
        End::Signalled(signal) => ValidationEnd::Signalled(signal),
        End::TimedOut(after) => ValidationEnd::TimedOut(after),
        End::Cancelled => ValidationEnd::Cancelled,
        End::NotStarted(why) | End::Lost(why) => ValidationEnd::NotStarted(why),
    };
    finish(end, finished.output)
}

fn finish(end: ValidationEnd, text: String) -> ValidationRun {
    let mut output_tail = text.trim_end().to_string();
    if !matches!(end, ValidationEnd::Exited(_)) {
        let run = ValidationRun {
            end: end.clone(),
            output_tail: String::new(),
        };
        if !output_tail.is_empty() {
            output_tail.push('\n');
        }
        output_tail.push_str(&format!("[the command {}]", run.describe()));
    }
    ValidationRun { end, output_tail }
}

/// The last `cap` bytes of a stream and how many came before them.
#[derive(Debug)]
struct TailBuffer {
    bytes: VecDeque<u8>,
    cap: usize,
    cut: u64,
}

impl Capture for TailBuffer {
    fn push(&mut self, bytes: &[u8]) {
        TailBuffer::push(self, bytes);
    }

    fn render(&self) -> String {
        TailBuffer::render(self)
    }
}

impl TailBuffer {
    fn new(cap: usize) -> Self {
        TailBuffer {
            bytes: VecDeque::new(),
            cap,
            cut: 0,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.bytes.extend(bytes);
        let over = self.bytes.len().saturating_sub(self.cap);
        if over > 0 {
            self.bytes.drain(..over);
            self.cut += over as u64;
        }
    }

    /// The kept bytes as text; when bytes were cut, from the first whole line on, after a
    /// line that says how much came before.
    fn render(&self) -> String {
        let bytes: Vec<u8> = self.bytes.iter().copied().collect();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if self.cut == 0 {
            return text;
        }
        let (dropped, rest) = match text.find('\n') {
            Some(newline) => (newline + 1, &text[newline + 1..]),
            None => (0, text.as_str()),
        };
        format!(
            "[… {} bytes of output before this …]\n{rest}",
            self.cut + dropped as u64
        )
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use pretty_assertions::assert_eq;

    use super::*;

    #[test]
    fn the_tail_keeps_the_last_whole_lines() {
        let mut tail = TailBuffer::new(10);
        tail.push(b"line one\nline two\n");
        tail.push(b"end\n");
        assert_eq!(tail.render(), "[… 18 bytes of output before this …]\nend\n");
        let mut short = TailBuffer::new(100);
        short.push(b"all of it\n");
        assert_eq!(short.render(), "all of it\n");
    }

    #[tokio::test]
    async fn a_passing_command_keeps_its_output_and_exit_code() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("marker"), "here\n").unwrap();
        let run = run(
            "cat marker; echo to-stderr >&2; exit 0",
            dir.path(),
            Duration::from_secs(30),
            &CancellationToken::new(),
        )
        .await;
        assert!(run.passed());
        assert_eq!(run.exit_code(), Some(0));
        let mut lines: Vec<&str> = run.output_tail.lines().collect();
        lines.sort();
        assert_eq!(lines, ["here", "to-stderr"]);
    }

    #[tokio::test]
    async fn a_failing_command_reports_its_exit_code() {
        let dir = tempfile::tempdir().unwrap();
        let run = run(
            "echo broken; exit 3",
            dir.path(),
            Duration::from_secs(30),
            &CancellationToken::new(),
        )
        .await;
        assert_eq!(
            run,
            ValidationRun {
                end: ValidationEnd::Exited(3),
                output_tail: "broken".into(),
            }
        );
        assert_eq!(run.describe(), "exited with 3");
    }

    #[tokio::test]
    async fn a_hanging_command_and_its_children_are_killed_at_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let run = run(
            "echo waiting; sleep 60 & sleep 60",
            dir.path(),
            Duration::from_millis(300),
            &CancellationToken::new(),
        )
        .await;
        assert_eq!(
            run,
            ValidationRun {
                end: ValidationEnd::TimedOut(Duration::from_millis(300)),
                output_tail: "waiting\n[the command timed out after 300 ms and was killed with \
                              everything it started]"
                    .into(),
            }
        );
        assert_eq!(run.exit_code(), None);
        // The background `sleep` held the pipes; the group kill closed them.
        assert!(started.elapsed() < Duration::from_secs(30));
    }
}
