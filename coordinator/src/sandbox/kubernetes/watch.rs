//! The watch on the sandbox objects (bare pods, or `agents.x-k8s.io` Sandboxes): one list, then
//! one watch from its resource version, resumed from the last version seen (bookmarks keep it
//! fresh) when the server ends it, and a new list when the version has expired (410 Gone), so no
//! update is lost. Every change goes into [`Tracked`]; an object that ended has its pod's logs
//! kept and is deleted (its Secret goes with it). Pending ones are checked against the limit each
//! second, locally, without a request. A Sandbox that finished with `PodFailed` costs one read of
//! its pod, whose container status tells the exit code, an OOM kill or an eviction.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Pod;
use kube::Resource;
use kube::api::{
    Api, DeleteParams, ListParams, LogParams, PropagationPolicy, WatchEvent, WatchParams,
};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use super::agent_sandbox::{self, Sandbox, SandboxState};
use super::extensions::SandboxClaim;
use super::manifest::{CONTAINER, GRACE_SECS, INSTANCE_LABEL};
use super::status::{PodState, classify};
use super::tracked::{Change, State, Tracked};
use crate::sandbox::{OWNER, OWNER_LABEL, ProviderStatus, SANDBOX_LABEL};

/// How long one watch request lasts before the server ends it (it is then resumed).
const WATCH_SECS: u32 = 290;
/// The wait after a failed list or watch before the next.
const RETRY: Duration = Duration::from_secs(1);

/// What the watcher and the provider share.
#[derive(Debug)]
pub struct Shared {
    pub pods: Api<Pod>,
    /// The Sandboxes, when sandboxes are `agents.x-k8s.io` Sandboxes (else bare pods).
    pub sandboxes: Option<Api<Sandbox>>,
    pub tracked: Tracked,
    pub pending_limit: Duration,
    pub data_dir: std::path::PathBuf,
    /// The label selector of this coordinator's objects.
    pub selector: String,
    /// Sandboxes whose failed pod is being read.
    reading: Mutex<HashSet<String>>,
    /// The claims (of the agent-sandbox extensions), when warm pools are the Sandbox API's.
    pub claim_api: Option<Api<SandboxClaim>>,
    /// Sandbox → the `SandboxClaim` it was handed out to: deleting the sandbox is deleting the
    /// claim (the Sandbox goes with it; deleted alone, the claim would take another).
    pub claims: Mutex<HashMap<String, String>>,
}

impl Shared {
    pub fn new(
        pods: Api<Pod>,
        sandboxes: Option<Api<Sandbox>>,
        pending_limit: Duration,
        data_dir: std::path::PathBuf,
        instance: &str,
        claim_api: Option<Api<SandboxClaim>>,
    ) -> Shared {
        Shared {
            pods,
            sandboxes,
            tracked: Tracked::default(),
            pending_limit,
            data_dir,
            selector: selector(instance),
            reading: Mutex::new(HashSet::new()),
            claim_api,
            claims: Mutex::new(HashMap::new()),
        }
    }

    /// Deletes a sandbox's object (the Sandbox, whose pod and Secret the garbage collector
    /// deletes; or the pod, whose Secret goes with it). A Sandbox a claim holds goes by deleting
    /// the claim.
    pub async fn delete(&self, name: &str) -> Result<(), kube::Error> {
        let known = super::lock(&self.claims).get(name).cloned();
        let claim = match (&self.sandboxes, &self.claim_api, known) {
            (_, _, Some(claim)) => Some(claim),
            // Not seen by the watch yet (a reconcile right after a start): its owner says.
            (Some(sandboxes), Some(_), None) => sandboxes
                .get(name)
                .await?
                .metadata
                .owner_references
                .iter()
                .flatten()
                .find(|o| o.kind == "SandboxClaim" && o.controller == Some(true))
                .map(|o| o.name.clone()),
            _ => None,
        };
        match (&self.sandboxes, &self.claim_api, claim) {
            (Some(_), Some(claims), Some(claim)) => {
                let params = DeleteParams {
                    propagation_policy: Some(PropagationPolicy::Background),
                    ..DeleteParams::default()
                };
                claims.delete(&claim, &params).await.map(|_| ())
            }
            (Some(sandboxes), _, _) => {
                let params = DeleteParams {
                    propagation_policy: Some(PropagationPolicy::Background),
                    ..DeleteParams::default()
                };
                sandboxes.delete(name, &params).await.map(|_| ())
            }
            (None, _, _) => {
                let params = DeleteParams {
                    grace_period_seconds: Some(GRACE_SECS as u32),
                    propagation_policy: Some(PropagationPolicy::Background),
                    ..DeleteParams::default()
                };
                self.pods.delete(name, &params).await.map(|_| ())
            }
        }
    }
}

/// The label selector of every sandbox object of omoi's instance `instance`.
pub fn selector(instance: &str) -> String {
    format!("{OWNER_LABEL}={OWNER},{INSTANCE_LABEL}={instance}")
}

/// What one watched object says of its sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    Now(State),
    /// Ended with a failed pod: the pod's own status tells how.
    PodFailed {
        pod: String,
    },
}

/// An object the watch follows, one per sandbox.
pub trait Watched:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Debug
    + Send
    + Sync
    + 'static
{
    fn observed(&self) -> Observed;
}

impl Watched for Pod {
    fn observed(&self) -> Observed {
        Observed::Now(state_of(self))
    }
}

impl Watched for Sandbox {
    fn observed(&self) -> Observed {
        match agent_sandbox::classify(self) {
            SandboxState::Pending { why } => Observed::Now(State::Pending {
                since: created_at(self),
                why,
            }),
            SandboxState::Running => Observed::Now(State::Running),
            SandboxState::Succeeded => Observed::Now(State::Ended {
                status: ProviderStatus::Exited { code: Some(0) },
                at: Instant::now(),
            }),
            SandboxState::Failed => Observed::PodFailed {
                pod: agent_sandbox::pod_name(self).unwrap_or_default(),
            },
        }
    }
}

fn created_at<K: Resource>(object: &K) -> i64 {
    object
        .meta()
        .creation_timestamp
        .as_ref()
        .map_or_else(now_secs, |t| t.0.as_second())
}

fn sandbox_of<K: Resource>(object: &K) -> Option<(String, String)> {
    let meta = object.meta();
    let name = meta.name.clone()?;
    let sandbox = meta.labels.as_ref()?.get(SANDBOX_LABEL)?.clone();
    Some((name, sandbox))
}

/// The state the watch reports for `pod`.
pub fn state_of(pod: &Pod) -> State {
    match classify(pod) {
        PodState::Pending { why } => State::Pending {
            since: created_at(pod),
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

/// How a Sandbox's failed pod ended, read from the pod.
async fn failed_pod(shared: &Shared, pod: &str) -> State {
    let status = match shared.pods.get(pod).await {
        Ok(pod) => match classify(&pod) {
            PodState::Ended(status) => status,
            _ => ProviderStatus::Lost {
                reason: "its Sandbox reports the pod failed".into(),
            },
        },
        Err(e) => ProviderStatus::Lost {
            reason: format!("its pod failed and cannot be read: {e}"),
        },
    };
    State::Ended {
        status,
        at: Instant::now(),
    }
}

fn record(shared: &Arc<Shared>, name: String, sandbox: &str, state: State) {
    if let Change::Ended { sandbox_id } = shared.tracked.update(&name, sandbox, state) {
        tokio::spawn(finish(shared.clone(), name, sandbox_id, true));
    }
}

/// Applies one object's news; ends its sandbox when it ended.
fn apply<K: Watched>(shared: &Arc<Shared>, object: &K) {
    let Some((name, sandbox)) = sandbox_of(object) else {
        return;
    };
    let claim = object
        .meta()
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.kind == "SandboxClaim" && o.controller == Some(true));
    if let Some(claim) = claim {
        super::lock(&shared.claims)
            .entry(name.clone())
            .or_insert_with(|| claim.name.clone());
    }
    match object.observed() {
        Observed::Now(state) => record(shared, name, &sandbox, state),
        Observed::PodFailed { pod } => {
            let first = !shared.tracked.has_ended(&name)
                && super::lock(&shared.reading).insert(name.clone());
            if first {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let state = failed_pod(&shared, &pod).await;
                    super::lock(&shared.reading).remove(&name);
                    record(&shared, name, &sandbox, state);
                });
            }
        }
    }
}

/// Keeps the logs of an ended pod (when `logs`) and deletes it.
pub async fn finish(shared: Arc<Shared>, name: String, sandbox_id: String, logs: bool) {
    if logs {
        keep_logs(&shared, &name, &sandbox_id).await;
    }
    // The pod must go (its Secret goes with it): a failed delete is tried again, five times in
    // about six seconds; after that the next start's reconcile finds it.
    let mut delay = Duration::from_millis(200);
    for attempt in 1..=5 {
        match shared.delete(&name).await {
            Ok(()) => return,
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

/// Lists the objects, applies them, and answers the list's resource version. One tracked before
/// the list began that the list does not show was deleted meanwhile.
async fn relist<K: Watched>(shared: &Arc<Shared>, api: &Api<K>) -> Result<String, kube::Error> {
    let started = Instant::now();
    let list = api
        .list(&ListParams::default().labels(&shared.selector))
        .await?;
    let mut seen = HashSet::new();
    for object in &list.items {
        if let Some((name, _)) = sandbox_of(object) {
            seen.insert(name);
        }
        apply(shared, object);
    }
    for name in shared.tracked.live_before(started) {
        if !seen.contains(&name) {
            shared.tracked.deleted(&name, "was deleted before it ended");
        }
    }
    Ok(list.metadata.resource_version.unwrap_or_default())
}

/// Runs until `stop`: list, watch, resume, relist on 410.
pub async fn run<K: Watched>(shared: Arc<Shared>, api: Api<K>, stop: CancellationToken) {
    let mut sweep = tokio::time::interval(Duration::from_secs(1));
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    'list: loop {
        let mut version = tokio::select! {
            () = stop.cancelled() => return,
            listed = relist(&shared, &api) => match listed {
                Ok(version) => version,
                Err(e) => {
                    tracing::warn!(error = %e, "listing the sandbox objects failed");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(RETRY) => continue 'list,
                    }
                }
            },
        };
        loop {
            let params = WatchParams::default()
                .labels(&shared.selector)
                .timeout(WATCH_SECS);
            let params = WatchParams {
                bookmarks: true,
                ..params
            };
            let stream = match api.watch(&params, &version).await {
                Ok(stream) => stream,
                Err(kube::Error::Api(status)) if status.code == 410 => continue 'list,
                Err(e) => {
                    tracing::warn!(error = %e, "watching the sandbox objects failed");
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
                            tracing::warn!(object = %name, "a sandbox pending too long is deleted");
                            tokio::spawn(finish(shared.clone(), name, sandbox_id, false));
                        }
                        continue;
                    }
                    event = stream.next() => event,
                };
                match event {
                    // The server ended the watch: resume from the last version.
                    None => break,
                    Some(Ok(WatchEvent::Added(object) | WatchEvent::Modified(object))) => {
                        version = object.meta().resource_version.clone().unwrap_or(version);
                        apply(&shared, &object);
                    }
                    Some(Ok(WatchEvent::Deleted(object))) => {
                        version = object.meta().resource_version.clone().unwrap_or(version);
                        apply(&shared, &object);
                        if let Some((name, _)) = sandbox_of(&object) {
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
                        tracing::warn!(message = %status.message, code = status.code, "the sandbox watch failed");
                        break;
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "the sandbox watch broke");
                        break;
                    }
                }
            }
        }
    }
}
