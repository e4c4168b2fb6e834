//! The run tool: a shell command in the workspace root, in its own process group so that a
//! timeout kills everything it started, with its combined output capped.

use std::collections::VecDeque;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use omoi_protocol::env;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::sync::CancellationToken;

use super::{RunLimits, ToolOutcome};

/// How long the output readers may still run after the command's process group is gone (a
/// process that left the group may hold the pipes open).
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// Variables of the worker that commands of the model must not see.
const SECRET_VARIABLES: [&str; 4] = [
    env::ANTHROPIC_API_KEY,
    env::OPENAI_API_KEY,
    env::SANDBOX_TOKEN,
    env::GIT_TOKEN,
];

#[derive(Debug, Deserialize)]
pub(super) struct RunInput {
    command: String,
    timeout_secs: Option<u64>,
}

/// How the command ended.
enum End {
    Exited(std::process::ExitStatus),
    TimedOut(Duration),
    Cancelled,
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
    let mut command = tokio::process::Command::new("sh");
    command
        .arg("-c")
        .arg(&input.command)
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("PAGER", "cat")
        .env("GIT_PAGER", "cat")
        .env("GIT_TERMINAL_PROMPT", "0")
        .process_group(0)
        .kill_on_drop(true);
    for variable in SECRET_VARIABLES {
        command.env_remove(variable);
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(err) => return ToolOutcome::failure(format!("cannot start `sh`: {err}")),
    };
    // Killed when this call ends in any way, the session's own timeout included.
    let group = ProcessGroup(child.id());

    let output = Arc::new(Mutex::new(CappedOutput::new(limits.output_cap)));
    let mut readers = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        readers.push(tokio::spawn(pump(stdout, output.clone())));
    }
    if let Some(stderr) = child.stderr.take() {
        readers.push(tokio::spawn(pump(stderr, output.clone())));
    }

    let end = tokio::select! {
        status = child.wait() => match status {
            Ok(status) => End::Exited(status),
            Err(err) => return ToolOutcome::failure(format!("waiting for the command failed: {err}")),
        },
        _ = tokio::time::sleep(timeout) => End::TimedOut(timeout),
        _ = cancel.cancelled() => End::Cancelled,
    };
    // Whatever is left of the group (background processes, or everything on a timeout).
    drop(group);
    if !matches!(end, End::Exited(_)) {
        // The group kill took `sh` too; this covers a kill that failed.
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
    let (ok, head) = match end {
        End::Exited(status) => match (status.code(), status.signal()) {
            (Some(code), _) => (code == 0, format!("exit code: {code}")),
            (None, Some(signal)) => (false, format!("killed by signal {signal}")),
            (None, None) => (false, "ended without an exit code".to_owned()),
        },
        End::TimedOut(after) => (
            false,
            format!(
                "timed out after {} s; the command and everything it started were killed",
                after.as_secs()
            ),
        ),
        End::Cancelled => (false, "cancelled; the command was killed".to_owned()),
    };
    let body = if text.is_empty() {
        "(no output)".to_owned()
    } else {
        text
    };
    ToolOutcome {
        ok,
        output: format!("{head}\n{body}"),
        edit: None,
    }
}

/// The process group of a spawned command, killed (SIGKILL) on drop.
pub(crate) struct ProcessGroup(pub(crate) Option<u32>);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        let pid = self
            .0
            .and_then(|id| i32::try_from(id).ok())
            .and_then(rustix::process::Pid::from_raw);
        if let Some(pid) = pid {
            // ESRCH (the group is already gone) is the usual case after a clean exit.
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

async fn pump(mut stream: impl AsyncRead + Unpin, output: Arc<Mutex<CappedOutput>>) {
    let mut buffer = vec![0u8; 8192];
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => lock(&output).push(&buffer[..n]),
        }
    }
}

fn lock(output: &Mutex<CappedOutput>) -> MutexGuard<'_, CappedOutput> {
    // The buffer stays consistent whatever panicked while holding it.
    output
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Output kept within a cap: the first half and the last half, and how much was cut between.
#[derive(Debug)]
struct CappedOutput {
    head: Vec<u8>,
    tail: VecDeque<u8>,
    half: usize,
    cut: u64,
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
