//! `omoi serve`: flags (with environment fallbacks), their validation, and the server's run loop
//! with shutdown on SIGTERM or Ctrl-C.
//!
//! With `--provider docker` the coordinator also listens on the sandbox network's gateway (the
//! host's address on the bridge the containers use), on the same port, and unless
//! `--public-url` says otherwise hands workers `http://<gateway>:<port>`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, ValueEnum};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::secrets::{SecretArgs, check_store};
use super::{CliError, CliResult};
use crate::app::{AppState, Settings};
use crate::sandbox::daytona::DaytonaConfig;
use crate::sandbox::docker::{DEFAULT_IMAGE, DEFAULT_SOCKET, DockerConfig};
use crate::sandbox::kubernetes::{KubernetesApi, KubernetesConfig};
use crate::sandbox::{self, ProviderConfig};
use crate::server::{ServerLimits, accept_loop, router, serve_with};
use crate::store::Store;

/// The sandbox providers `--provider` names.
/// The most standby sandboxes `--warm-pool` keeps per image.
const MAX_WARM_POOL: u32 = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProviderKind {
    Local,
    Docker,
    Kubernetes,
    Daytona,
}

/// The flags of `omoi serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "OMOI_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// `sqlite://PATH` (created on first start) or `postgres://…`.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://omoi.db")]
    pub database: String,
    /// Where sandboxes run.
    #[arg(long, env = "OMOI_PROVIDER", value_enum, default_value = "local")]
    pub provider: ProviderKind,
    /// The `omoi-worker` binary for the local provider (default: next to `omoi`, then on PATH).
    #[arg(long, env = "OMOI_WORKER_BIN")]
    pub worker_bin: Option<PathBuf>,
    /// The URL sandboxes call back (default: http:// and the listen address).
    #[arg(long, env = "OMOI_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Sandbox work directories and logs.
    #[arg(long, env = "OMOI_DATA_DIR", default_value = "omoi-data")]
    pub data_dir: PathBuf,
    /// Workers send a heartbeat this often; three missed ones make a sandbox lost.
    #[arg(long, env = "OMOI_HEARTBEAT_SECS", default_value_t = 10)]
    pub heartbeat_secs: u64,
    /// How many times a lost sandbox is replaced before its spec fails.
    #[arg(long, env = "OMOI_MAX_RECOVERIES", default_value_t = 3)]
    pub max_recoveries: u32,
    /// This replica's name among the coordinators on one database (letters, digits, `.`, `_`,
    /// `-`; at most 63), e.g. the pod name; a fresh id when unset.
    #[arg(long, env = "OMOI_REPLICA_ID")]
    pub replica_id: Option<String>,
    /// Silence (2 to 3,600 s) after which another replica on the database counts as lost: its
    /// waiting standbys are adopted by a replica whose provider can manage them, else ended.
    /// Each replica records that it is alive several times within it.
    #[arg(long, env = "OMOI_REPLICA_LOST_SECS", default_value_t = 30)]
    pub replica_lost_secs: u64,
    /// Worker environment for every sandbox, `NAME=VALUE` (repeatable), e.g. `OMOI_LLM=anthropic`;
    /// a bare `NAME` takes the value of that variable of this process (for keys: the server
    /// erases them from its environment and command line once read).
    #[arg(long = "worker-env", value_name = "NAME[=VALUE]")]
    pub worker_env: Vec<String>,
    /// A directory under which projects may name local repositories (repeatable); without it,
    /// only git URLs (https, ssh, git, `user@host:path`).
    #[arg(long = "allow-local-repos", value_name = "DIR")]
    pub allow_local_repos: Vec<PathBuf>,
    /// Standby sandboxes kept ready per image (0 to 64): a launch takes one that already runs
    /// instead of starting one, and an empty pool starts cold. Each replica keeps its own (and
    /// those it takes over from a lost replica).
    #[arg(long, env = "OMOI_WARM_POOL", default_value_t = 0)]
    pub warm_pool: u32,
    /// How long a standby sandbox waits for an assignment before its worker exits (it is then
    /// replaced): 1 to 86,400 s.
    #[arg(long, env = "OMOI_STANDBY_IDLE_SECS", default_value_t = 600)]
    pub standby_idle_secs: u64,
    /// Kubernetes and Daytona: the longest one spawn takes, over the clients' retries; what it
    /// made by then is deleted. Default 60 s on Kubernetes (the API server taking the objects),
    /// 300 s on Daytona (from the create to the worker started).
    #[arg(
        long = "spawn-deadline-secs",
        env = "OMOI_SPAWN_DEADLINE_SECS",
        alias = "daytona-spawn-timeout-secs"
    )]
    pub spawn_deadline_secs: Option<u64>,
    #[command(flatten)]
    pub docker: DockerArgs,
    #[command(flatten)]
    pub kubernetes: KubernetesArgs,
    #[command(flatten)]
    pub daytona: DaytonaArgs,
    #[command(flatten)]
    pub tasks: super::scheduling::TaskArgs,
    #[command(flatten)]
    pub limits: super::limits::LimitArgs,
    #[command(flatten)]
    pub secrets: SecretArgs,
}

/// The flags of the docker provider.
#[derive(Debug, Clone, Args)]
pub struct DockerArgs {
    /// Docker and Kubernetes: the image of sandboxes whose project names none.
    #[arg(long = "image", env = "OMOI_SANDBOX_IMAGE", default_value = DEFAULT_IMAGE)]
    pub image: String,
    /// Docker: the Engine's socket, `unix:///var/run/docker.sock` or a path.
    #[arg(long = "docker-host", env = "DOCKER_HOST")]
    pub host: Option<String>,
    /// Docker and Kubernetes: the memory of one sandbox, in MiB (no swap beyond it).
    #[arg(
        long = "sandbox-memory-mb",
        env = "OMOI_SANDBOX_MEMORY_MB",
        default_value_t = 2048
    )]
    pub memory_mb: u64,
    /// Docker and Kubernetes: the CPUs of one sandbox.
    #[arg(
        long = "sandbox-cpus",
        env = "OMOI_SANDBOX_CPUS",
        default_value_t = 2.0
    )]
    pub cpus: f64,
    /// Docker: the most processes one sandbox may run.
    #[arg(
        long = "sandbox-pids",
        env = "OMOI_SANDBOX_PIDS",
        default_value_t = 1024
    )]
    pub pids: i64,
}

impl DockerArgs {
    /// The provider's settings for sandboxes under `data_dir`.
    pub fn config(&self, data_dir: &Path) -> CliResult<DockerConfig> {
        let socket = match self.host.as_deref() {
            None | Some("") => PathBuf::from(DEFAULT_SOCKET),
            Some(host) => match host.strip_prefix("unix://") {
                Some(path) => PathBuf::from(path),
                None if host.starts_with('/') => PathBuf::from(host),
                None => {
                    return Err(CliError::Config(format!(
                        "--docker-host {host:?}: only a unix socket is supported \
                         (unix:///var/run/docker.sock)"
                    )));
                }
            },
        };
        if self.memory_mb < 16 {
            return Err(CliError::Config(
                "--sandbox-memory-mb must be at least 16".into(),
            ));
        }
        if !(self.cpus > 0.0 && self.cpus.is_finite()) {
            return Err(CliError::Config(
                "--sandbox-cpus must be more than 0".into(),
            ));
        }
        if self.pids < 16 {
            return Err(CliError::Config(
                "--sandbox-pids must be at least 16".into(),
            ));
        }
        Ok(DockerConfig {
            socket,
            image: self.image.clone(),
            limits: crate::sandbox::Limits {
                memory_mb: Some(self.memory_mb),
                cpus: Some(self.cpus),
            },
            pids_limit: self.pids,
            ..DockerConfig::new(data_dir.to_path_buf())
        })
    }
}

/// Which API `--kubernetes-api` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KubernetesApiKind {
    Pod,
    Sandbox,
}

/// The flags of the kubernetes provider (it shares `--image`, `--sandbox-memory-mb` and
/// `--sandbox-cpus` with docker).
#[derive(Debug, Clone, Args)]
pub struct KubernetesArgs {
    /// Kubernetes: the namespace of the sandboxes (default: the kubeconfig's, or the service
    /// account's in a cluster).
    #[arg(long, env = "OMOI_K8S_NAMESPACE")]
    pub namespace: Option<String>,
    /// Kubernetes: a bare Pod per sandbox, or an `agents.x-k8s.io` Sandbox.
    #[arg(
        long = "kubernetes-api",
        env = "OMOI_K8S_API",
        value_enum,
        default_value = "pod"
    )]
    pub api: KubernetesApiKind,
    /// Kubernetes: a Secret of the namespace to pull the sandbox image with (repeatable).
    #[arg(long = "image-pull-secret", value_name = "NAME")]
    pub image_pull_secrets: Vec<String>,
    /// Kubernetes: the longest a sandbox pod runs (activeDeadlineSeconds).
    #[arg(
        long = "sandbox-deadline-secs",
        env = "OMOI_SANDBOX_DEADLINE_SECS",
        default_value_t = 21_600
    )]
    pub deadline_secs: u64,
    /// Kubernetes: how long a pod may stay pending (unschedulable, image not pulled) before its
    /// sandbox is lost.
    #[arg(
        long = "pending-limit-secs",
        env = "OMOI_PENDING_LIMIT_SECS",
        default_value_t = 300
    )]
    pub pending_limit_secs: u64,
    /// Kubernetes: this coordinator's name on its objects (the label `omoi.instance`); its
    /// watch, list and reconcile see only their own, so coordinators of separate databases can
    /// share a namespace (replicas of one database share one name).
    #[arg(long, env = "OMOI_INSTANCE", default_value = "default")]
    pub instance: String,
}

impl KubernetesArgs {
    /// The provider's settings, with the image and limits of `docker`'s flags.
    pub fn config(
        &self,
        docker: &DockerArgs,
        spawn_deadline_secs: Option<u64>,
        data_dir: &Path,
    ) -> CliResult<ProviderConfig> {
        let shared = docker.config(data_dir)?;
        if let Some(namespace) = &self.namespace {
            if !sandbox::kubernetes::manifest::is_dns_label(namespace) {
                return Err(CliError::Config(format!(
                    "--namespace {namespace:?} is not a namespace name (a DNS label: a-z, 0-9, '-')"
                )));
            }
        }
        if let Some(name) = self
            .image_pull_secrets
            .iter()
            .find(|n| !sandbox::kubernetes::manifest::is_dns_label(n))
        {
            return Err(CliError::Config(format!(
                "--image-pull-secret {name:?} is not a Secret name"
            )));
        }
        if self.deadline_secs < 60 {
            return Err(CliError::Config(
                "--sandbox-deadline-secs must be at least 60".into(),
            ));
        }
        if self.instance.is_empty()
            || !sandbox::kubernetes::manifest::is_label_value(&self.instance)
        {
            return Err(CliError::Config(format!(
                "--instance {:?} is not a label value (1–63 of a-z, A-Z, 0-9, '-', '_', '.', \
                 starting and ending with a letter or digit)",
                self.instance
            )));
        }
        let spawn_deadline_secs = spawn_deadline_secs.unwrap_or(60);
        if spawn_deadline_secs == 0 {
            return Err(CliError::Config(
                "--spawn-deadline-secs must be at least 1".into(),
            ));
        }
        if self.pending_limit_secs == 0 {
            return Err(CliError::Config(
                "--pending-limit-secs must be at least 1".into(),
            ));
        }
        let mut config = KubernetesConfig::new(String::new(), data_dir.to_path_buf());
        config.image = shared.image;
        config.limits = shared.limits;
        config.image_pull_secrets = self.image_pull_secrets.clone();
        config.deadline_secs = self.deadline_secs;
        config.pending_limit = Duration::from_secs(self.pending_limit_secs);
        config.instance = self.instance.clone();
        config.spawn_deadline = Duration::from_secs(spawn_deadline_secs);
        config.api = match self.api {
            KubernetesApiKind::Pod => KubernetesApi::Pod,
            KubernetesApiKind::Sandbox => KubernetesApi::Sandbox,
        };
        Ok(ProviderConfig::Kubernetes {
            config,
            namespace: self.namespace.clone(),
        })
    }
}

/// The flags of the daytona provider.
#[derive(Debug, Clone, Args)]
pub struct DaytonaArgs {
    /// Daytona: the API's base URL, e.g. `https://app.daytona.io/api`.
    #[arg(long = "daytona-api-url", env = "DAYTONA_API_URL")]
    pub api_url: Option<String>,
    /// Daytona: the API key; set it in the environment (the server erases it there, and from
    /// its command line, once read).
    #[arg(
        long = "daytona-api-key",
        env = "DAYTONA_API_KEY",
        hide_env_values = true,
        hide = true
    )]
    pub api_key: Option<String>,
    /// Daytona: the organisation the sandboxes belong to (`X-Daytona-Organization-ID`; default:
    /// the key's).
    #[arg(long = "daytona-organization-id", env = "DAYTONA_ORGANIZATION_ID")]
    pub organization_id: Option<String>,
    /// Daytona: the snapshot sandboxes are made from; it must hold `omoi-worker` on its PATH.
    #[arg(long = "daytona-snapshot", env = "OMOI_DAYTONA_SNAPSHOT")]
    pub snapshot: Option<String>,
    /// Daytona: minutes without activity before Daytona stops a sandbox (0: never); the
    /// coordinator's polls keep running sandboxes active.
    #[arg(
        long = "daytona-auto-stop-minutes",
        env = "OMOI_DAYTONA_AUTO_STOP_MINUTES",
        default_value_t = 15
    )]
    pub auto_stop_minutes: u32,
    /// Daytona: how often the sandboxes are polled, in seconds.
    #[arg(
        long = "daytona-poll-secs",
        env = "OMOI_DAYTONA_POLL_SECS",
        default_value_t = 10
    )]
    pub poll_secs: u64,
}

impl DaytonaArgs {
    /// The provider's settings, sandboxes' logs under `data_dir`.
    pub fn config(
        &self,
        spawn_deadline_secs: Option<u64>,
        data_dir: &Path,
    ) -> CliResult<ProviderConfig> {
        let refuse = |message: String| Err(CliError::Config(message));
        let url = match self.api_url.as_deref().map(str::trim) {
            None | Some("") => {
                return refuse(
                    "--provider daytona needs DAYTONA_API_URL (or --daytona-api-url): the API's \
                     base, e.g. https://app.daytona.io/api"
                        .into(),
                );
            }
            Some(url) => url,
        };
        let api_url = match reqwest::Url::parse(url) {
            Ok(parsed)
                if matches!(parsed.scheme(), "http" | "https")
                    && parsed.host_str().is_some()
                    && parsed.username().is_empty()
                    && parsed.password().is_none() =>
            {
                parsed
            }
            _ => {
                return refuse(format!(
                    "DAYTONA_API_URL {url:?} is not an http(s) URL without credentials"
                ));
            }
        };
        let api_key = match self.api_key.as_deref() {
            None | Some("") => {
                return refuse(
                    "--provider daytona needs DAYTONA_API_KEY (a key from the Daytona dashboard)"
                        .into(),
                );
            }
            Some(key) if key.chars().any(|c| c.is_whitespace() || c.is_control()) => {
                return refuse("DAYTONA_API_KEY holds whitespace or control characters".into());
            }
            Some(key) => key.to_string(),
        };
        let organization_id = match self.organization_id.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(org) if org.chars().all(|c| c.is_ascii_graphic()) => Some(org.to_string()),
            Some(org) => {
                return refuse(format!(
                    "DAYTONA_ORGANIZATION_ID {org:?} holds characters a header cannot carry"
                ));
            }
        };
        let snapshot = match self.snapshot.as_deref().map(str::trim) {
            None | Some("") => {
                return refuse(
                    "--provider daytona needs --daytona-snapshot: a snapshot that holds \
                     omoi-worker (README: Run sandboxes on Daytona)"
                        .into(),
                );
            }
            Some(name) => name.to_string(),
        };
        if self.poll_secs == 0 {
            return refuse("--daytona-poll-secs must be at least 1".into());
        }
        let spawn_deadline_secs = spawn_deadline_secs.unwrap_or(300);
        if spawn_deadline_secs < 10 {
            return refuse("--spawn-deadline-secs must be at least 10 on daytona".into());
        }
        let mut config = DaytonaConfig::new(api_url, api_key, snapshot, data_dir.to_path_buf());
        config.connection.organization_id = organization_id;
        config.auto_stop_minutes = self.auto_stop_minutes;
        config.poll_interval = Duration::from_secs(self.poll_secs);
        config.spawn_deadline = Duration::from_secs(spawn_deadline_secs);
        Ok(ProviderConfig::Daytona(config))
    }
}

/// Where the URL handed to workers came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlSource {
    /// `--public-url`: used as it is.
    Flag,
    /// The listen address: a provider whose sandboxes reach the host elsewhere (docker's network
    /// gateway) replaces it with that address.
    Listen,
}

/// `omoi serve`'s settings, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub database: String,
    pub sandboxes: ProviderConfig,
    pub url_source: UrlSource,
    pub data_dir: PathBuf,
    pub settings: Settings,
    pub limits: ServerLimits,
    pub secrets: SecretArgs,
}

impl ServeArgs {
    /// Checks the flags: the provider available, the address parsed, the worker found.
    pub fn validate(self) -> CliResult<ServeConfig> {
        let listen: SocketAddr = self.listen.parse().map_err(|e| {
            CliError::Config(format!("--listen {:?} is not an address: {e}", self.listen))
        })?;
        if self.heartbeat_secs == 0 {
            return Err(CliError::Config(
                "--heartbeat-secs must be at least 1".into(),
            ));
        }
        if self.warm_pool > MAX_WARM_POOL {
            return Err(CliError::Config(format!(
                "--warm-pool {} is more than {MAX_WARM_POOL} standby sandboxes per image",
                self.warm_pool
            )));
        }
        if !(1..=86_400).contains(&self.standby_idle_secs) {
            return Err(CliError::Config(format!(
                "--standby-idle-secs {} is not from 1 to 86400",
                self.standby_idle_secs
            )));
        }
        if !(2..=3_600).contains(&self.replica_lost_secs) {
            return Err(CliError::Config(format!(
                "--replica-lost-secs {} is not from 2 to 3600",
                self.replica_lost_secs
            )));
        }
        if self.provider == ProviderKind::Kubernetes && self.public_url.is_none() {
            return Err(CliError::Config(
                "--provider kubernetes needs --public-url: the address at which pods reach this \
                 coordinator (its Service, e.g. http://omoi.omoi.svc:8080)"
                    .into(),
            ));
        }
        if self.provider == ProviderKind::Daytona && self.public_url.is_none() {
            return Err(CliError::Config(
                "--provider daytona needs --public-url: the address at which Daytona sandboxes \
                 reach this coordinator (an https URL they can resolve)"
                    .into(),
            ));
        }
        let sandboxes = if self.provider == ProviderKind::Docker {
            ProviderConfig::Docker(self.docker.config(&self.data_dir)?)
        } else if self.provider == ProviderKind::Kubernetes {
            self.kubernetes
                .config(&self.docker, self.spawn_deadline_secs, &self.data_dir)?
        } else if self.provider == ProviderKind::Daytona {
            self.daytona
                .config(self.spawn_deadline_secs, &self.data_dir)?
        } else {
            let worker_bin = locate_worker(self.worker_bin.as_deref()).ok_or_else(|| {
                CliError::Config(
                    "omoi-worker not found next to omoi or on PATH; pass --worker-bin".into(),
                )
            })?;
            ProviderConfig::Local {
                worker_bin,
                data_dir: self.data_dir.clone(),
            }
        };
        let (public_url, url_source) = match self.public_url {
            Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
                (url, UrlSource::Flag)
            }
            Some(url) => {
                return Err(CliError::Config(format!(
                    "--public-url {url:?} must start with http:// or https://"
                )));
            }
            None => (format!("http://{listen}"), UrlSource::Listen),
        };
        let mut settings = Settings::new(public_url);
        settings.heartbeat_secs = self.heartbeat_secs;
        settings.max_recoveries = self.max_recoveries;
        settings.warm_pool = self.warm_pool;
        settings.standby_idle_secs = self.standby_idle_secs;
        settings.replica_lost_after = Duration::from_secs(self.replica_lost_secs);
        if let Some(id) = self.replica_id {
            settings.replica_id = replica_id(id)?;
        }
        self.tasks.apply(&mut settings)?;
        let limits = self.limits.apply(&mut settings)?;
        settings.worker_env = parse_env_pairs(&self.worker_env, "--worker-env")?;
        for (name, value) in &settings.worker_env {
            if crate::secret::looks_secret(name) {
                crate::secret::check_length(&format!("--worker-env {name}"), value)
                    .map_err(CliError::Config)?;
            }
        }
        settings.allow_local_repos = canonical_dirs(&self.allow_local_repos)?;
        Ok(ServeConfig {
            listen,
            database: self.database,
            sandboxes,
            url_source,
            data_dir: self.data_dir,
            settings,
            limits,
            secrets: self.secrets,
        })
    }
}

/// The `--allow-local-repos` directories, resolved (symlinks included), each an existing
/// directory.
pub fn canonical_dirs(dirs: &[PathBuf]) -> CliResult<Vec<PathBuf>> {
    dirs.iter()
        .map(|dir| match std::fs::canonicalize(dir) {
            Ok(path) if path.is_dir() => Ok(path),
            Ok(_) => Err(CliError::Config(format!(
                "--allow-local-repos {}: not a directory",
                dir.display()
            ))),
            Err(e) => Err(CliError::Config(format!(
                "--allow-local-repos {}: {e}",
                dir.display()
            ))),
        })
        .collect()
}

/// A replica id as given, when it is one.
fn replica_id(id: String) -> CliResult<String> {
    let fits = !id.is_empty()
        && id.len() <= 63
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if fits {
        Ok(id)
    } else {
        Err(CliError::Config(format!(
            "--replica-id {id:?}: use 1 to 63 letters, digits, '.', '_' or '-'"
        )))
    }
}

/// Parses `NAME=VALUE` pairs; a bare `NAME` takes its value from this process's environment
/// (so that a key need not be on a command line, which every process may read), and is an error
/// when the variable is unset.
pub fn parse_env_pairs(pairs: &[String], flag: &str) -> CliResult<BTreeMap<String, String>> {
    parse_env_pairs_from(pairs, flag, |name| std::env::var(name).ok())
}

/// [`parse_env_pairs`] with the environment given as `lookup`.
pub fn parse_env_pairs_from(
    pairs: &[String],
    flag: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> CliResult<BTreeMap<String, String>> {
    pairs
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
            None if is_variable_name(pair) => match lookup(pair) {
                Some(value) => Ok((pair.clone(), value)),
                None => Err(CliError::Config(format!(
                    "{flag} {pair}: the variable {pair} is not set (give NAME=VALUE, or set \
                     NAME in the environment)"
                ))),
            },
            _ => Err(CliError::Config(format!(
                "{flag} {pair:?}: expected NAME=VALUE or the NAME of a variable that is set"
            ))),
        })
        .collect()
}

/// Whether `name` is usable as a variable name (`[A-Za-z_][A-Za-z0-9_]*`).
fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The worker binary: `explicit` when it exists, else `omoi-worker` next to this executable,
/// else on PATH.
pub fn locate_worker(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(path) = explicit {
        // Absolute: sandboxes start in their own directories, where a relative path means
        // something else.
        return path
            .is_file()
            .then(|| std::path::absolute(path).ok())
            .flatten();
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("omoi-worker")));
    if let Some(path) = beside.filter(|p| p.is_file()) {
        return Some(path);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("omoi-worker"))
            .find(|p| p.is_file())
    })
}

/// Runs the server until SIGTERM or Ctrl-C.
pub async fn run(args: ServeArgs) -> CliResult<u8> {
    let mut config = args.validate()?;
    // Every flag and variable is read: the secrets go from the environment block and the
    // command line, and the server's memory closes, before any sandbox starts.
    super::secrets::seal_server()?;
    let key = config.secrets.load(&config.database, &config.data_dir)?;
    let mut store = Store::open(&config.database).await?;
    check_store(&store, key.as_ref()).await?;
    if let Some(key) = key {
        store = store.with_secret_key(key);
    }
    super::secrets::seal_clear_secrets(&store).await?;
    let provider = sandbox::build(&config.sandboxes)
        .await
        .map_err(crate::Error::from)?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| CliError::Io {
            context: format!("listening on {}", config.listen),
            source,
        })?;
    let shutdown = CancellationToken::new();
    // Sandboxes that reach the host elsewhere (docker: the gateway of their network) find the
    // coordinator there.
    let mut sandbox_listener = None;
    if let Some(host) = provider.sandbox_host() {
        let port = listener
            .local_addr()
            .map_err(|source| CliError::Io {
                context: "reading the bound address".into(),
                source,
            })?
            .port();
        if config.url_source == UrlSource::Listen {
            config.settings.public_url = format!("http://{}", SocketAddr::new(host, port));
        }
        if config.listen.ip().is_loopback() {
            let addr = SocketAddr::new(host, port);
            sandbox_listener =
                Some(
                    TcpListener::bind(addr)
                        .await
                        .map_err(|source| CliError::Io {
                            context: format!("listening on {addr} (the sandbox network's gateway)"),
                            source,
                        })?,
                );
        }
    }
    tracing::info!(
        listen = %config.listen,
        database = store.backend_name(),
        provider = provider.name(),
        public_url = %config.settings.public_url,
        "omoi coordinator serving"
    );
    let state = AppState::new(store.clone(), provider, config.settings);
    if let Some(extra) = sandbox_listener {
        let (router, stop) = (router(state.clone()), shutdown.clone());
        let limits = config.limits;
        tokio::spawn(async move {
            let served = accept_loop(extra, router, limits, stop).await;
            if let Err(e) = served {
                tracing::error!(error = %e, "serving the sandbox network failed");
            }
        });
    }
    tokio::spawn(stop_on_signal(shutdown.clone()));
    serve_with(listener, state, config.limits, shutdown)
        .await
        .map_err(|source| CliError::Io {
            context: "serving".into(),
            source,
        })?;
    store.close().await;
    Ok(0)
}

/// Cancels `shutdown` on SIGTERM or Ctrl-C.
pub(super) async fn stop_on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
    tracing::info!("shutting down");
    shutdown.cancel();
    // A second signal while draining ends at once.
    let _ = tokio::time::timeout(Duration::from_secs(30), tokio::signal::ctrl_c()).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use pretty_assertions::assert_eq;

    use crate::cli::{Cli, Command};

    fn serve_args(extra: &[&str]) -> ServeArgs {
        let mut argv = vec!["omoi", "serve", "--worker-bin", "/bin/sh"];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Serve(args) => *args,
            other => panic!("parsed {other:?}"),
        }
    }

    #[test]
    fn the_kubernetes_provider_takes_its_settings_from_the_flags_and_refuses_bad_ones() {
        let config = serve_args(&[
            "--provider",
            "kubernetes",
            "--public-url",
            "http://omoi.omoi.svc:8080",
            "--namespace",
            "agents",
            "--image",
            "registry.example/omoi-sandbox:1",
            "--image-pull-secret",
            "regcred",
            "--sandbox-memory-mb",
            "4096",
            "--sandbox-deadline-secs",
            "3600",
            "--pending-limit-secs",
            "120",
            "--kubernetes-api",
            "sandbox",
            "--instance",
            "blue",
            "--spawn-deadline-secs",
            "30",
        ])
        .validate()
        .unwrap();
        let ProviderConfig::Kubernetes { config, namespace } = config.sandboxes else {
            panic!("not kubernetes: {:?}", config.sandboxes);
        };
        assert_eq!(namespace.as_deref(), Some("agents"));
        assert_eq!(
            (
                config.image.as_str(),
                config.image_pull_secrets.clone(),
                config.limits.memory_mb,
                config.deadline_secs,
                config.pending_limit,
                config.api,
                config.instance.as_str(),
                config.spawn_deadline,
            ),
            (
                "registry.example/omoi-sandbox:1",
                vec!["regcred".to_string()],
                Some(4096),
                3600,
                Duration::from_secs(120),
                KubernetesApi::Sandbox,
                "blue",
                Duration::from_secs(30),
            )
        );
        let refused = |extra: &[&str]| {
            let mut argv = vec!["--provider", "kubernetes"];
            argv.extend_from_slice(extra);
            serve_args(&argv).validate().unwrap_err().to_string()
        };
        assert_eq!(
            refused(&[]),
            "--provider kubernetes needs --public-url: the address at which pods reach this \
             coordinator (its Service, e.g. http://omoi.omoi.svc:8080)"
        );
        let url = ["--public-url", "http://omoi:8080"];
        assert_eq!(
            refused(&[url[0], url[1], "--namespace", "Not_A_Namespace"]),
            "--namespace \"Not_A_Namespace\" is not a namespace name (a DNS label: a-z, 0-9, '-')"
        );
        assert_eq!(
            refused(&[url[0], url[1], "--image-pull-secret", "a b"]),
            "--image-pull-secret \"a b\" is not a Secret name"
        );
        assert_eq!(
            refused(&[url[0], url[1], "--instance", "a b"]),
            "--instance \"a b\" is not a label value (1–63 of a-z, A-Z, 0-9, '-', '_', '.', \
             starting and ending with a letter or digit)"
        );
        assert_eq!(
            refused(&[url[0], url[1], "--instance", ""]),
            "--instance \"\" is not a label value (1–63 of a-z, A-Z, 0-9, '-', '_', '.', \
             starting and ending with a letter or digit)"
        );
        assert_eq!(
            refused(&[url[0], url[1], "--spawn-deadline-secs", "0"]),
            "--spawn-deadline-secs must be at least 1"
        );
        assert_eq!(
            refused(&[url[0], url[1], "--sandbox-deadline-secs", "5"]),
            "--sandbox-deadline-secs must be at least 60"
        );
        assert_eq!(
            refused(&[url[0], url[1], "--pending-limit-secs", "0"]),
            "--pending-limit-secs must be at least 1"
        );
    }

    #[test]
    fn defaults_validate_into_a_config() {
        let config = serve_args(&["--worker-env", "OMOI_LLM=scripted"])
            .validate()
            .unwrap();
        let mut settings = Settings::new("http://127.0.0.1:8080");
        settings.worker_env = BTreeMap::from([("OMOI_LLM".into(), "scripted".into())]);
        // Unset, the replica id is a fresh UUID.
        assert!(uuid::Uuid::parse_str(&config.settings.replica_id).is_ok());
        settings.replica_id = config.settings.replica_id.clone();
        assert_eq!(
            config,
            ServeConfig {
                listen: "127.0.0.1:8080".parse().unwrap(),
                database: "sqlite://omoi.db".into(),
                sandboxes: ProviderConfig::Local {
                    worker_bin: "/bin/sh".into(),
                    data_dir: "omoi-data".into(),
                },
                url_source: UrlSource::Listen,
                data_dir: "omoi-data".into(),
                settings,
                limits: ServerLimits::default(),
                secrets: SecretArgs {
                    secret_key_file: None,
                    secret_key: None,
                },
            }
        );
    }

    #[test]
    fn a_warm_pool_is_bounded_and_its_idle_limit_too() {
        let config = serve_args(&["--warm-pool", "4", "--standby-idle-secs", "30"])
            .validate()
            .unwrap();
        assert_eq!(
            (config.settings.warm_pool, config.settings.standby_idle_secs),
            (4, 30)
        );
        let refused = |args: &[&str]| serve_args(args).validate().unwrap_err().to_string();
        assert_eq!(
            refused(&["--warm-pool", "65"]),
            "--warm-pool 65 is more than 64 standby sandboxes per image"
        );
        for bad in ["0", "86401"] {
            assert_eq!(
                refused(&["--standby-idle-secs", bad]),
                format!("--standby-idle-secs {bad} is not from 1 to 86400")
            );
        }
        let lost = serve_args(&["--replica-lost-secs", "5"])
            .validate()
            .unwrap();
        assert_eq!(lost.settings.replica_lost_after, Duration::from_secs(5));
        for bad in ["0", "1", "3601"] {
            assert_eq!(
                refused(&["--replica-lost-secs", bad]),
                format!("--replica-lost-secs {bad} is not from 2 to 3600")
            );
        }
        let negative = Cli::try_parse_from(["omoi", "serve", "--warm-pool", "-1"]);
        assert!(negative.is_err(), "a negative pool is a usage error");
    }

    #[test]
    fn a_replica_id_is_taken_as_given_when_it_fits_a_label() {
        let config = serve_args(&["--replica-id", "omoi-0.pod_a"])
            .validate()
            .unwrap();
        assert_eq!(config.settings.replica_id, "omoi-0.pod_a");
        for bad in ["", "a b", "a\"b", &"x".repeat(64)] {
            let err = serve_args(&["--replica-id", bad]).validate().unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("--replica-id {bad:?}: use 1 to 63 letters, digits, '.', '_' or '-'")
            );
        }
    }

    #[test]
    fn env_pairs_are_name_value_or_a_name_read_from_the_environment() {
        let env = |name: &str| (name == "ACME_KEY").then(|| "sk-acme-0123456789".to_string());
        let pairs = ["A=1", "B=", "ACME_KEY", "C=x=y"].map(String::from);
        assert_eq!(
            parse_env_pairs_from(&pairs, "--env", env).unwrap(),
            BTreeMap::from([
                ("A".into(), "1".into()),
                ("ACME_KEY".into(), "sk-acme-0123456789".into()),
                ("B".into(), String::new()),
                ("C".into(), "x=y".into()),
            ])
        );
        for (bad, message) in [
            (
                "MISSING",
                "--env MISSING: the variable MISSING is not set (give NAME=VALUE, or set NAME \
                 in the environment)",
            ),
            (
                "=v",
                "--env \"=v\": expected NAME=VALUE or the NAME of a variable that is set",
            ),
            (
                "not a name",
                "--env \"not a name\": expected NAME=VALUE or the NAME of a variable that is set",
            ),
            (
                "",
                "--env \"\": expected NAME=VALUE or the NAME of a variable that is set",
            ),
        ] {
            let err = parse_env_pairs_from(&[bad.to_string()], "--env", env).unwrap_err();
            assert_eq!(err.to_string(), message, "{bad:?}");
        }
    }

    #[test]
    fn the_daytona_provider_takes_its_settings_from_the_flags_and_refuses_bad_ones() {
        let url = [
            "--provider",
            "daytona",
            "--public-url",
            "https://omoi.example",
        ];
        let good = [
            "--daytona-api-url",
            "https://app.daytona.io/api",
            "--daytona-api-key",
            "dtn_0123456789abcdef",
            "--daytona-snapshot",
            "omoi-worker",
        ];
        let mut argv = url.to_vec();
        argv.extend_from_slice(&good);
        argv.extend_from_slice(&[
            "--daytona-organization-id",
            "org-1",
            "--daytona-poll-secs",
            "3",
        ]);
        let config = serve_args(&argv).validate().unwrap();
        let ProviderConfig::Daytona(daytona) = config.sandboxes else {
            panic!("{:?}", config.sandboxes)
        };
        let mut want = DaytonaConfig::new(
            "https://app.daytona.io/api".parse().unwrap(),
            "dtn_0123456789abcdef".into(),
            "omoi-worker".into(),
            PathBuf::from("omoi-data"),
        );
        want.connection.organization_id = Some("org-1".into());
        want.poll_interval = Duration::from_secs(3);
        assert_eq!(daytona, want);
        assert!(!format!("{daytona:?}").contains("dtn_0123"));
        // One spawn deadline flag for both remote providers, each with its own default.
        for (flag, secs) in [
            ("--spawn-deadline-secs", 45),
            ("--daytona-spawn-timeout-secs", 50),
        ] {
            let mut argv = url.to_vec();
            argv.extend_from_slice(&good);
            let value = secs.to_string();
            argv.extend_from_slice(&[flag, &value]);
            let ProviderConfig::Daytona(daytona) = serve_args(&argv).validate().unwrap().sandboxes
            else {
                panic!("not daytona")
            };
            assert_eq!(daytona.spawn_deadline, Duration::from_secs(secs), "{flag}");
        }
        let ProviderConfig::Kubernetes { config, .. } = serve_args(&[
            "--provider",
            "kubernetes",
            "--public-url",
            "http://omoi.omoi.svc:8080",
        ])
        .validate()
        .unwrap()
        .sandboxes
        else {
            panic!("not kubernetes")
        };
        assert_eq!(config.spawn_deadline, Duration::from_secs(60));

        let refused = |extra: &[&str], drop: &str| {
            let mut argv: Vec<&str> = url.to_vec();
            let mut i = 0;
            while i < good.len() {
                if good[i] != drop {
                    argv.extend_from_slice(&good[i..i + 2]);
                }
                i += 2;
            }
            argv.extend_from_slice(extra);
            serve_args(&argv).validate().unwrap_err().to_string()
        };
        assert_eq!(
            refused(&[], "--daytona-api-url"),
            "--provider daytona needs DAYTONA_API_URL (or --daytona-api-url): the API's base, \
             e.g. https://app.daytona.io/api"
        );
        assert_eq!(
            refused(&[], "--daytona-api-key"),
            "--provider daytona needs DAYTONA_API_KEY (a key from the Daytona dashboard)"
        );
        assert_eq!(
            refused(&[], "--daytona-snapshot"),
            "--provider daytona needs --daytona-snapshot: a snapshot that holds omoi-worker \
             (README: Run sandboxes on Daytona)"
        );
        for (bad, message) in [
            (
                ["--daytona-api-url", "ftp://x/api"],
                "DAYTONA_API_URL \"ftp://x/api\" is not an http(s) URL without credentials",
            ),
            (
                ["--daytona-api-url", "https://u:p@x/api"],
                "DAYTONA_API_URL \"https://u:p@x/api\" is not an http(s) URL without credentials",
            ),
            (
                ["--daytona-api-key", "a key"],
                "DAYTONA_API_KEY holds whitespace or control characters",
            ),
            (
                ["--daytona-organization-id", "org\u{e9}"],
                "DAYTONA_ORGANIZATION_ID \"org\u{e9}\" holds characters a header cannot carry",
            ),
            (
                ["--daytona-poll-secs", "0"],
                "--daytona-poll-secs must be at least 1",
            ),
            (
                ["--spawn-deadline-secs", "5"],
                "--spawn-deadline-secs must be at least 10 on daytona",
            ),
            (
                ["--daytona-spawn-timeout-secs", "9"],
                "--spawn-deadline-secs must be at least 10 on daytona",
            ),
        ] {
            let drop = if bad[0].starts_with("--daytona-api") {
                bad[0]
            } else {
                ""
            };
            assert_eq!(refused(&bad, drop), message, "{bad:?}");
        }
        let err = serve_args(&[&["--provider", "daytona"][..], &good[..]].concat())
            .validate()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "--provider daytona needs --public-url: the address at which Daytona sandboxes \
             reach this coordinator (an https URL they can resolve)"
        );
    }

    #[test]
    fn unavailable_providers_and_bad_flags_are_refused_with_a_reason() {
        let err = serve_args(&[
            "--provider",
            "docker",
            "--docker-host",
            "tcp://10.0.0.1:2375",
        ])
        .validate()
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "--docker-host \"tcp://10.0.0.1:2375\": only a unix socket is supported \
             (unix:///var/run/docker.sock)"
        );
        let err = serve_args(&["--provider", "docker", "--sandbox-memory-mb", "8"])
            .validate()
            .unwrap_err();
        assert_eq!(err.to_string(), "--sandbox-memory-mb must be at least 16");
        let err = serve_args(&["--listen", "nowhere"]).validate().unwrap_err();
        assert!(
            err.to_string()
                .starts_with("--listen \"nowhere\" is not an address")
        );
        let err = serve_args(&["--worker-env", "OMOI_TEST_UNSET_ANYWHERE"])
            .validate()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "--worker-env OMOI_TEST_UNSET_ANYWHERE: the variable OMOI_TEST_UNSET_ANYWHERE is not \
             set (give NAME=VALUE, or set NAME in the environment)"
        );
        let err = serve_args(&["--worker-env", "ACME_TOKEN=short"])
            .validate()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "--worker-env ACME_TOKEN is a secret of 5 bytes; secrets must be at least 8 bytes, \
             or the sandbox could not mask them in what its commands print"
        );
        let err = serve_args(&["--public-url", "example.com"])
            .validate()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "--public-url \"example.com\" must start with http:// or https://"
        );
        let err = ServeArgs {
            worker_bin: Some("/no/such/worker".into()),
            ..serve_args(&[])
        }
        .validate()
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "omoi-worker not found next to omoi or on PATH; pass --worker-bin"
        );
    }

    #[test]
    fn allowed_local_repository_directories_are_resolved_and_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path(), &link).unwrap();
        let config = serve_args(&["--allow-local-repos", link.to_str().unwrap()])
            .validate()
            .unwrap();
        assert_eq!(
            config.settings.allow_local_repos,
            vec![std::fs::canonicalize(dir.path()).unwrap()]
        );
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        let err = serve_args(&["--allow-local-repos", file.to_str().unwrap()])
            .validate()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("--allow-local-repos {}: not a directory", file.display())
        );
        let missing = dir.path().join("missing");
        let err = serve_args(&["--allow-local-repos", missing.to_str().unwrap()])
            .validate()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "--allow-local-repos {}: No such file or directory (os error 2)",
                missing.display()
            )
        );
    }

    #[test]
    fn the_docker_provider_takes_its_settings_from_the_flags() {
        let config = ServeArgs {
            worker_bin: Some("/no/worker/needed".into()),
            ..serve_args(&[
                "--provider",
                "docker",
                "--docker-host",
                "unix:///run/user/docker.sock",
                "--image",
                "my-sandbox:2",
                "--sandbox-memory-mb",
                "512",
                "--sandbox-cpus",
                "0.5",
                "--sandbox-pids",
                "256",
            ])
        }
        .validate()
        .unwrap();
        assert_eq!(
            config.sandboxes,
            ProviderConfig::Docker(DockerConfig {
                socket: "/run/user/docker.sock".into(),
                image: "my-sandbox:2".into(),
                limits: crate::sandbox::Limits {
                    memory_mb: Some(512),
                    cpus: Some(0.5),
                },
                pids_limit: 256,
                ..DockerConfig::new("omoi-data".into())
            })
        );
        assert_eq!(config.url_source, UrlSource::Listen);
        let with_url = serve_args(&[
            "--provider",
            "docker",
            "--public-url",
            "http://10.1.2.3:8080",
        ])
        .validate()
        .unwrap();
        assert!(matches!(with_url.sandboxes, ProviderConfig::Docker(_)));
        assert_eq!(with_url.url_source, UrlSource::Flag);
        assert_eq!(with_url.settings.public_url, "http://10.1.2.3:8080");
    }
}
