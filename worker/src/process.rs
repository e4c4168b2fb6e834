//! The worker's one process runner: the environment every child starts with, the shell commands
//! of the `run` tool and of the validation command (own process group, killed whole at a timeout
//! or cancellation, combined output captured within a cap), and the process-group kill.
//!
//! Invariant: every child process of the worker (shell commands and git) gets its command from
//! [`command`], the one place its environment is built: the worker's own secrets never reach it.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use omoi_protocol::env as var;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

/// Variables of the worker that no child process may see.
pub const SECRET_VARIABLES: [&str; 4] = [
    var::ANTHROPIC_API_KEY,
    var::OPENAI_API_KEY,
    var::SANDBOX_TOKEN,
    var::GIT_TOKEN,
];

/// How long the output readers may still run after the command's process group is gone (a
/// process that left the group may hold the pipes open).
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// `program` in `dir`, with the worker's environment minus its secrets, no stdin, stdout and
/// stderr piped, killed when dropped.
pub fn command(program: &str, dir: &Path) -> Command {
    let mut command = Command::new(program);
    command
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for variable in SECRET_VARIABLES {
        command.env_remove(variable);
    }
    command
}

/// `sh -c script` in `dir`, in a process group of its own, with pagers and git prompts off.
pub fn shell(script: &str, dir: &Path) -> Command {
    let mut shell = command("sh", dir);
    shell
        .arg("-c")
        .arg(script)
        .env("PAGER", "cat")
        .env("GIT_PAGER", "cat")
        .env("GIT_TERMINAL_PROMPT", "0")
        .process_group(0);
    shell
}

/// Where a command's combined output goes while it runs.
pub trait Capture: Send + 'static {
    fn push(&mut self, bytes: &[u8]);
    /// What was kept, as text.
    fn render(&self) -> String;
}

/// How a shell command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// It exited with a code.
    Exited(i32),
    /// It was killed by a signal it did not get from us.
    Signalled(i32),
    /// Killed at the timeout, with everything it started.
    TimedOut(Duration),
    /// Killed because the caller was cancelled, with everything it started.
    Cancelled,
    /// `sh` could not be started.
    NotStarted(String),
    /// Waiting for it failed, or it ended without an exit code or signal.
    Lost(String),
}

/// A finished shell command: how it ended and its captured output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub end: End,
    pub output: String,
}

/// Runs `script` with `sh -c` in `dir` for at most `timeout`, its combined output going into
/// `capture`. At the end, whatever is left of its process group is killed.
pub async fn run_shell<C: Capture>(
    script: &str,
    dir: &Path,
    timeout: Duration,
    capture: C,
    cancel: &CancellationToken,
) -> Finished {
    let mut child = match shell(script, dir).spawn() {
        Ok(child) => child,
        Err(err) => {
            return Finished {
                end: End::NotStarted(err.to_string()),
                output: String::new(),
            };
        }
    };
    // Killed when this call ends in any way, the caller's own timeout included.
    let group = ProcessGroup(child.id());
    let output = Arc::new(Mutex::new(capture));
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
                (Some(code), _) => End::Exited(code),
                (None, Some(signal)) => End::Signalled(signal),
                (None, None) => End::Lost("ended without an exit code".into()),
            },
            Err(err) => End::Lost(format!("waiting for it failed: {err}")),
        },
        _ = tokio::time::sleep(timeout) => End::TimedOut(timeout),
        _ = cancel.cancelled() => End::Cancelled,
    };
    // Whatever is left of the group: background processes, or everything on a timeout.
    drop(group);
    if !matches!(end, End::Exited(_) | End::Signalled(_)) {
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
    let output = lock(&output).render();
    Finished { end, output }
}

/// The process group of a spawned command, killed (SIGKILL) on drop.
pub struct ProcessGroup(pub Option<u32>);

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

async fn pump<C: Capture>(mut stream: impl AsyncRead + Unpin, output: Arc<Mutex<C>>) {
    let mut buffer = vec![0u8; 8192];
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => lock(&output).push(&buffer[..n]),
        }
    }
}

fn lock<C>(output: &Mutex<C>) -> MutexGuard<'_, C> {
    // The buffer stays consistent whatever panicked while holding it.
    output
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;

    #[test]
    fn secrets_of_the_worker_are_removed_from_a_childs_environment() {
        for command in [
            shell("true", Path::new(".")),
            command("git", Path::new(".")),
        ] {
            let mut removed: Vec<String> = command
                .as_std()
                .get_envs()
                .filter(|(_, value)| value.is_none())
                .map(|(name, _)| name.to_string_lossy().into_owned())
                .collect();
            let mut want: Vec<String> = SECRET_VARIABLES.iter().map(|v| v.to_string()).collect();
            want.sort();
            removed.sort();
            assert_eq!(removed, want);
        }
    }
}
