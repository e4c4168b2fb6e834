//! The run tool: a shell command in the workspace root (through [`crate::process`], so a timeout
//! kills everything it started), with its combined output capped to its head and tail.

use std::collections::VecDeque;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::{RunLimits, ToolOutcome};
use crate::process::{self, Capture, End};

#[derive(Debug, Deserialize)]
pub(super) struct RunInput {
    command: String,
    timeout_secs: Option<u64>,
}

pub(super) async fn run(
    root: &Path,
    limits: RunLimits,
    input: RunInput,
    cancel: &CancellationToken,
) -> ToolOutcome {
    if input.command.trim().is_empty() {
        return ToolOutcome::failure("`command` is empty");
    }
    let timeout = match input.timeout_secs {
        Some(0) => return ToolOutcome::failure("timeout_secs must be at least 1"),
        Some(secs) => Duration::from_secs(secs).min(limits.timeout),
        None => limits.timeout,
    };
    let capture = CappedOutput::new(limits.output_cap);
    let finished = process::run_shell(&input.command, root, timeout, capture, cancel).await;
    let (ok, head) = match finished.end {
        End::NotStarted(err) => return ToolOutcome::failure(format!("cannot start `sh`: {err}")),
        End::Lost(why) => (false, why),
        End::Exited(code) => (code == 0, format!("exit code: {code}")),
        End::Signalled(signal) => (false, format!("killed by signal {signal}")),
        End::TimedOut(after) => (
            false,
            format!(
                "timed out after {} s; the command and everything it started were killed",
                after.as_secs()
            ),
        ),
        End::Cancelled => (false, "cancelled; the command was killed".to_owned()),
    };
    let body = if finished.output.is_empty() {
        "(no output)".to_owned()
    } else {
        finished.output
    };
    ToolOutcome {
        ok,
        output: format!("{head}\n{body}"),
        edit: None,
    }
}

/// Output kept within a cap: the first half and the last half, and how much was cut between.
#[derive(Debug)]
struct CappedOutput {
    head: Vec<u8>,
    tail: VecDeque<u8>,
    half: usize,
    cut: u64,
}

impl Capture for CappedOutput {
    fn push(&mut self, bytes: &[u8]) {
        CappedOutput::push(self, bytes);
    }

    fn render(&self) -> String {
        CappedOutput::render(self)
    }
}

impl CappedOutput {
    fn new(cap: usize) -> Self {
        CappedOutput {
            head: Vec::new(),
            tail: VecDeque::new(),
            half: cap / 2,
            cut: 0,
        }
    }

    fn push(&mut self, mut bytes: &[u8]) {
        let room = self.half.saturating_sub(self.head.len());
        let into_head = room.min(bytes.len());
        self.head.extend_from_slice(&bytes[..into_head]);
        bytes = &bytes[into_head..];
        for byte in bytes {
            if self.tail.len() == self.half {
                self.tail.pop_front();
                self.cut += 1;
            }
            if self.half > 0 {
                self.tail.push_back(*byte);
            } else {
                self.cut += 1;
            }
        }
    }

    fn render(&self) -> String {
        let mut text = String::from_utf8_lossy(&self.head).into_owned();
        if self.cut > 0 {
            text.push_str(&format!("\n[… {} bytes of output cut …]\n", self.cut));
        }
        let tail: Vec<u8> = self.tail.iter().copied().collect();
        text.push_str(&String::from_utf8_lossy(&tail));
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn capped_output_keeps_head_and_tail() {
        let mut out = CappedOutput::new(8);
        out.push(b"abcdefghij");
        out.push(b"klmn");
        assert_eq!(out.render(), "abcd\n[… 6 bytes of output cut …]\nklmn");
    }

    #[test]
    fn capped_output_under_the_cap_is_whole() {
        let mut out = CappedOutput::new(100);
        out.push(b"hello\n");
        out.push(b"world\n");
        assert_eq!(out.render(), "hello\nworld\n");
    }
}
