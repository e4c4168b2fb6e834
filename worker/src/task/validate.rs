//! The task's validation command: `sh -c` in the checkout, in its own process group so that a
//! timeout kills everything it started, keeping the tail of its combined output.

use crate::agent::tools::ProcessGroup;
use std::collections::VecDeque;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use omoi_protocol::env as var;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::sync::CancellationToken;

/// Bytes of output kept: the end of it, where test runners print their summary.
pub const OUTPUT_TAIL_BYTES: usize = 8 * 1024;

/// How long the output readers may run after the process group is gone (a process that left
/// the group may hold the pipes open).
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// Variables of the worker that the validation command must not see.
const SECRET_VARIABLES: [&str; 4] = [
    var::ANTHROPIC_API_KEY,
    var::OPENAI_API_KEY,
    var::SANDBOX_TOKEN,
    var::GIT_TOKEN,
];

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

/// The `sh -c` command, without the worker's secrets in its environment.
fn shell(command: &str, dir: &Path) -> tokio::process::Command {
    let mut shell = tokio::process::Command::new("sh");
    shell
        .arg("-c")
        .arg(command)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("PAGER", "cat")
        .env("GIT_PAGER", "cat")
        .process_group(0)
        .kill_on_drop(true);
    for variable in SECRET_VARIABLES {
        shell.env_remove(variable);
    }
    shell
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
    let mut child = match shell(command, dir).spawn() {
        Ok(child) => child,
        Err(err) => {
            let end = ValidationEnd::NotStarted(err.to_string());
            return finish(end, String::new());
        }
    };
    let group = ProcessGroup(child.id());
    let output = Arc::new(Mutex::new(TailBuffer::new(OUTPUT_TAIL_BYTES)));
    let mut readers = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        readers.push(tokio::spawn(pump(stdout, output.clone())));
    }
    if let Some(stderr) = child.stderr.take() {
        readers.push(tokio::spawn(pump(stderr, output.clone())));
    }
    let end = tokio::select! {
        status = child.wait() => match status {
            Ok(status) => match (status.code(), status.signal()) {
                (Some(code), _) => ValidationEnd::Exited(code),
                (None, Some(signal)) => ValidationEnd::Signalled(signal),
                (None, None) => ValidationEnd::NotStarted("ended without an exit code".into()),
            },
            Err(err) => ValidationEnd::NotStarted(format!("waiting for it failed: {err}")),
        },
        _ = tokio::time::sleep(timeout) => ValidationEnd::TimedOut(timeout),
        _ = cancel.cancelled() => ValidationEnd::Cancelled,
    };
    // Whatever is left of the group: background processes, or everything on a timeout.
    drop(group);
    if !matches!(end, ValidationEnd::Exited(_) | ValidationEnd::Signalled(_)) {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
    for reader in readers {
        let abort = reader.abort_handle();
        if tokio::time::timeout(DRAIN_GRACE, reader).await.is_err() {
            abort.abort();
        }
    }
    let text = lock(&output).render();
    finish(end, text)
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

async fn pump(mut stream: impl AsyncRead + Unpin, output: Arc<Mutex<TailBuffer>>) {
    let mut buffer = vec![0u8; 8192];
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => lock(&output).push(&buffer[..n]),
        }
    }
}

fn lock(output: &Mutex<TailBuffer>) -> MutexGuard<'_, TailBuffer> {
    // The buffer stays consistent whatever panicked while holding it.
    output
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The last `cap` bytes of a stream and how many came before them.
#[derive(Debug)]
struct TailBuffer {
    bytes: VecDeque<u8>,
    cap: usize,
    cut: u64,
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

    #[test]
    fn secrets_of_the_worker_are_removed_from_its_environment() {
        let shell = shell("true", Path::new("."));
        let removed: Vec<String> = shell
            .as_std()
            .get_envs()
            .filter(|(_, value)| value.is_none())
            .map(|(name, _)| name.to_string_lossy().into_owned())
            .collect();
        let mut want: Vec<String> = SECRET_VARIABLES.iter().map(|v| v.to_string()).collect();
        want.sort();
        let mut removed = removed;
        removed.sort();
        assert_eq!(removed, want);
    }
}
