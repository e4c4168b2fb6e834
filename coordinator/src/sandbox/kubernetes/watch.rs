//! The watch on the sandbox pods: one list, then one watch from its resource version, resumed
//! from the last version seen (bookmarks keep it fresh) when the server ends it, and a new list
//! when the version has expired (410 Gone), so no update is lost. Every change goes into
//! [`Tracked`]; a pod that ended has its logs kept and is deleted (its Secret goes with it).
//! Pending pods are checked against the limit each second, locally, without a request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{
    Api, DeleteParams, ListParams, LogParams, PropagationPolicy, WatchEvent, WatchParams,
};
use tokio_util::sync::CancellationToken;

use super::manifest::{CONTAINER, GRACE_SECS};
use super::status::{PodState, classify};
use super::tracked::{Change, State, Tracked};
use crate::sandbox::{OWNER, OWNER_LABEL, SANDBOX_LABEL};

/// How long one watch request lasts before the server ends it (it is then resumed).
const WATCH_SECS: u32 = 290;
/// The wait after a failed list or watch before the next.
const RETRY: Duration = Duration::from_secs(1);

/// What the watcher and the provider share.
#[derive(Debug)]
pub struct Shared {
    pub pods: Api<Pod>,
    pub tracked: Tracked,
    pub pending_limit: Duration,
    pub data_dir: std::path::PathBuf,
}

/// The label selector of every sandbox pod of omoi.
pub fn selector() -> String {
    format!("{OWNER_LABEL}={OWNER}")
}

fn sandbox_of(pod: &Pod) -> Option<(String, String)> {
    let name = pod.metadata.name.clone()?;
    let sandbox = pod.metadata.labels.as_ref()?.get(SANDBOX_LABEL)?.clone();
    Some((name, sandbox))
}

/// The state the watch reports for `pod`.
pub fn state_of(pod: &Pod) -> State {
    match classify(pod) {
        PodState::Pending { why } => State::Pending {
            since: pod
                .metadata
                .creation_timestamp
                .as_ref()
                .map_or_else(now_secs, |t| t.0.as_second()),
            why,
        },
        PodState::Running => State::Running,
        PodState::Ended(status) => State::Ended {
            status,
            at: Instant::now(),
        },
    }
}

pub fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Applies one pod's news; ends it when it ended.
fn apply(shared: &Arc<Shared>, pod: &Pod) {
    let Some((name, sandbox)) = sandbox_of(pod) else {
        return;
    };
    if let Change::Ended { sandbox_id } = shared.tracked.update(&name, &sandbox, state_of(pod)) {
        tokio::spawn(finish(shared.clone(), name, sandbox_id, true));
    }
}

/// Keeps the logs of an ended pod (when `logs`) and deletes it.
pub async fn finish(shared: Arc<Shared>, name: String, sandbox_id: String, logs: bool) {
    if logs {
        keep_logs(&shared, &name, &sandbox_id).await;
    }
    let params = DeleteParams {
        grace_period_seconds: Some(GRACE_SECS as u32),
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    // The pod must go (its Secret goes with it): a failed delete is tried again, five times in
    // about six seconds; after that the next start's reconcile finds it.
    let mut delay = Duration::from_millis(200);
    for attempt in 1..=5 {
        match shared.pods.delete(&name, &params).await {
            Ok(_) => return,
            Err(kube::Error::Api(status)) if status.code == 404 => return,
            Err(e) => {
                tracing::warn!(pod = %name, attempt, error = %e, "deleting an ended sandbox pod failed");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
}

/// The worker's output, kept in `<data-dir>/sandboxes/<id>/sandbox.log`.
pub async fn keep_logs(shared: &Shared, name: &str, sandbox_id: &str) {
    let params = LogParams {
        container: Some(CONTAINER.to_string()),
        ..LogParams::default()
    };
    let text = match shared.pods.logs(name, &params).await {
        Ok(text) => text,
        Err(e) => {
            tracing::info!(pod = %name, error = %e, "no logs of the sandbox pod");
            return;
        }
    };
    let dir = shared.data_dir.join("sandboxes").join(sandbox_id);
    let written = async {
        tokio::fs::create_dir_all(&dir).await?;
        tokio::fs::write(dir.join("sandbox.log"), text).await
    }
    .await;
    if let Err(e) = written {
        tracing::warn!(dir = %dir.display(), error = %e, "keeping a sandbox's logs failed");
    }
}

/// Lists the pods, applies them, and answers the list's resource version. A pod tracked before
/// the list began that the list does not show was deleted meanwhile.
async fn relist(shared: &Arc<Shared>) -> Result<String, kube::Error> {
    let started = Instant::now();
    let list = shared
        .pods
        .list(&ListParams::default().labels(&selector()))
        .await?;
    let mut seen = std::collections::HashSet::new();
    for pod in &list.items {
        if let Some((name, _)) = sandbox_of(pod) {
            seen.insert(name);
        }
        apply(shared, pod);
    }
    for name in shared.tracked.live_before(started) {
        if !seen.contains(&name) {
            shared.tracked.deleted(&name, "was deleted before it ended");
        }
    }
    Ok(list.metadata.resource_version.unwrap_or_default())
}

/// Runs until `stop`: list, watch, resume, relist on 410.
pub async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    let mut sweep = tokio::time::interval(Duration::from_secs(1));
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    'list: loop {
        let mut version = tokio::select! {
            () = stop.cancelled() => return,
            listed = relist(&shared) => match listed {
                Ok(version) => version,
                Err(e) => {
                    tracing::warn!(error = %e, "listing the sandbox pods failed");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(RETRY) => continue 'list,
                    }
                }
            },
        };
        loop {
            let params = WatchParams::default()
                .labels(&selector())
                .timeout(WATCH_SECS);
            let params = WatchParams {
                bookmarks: true,
                ..params
            };
            let stream = match shared.pods.watch(&params, &version).await {
                Ok(stream) => stream,
                Err(kube::Error::Api(status)) if status.code == 410 => continue 'list,
                Err(e) => {
                    tracing::warn!(error = %e, "watching the sandbox pods failed");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(RETRY) => continue,
                    }
                }
            };
            let mut stream = std::pin::pin!(stream);
            loop {
                let event = tokio::select! {
                    () = stop.cancelled() => return,
                    _ = sweep.tick() => {
                        for (name, sandbox_id) in shared.tracked.sweep(now_secs(), shared.pending_limit) {
                            tracing::warn!(pod = %name, "a sandbox pod pending too long is deleted");
                            tokio::spawn(finish(shared.clone(), name, sandbox_id, false));
                        }
                        continue;
                    }
                    event = stream.next() => event,
                };
                match event {
                    // The server ended the watch: resume from the last version.
                    None => break,
                    Some(Ok(WatchEvent::Added(pod) | WatchEvent::Modified(pod))) => {
                        version = pod.metadata.resource_version.clone().unwrap_or(version);
                        apply(&shared, &pod);
                    }
                    Some(Ok(WatchEvent::Deleted(pod))) => {
                        version = pod.metadata.resource_version.clone().unwrap_or(version);
                        apply(&shared, &pod);
                        if let Some((name, _)) = sandbox_of(&pod) {
                            shared.tracked.deleted(&name, "was deleted before it ended");
                        }
                    }
                    Some(Ok(WatchEvent::Bookmark(bookmark))) => {
                        version = bookmark.metadata.resource_version;
                    }
                    Some(Ok(WatchEvent::Error(status))) if status.code == 410 => {
                        tracing::info!("the watch's resource version expired; listing again");
                        continue 'list;
                    }
                    Some(Ok(WatchEvent::Error(status))) => {
                        tracing::warn!(message = %status.message, code = status.code, "the pod watch failed");
                        break;
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "the pod watch broke");
                        break;
                    }
                }
            }
        }
    }
}
