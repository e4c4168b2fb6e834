//! Sandbox providers: where workers run. One small trait; `local` runs the worker as a child
//! process, `docker` as a container over the Docker Engine API, `kubernetes` as a pod over the
//! Kubernetes API, `daytona` as a Daytona sandbox over its REST API. A provider knows nothing of the
//! coordinator's state: what a sandbox needs (environment, labels) comes in its `SpawnRequest`,
//! built by `crate::launch`.

pub mod daytona;
pub mod docker;
pub mod kubernetes;
pub mod local;
pub mod warm;

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use self::daytona::{DaytonaConfig, DaytonaProvider};
use self::docker::{DockerConfig, DockerProvider};
use self::kubernetes::{KubernetesConfig, KubernetesProvider};
use self::local::LocalProvider;
pub use crate::error::SandboxError;

/// The label every sandbox of this coordinator carries, for reconcile.
pub const OWNER_LABEL: &str = "omoi.owner";
/// The value of [`OWNER_LABEL`] on every sandbox of an omoi coordinator.
pub const OWNER: &str = "omoi";
/// The label that names the coordinator's sandbox id.
pub const SANDBOX_LABEL: &str = "omoi.sandbox";
/// The label that names the spec a sandbox runs.
pub const SPEC_LABEL: &str = "omoi.spec";
/// The label that names the task a sandbox runs (the coordinator's task id).
pub const TASK_LABEL: &str = "omoi.task";
/// The label that names the coordinator instance whose sandbox it is (`--instance`; docker and
/// kubernetes).
pub const INSTANCE_LABEL: &str = "omoi.instance";
/// The label that marks a standby sandbox of a warm pool; its value is [`pool_label_value`] (a
/// Kubernetes pool's objects carry the pool's object name instead).
pub const POOL_LABEL: &str = "omoi.pool";

/// The value of [`POOL_LABEL`] for the pool of `image` (`""`: the provider's default): `default`,
/// or `image-` and 16 hex digits of the image's SHA-256, since an image reference (`/`, `:`,
/// `@`, up to 255 characters) is no label value.
pub fn pool_label_value(image: &str) -> String {
    use sha2::{Digest, Sha256};
    if image.is_empty() {
        return "default".to_string();
    }
    let digest = Sha256::digest(image.as_bytes());
    format!("image-{}", crate::token::hex(&digest[..8]))
}

/// Resource limits of a sandbox (providers that cannot enforce them ignore them).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    pub memory_mb: Option<u64>,
    pub cpus: Option<f64>,
}

/// Everything a provider needs to start one sandbox.
#[derive(Debug, Clone, PartialEq)]
pub struct SpawnRequest {
    /// The coordinator's id of the sandbox.
    pub sandbox_id: String,
    /// The image with the worker (container providers).
    pub image: Option<String>,
    /// Secrets the image is pulled with (kubernetes); empty: the provider's default.
    pub image_pull_secrets: Vec<String>,
    /// The worker's environment (DESIGN §3.2); `WORKSPACE` is set by the provider.
    pub env: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub limits: Limits,
    /// The repository the workspace starts from: a git URL, or a local path (git or plain).
    pub repo: Option<String>,
}

impl SpawnRequest {
    /// The labels of the sandbox: the request's, and the sandbox and spec when they are not
    /// among them.
    pub fn sandbox_labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.labels.clone();
        labels
            .entry(SANDBOX_LABEL.to_string())
            .or_insert_with(|| self.sandbox_id.clone());
        if let Some(spec) = self.env.get(omoi_protocol::env::SPEC_ID) {
            labels
                .entry(SPEC_LABEL.to_string())
                .or_insert_with(|| spec.clone());
        }
        labels
    }
}

/// A spawned sandbox as the provider names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxHandle(pub String);

/// What the provider knows about a sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderStatus {
    Running,
    /// Ended; the exit code when the provider knows it.
    Exited {
        code: Option<i32>,
    },
    /// Killed because it reached its memory limit (the limit in MiB when the provider knows it).
    OutOfMemory {
        limit_mb: Option<u64>,
    },
    /// The provider gave up on it without the worker ending (a pod pending too long, evicted,
    /// past its deadline), with the reason in words.
    Lost {
        reason: String,
    },
    /// The provider has no such sandbox (never spawned, or removed).
    NotFound,
}

impl fmt::Display for ProviderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProviderStatus::Running => f.write_str("running"),
            ProviderStatus::Exited { code: Some(code) } => write!(f, "exited with code {code}"),
            ProviderStatus::Exited { code: None } => f.write_str("exited"),
            ProviderStatus::OutOfMemory {
                limit_mb: Some(limit),
            } => write!(f, "was killed: out of memory (limit {limit} MiB)"),
            ProviderStatus::OutOfMemory { limit_mb: None } => {
                f.write_str("was killed: out of memory")
            }
            ProviderStatus::Lost { reason } => write!(f, "was lost: {reason}"),
            ProviderStatus::NotFound => f.write_str("not found"),
        }
    }
}

/// A sandbox found by [`Provider::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedSandbox {
    pub handle: SandboxHandle,
    pub labels: BTreeMap<String, String>,
    pub status: ProviderStatus,
}

/// A place where sandboxes run.
pub trait Provider: Send + Sync + fmt::Debug {
    /// `local`, `docker`, `kubernetes`, `daytona`.
    fn name(&self) -> &'static str;

    /// Starts a sandbox; returns once the worker process has started.
    fn spawn(&self, request: SpawnRequest) -> BoxFuture<'_, Result<SandboxHandle, SandboxError>>;

    /// Whether the sandbox still runs.
    fn status<'a>(
        &'a self,
        handle: &'a SandboxHandle,
    ) -> BoxFuture<'a, Result<ProviderStatus, SandboxError>>;

    /// Stops the sandbox (SIGTERM, then kill after a grace period) and frees its resources.
    /// Terminating an ended or unknown sandbox is not an error.
    fn terminate<'a>(
        &'a self,
        handle: &'a SandboxHandle,
    ) -> BoxFuture<'a, Result<(), SandboxError>>;

    /// The sandboxes that carry every one of `labels`.
    fn list<'a>(
        &'a self,
        labels: &'a BTreeMap<String, String>,
    ) -> BoxFuture<'a, Result<Vec<ListedSandbox>, SandboxError>>;

    /// Where this provider's sandboxes live, named so that another coordinator's provider with
    /// the same scope can watch, use and stop them by their handles: a replica takes over the
    /// waiting standbys of a lost replica of the same scope, and ends those of any other.
    /// `None` (the default): no other coordinator can manage them.
    fn scope(&self) -> Option<String> {
        None
    }

    /// The address at which sandboxes reach this host, when it is not the host's own (a container
    /// network's gateway): the server also listens there. `None` for sandboxes on the host.
    fn sandbox_host(&self) -> Option<IpAddr> {
        None
    }

    /// Waits up to `grace` for the sandboxes still running to end, then frees what the provider
    /// set up for all of them (the docker provider's network); answers the sandboxes still
    /// running. For a coordinator that goes away with its sandboxes (the demo): `omoi serve`
    /// leaves its sandboxes running, to be adopted when it starts again.
    fn close(&self, grace: Duration) -> BoxFuture<'_, Result<Vec<String>, SandboxError>> {
        let _ = grace;
        futures_util::future::ready(Ok(Vec::new())).boxed()
    }

    /// Whether the worker clones the project's repository itself (the sandbox shares no disk with
    /// this host): spec sandboxes then get `OMOI_REPO_URL` and the git token, and a project must
    /// name a git URL.
    fn clones_repository(&self) -> bool {
        false
    }

    /// The warm pools this provider keeps itself, when it does (the kubernetes provider in
    /// Sandbox mode where the agent-sandbox extensions are installed); `None`: the coordinator
    /// spawns its standbys one by one.
    fn warm_pools(&self) -> Option<&dyn warm::WarmPools> {
        None
    }

    /// Readies the repository `repo` before a standby is claimed for it, so that
    /// [`Provider::place_repository`] has less to do and a repository that cannot be read fails
    /// with no standby taken (the docker provider packs it, or finds it packed). The default
    /// does nothing.
    fn prepare_repository<'a>(&'a self, repo: &'a str) -> BoxFuture<'a, Result<(), SandboxError>> {
        let _ = repo;
        futures_util::future::ready(Ok(())).boxed()
    }

    /// Puts the repository `repo` (as [`SpawnRequest::repo`] names it) into the workspace of a
    /// running sandbox that started without one: a warm pool's standby sandbox, once claimed.
    /// Providers whose worker clones the repository itself never get this call; the default
    /// refuses, so a provider without it falls back to cold starts for spec sandboxes.
    fn place_repository<'a>(
        &'a self,
        handle: &'a SandboxHandle,
        repo: &'a str,
    ) -> BoxFuture<'a, Result<(), SandboxError>> {
        let _ = repo;
        futures_util::future::ready(Err(SandboxError::Provider(format!(
            "the {} provider cannot put a repository into the running sandbox {}",
            self.name(),
            handle.0
        ))))
        .boxed()
    }
}

/// Which provider runs the sandboxes, and its settings.
#[derive(Debug, Clone, PartialEq)]
pub enum ProviderConfig {
    /// Child processes of `worker_bin`, with workspaces and logs under `data_dir`.
    Local {
        worker_bin: PathBuf,
        data_dir: PathBuf,
    },
    /// Containers over the Docker Engine API.
    Docker(DockerConfig),
    /// Pods over the Kubernetes API; the namespace, when `None`, is the cluster configuration's.
    Kubernetes {
        config: KubernetesConfig,
        namespace: Option<String>,
    },
    /// Sandboxes over Daytona's REST API, made from one snapshot.
    Daytona(DaytonaConfig),
}

/// The provider `config` describes, connected and ready to spawn.
pub async fn build(config: &ProviderConfig) -> Result<Arc<dyn Provider>, SandboxError> {
    Ok(match config {
        ProviderConfig::Local {
            worker_bin,
            data_dir,
        } => Arc::new(LocalProvider::new(worker_bin.clone(), data_dir)),
        ProviderConfig::Docker(docker) => Arc::new(DockerProvider::connect(docker.clone()).await?),
        ProviderConfig::Kubernetes { config, namespace } => {
            Arc::new(KubernetesProvider::connect(config.clone(), namespace.clone()).await?)
        }
        ProviderConfig::Daytona(config) => Arc::new(DaytonaProvider::start(config.clone()).await?),
    })
}

/// This machine's current boot (`/proc/sys/kernel/random/boot_id`): processes, local paths and a
/// local Engine's socket mean the same only to coordinators of one boot of one machine.
pub(crate) fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|id| id.trim().to_string())
        .filter(|id| !id.is_empty())
}

#[cfg(test)]
mod pool_label_tests {
    use super::kubernetes::manifest::is_label_value;
    use super::pool_label_value;

    #[test]
    fn every_image_gives_a_short_distinct_label_value() {
        assert_eq!(pool_label_value(""), "default");
        let images = [
            "ghcr.io/acme/omoi-sandbox:2",
            "ghcr.io/acme/omoi-sandbox:3",
            "registry.example:5000/a/b@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "UPPER/case",
            "-leading-dash",
        ];
        let values: Vec<String> = images.iter().map(|i| pool_label_value(i)).collect();
        for (image, value) in images.iter().zip(&values) {
            assert!(is_label_value(value), "{image} -> {value}");
            assert_eq!(value.len(), "image-".len() + 16);
        }
        let distinct: std::collections::BTreeSet<&String> = values.iter().collect();
        assert_eq!(distinct.len(), images.len());
        assert_eq!(pool_label_value(images[0]), values[0]);
    }
}
