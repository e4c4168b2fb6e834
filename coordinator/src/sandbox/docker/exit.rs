//! The end of a sandbox's container: one watcher task per container waits for it to stop, reads
//! how it ended (exit code, killed at its memory limit), keeps its logs in `sandbox.log` and that
//! ending in `exit.json` beside it, then removes the container and its volume.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{ContainerInspectResponse, ContainerStateStatusEnum};
use bollard::query_parameters::{
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::sync::{Mutex, watch};

use super::is_status;
use crate::sandbox::ProviderStatus;

/// The exit code of a process killed by SIGKILL, as the container's init reports it.
const KILLED: i64 = 137;

/// The file in a sandbox's directory that records how its container ended.
pub const EXIT_FILE: &str = "exit.json";
/// The file in a sandbox's directory that keeps its container's output.
pub const LOG_FILE: &str = "sandbox.log";

/// How a container ended, as `exit.json` records it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// The exit code of the container's main process, when known.
    pub exit_code: Option<i64>,
    /// The Engine saw the kernel kill a process of the container at its memory limit.
    pub oom_killed: bool,
    /// The container's memory limit in MiB, when it had one.
    pub memory_limit_mb: Option<u64>,
    /// When it ended (RFC 3339, from the Engine).
    pub finished_at: Option<String>,
}

impl ExitRecord {
    /// How an inspected, no longer running container ended.
    pub fn from_inspect(info: &ContainerInspectResponse) -> ExitRecord {
        let state = info.state.as_ref();
        let never_started = state.and_then(|s| s.status) == Some(ContainerStateStatusEnum::CREATED);
        ExitRecord {
            exit_code: state.and_then(|s| s.exit_code).filter(|_| !never_started),
            oom_killed: state.and_then(|s| s.oom_killed).unwrap_or(false),
            memory_limit_mb: info
                .host_config
                .as_ref()
                .and_then(|h| h.memory)
                .filter(|bytes| *bytes > 0)
                .map(|bytes| u64::try_from(bytes).unwrap_or(0) / (1024 * 1024)),
            finished_at: state
                .and_then(|s| s.finished_at.clone())
                .filter(|_| !never_started),
        }
    }

    /// The status the provider reports: out of memory when the worker was killed while the Engine
    /// saw an out-of-memory kill (a command of the agent killed at the limit while the worker
    /// lived on is no reason to call the worker's end one).
    pub fn status(&self) -> ProviderStatus {
        if self.oom_killed && self.exit_code == Some(KILLED) {
            return ProviderStatus::OutOfMemory {
                limit_mb: self.memory_limit_mb,
            };
        }
        ProviderStatus::Exited {
            code: self.exit_code.and_then(|c| i32::try_from(c).ok()),
        }
    }
}

/// Whether an inspected container still runs (or is about to run again).
pub fn is_running(info: &ContainerInspectResponse) -> bool {
    info.state.as_ref().is_some_and(|s| {
        s.running == Some(true) || s.restarting == Some(true) || s.paused == Some(true)
    })
}

/// The watchers of this provider's containers, by container name.
#[derive(Debug, Clone, Default)]
pub struct ExitWatchers {
    watchers: Arc<Mutex<HashMap<String, watch::Receiver<Option<ExitRecord>>>>>,
}

impl ExitWatchers {
    /// The watcher of container `name`, started when there is none yet. `dir` is the sandbox's
    /// directory for its log and exit record.
    pub async fn ensure(
        &self,
        docker: &Docker,
        name: &str,
        dir: PathBuf,
    ) -> watch::Receiver<Option<ExitRecord>> {
        let mut watchers = self.watchers.lock().await;
        if let Some(rx) = watchers.get(name) {
            return rx.clone();
        }
        let (tx, rx) = watch::channel(None);
        watchers.insert(name.to_string(), rx.clone());
        let (docker, name) = (docker.clone(), name.to_string());
        tokio::spawn(async move {
            let record = watch_container(&docker, &name, &dir).await;
            let _ = tx.send(Some(record));
        });
        rx
    }

    /// How container `name` ended, once its watcher has finished with it.
    pub async fn ended(&self, name: &str) -> Option<ExitRecord> {
        let watchers = self.watchers.lock().await;
        watchers.get(name).and_then(|rx| rx.borrow().clone())
    }

    /// Waits up to `timeout` for every watcher to finish (each container to end and be removed).
    /// Returns the names of the containers still running.
    pub async fn wait_all(&self, timeout: Duration) -> Vec<String> {
        let watchers: Vec<(String, watch::Receiver<Option<ExitRecord>>)> = self
            .watchers
            .lock()
            .await
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut running = Vec::new();
        for (name, mut rx) in watchers {
            let done = tokio::time::timeout_at(deadline, rx.wait_for(Option::is_some)).await;
            if !matches!(done, Ok(Ok(_))) {
                running.push(name);
            }
        }
        running.sort();
        running
    }
}

/// Waits until the container stops, keeps its logs and exit, removes it; returns how it ended.
async fn watch_container(docker: &Docker, name: &str, dir: &Path) -> ExitRecord {
    let info = loop {
        let options = WaitContainerOptionsBuilder::new()
            .condition("not-running")
            .build();
        // Answers when the container stops (an error item for a non-zero exit code, which the
        // inspection below reads anyway).
        let _ = docker.wait_container(name, Some(options)).next().await;
        match docker.inspect_container(name, None).await {
            Ok(info) if !is_running(&info) => break Some(info),
            Ok(_) => {}
            Err(e) if is_status(&e, 404) => break None,
            Err(e) => tracing::warn!(container = name, error = %e, "inspecting a sandbox failed"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let Some(info) = info else {
        // Removed by someone else: what an earlier watcher recorded, if anything.
        return read_record(dir).await.unwrap_or_default();
    };
    let record = ExitRecord::from_inspect(&info);
    if let Err(e) = keep_logs(docker, name, dir).await {
        tracing::warn!(container = name, error = %e, "keeping the sandbox's logs failed");
    }
    if let Err(e) = write_record(dir, &record).await {
        tracing::warn!(container = name, error = %e, "recording the sandbox's exit failed");
    }
    let options = RemoveContainerOptionsBuilder::new()
        .force(true)
        .v(true)
        .build();
    match docker.remove_container(name, Some(options)).await {
        Ok(()) => {}
        Err(e) if is_status(&e, 404) => {}
        // Another watcher (a second coordinator on the same data directory) is removing it.
        Err(e) if is_status(&e, 409) => wait_until_removed(docker, name).await,
        Err(e) => tracing::warn!(container = name, error = %e, "removing a sandbox failed"),
    }
    tracing::info!(container = name, status = %record.status(), "docker sandbox ended");
    record
}

/// Waits (a bounded while) until the Engine no longer knows the container.
async fn wait_until_removed(docker: &Docker, name: &str) {
    for _ in 0..300 {
        if let Err(e) = docker.inspect_container(name, None).await {
            if is_status(&e, 404) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tracing::warn!(container = name, "a sandbox was not removed in 30 s");
}

/// Appends the container's stdout and stderr to `sandbox.log`.
async fn keep_logs(docker: &Docker, name: &str, dir: &Path) -> std::io::Result<()> {
    tokio::fs::create_dir_all(dir).await?;
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(LOG_FILE))
        .await?;
    let options = LogsOptionsBuilder::new()
        .stdout(true)
        .stderr(true)
        .follow(false)
        .build();
    let mut logs = docker.logs(name, Some(options));
    while let Some(item) = logs.next().await {
        match item {
            Ok(output) => file.write_all(output.as_ref()).await?,
            Err(e) => {
                file.write_all(
                    format!("[omoi: reading the container log failed: {e}]\n").as_bytes(),
                )
                .await?;
                break;
            }
        }
    }
    file.flush().await
}

async fn write_record(dir: &Path, record: &ExitRecord) -> std::io::Result<()> {
    tokio::fs::create_dir_all(dir).await?;
    let text = serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?;
    tokio::fs::write(dir.join(EXIT_FILE), text).await
}

/// The exit recorded in a sandbox's directory, if any.
pub async fn read_record(dir: &Path) -> Option<ExitRecord> {
    let bytes = tokio::fs::read(dir.join(EXIT_FILE)).await.ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use bollard::models::{ContainerState, HostConfig};
    use pretty_assertions::assert_eq;

    use super::*;

    fn inspected(
        status: ContainerStateStatusEnum,
        code: i64,
        oom: bool,
    ) -> ContainerInspectResponse {
        ContainerInspectResponse {
            state: Some(ContainerState {
                status: Some(status),
                running: Some(false),
                exit_code: Some(code),
                oom_killed: Some(oom),
                finished_at: Some("2026-01-01T00:00:00Z".into()),
                ..ContainerState::default()
            }),
            host_config: Some(HostConfig {
                memory: Some(64 * 1024 * 1024),
                ..HostConfig::default()
            }),
            ..ContainerInspectResponse::default()
        }
    }

    #[test]
    fn a_worker_killed_at_the_memory_limit_is_out_of_memory() {
        let record =
            ExitRecord::from_inspect(&inspected(ContainerStateStatusEnum::EXITED, 137, true));
        assert_eq!(
            record,
            ExitRecord {
                exit_code: Some(137),
                oom_killed: true,
                memory_limit_mb: Some(64),
                finished_at: Some("2026-01-01T00:00:00Z".into()),
            }
        );
        assert_eq!(
            record.status(),
            ProviderStatus::OutOfMemory { limit_mb: Some(64) }
        );
        assert_eq!(
            record.status().to_string(),
            "was killed: out of memory (limit 64 MiB)"
        );
    }

    #[test]
    fn other_endings_are_exits_with_their_code() {
        // A command of the agent was killed at the limit, the worker went on and ended well.
        let record =
            ExitRecord::from_inspect(&inspected(ContainerStateStatusEnum::EXITED, 0, true));
        assert_eq!(record.status(), ProviderStatus::Exited { code: Some(0) });
        let record =
            ExitRecord::from_inspect(&inspected(ContainerStateStatusEnum::EXITED, 137, false));
        assert_eq!(record.status(), ProviderStatus::Exited { code: Some(137) });
        let record =
            ExitRecord::from_inspect(&inspected(ContainerStateStatusEnum::CREATED, 0, false));
        assert_eq!(record.status(), ProviderStatus::Exited { code: None });
        assert_eq!(
            ExitRecord::default().status(),
            ProviderStatus::Exited { code: None }
        );
    }

    #[tokio::test]
    async fn the_record_round_trips_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_record(dir.path()).await, None);
        let record =
            ExitRecord::from_inspect(&inspected(ContainerStateStatusEnum::EXITED, 2, false));
        write_record(dir.path(), &record).await.unwrap();
        assert_eq!(read_record(dir.path()).await, Some(record));
    }
}
