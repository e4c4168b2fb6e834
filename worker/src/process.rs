//! The worker's one process runner: the environment every child starts with, the shell commands
//! of the `run` tool and of the validation command (own process group, killed whole at a timeout
//! or cancellation, combined output captured within a cap), and the process-group kill.
//!
//! Invariant: every child process of the worker (shell commands and git) gets its command from
//! [`command`], the one place its environment is built: it starts from an empty environment and
//! gets the [`ChildEnv`] of the run only, so no variable of the worker reaches it unless allowed.
//! A shell command's output is masked ([`Masker`]) before anyone sees it.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use crate::secrets::{ChildEnv, Masker};

/// What the children of this run get, set once by the run from its configuration
/// ([`set_children`]); until then, [`ChildEnv::default`] and no masking.
static CHILDREN: RwLock<Option<Children>> = RwLock::new(None);

/// The environment of every child and the masker of their output.
#[derive(Debug, Clone, Default)]
pub struct Children {
    pub env: ChildEnv,
    pub masker: Masker,
}

/// Sets what every child of this process gets from now on. The run calls it once, before it
/// starts anything; it is process-wide because children are, whichever part starts them.
pub fn set_children(children: Children) {
    let mut slot = CHILDREN
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    *slot = Some(children);
}

/// What children get now.
pub fn children() -> Children {
    CHILDREN
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone()
        .unwrap_or_default()
}

/// How long the output readers may still run after the command's process group is gone (a
/// process that left the group may hold the pipes open).
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// `program` in `dir`, with the children's environment only (nothing of the worker's own), no
/// stdin, stdout and stderr piped, killed when dropped.
pub fn command(program: &str, dir: &Path) -> Command {
    command_with(program, dir, &children().env)
}

/// `program` in `dir` with exactly `env`, as [`command`].
pub fn command_with(program: &str, dir: &Path, env: &ChildEnv) -> Command {
    let mut command = Command::new(program);
    command
        .current_dir(dir)
        .env_clear()
        .envs(env.vars().iter().map(|(name, value)| (name, value)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
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
/// `capture` and coming back masked. At the end, whatever is left of its process group is killed.
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
    let output = children().masker.mask(&lock(&output).render()).into_owned();
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
    fn a_child_starts_from_an_empty_environment_and_gets_the_child_env_only() {
        let vars = [
            ("PATH".to_string(), "/usr/bin:/bin".to_string()),
            (
                "ANTHROPIC_API_KEY".to_string(),
                "sk-ant-0123456789".to_string(),
            ),
        ];
        let env = ChildEnv::from_vars(&vars, &[]);
        let command = command_with("env", Path::new("."), &env);
        let std = command.as_std();
        let set: Vec<(String, Option<String>)> = std
            .get_envs()
            .map(|(name, value)| {
                (
                    name.to_string_lossy().into_owned(),
                    value.map(|v| v.to_string_lossy().into_owned()),
                )
            })
            .collect();
        assert_eq!(
            set,
            [("PATH".to_string(), Some("/usr/bin:/bin".to_string()))]
        );
    }

    #[tokio::test]
    async fn a_shell_command_sees_nothing_of_the_workers_environment() {
        // The test process has variables (CARGO_*, RUST_*) that a child must not get.
        let env = ChildEnv::from_vars(&[("PATH".into(), "/usr/bin:/bin".into())], &[]);
        let mut child = command_with("sh", Path::new("."), &env);
        let output = child.arg("-c").arg("env | sort").output().await.unwrap();
        let printed = String::from_utf8(output.stdout).unwrap();
        let names: Vec<&str> = printed
            .lines()
            .filter_map(|line| line.split('=').next())
            .filter(|name| !["PWD", "SHLVL", "_", "OLDPWD"].contains(name))
            .collect();
        assert_eq!(names, ["PATH"]);
    }
}
