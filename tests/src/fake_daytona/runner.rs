//! The fake's sandboxes as local processes: each sandbox is a directory (its home, with a `bin`
//! holding the snapshot's `omoi-worker`), and a toolbox `process/execute` pipes the command into
//! `sh` as the daemon does, with an empty environment plus the sandbox's (`PATH` with its `bin`
//! first, `HOME`), its `env` and the call's `envs`. Each call's shell leads a process group of
//! its own; what it leaves running in the background (the worker) stays in that group, which is
//! signalled when the sandbox is stopped or deleted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

/// What one command did: its exit code and combined output, or `None` when it ran past its
/// timeout (its group then killed).
pub type Outcome = Option<(i32, String)>;

/// Makes a sandbox's home and `bin` (with `binary` as `omoi-worker` when the snapshot has one).
pub fn prepare(dir: &Path, binary: Option<&Path>) -> std::io::Result<PathBuf> {
    let home = dir.join("home");
    let bin = dir.join("bin");
    std::fs::create_dir_all(&home)?;
    std::fs::create_dir_all(&bin)?;
    if let Some(binary) = binary {
        let link = bin.join("omoi-worker");
        if !link.exists() {
            std::os::unix::fs::symlink(binary, link)?;
        }
    }
    Ok(home)
}

/// Runs `command` in the sandbox at `dir`: the process group is handed to `started` as soon as
/// the shell runs.
pub async fn execute(
    dir: &Path,
    env: &BTreeMap<String, String>,
    command: &str,
    timeout: Option<Duration>,
    started: impl FnOnce(i32),
) -> std::io::Result<Outcome> {
    let home = dir.join("home");
    let path = format!(
        "{}:{}",
        dir.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut child = tokio::process::Command::new("sh")
        .env_clear()
        .env("PATH", path)
        .env("HOME", &home)
        .envs(env)
        .current_dir(&home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()?;
    if let Some(id) = child.id() {
        started(id as i32);
    }
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(command.as_bytes()).await?;
        stdin.shutdown().await?;
    }
    let group = child.id().map_or(0, |id| id as i32);
    let waited = child.wait_with_output();
    let output = match timeout {
        Some(limit) => match tokio::time::timeout(limit, waited).await {
            Ok(output) => output?,
            Err(_) => {
                signal(group, rustix::process::Signal::KILL);
                return Ok(None);
            }
        },
        None => waited.await?,
    };
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    Ok(Some((output.status.code().unwrap_or(-1), text)))
}

/// Sends `signal` to a process group.
pub fn signal(group: i32, signal: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(group) {
        let _ = rustix::process::kill_process_group(pid, signal);
    }
}

/// Whether a process of the group is still there.
pub fn alive(group: i32) -> bool {
    rustix::process::Pid::from_raw(group)
        .is_some_and(|pid| rustix::process::test_kill_process_group(pid).is_ok())
}

/// SIGTERM to every group, SIGKILL after `grace` to what is left.
pub async fn stop(groups: Vec<i32>, grace: Duration) {
    for group in &groups {
        signal(*group, rustix::process::Signal::TERM);
    }
    tokio::time::sleep(grace).await;
    for group in &groups {
        signal(*group, rustix::process::Signal::KILL);
    }
}
