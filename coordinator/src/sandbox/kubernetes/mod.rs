//! The `kubernetes` provider: every sandbox is a Pod in one namespace (or an `agents.x-k8s.io`
//! `Sandbox` whose controller makes that Pod), made, watched and deleted over the Kubernetes API
//! (kube-rs), configured the standard way (kubeconfig, else the in-cluster service account).
//!
//! - **Pod.** `omoi-<sandbox id>`, restart policy `Never`, a deadline, requests equal to limits,
//!   hardened (see [`manifest`]); the image is the project's, else `--image`. In Sandbox mode the
//!   same pod spec is the Sandbox's `spec.podTemplate`, and the Sandbox is what is created,
//!   watched (its `Ready` and `Finished` conditions) and deleted.
//! - **Secret.** The worker's whole environment is in `omoi-<sandbox id>-env`, which the pod reads
//!   with `envFrom` and which the Pod owns (the garbage collector deletes it with the pod); the pod
//!   spec holds no value of it. The pod is created first, so the Secret can name its uid; the
//!   kubelet waits for the Secret before it starts the container.
//! - **Repository.** No shared disk: the worker clones `repo_url` itself (`OMOI_REPO_URL`), and a
//!   project's local path is refused.
//! - **Liveness.** One watch on the pods labelled `omoi.owner=omoi` (see [`watch`]); `status`
//!   answers from what it told, without a request. A pod pending past the limit, failed, evicted,
//!   OOM-killed or past its deadline ends as lost with the reason; the exit code comes from the
//!   container's status; the logs are kept in `<data-dir>/sandboxes/<id>/sandbox.log`; the pod is
//!   then deleted.
//! - **Answers.** kube's client retries 429, 503 and 504; a create answered 500 is sent again, and
//!   one answered 409 is adopted when the pod there is this sandbox's (an earlier try went through).
//!   The whole spawn has a deadline over all these retries.
//! - **Instance.** Every object carries `omoi.instance=<--instance>`; the watch, the list and so
//!   reconcile see only their own coordinator's.

pub mod agent_sandbox;
pub mod extensions;
pub mod manifest;
pub mod pools;
pub mod preflight;
pub mod status;
pub mod tracked;
pub mod watch;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use std::sync::Mutex;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, Resource};
use tokio_util::sync::CancellationToken;

use self::agent_sandbox::Sandbox;
use self::manifest::{DEFAULT_INSTANCE, INSTANCE_LABEL, Owner};
use self::preflight::message;
use self::watch::{Observed, Shared, Watched, finish, keep_logs, now_secs};
use super::{
    Limits, ListedSandbox, Provider, ProviderStatus, SANDBOX_LABEL, SandboxError, SandboxHandle,
    SpawnRequest,
};
use crate::repo::is_local;

/// The image sandboxes run when neither the project nor the settings name one.
pub const DEFAULT_IMAGE: &str = "omoi-sandbox:latest";

/// Which API a sandbox is made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KubernetesApi {
    /// A bare Pod per sandbox.
    Pod,
    /// An `agents.x-k8s.io/v1beta1` `Sandbox` per sandbox (kubernetes-sigs/agent-sandbox).
    Sandbox,
}

/// How the kubernetes provider runs sandboxes.
#[derive(Debug, Clone, PartialEq)]
pub struct KubernetesConfig {
    /// The namespace of every sandbox (`--namespace`, else the configuration's default).
    pub namespace: String,
    /// The image of sandboxes whose project names none.
    pub image: String,
    /// Secrets of the namespace the kubelet pulls images with.
    pub image_pull_secrets: Vec<String>,
    /// The limits (and requests) of sandboxes whose spawn request sets none.
    pub limits: Limits,
    /// `activeDeadlineSeconds` of every pod.
    pub deadline_secs: u64,
    /// How long a pod may stay pending (unschedulable, pulling its image) before it is lost.
    pub pending_limit: Duration,
    /// Per sandbox `sandboxes/<id>/sandbox.log`, kept when its pod ends.
    pub data_dir: PathBuf,
    pub api: KubernetesApi,
    /// The value of `omoi.instance` on every object (`--instance`): what this coordinator
    /// watches, lists and reconciles.
    pub instance: String,
    /// The longest a spawn waits for the API server, over kube's retries and its own.
    pub spawn_deadline: Duration,
}

impl KubernetesConfig {
    /// The defaults: `omoi-sandbox:latest`, 2 GiB and 2 CPUs, a 6 h deadline, 5 min pending, the
    /// instance `default`, 60 s to spawn.
    pub fn new(namespace: String, data_dir: PathBuf) -> KubernetesConfig {
        KubernetesConfig {
            namespace,
            image: DEFAULT_IMAGE.to_string(),
            image_pull_secrets: Vec::new(),
            limits: Limits {
                memory_mb: Some(2048),
                cpus: Some(2.0),
            },
            deadline_secs: 6 * 3600,
            pending_limit: Duration::from_secs(300),
            data_dir,
            api: KubernetesApi::Pod,
            instance: DEFAULT_INSTANCE.to_string(),
            spawn_deadline: Duration::from_secs(60),
        }
    }
}

/// Runs sandboxes as pods of one namespace.
#[derive(Debug, Clone)]
pub struct KubernetesProvider {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: KubernetesConfig,
    secrets: Api<Secret>,
    /// The pods (Pod mode).
    pods: Api<Pod>,
    shared: Arc<Shared>,
    stop: CancellationToken,
    /// The Sandbox API's warm pools, where the extensions are served (Sandbox mode).
    pools: Option<pools::Pools>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// How many times a create answered 500 is sent.
const CREATE_TRIES: u32 = 4;

impl KubernetesProvider {
    /// Finds the cluster the standard way (kubeconfig: `KUBECONFIG` or `~/.kube/config`; else the
    /// in-cluster service account), then [`KubernetesProvider::start`]. `namespace` unset takes
    /// the configuration's default.
    pub async fn connect(
        mut config: KubernetesConfig,
        namespace: Option<String>,
    ) -> Result<KubernetesProvider, SandboxError> {
        let found = kube::Config::infer().await.map_err(|e| {
            SandboxError::Provider(format!(
                "kubernetes: no cluster configuration (no usable kubeconfig, and not running in a \
                 cluster): {e}"
            ))
        })?;
        config.namespace = namespace.unwrap_or_else(|| found.default_namespace.clone());
        let url = found.cluster_url.to_string();
        let client = Client::try_from(found)
            .map_err(|e| SandboxError::Provider(format!("kubernetes: a client for {url}: {e}")))?;
        KubernetesProvider::start(client, config).await
    }

    /// Checks the namespace and the permissions (see [`preflight`]), then starts the watch.
    pub async fn start(
        client: Client,
        config: KubernetesConfig,
    ) -> Result<KubernetesProvider, SandboxError> {
        if !manifest::is_dns_label(&config.namespace) {
            return Err(SandboxError::Provider(format!(
                "kubernetes: the namespace {:?} is not a DNS label",
                config.namespace
            )));
        }
        if !manifest::is_label_value(&config.instance) || config.instance.is_empty() {
            return Err(SandboxError::Provider(format!(
                "kubernetes: the instance {:?} is not a label value",
                config.instance
            )));
        }
        preflight::check(&client, &config.namespace, config.api).await?;
        let pods: Api<Pod> = Api::namespaced(client.clone(), &config.namespace);
        let sandboxes: Option<Api<Sandbox>> = (config.api == KubernetesApi::Sandbox)
            .then(|| Api::namespaced(client.clone(), &config.namespace));
        let extensions =
            config.api == KubernetesApi::Sandbox && extensions_usable(&client, &config).await?;
        let shared = Arc::new(Shared::new(
            pods.clone(),
            sandboxes.clone(),
            config.pending_limit,
            config.data_dir.clone(),
            &config.instance,
            extensions.then(|| Api::namespaced(client.clone(), &config.namespace)),
        ));
        let pools =
            extensions.then(|| pools::Pools::new(client.clone(), config.clone(), shared.clone()));
        let stop = CancellationToken::new();
        match sandboxes {
            Some(sandboxes) => tokio::spawn(watch::run(shared.clone(), sandboxes, stop.clone())),
            None => tokio::spawn(watch::run(shared.clone(), pods.clone(), stop.clone())),
        };
        tracing::info!(namespace = %config.namespace, api = ?config.api, instance = %config.instance,
            "kubernetes provider connected");
        Ok(KubernetesProvider {
            inner: Arc::new(Inner {
                secrets: Api::namespaced(client, &config.namespace),
                pods,
                config,
                shared,
                stop,
                pools,
            }),
        })
    }

    /// Stops the watch (the pods are left as they are).
    pub fn close(&self) {
        self.inner.stop.cancel();
    }

    /// The log of one sandbox, written when its pod ended.
    pub fn log_path(&self, sandbox_id: &str) -> PathBuf {
        self.inner
            .config
            .data_dir
            .join("sandboxes")
            .join(sandbox_id)
            .join("sandbox.log")
    }

    async fn spawn_inner(&self, request: SpawnRequest) -> Result<SandboxHandle, SandboxError> {
        let id = request.sandbox_id.clone();
        let failed = |reason: String| SandboxError::Spawn {
            sandbox_id: id.clone(),
            reason,
        };
        if let Some(repo) = request.repo.as_deref().filter(|r| is_local(r)) {
            return Err(failed(format!(
                "the repository {repo:?} is a path on the coordinator's machine, which a pod \
                 cannot reach; the project must name a git URL"
            )));
        }
        manifest::check(&request, &self.inner.config.instance).map_err(failed)?;
        let name = manifest::pod_name(&id);
        let last = Mutex::new(None);
        let deadline = self.inner.config.spawn_deadline;
        match tokio::time::timeout(deadline, self.create_objects(&request, &name, &last)).await {
            Ok(Ok(())) => {
                tracing::info!(sandbox = %id, name = %name, "kubernetes sandbox created");
                Ok(SandboxHandle(name))
            }
            Ok(Err(reason)) => Err(failed(reason)),
            Err(_) => {
                // Whatever went through meanwhile is deleted (a 404 is fine).
                let shared = self.inner.shared.clone();
                shared.tracked.forget(&name);
                tokio::spawn(finish(shared, name.clone(), id.clone(), false));
                let last = lock(&last)
                    .clone()
                    .map(|m| format!("the last answer: {m}"))
                    .unwrap_or_else(|| {
                        "the client was still retrying answers of 429, 503 or 504".to_string()
                    });
                Err(failed(format!(
                    "the API server did not take {name} within the spawn deadline of {} ({last})",
                    duration_words(deadline)
                )))
            }
        }
    }

    /// Creates the sandbox's object (Pod or Sandbox), then its Secret owned by it; a failed
    /// Secret deletes the object again.
    async fn create_objects(
        &self,
        request: &SpawnRequest,
        name: &str,
        last: &Mutex<Option<String>>,
    ) -> Result<(), String> {
        let config = &self.inner.config;
        let shared = &self.inner.shared;
        let id = &request.sandbox_id;
        let owner = match &shared.sandboxes {
            Some(sandboxes) => {
                let made = create(sandboxes, &manifest::sandbox(request, config), id, last)
                    .await
                    .map_err(|e| format!("creating the Sandbox {name}: {}", message(&e)))?;
                Owner {
                    api_version: Sandbox::api_version(&()).to_string(),
                    kind: Sandbox::kind(&()).to_string(),
                    name: name.to_string(),
                    uid: made.metadata.uid.unwrap_or_default(),
                }
            }
            None => {
                let made = create(&self.inner.pods, &manifest::pod(request, config), id, last)
                    .await
                    .map_err(|e| format!("creating the pod {name}: {}", message(&e)))?;
                Owner {
                    api_version: Pod::api_version(&()).to_string(),
                    kind: Pod::kind(&()).to_string(),
                    name: name.to_string(),
                    uid: made.metadata.uid.unwrap_or_default(),
                }
            }
        };
        shared.tracked.created(name, id, now_secs());
        let secret = manifest::secret(request, config, &owner);
        if let Err(e) = create(&self.inner.secrets, &secret, id, last).await {
            shared.tracked.forget(name);
            finish(shared.clone(), name.to_string(), id.clone(), false).await;
            return Err(format!("creating the Secret of {name}: {}", message(&e)));
        }
        Ok(())
    }

    async fn terminate_inner(&self, handle: &SandboxHandle) -> Result<(), SandboxError> {
        let shared = &self.inner.shared;
        if shared.tracked.terminating(&handle.0) {
            let sandbox_id = shared.tracked.sandbox_id(&handle.0).unwrap_or_else(|| {
                handle
                    .0
                    .strip_prefix("omoi-")
                    .unwrap_or(&handle.0)
                    .to_string()
            });
            keep_logs(shared, &handle.0, &sandbox_id).await;
        }
        match shared.delete(&handle.0).await {
            Ok(()) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(e) => Err(SandboxError::Provider(format!(
                "kubernetes: deleting {}: {}",
                handle.0,
                message(&e)
            ))),
        }
    }

    async fn list_inner(
        &self,
        labels: &BTreeMap<String, String>,
    ) -> Result<Vec<ListedSandbox>, SandboxError> {
        let mut labels = labels.clone();
        labels.insert(
            INSTANCE_LABEL.to_string(),
            self.inner.config.instance.clone(),
        );
        let selector: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let params = ListParams::default().labels(&selector.join(","));
        let failed = |e: kube::Error| {
            SandboxError::Provider(format!("kubernetes: listing sandboxes: {}", message(&e)))
        };
        let mut sandboxes = match &self.inner.shared.sandboxes {
            Some(api) => listed(api.list(&params).await.map_err(failed)?.items),
            None => listed(self.inner.pods.list(&params).await.map_err(failed)?.items),
        };
        sandboxes.sort_by(|a, b| a.handle.0.cmp(&b.handle.0));
        Ok(sandboxes)
    }
}

/// Whether warm pools are the Sandbox API's: the extensions served and every verb they need
/// allowed; logs which pools are used, and why not the extensions'.
async fn extensions_usable(
    client: &Client,
    config: &KubernetesConfig,
) -> Result<bool, SandboxError> {
    if !pools::served(client).await {
        tracing::info!(
            "agent-sandbox extensions not served: warm pools are standby Sandboxes of the \
             coordinator's own"
        );
        return Ok(false);
    }
    let refused =
        preflight::refused(client, &config.namespace, &preflight::EXTENSION_PERMISSIONS).await?;
    if !refused.is_empty() {
        tracing::warn!(refused = %refused.join(", "),
            "agent-sandbox extensions served, but RBAC refuses what their warm pools need: \
             warm pools are standby Sandboxes of the coordinator's own");
        return Ok(false);
    }
    tracing::info!(
        "agent-sandbox extensions served: warm pools are SandboxWarmPools, warm starts \
         SandboxClaims"
    );
    Ok(true)
}

/// What a list of pods or Sandboxes says of their sandboxes.
fn listed<K: Watched>(items: Vec<K>) -> Vec<ListedSandbox> {
    items
        .iter()
        .filter_map(|object| {
            let meta = object.meta();
            let name = meta.name.clone()?;
            let labels: BTreeMap<String, String> = meta
                .labels
                .clone()
                .unwrap_or_default()
                .into_iter()
                .filter(|(k, _)| k.starts_with("omoi."))
                .collect();
            let status = match object.observed() {
                Observed::Now(tracked::State::Ended { status, .. }) => status,
                Observed::PodFailed { .. } => ProviderStatus::Exited { code: None },
                Observed::Now(_) => ProviderStatus::Running,
            };
            Some(ListedSandbox {
                handle: SandboxHandle(name),
                labels,
                status,
            })
        })
        .collect()
}

/// `2 s`, or `300 ms` below a whole second.
fn duration_words(duration: Duration) -> String {
    if duration.subsec_millis() == 0 {
        format!("{} s", duration.as_secs())
    } else {
        format!("{} ms", duration.as_millis())
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data; carry on with it.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Creates `object`: a 500 is tried again (up to [`CREATE_TRIES`] times); a 409 answers the object
/// there when it carries `sandbox_id`'s label (an earlier try that went through). Every refusal
/// seen is written to `last` (for the spawn deadline's message).
async fn create<K>(
    api: &Api<K>,
    object: &K,
    sandbox_id: &str,
    last: &Mutex<Option<String>>,
) -> Result<K, kube::Error>
where
    K: Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut delay = Duration::from_millis(100);
    let mut tries = 0;
    loop {
        tries += 1;
        match api.create(&PostParams::default(), object).await {
            Err(kube::Error::Api(status)) if status.code == 500 && tries < CREATE_TRIES => {
                *lock(last) = Some(format!("{} ({})", status.message, status.code));
                tracing::warn!(message = %status.message, "the API server answered 500; trying again");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {
                let name = object.meta().name.clone().unwrap_or_default();
                let there = api.get(&name).await?;
                let ours = there
                    .meta()
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(SANDBOX_LABEL))
                    .is_some_and(|s| s == sandbox_id);
                if ours {
                    return Ok(there);
                }
                return Err(kube::Error::Api(status));
            }
            other => return other,
        }
    }
}

impl Provider for KubernetesProvider {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    fn scope(&self) -> Option<String> {
        // Replicas of one deployment share the namespace and the instance (they watch and list
        // the same objects). Another cluster under the same names is told apart by its answers:
        // a standby adopted there is "not found" and ended at the next upkeep.
        let api = match self.inner.config.api {
            KubernetesApi::Pod => "pod",
            KubernetesApi::Sandbox => "sandbox",
        };
        Some(format!(
            "kubernetes:{api}:{}:{}",
            self.inner.config.namespace, self.inner.config.instance
        ))
    }

    fn spawn(&self, request: SpawnRequest) -> BoxFuture<'_, Result<SandboxHandle, SandboxError>> {
        self.spawn_inner(request).boxed()
    }

    fn status<'a>(
        &'a self,
        handle: &'a SandboxHandle,
    ) -> BoxFuture<'a, Result<ProviderStatus, SandboxError>> {
        async move {
            Ok(self
                .inner
                .shared
                .tracked
                .status(&handle.0)
                .unwrap_or(ProviderStatus::NotFound))
        }
        .boxed()
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

    fn clones_repository(&self) -> bool {
        true
    }

    fn warm_pools(&self) -> Option<&dyn crate::sandbox::warm::WarmPools> {
        self.inner
            .pools
            .as_ref()
            .map(|p| p as &dyn crate::sandbox::warm::WarmPools)
    }
}
