//! The `local` provider: the worker as a child process in its own directory under the data dir,
//! with a copy of the project's repository as its workspace and its output kept as a log file.
//!
//! Layout of one sandbox: `<data-dir>/sandboxes/<id>/{workspace/, sandbox.log, sandbox.json}`.
//! `sandbox.json` records the process id, its start time and the labels, so a restarted
//! coordinator still finds (and can stop) workers that outlived it. No isolation beyond the process.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::process::{Child, Command};
use tokio::sync::{Mutex, watch};

use super::{ListedSandbox, Provider, ProviderStatus, SandboxError, SandboxHandle, SpawnRequest};

/// How long a terminated worker gets to drain its events before it is killed.
const TERMINATE_GRACE: Duration = Duration::from_secs(5);

/// Variables of the coordinator's own environment that a local worker inherits.
const INHERITED_ENV: [&str; 6] = [
    "PATH",
    "HOME",
    "LANG",
    "TMPDIR",
    "RUST_LOG",
    "RUST_BACKTRACE",
];

/// Runs workers as child processes.
#[derive(Debug, Clone)]
pub struct LocalProvider {
    worker_bin: PathBuf,
    root: PathBuf,
    children: Arc<Mutex<HashMap<String, LocalChild>>>,
}

/// A worker this coordinator started: its pid and, once it exited, its exit code.
#[derive(Debug, Clone)]
struct LocalChild {
    pid: u32,
    /// `None` while it runs; `Some(code)` after (a reaper task waits on the process).
    exit: watch::Receiver<Option<Option<i32>>>,
}

/// What `sandbox.json` records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Record {
    sandbox_id: String,
    pid: u32,
    /// The process start time from `/proc/<pid>/stat`, to tell a reused pid apart.
    start_time: Option<u64>,
    labels: BTreeMap<String, String>,
}

impl LocalProvider {
    /// A provider that runs `worker_bin` in directories under `data_dir/sandboxes`.
    pub fn new(worker_bin: PathBuf, data_dir: &Path) -> LocalProvider {
        LocalProvider {
            worker_bin,
            root: data_dir.join("sandboxes"),
            children: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The directory of one sandbox.
    pub fn sandbox_dir(&self, sandbox_id: &str) -> PathBuf {
        self.root.join(sandbox_id)
    }

    /// The log file (the worker's stdout and stderr) of one sandbox.
    pub fn log_path(&self, sandbox_id: &str) -> PathBuf {
        self.sandbox_dir(sandbox_id).join("sandbox.log")
    }

    /// The process id of a sandbox's worker, while this provider knows it.
    pub async fn pid(&self, handle: &SandboxHandle) -> Option<u32> {
        if let Some(child) = self.children.lock().await.get(&handle.0) {
            return Some(child.pid);
        }
        read_record(&self.sandbox_dir(&handle.0))
            .await
            .ok()
            .flatten()
            .map(|r| r.pid)
    }

    async fn spawn_inner(&self, request: SpawnRequest) -> Result<SandboxHandle, SandboxError> {
        let id = request.sandbox_id.clone();
        if id.is_empty() || id.contains(['/', '\\']) || id.starts_with('.') {
            return Err(SandboxError::Spawn {
                sandbox_id: id,
                reason: "the sandbox id is not a plain name".into(),
            });
        }
        let dir = self.sandbox_dir(&id);
        let workspace = dir.join("workspace");
        if let Some(repo) = &request.repo {
            tokio::fs::create_dir_all(&dir)
                .await
                .map_err(SandboxError::io(format!("creating {}", dir.display())))?;
            prepare_workspace(repo, &workspace)
                .await
                .map_err(|reason| SandboxError::Spawn {
                    sandbox_id: id.clone(),
                    reason,
                })?;
        }
        // The rest is a few small file operations and the spawn: one trip to a blocking thread.
        let worker_bin = self.worker_bin.clone();
        let (child, pid) = tokio::task::spawn_blocking(move || {
            start_worker(&worker_bin, &dir, &workspace, request)
        })
        .await
        .map_err(|e| SandboxError::Provider(format!("starting a worker: {e}")))??;
        let exit = reap(child);
        self.children
            .lock()
            .await
            .insert(id.clone(), LocalChild { pid, exit });
        let log = self.log_path(&id);
        tracing::info!(sandbox = %id, pid, log = %log.display(), "local sandbox started");
        Ok(SandboxHandle(id))
    }

    async fn status_inner(&self, handle: &SandboxHandle) -> Result<ProviderStatus, SandboxError> {
        if let Some(child) = self.children.lock().await.get(&handle.0) {
            return Ok(match *child.exit.borrow() {
                Some(code) => ProviderStatus::Exited { code },
                None => ProviderStatus::Running,
            });
        }
        match read_record(&self.sandbox_dir(&handle.0)).await? {
            Some(record) => Ok(orphan_status(&record)),
            None => Ok(ProviderStatus::NotFound),
        }
    }

    async fn terminate_inner(&self, handle: &SandboxHandle) -> Result<(), SandboxError> {
        let child = self.children.lock().await.get(&handle.0).cloned();
        if let Some(mut child) = child {
            if child.exit.borrow().is_none() {
                signal_group(child.pid, "TERM").await;
                let exited = child.exit.wait_for(Option::is_some);
                if tokio::time::timeout(TERMINATE_GRACE, exited).await.is_err() {
                    signal_group(child.pid, "KILL").await;
                }
            }
            return Ok(());
        }
        let Some(record) = read_record(&self.sandbox_dir(&handle.0)).await? else {
            return Ok(());
        };
        if orphan_status(&record) == ProviderStatus::Running {
            signal_group(record.pid, "TERM").await;
            let deadline = tokio::time::Instant::now() + TERMINATE_GRACE;
            while tokio::time::Instant::now() < deadline {
                if orphan_status(&record) != ProviderStatus::Running {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            signal_group(record.pid, "KILL").await;
        }
        Ok(())
    }

    async fn list_inner(
        &self,
        labels: &BTreeMap<String, String>,
    ) -> Result<Vec<ListedSandbox>, SandboxError> {
        let mut listed = Vec::new();
        let mut entries = match tokio::fs::read_dir(&self.root).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(listed),
            Err(e) => return Err(SandboxError::io(format!("reading {}", self.root.display()))(e)),
        };
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(SandboxError::io(format!("reading {}", self.root.display())))?
        {
            let Some(record) = read_record(&entry.path()).await? else {
                continue;
            };
            if labels.iter().all(|(k, v)| record.labels.get(k) == Some(v)) {
                let handle = SandboxHandle(record.sandbox_id.clone());
                let status = self.status_inner(&handle).await?;
                listed.push(ListedSandbox {
                    handle,
                    labels: record.labels,
                    status,
                });
            }
        }
        listed.sort_by(|a, b| a.handle.0.cmp(&b.handle.0));
        Ok(listed)
    }
}

impl Provider for LocalProvider {
    fn name(&self) -> &'static str {
        "local"
    }

    fn scope(&self) -> Option<String> {
        // The same machine and boot (pids, `/proc`) and the same data directory (each
        // sandbox's `sandbox.json` and workspace).
        let root = std::fs::canonicalize(&self.root).unwrap_or_else(|_| self.root.clone());
        Some(format!("local:{}:{}", super::boot_id()?, root.display()))
    }

    fn spawn(&self, request: SpawnRequest) -> BoxFuture<'_, Result<SandboxHandle, SandboxError>> {
        self.spawn_inner(request).boxed()
    }

    fn status<'a>(
        &'a self,
        handle: &'a SandboxHandle,
    ) -> BoxFuture<'a, Result<ProviderStatus, SandboxError>> {
        self.status_inner(handle).boxed()
    }

    fn terminate<'a>(
        &'a self,
        handle: &'a SandboxHandle,
    ) -> BoxFuture<'a, Result<(), SandboxError>> {
        self.terminate_inner(handle).boxed()
    }

    fn list<'a>(
        &'a self,
        labels: &'a BTreeMap<String, String>,
    ) -> BoxFuture<'a, Result<Vec<ListedSandbox>, SandboxError>> {
        self.list_inner(labels).boxed()
    }

    fn place_repository<'a>(
        &'a self,
        handle: &'a SandboxHandle,
        repo: &'a str,
    ) -> BoxFuture<'a, Result<(), SandboxError>> {
        async move {
            let workspace = self.sandbox_dir(&handle.0).join("workspace");
            let failed = |reason: String| SandboxError::Spawn {
                sandbox_id: handle.0.clone(),
                reason,
            };
            // The standby's workspace was made empty by its spawn; anything else there is not
            // a standby's (the worker only touches it once assigned).
            let mut entries = tokio::fs::read_dir(&workspace)
                .await
                .map_err(|e| failed(format!("reading {}: {e}", workspace.display())))?;
            let occupied = entries
                .next_entry()
                .await
                .map_err(|e| failed(format!("reading {}: {e}", workspace.display())))?
                .is_some();
            if occupied {
                return Err(failed(format!(
                    "the workspace {} is not empty",
                    workspace.display()
                )));
            }
            fill_workspace(repo, &workspace).await.map_err(failed)
        }
        .boxed()
    }
}

/// Starts the worker of `request` in `dir` (creating `workspace` when the spawn brought no
/// repository), its output going to `sandbox.log`, and writes `sandbox.json`. Blocking: it runs
/// on a blocking thread, inside the runtime (the child is a tokio process, reaped by `reap`).
fn start_worker(
    worker_bin: &Path,
    dir: &Path,
    workspace: &Path,
    request: SpawnRequest,
) -> Result<(Child, u32), SandboxError> {
    let id = request.sandbox_id;
    if request.repo.is_none() {
        std::fs::create_dir_all(workspace).map_err(SandboxError::io(format!(
            "creating {}",
            workspace.display()
        )))?;
    }
    let log_path = dir.join("sandbox.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(SandboxError::io(format!("opening {}", log_path.display())))?;
    let log_err = log
        .try_clone()
        .map_err(SandboxError::io(format!("opening {}", log_path.display())))?;

    let mut command = Command::new(worker_bin);
    command
        .current_dir(workspace)
        .env_clear()
        .envs(
            INHERITED_ENV
                .iter()
                .filter_map(|name| std::env::var_os(name).map(|value| (name.to_string(), value))),
        )
        .envs(&request.env)
        .env(omoi_protocol::env::WORKSPACE, workspace)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        .kill_on_drop(false)
        .process_group(0);
    let child = command.spawn().map_err(|e| SandboxError::Spawn {
        sandbox_id: id.clone(),
        reason: format!("starting {}: {e}", worker_bin.display()),
    })?;
    let pid = child.id().ok_or_else(|| SandboxError::Spawn {
        sandbox_id: id.clone(),
        reason: "the worker exited at once".into(),
    })?;
    let record = Record {
        sandbox_id: id,
        pid,
        start_time: process_stat(pid).map(|(_, start)| start),
        labels: request.labels,
    };
    write_record(dir, &record)?;
    Ok((child, pid))
}

/// Waits for the process in a task of its own (so it never lingers as a zombie) and publishes
/// its exit code.
fn reap(mut child: Child) -> watch::Receiver<Option<Option<i32>>> {
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        let code = match child.wait().await {
            Ok(status) => status.code(),
            Err(_) => None,
        };
        let _ = tx.send(Some(code));
    });
    rx
}

/// Fills `workspace` from `repo`: a clone of a git repository (local or remote), or a copy of a
/// plain directory.
pub(super) async fn prepare_workspace(repo: &str, workspace: &Path) -> Result<(), String> {
    if tokio::fs::metadata(workspace).await.is_ok() {
        // A restarted spawn of the same sandbox keeps its workspace.
        return Ok(());
    }
    fill_workspace(repo, workspace).await
}

/// Whether `repo` is a local directory that is not a git repository (copied, not cloned). A
/// bare repository (`HEAD`, `objects/` and `refs/` at its top) is cloned like a checkout.
pub(super) fn is_plain_directory(repo: &str) -> bool {
    let local = Path::new(repo);
    let is_dir = std::fs::metadata(local).is_ok_and(|m| m.is_dir());
    let exists = |name: &str| std::fs::metadata(local.join(name)).is_ok();
    let is_git = exists(".git") || (exists("HEAD") && exists("objects") && exists("refs"));
    is_dir && !is_git
}

/// Fills `workspace` (missing or empty) from `repo`, as [`prepare_workspace`] describes.
async fn fill_workspace(repo: &str, workspace: &Path) -> Result<(), String> {
    if is_plain_directory(repo) {
        let (from, to) = (Path::new(repo).to_path_buf(), workspace.to_path_buf());
        return tokio::task::spawn_blocking(move || copy_dir(&from, &to))
            .await
            .map_err(|e| format!("copying {repo}: {e}"))?
            .map_err(|e| format!("copying {repo}: {e}"));
    }
    let output = Command::new("git")
        .arg("clone")
        .arg("--quiet")
        .arg("--no-hardlinks")
        // Whatever the repository is called, git never reads it as an option.
        .arg("--")
        .arg(repo)
        .arg(workspace)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("running git clone: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(crate::repo::redact_credential(
            repo,
            &format!(
                "git clone {repo} failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        ))
    }
}

/// Copies a directory tree (files and directories; symbolic links are copied as links).
fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

fn write_record(dir: &Path, record: &Record) -> Result<(), SandboxError> {
    let path = dir.join("sandbox.json");
    let text = serde_json::to_vec_pretty(record)
        .map_err(|e| SandboxError::Provider(format!("encoding {}: {e}", path.display())))?;
    std::fs::write(&path, text).map_err(SandboxError::io(format!("writing {}", path.display())))
}

async fn read_record(dir: &Path) -> Result<Option<Record>, SandboxError> {
    let path = dir.join("sandbox.json");
    match tokio::fs::read(&path).await {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(SandboxError::io(format!("reading {}", path.display()))(e)),
    }
}

/// The status of a worker this coordinator did not start (it outlived an earlier coordinator).
fn orphan_status(record: &Record) -> ProviderStatus {
    match process_stat(record.pid) {
        Some((state, start_time))
            if state != 'Z'
                && state != 'X'
                && record.start_time.is_none_or(|t| t == start_time) =>
        {
            ProviderStatus::Running
        }
        _ => ProviderStatus::Exited { code: None },
    }
}

/// The state letter and start time (field 22) of a process, from `/proc/<pid>/stat` (procfs:
/// read from memory, never blocks on a disk).
fn process_stat(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after its closing paren do not.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// Sends a signal to the worker's process group (it leads its own group).
async fn signal_group(pid: u32, signal: &str) {
    let result = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg("--")
        .arg(format!("-{pid}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
    if let Err(e) = result {
        tracing::warn!(pid, signal, error = %e, "could not run kill");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failed_clone_never_shows_the_credential_of_its_url() {
        let dir = tempfile::tempdir().unwrap();
        let repo = "http://ada:s3cret-token@127.0.0.1:9/o/r.git";
        let err = fill_workspace(repo, &dir.path().join("w"))
            .await
            .unwrap_err();
        assert!(!err.contains("s3cret-token"), "{err}");
        assert!(
            err.starts_with("git clone http://ada:***@127.0.0.1:9/o/r.git failed"),
            "{err}"
        );
    }

    #[test]
    fn the_stat_of_this_process_parses() {
        let (state, start) = process_stat(std::process::id()).unwrap();
        assert!(state == 'R' || state == 'S', "state {state}");
        assert!(start > 0);
        assert_eq!(
            process_stat(std::process::id()).map(|(_, s)| s),
            Some(start)
        );
        assert_eq!(process_stat(u32::MAX), None);
    }
}
