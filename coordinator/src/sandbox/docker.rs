//! The `docker` provider: every sandbox is a container of the sandbox image, created, filled,
//! watched and removed over the Docker Engine API (bollard, on the Engine's unix socket).
//!
//! - **Network.** One user-defined bridge network per coordinator instance, `omoi-<instance>`,
//!   made on [`DockerProvider::connect`]. Containers on it cannot reach each other (ICC off); they
//!   reach the coordinator at the network's gateway, the host's address on that bridge, which
//!   [`DockerProvider::gateway`] tells (the coordinator listens there and hands
//!   `http://<gateway>:<port>` to workers as `OMOIOS_API_URL`).
//! - **Container.** The image's unprivileged user, a read-only root filesystem, tmpfs `/tmp` and
//!   home, an anonymous volume at `/work`; all capabilities dropped, `no-new-privileges`, memory
//!   (without swap), CPU and process limits; no host mounts. Secrets arrive only in the
//!   environment. See [`container`].
//! - **Repository.** Uploaded as a tar archive (`PUT /containers/{id}/archive`) into `/work`
//!   before the container starts (or, for a claimed standby, while it runs); the worker finds
//!   it at `/work/repo` (`WORKSPACE`). Packed archives are kept per repository and state of its
//!   refs ([`repo_cache`]), so a start only uploads.
//! - **End.** A watcher per container keeps its logs in `<data-dir>/sandboxes/<id>/sandbox.log`
//!   and how it ended (exit code, killed at its memory limit) in `exit.json`, then removes the
//!   container and its volume. See [`exit`].
//! - **Labels.** The request's (`omoi.owner`, `omoi.sandbox`, `omoi.spec`, `omoi.task`) and
//!   `omoi.instance`, a random id kept in the data directory: [`Provider::list`] only sees this
//!   instance's containers, so coordinators sharing an Engine never reconcile each other's away.

pub mod archive;
pub mod container;
pub mod exit;
pub mod repo_cache;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as EngineError;
use bollard::models::{ContainerSummaryStateEnum, Ipam, NetworkCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use self::exit::ExitWatchers;
use self::repo_cache::{CacheLimits, RepoCache};
pub use super::TASK_LABEL;
use super::{
    Limits, ListedSandbox, OWNER, OWNER_LABEL, Provider, ProviderStatus, SandboxError,
    SandboxHandle, SpawnRequest,
};

/// The label naming the coordinator instance (its data directory) a container belongs to.
pub use super::INSTANCE_LABEL;
/// The image sandboxes run when neither the project nor the settings name one.
pub const DEFAULT_IMAGE: &str = "omoi-sandbox:latest";
/// The Engine's socket when nothing else is said.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// The file in the data directory that holds this coordinator's instance id.
const INSTANCE_FILE: &str = "docker-instance";
/// How long a terminated container gets to drain its events before the Engine kills it.
const TERMINATE_GRACE_SECS: i32 = 5;
/// How long `terminate` waits for the stopped container's logs to be kept and it to be removed.
const REMOVAL_WAIT: Duration = Duration::from_secs(30);
/// The Engine's answers (not the long-polls) must come within this.
const ENGINE_TIMEOUT_SECS: u64 = 120;

/// A file copied into every sandbox at `/work/<name>` (e.g. the scripted model's script).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxFile {
    pub source: PathBuf,
    pub name: String,
}

/// How the docker provider runs sandboxes.
#[derive(Debug, Clone, PartialEq)]
pub struct DockerConfig {
    /// The Engine's unix socket.
    pub socket: PathBuf,
    /// The image of sandboxes whose project names none.
    pub image: String,
    /// The coordinator's data directory: the instance id, and per sandbox
    /// `sandboxes/<id>/{sandbox.log, exit.json}`.
    pub data_dir: PathBuf,
    /// The limits of sandboxes whose spawn request sets none.
    pub limits: Limits,
    /// The most processes (and threads) one sandbox may run.
    pub pids_limit: i64,
    /// Files copied into every sandbox's `/work`.
    pub files: Vec<SandboxFile>,
    /// How many packed repositories are kept between sandboxes.
    pub repo_cache: CacheLimits,
}

impl DockerConfig {
    /// The defaults: the local Engine, `omoi-sandbox:latest`, 2 GiB, 2 CPUs, 1024 processes.
    pub fn new(data_dir: PathBuf) -> DockerConfig {
        DockerConfig {
            socket: PathBuf::from(DEFAULT_SOCKET),
            image: DEFAULT_IMAGE.to_string(),
            data_dir,
            limits: Limits {
                memory_mb: Some(2048),
                cpus: Some(2.0),
            },
            pids_limit: 1024,
            files: Vec::new(),
            repo_cache: CacheLimits::default(),
        }
    }
}

/// Runs sandboxes as containers of one Docker Engine.
#[derive(Debug, Clone)]
pub struct DockerProvider {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    docker: Docker,
    config: DockerConfig,
    instance: String,
    network: String,
    gateway: IpAddr,
    exits: ExitWatchers,
    repos: Arc<RepoCache>,
}

impl DockerProvider {
    /// Connects to the Engine, checks the default image is there, makes (or finds) this
    /// instance's network, and takes over the watching of containers an earlier run left.
    pub async fn connect(config: DockerConfig) -> Result<DockerProvider, SandboxError> {
        let socket = config.socket.display().to_string();
        let docker =
            Docker::connect_with_unix(&socket, ENGINE_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
                .map_err(|e| engine(&format!("connecting to the Docker Engine at {socket}"), e))?
                .negotiate_version()
                .await
                .map_err(|e| {
                    engine(&format!("the Docker Engine at {socket} does not answer"), e)
                })?;
        match docker.inspect_image(&config.image).await {
            Ok(_) => {}
            Err(e) if is_status(&e, 404) => {
                return Err(SandboxError::Provider(format!(
                    "docker: the image {} is not there; build it with scripts/build-images.sh",
                    config.image
                )));
            }
            Err(e) => return Err(engine(&format!("inspecting the image {}", config.image), e)),
        }
        let instance = instance_id(&config.data_dir).await?;
        let network = format!("omoi-{instance}");
        let gateway = ensure_network(&docker, &network, &instance).await?;
        let repos = Arc::new(RepoCache::new(config.repo_cache));
        let provider = DockerProvider {
            inner: Arc::new(Inner {
                docker,
                config,
                instance,
                network,
                gateway,
                exits: ExitWatchers::default(),
                repos: repos.clone(),
            }),
        };
        provider.adopt().await?;
        tokio::spawn(refresh_repositories(Arc::downgrade(&repos)));
        tracing::info!(
            instance = %provider.inner.instance,
            network = %provider.inner.network,
            gateway = %gateway,
            "docker provider connected"
        );
        Ok(provider)
    }

    /// The host's address on the sandbox network: where sandboxes reach the coordinator.
    pub fn gateway(&self) -> IpAddr {
        self.inner.gateway
    }

    /// This coordinator's instance id (the value of [`INSTANCE_LABEL`]).
    pub fn instance(&self) -> &str {
        &self.inner.instance
    }

    /// The name of the sandbox network.
    pub fn network(&self) -> &str {
        &self.inner.network
    }

    /// The Engine client.
    pub fn client(&self) -> &Docker {
        &self.inner.docker
    }

    /// The directory of one sandbox (its log and exit record).
    pub fn sandbox_dir(&self, sandbox_id: &str) -> PathBuf {
        self.inner
            .config
            .data_dir
            .join("sandboxes")
            .join(sandbox_id)
    }

    /// The log file of one sandbox (its container's output, written when it ends).
    pub fn log_path(&self, sandbox_id: &str) -> PathBuf {
        self.sandbox_dir(sandbox_id).join(exit::LOG_FILE)
    }

    /// For a coordinator that stops for good (the demo, tests): waits up to `grace` for ended
    /// containers to be cleaned up, then removes the network unless a container of this instance
    /// still exists. Running sandboxes are left alone. Returns the names of the containers that
    /// remain.
    pub async fn close(&self, grace: Duration) -> Result<Vec<String>, SandboxError> {
        self.inner.exits.wait_all(grace).await;
        let remaining: Vec<String> = self
            .containers(&BTreeMap::new())
            .await?
            .into_iter()
            .map(|(name, _, _)| name)
            .collect();
        if remaining.is_empty() {
            match self.inner.docker.remove_network(&self.inner.network).await {
                Ok(()) => {}
                Err(e) if is_status(&e, 404) => {}
                Err(e) => return Err(engine("removing the sandbox network", e)),
            }
        }
        Ok(remaining)
    }

    /// Starts watching every container of this instance that exists now (left by an earlier
    /// run): the ended ones are cleaned up at once.
    async fn adopt(&self) -> Result<(), SandboxError> {
        for (name, labels, _) in self.containers(&BTreeMap::new()).await? {
            let id = labels
                .get(super::SANDBOX_LABEL)
                .cloned()
                .unwrap_or_else(|| sandbox_id_of(&name).to_string());
            self.inner
                .exits
                .ensure(&self.inner.docker, &name, self.sandbox_dir(&id))
                .await;
        }
        Ok(())
    }

    /// This instance's containers with all of `labels`: name, labels, state.
    async fn containers(
        &self,
        labels: &BTreeMap<String, String>,
    ) -> Result<Vec<ContainerRow>, SandboxError> {
        let mut wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        wanted.push(format!("{INSTANCE_LABEL}={}", self.inner.instance));
        let filters = HashMap::from([("label".to_string(), wanted)]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let listed = self
            .inner
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| engine("listing containers", e))?;
        let mut rows: Vec<ContainerRow> = listed
            .into_iter()
            .filter_map(|c| {
                let name = c.names?.into_iter().next()?;
                // The image's own labels show on the container too; only omoi's are ours.
                let labels = c
                    .labels
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|(k, _)| k.starts_with("omoi."))
                    .collect();
                Some((name.trim_start_matches('/').to_string(), labels, c.state))
            })
            .collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(rows)
    }

    async fn spawn_inner(&self, request: SpawnRequest) -> Result<SandboxHandle, SandboxError> {
        let id = request.sandbox_id.clone();
        let failed = |reason: String| SandboxError::Spawn {
            sandbox_id: id.clone(),
            reason,
        };
        if !is_container_name(&id) {
            return Err(failed(
                "the sandbox id is not a plain name (letters, digits, '_', '.', '-')".into(),
            ));
        }
        let dir = self.sandbox_dir(&id);
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(SandboxError::io(format!("creating {}", dir.display())))?;
        let name = container_name(&id);
        let body = container::create_body(
            &request,
            &self.inner.config,
            &self.inner.instance,
            &self.inner.network,
        );
        let docker = &self.inner.docker;
        let options = CreateContainerOptionsBuilder::new().name(&name).build();
        // The repository is packed (or found packed) while the Engine creates the container.
        let packed = async {
            match request.repo.as_deref() {
                Some(repo) => self.inner.repos.get(repo).await.map(Some),
                None => Ok(None),
            }
        };
        let (packed, created) = tokio::join!(packed, docker.create_container(Some(options), body));
        created.map_err(|e| match e {
            ref e if is_status(e, 404) => failed(format!(
                "the image {} is not there; build it with scripts/build-images.sh",
                request.image.as_deref().unwrap_or(&self.inner.config.image)
            )),
            e => failed(format!("creating the container: {}", engine_message(&e))),
        })?;
        let started = async {
            let packed = packed?;
            let tail = archive::tail(&self.inner.config.files, packed.is_none())?;
            let stream = archive::upload_body(packed, tail)
                .await
                .map_err(|e| format!("reading the sandbox archive: {e}"))?;
            let options = UploadToContainerOptionsBuilder::new()
                .path(container::WORK_DIR)
                .build();
            docker
                .upload_to_container(&name, Some(options), bollard::body_try_stream(stream))
                .await
                .map_err(|e| format!("uploading the repository: {}", engine_message(&e)))?;
            docker
                .start_container(&name, None)
                .await
                .map_err(|e| format!("starting the container: {}", engine_message(&e)))
        }
        .await;
        if let Err(reason) = started {
            let options = RemoveContainerOptionsBuilder::new()
                .force(true)
                .v(true)
                .build();
            if let Err(e) = docker.remove_container(&name, Some(options)).await {
                tracing::warn!(container = %name, error = %e, "removing a sandbox that failed to start");
            }
            return Err(failed(reason));
        }
        self.inner.exits.ensure(docker, &name, dir).await;
        tracing::info!(sandbox = %id, container = %name, "docker sandbox started");
        Ok(SandboxHandle(name))
    }

    async fn status_inner(&self, handle: &SandboxHandle) -> Result<ProviderStatus, SandboxError> {
        if let Some(record) = self.inner.exits.ended(&handle.0).await {
            return Ok(record.status());
        }
        match self.inner.docker.inspect_container(&handle.0, None).await {
            Ok(info) if exit::is_running(&info) => Ok(ProviderStatus::Running),
            Ok(info) => Ok(exit::ExitRecord::from_inspect(&info).status()),
            Err(e) if is_status(&e, 404) => {
                let dir = self.sandbox_dir(sandbox_id_of(&handle.0));
                Ok(exit::read_record(&dir)
                    .await
                    .map_or(ProviderStatus::NotFound, |record| record.status()))
            }
            Err(e) => Err(engine(&format!("inspecting {}", handle.0), e)),
        }
    }

    async fn terminate_inner(&self, handle: &SandboxHandle) -> Result<(), SandboxError> {
        let docker = &self.inner.docker;
        let options = StopContainerOptionsBuilder::new()
            .t(TERMINATE_GRACE_SECS)
            .build();
        match docker.stop_container(&handle.0, Some(options)).await {
            // 304: it had stopped already.
            Ok(()) => {}
            Err(e) if is_status(&e, 404) => return Ok(()),
            Err(e) => return Err(engine(&format!("stopping {}", handle.0), e)),
        }
        let dir = self.sandbox_dir(sandbox_id_of(&handle.0));
        let mut ended = self.inner.exits.ensure(docker, &handle.0, dir).await;
        if tokio::time::timeout(REMOVAL_WAIT, ended.wait_for(Option::is_some))
            .await
            .is_err()
        {
            tracing::warn!(container = %handle.0, "a stopped sandbox was not cleaned up in time");
        }
        Ok(())
    }

    async fn list_inner(
        &self,
        labels: &BTreeMap<String, String>,
    ) -> Result<Vec<ListedSandbox>, SandboxError> {
        let mut listed = Vec::new();
        for (name, labels, state) in self.containers(labels).await? {
            let handle = SandboxHandle(name);
            let status = match state {
                Some(
                    ContainerSummaryStateEnum::RUNNING
                    | ContainerSummaryStateEnum::RESTARTING
                    | ContainerSummaryStateEnum::PAUSED,
                ) => ProviderStatus::Running,
                _ => self.status_inner(&handle).await?,
            };
            listed.push(ListedSandbox {
                handle,
                labels,
                status,
            });
        }
        Ok(listed)
    }
}

/// A listed container: its name, labels and state.
type ContainerRow = (
    String,
    BTreeMap<String, String>,
    Option<ContainerSummaryStateEnum>,
);

impl Provider for DockerProvider {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn scope(&self) -> Option<String> {
        // The same Engine (its socket on one boot of one machine) and the same instance (one
        // data directory: the containers' label, network and logs).
        Some(format!(
            "docker:{}:{}:{}",
            super::boot_id()?,
            self.inner.config.socket.display(),
            self.inner.instance
        ))
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

    /// Containers reach the host at the gateway of the sandbox network.
    fn sandbox_host(&self) -> Option<IpAddr> {
        Some(self.gateway())
    }

    fn close(&self, grace: Duration) -> BoxFuture<'_, Result<Vec<String>, SandboxError>> {
        DockerProvider::close(self, grace).boxed()
    }

    /// Packs a git repository, or finds it packed at the state its refs are in now.
    fn prepare_repository<'a>(&'a self, repo: &'a str) -> BoxFuture<'a, Result<(), SandboxError>> {
        async move {
            self.inner
                .repos
                .prepare(repo)
                .await
                .map_err(|e| SandboxError::Provider(format!("docker: {e}")))
        }
        .boxed()
    }

    /// Uploads the repository into the running container's `/work` (`PUT /archive` works on a
    /// running container), where a standby's worker finds it at `/work/repo` once assigned.
    fn place_repository<'a>(
        &'a self,
        handle: &'a SandboxHandle,
        repo: &'a str,
    ) -> BoxFuture<'a, Result<(), SandboxError>> {
        async move {
            let failed = |reason: String| SandboxError::Spawn {
                sandbox_id: sandbox_id_of(&handle.0).to_string(),
                reason,
            };
            let packed = self.inner.repos.get(repo).await.map_err(failed)?;
            let tail = archive::tail(&[], false).map_err(failed)?;
            let stream = archive::upload_body(Some(packed), tail)
                .await
                .map_err(|e| failed(format!("reading the sandbox archive: {e}")))?;
            let options = UploadToContainerOptionsBuilder::new()
                .path(container::WORK_DIR)
                .build();
            self.inner
                .docker
                .upload_to_container(&handle.0, Some(options), bollard::body_try_stream(stream))
                .await
                .map_err(|e| failed(format!("uploading the repository: {}", engine_message(&e))))
        }
        .boxed()
    }
}

/// Packs anew, every [`repo_cache::REFRESH_EVERY`], the recently used repositories whose refs
/// moved, until the provider is gone.
async fn refresh_repositories(repos: std::sync::Weak<RepoCache>) {
    loop {
        tokio::time::sleep(repo_cache::REFRESH_EVERY).await;
        let Some(repos) = repos.upgrade() else {
            return;
        };
        repos.refresh().await;
    }
}

/// The container of a sandbox.
pub fn container_name(sandbox_id: &str) -> String {
    format!("omoi-{sandbox_id}")
}

/// The sandbox id in a container's name.
fn sandbox_id_of(name: &str) -> &str {
    name.strip_prefix("omoi-").unwrap_or(name)
}

/// Whether `id` makes a valid container name after `omoi-` (the Engine's `[a-zA-Z0-9][a-zA-Z0-9_.-]*`).
fn is_container_name(id: &str) -> bool {
    !id.is_empty()
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Whether the Engine answered `status`.
pub(crate) fn is_status(error: &EngineError, status: u16) -> bool {
    matches!(error, EngineError::DockerResponseServerError { status_code, .. } if *status_code == status)
}

/// The Engine's own message when it sent one, else the client's error.
fn engine_message(error: &EngineError) -> String {
    match error {
        EngineError::DockerResponseServerError {
            status_code,
            message,
        } => format!("{message} ({status_code})"),
        other => other.to_string(),
    }
}

fn engine(what: &str, error: EngineError) -> SandboxError {
    SandboxError::Provider(format!("docker: {what}: {}", engine_message(&error)))
}

/// This data directory's instance id: read, or made and written on first use.
async fn instance_id(data_dir: &Path) -> Result<String, SandboxError> {
    let path = data_dir.join(INSTANCE_FILE);
    if let Ok(text) = tokio::fs::read_to_string(&path).await {
        let id = text.trim();
        if !id.is_empty() && is_container_name(id) {
            return Ok(id.to_string());
        }
    }
    tokio::fs::create_dir_all(data_dir)
        .await
        .map_err(SandboxError::io(format!("creating {}", data_dir.display())))?;
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes)
        .map_err(|e| SandboxError::Provider(format!("no randomness for an instance id: {e}")))?;
    let id = crate::token::hex(&bytes);
    tokio::fs::write(&path, format!("{id}\n"))
        .await
        .map_err(SandboxError::io(format!("writing {}", path.display())))?;
    Ok(id)
}

/// Finds or makes the sandbox network and returns its gateway address.
async fn ensure_network(
    docker: &Docker,
    network: &str,
    instance: &str,
) -> Result<IpAddr, SandboxError> {
    let inspected = match docker.inspect_network(network, None).await {
        Ok(found) => found,
        Err(e) if is_status(&e, 404) => {
            let request = NetworkCreateRequest {
                name: network.to_string(),
                driver: Some("bridge".to_string()),
                internal: Some(false),
                attachable: Some(false),
                ipam: Some(Ipam {
                    driver: Some("default".to_string()),
                    ..Ipam::default()
                }),
                options: Some(HashMap::from([(
                    "com.docker.network.bridge.enable_icc".to_string(),
                    "false".to_string(),
                )])),
                labels: Some(HashMap::from([
                    (OWNER_LABEL.to_string(), OWNER.to_string()),
                    (INSTANCE_LABEL.to_string(), instance.to_string()),
                ])),
                ..NetworkCreateRequest::default()
            };
            match docker.create_network(request).await {
                Ok(_) => {}
                // Made a moment ago by another coordinator on the same data directory.
                Err(e) if is_status(&e, 409) => {}
                Err(e) => return Err(engine(&format!("creating the network {network}"), e)),
            }
            docker
                .inspect_network(network, None)
                .await
                .map_err(|e| engine(&format!("inspecting the network {network}"), e))?
        }
        Err(e) => return Err(engine(&format!("inspecting the network {network}"), e)),
    };
    inspected
        .ipam
        .and_then(|ipam| ipam.config)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| c.gateway?.parse::<IpAddr>().ok())
        .find(IpAddr::is_ipv4)
        .ok_or_else(|| {
            SandboxError::Provider(format!("docker: the network {network} has no IPv4 gateway"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_names_follow_the_engine_rules() {
        assert!(is_container_name("0b8f-4c1e.x_y"));
        assert!(!is_container_name(""));
        assert!(!is_container_name("../etc"));
        assert!(!is_container_name(".."));
        assert!(!is_container_name("a b"));
        assert_eq!(container_name("sb-1"), "omoi-sb-1");
        assert_eq!(sandbox_id_of("omoi-sb-1"), "sb-1");
    }

    #[tokio::test]
    async fn the_instance_id_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = instance_id(dir.path()).await.unwrap();
        assert_eq!(first.len(), 12);
        assert_eq!(instance_id(dir.path()).await.unwrap(), first);
    }
}
