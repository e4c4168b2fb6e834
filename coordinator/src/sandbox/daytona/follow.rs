//! The poll that follows the sandboxes: each interval one list of the sandboxes labelled
//! `omoi.owner=omoi` (a page per 100), and for each started one whose worker runs, one toolbox
//! call that reads its run directory. A sandbox found that is not known is adopted (a coordinator
//! that restarted, or another replica's sandbox); one that halted, failed or was destroyed before its worker ended is lost with
//! the reason; one whose worker ended keeps its logs and is deleted.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::client::ApiError;
use super::launch;
use super::state::{Phase, Worker, phase, status_of, worker};
use super::tracked::Entry;
use super::wire::{ExecuteRequest, Sandbox};
use crate::sandbox::{OWNER, OWNER_LABEL, ProviderStatus, SANDBOX_LABEL};

/// How many sandboxes are checked at once.
const CHECKS_AT_ONCE: usize = 16;

/// Polls every interval until `stop`.
pub async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(shared.config.poll_interval) => {}
        }
        pass(&shared).await;
    }
}

/// One poll.
pub async fn pass(shared: &Shared) {
    let owned = BTreeMap::from([(OWNER_LABEL.to_string(), OWNER.to_string())]);
    let listed = match shared.client.list(&owned).await {
        Ok(listed) => listed,
        Err(e) => {
            tracing::warn!(error = %e, "listing the Daytona sandboxes failed");
            return;
        }
    };
    for sandbox in &listed {
        let live = !matches!(phase(sandbox.state.as_deref()), Phase::Destroyed);
        if let Some(sandbox_id) = sandbox.labels.get(SANDBOX_LABEL).filter(|_| live) {
            if shared.tracked.adopt(&sandbox.id, sandbox_id) {
                tracing::info!(daytona = %sandbox.id, sandbox = %sandbox_id,
                    "following a Daytona sandbox found running");
            }
        }
    }
    let by_id: HashMap<&str, &Sandbox> = listed.iter().map(|s| (s.id.as_str(), s)).collect();
    futures_util::stream::iter(shared.tracked.running_ones())
        .for_each_concurrent(CHECKS_AT_ONCE, |(id, entry)| {
            let listed = by_id.get(id.as_str()).map(|s| (*s).clone());
            async move { check(shared, &id, entry, listed).await }
        })
        .await;
    shared.tracked.sweep();
}

/// Checks one running sandbox: its state, then its worker.
async fn check(shared: &Shared, id: &str, mut entry: Entry, listed: Option<Sandbox>) {
    // The list is eventually consistent: one missing from it is read before it counts as gone.
    let sandbox = match listed {
        Some(sandbox) => sandbox,
        None => match shared.client.sandbox(id).await {
            Ok(sandbox) => sandbox,
            Err(ApiError::Status { code: 404, .. }) => {
                let reason = "was deleted before the worker ended".to_string();
                shared.tracked.end(id, ProviderStatus::Lost { reason });
                return;
            }
            Err(e) => {
                tracing::warn!(daytona = %id, error = %e, "reading a Daytona sandbox failed");
                return;
            }
        },
    };
    let phase = phase(sandbox.state.as_deref());
    if phase == Phase::Starting {
        return;
    }
    if let Some(lost) = status_of(&phase, sandbox.error_reason.as_deref()) {
        if shared.tracked.end(id, lost) {
            delete(shared, id).await;
        }
        return;
    }
    if entry.toolbox.is_empty() {
        let toolbox = if sandbox.toolbox_proxy_url.is_empty() {
            match shared.client.sandbox(id).await {
                Ok(read) => read.toolbox_proxy_url,
                Err(e) => {
                    tracing::warn!(daytona = %id, error = %e, "reading a Daytona sandbox failed");
                    return;
                }
            }
        } else {
            sandbox.toolbox_proxy_url
        };
        shared.tracked.set_toolbox(id, &toolbox);
        entry.toolbox = toolbox;
    }
    let asked = ExecuteRequest {
        command: launch::CHECK.to_string(),
        timeout: 10,
        envs: BTreeMap::new(),
    };
    let answer = match shared.client.execute(&entry.toolbox, id, &asked).await {
        Ok(answer) => answer,
        Err(e) => {
            tracing::warn!(daytona = %id, error = %e, "asking a Daytona sandbox for its worker failed");
            return;
        }
    };
    let status = match worker(&answer.result) {
        Worker::Running => return,
        // Another replica may be starting it, within its spawn deadline.
        Worker::Absent
            if entry.adopted && entry.seen_at.elapsed() < shared.config.spawn_deadline =>
        {
            return;
        }
        Worker::Exited(code) => ProviderStatus::Exited { code },
        Worker::Absent => ProviderStatus::Lost {
            reason: "has no worker running (it was never started there)".into(),
        },
    };
    if shared.tracked.end(id, status) {
        keep_logs(shared, id, &entry).await;
        delete(shared, id).await;
    }
}

async fn delete(shared: &Shared, id: &str) {
    if let Err(e) = shared.client.delete(id).await {
        tracing::warn!(daytona = %id, error = %e, "deleting an ended Daytona sandbox failed");
    }
}

/// `<data-dir>/sandboxes/<id>/sandbox.log`.
pub fn log_path(data_dir: &Path, sandbox_id: &str) -> PathBuf {
    data_dir
        .join("sandboxes")
        .join(sandbox_id)
        .join("sandbox.log")
}

/// Reads the end of the worker's output from the sandbox into its log file (nothing when the
/// toolbox does not answer: the sandbox may be gone).
pub async fn keep_logs(shared: &Shared, id: &str, entry: &Entry) {
    let mut toolbox = entry.toolbox.clone();
    if toolbox.is_empty() {
        match shared.client.sandbox(id).await {
            Ok(read) => toolbox = read.toolbox_proxy_url,
            Err(_) => return,
        }
    }
    let asked = ExecuteRequest {
        command: launch::read_log(),
        timeout: 30,
        envs: BTreeMap::new(),
    };
    let text = match shared.client.execute(&toolbox, id, &asked).await {
        Ok(answer) => answer.result,
        Err(e) => {
            tracing::info!(daytona = %id, error = %e, "no logs of the Daytona sandbox");
            return;
        }
    };
    let path = log_path(&shared.config.data_dir, &entry.sandbox_id);
    let written = async {
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        tokio::fs::write(&path, text).await
    }
    .await;
    if let Err(e) = written {
        tracing::warn!(path = %path.display(), error = %e, "keeping a sandbox's logs failed");
    }
}
