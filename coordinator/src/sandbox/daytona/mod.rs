//! The `daytona` provider: every sandbox is a Daytona sandbox made from one snapshot that holds
//! `omoi-worker`, over Daytona's REST API (`DAYTONA_API_URL`, `DAYTONA_API_KEY`, optionally
//! `DAYTONA_ORGANIZATION_ID`).
//!
//! - **Sandbox.** `omoi-<sandbox id>`, omoi's labels, auto-stop after idle minutes (the poll's
//!   toolbox calls keep a running one active, so it only fires once the coordinator is gone);
//!   resources are the snapshot's (the API refuses `cpu`/`memory`/`disk` with a snapshot).
//! - **Secrets.** The API shows a sandbox's `env` to its organisation: only what the sandbox runs
//!   is there; the worker's environment travels in the body of the toolbox call that starts it
//!   (see [`launch`]).
//! - **Repository.** No shared disk: the worker clones `repo_url` itself (`OMOI_REPO_URL`).
//! - **Liveness.** A poll ([`follow`]) lists the sandboxes by label each interval and asks each
//!   started one's toolbox whether the worker ended; the API has no stream a client can follow
//!   (its notifications are a socket.io gateway for its dashboard). `status` answers from what the
//!   poll found; the logs are kept in `<data-dir>/sandboxes/<id>/sandbox.log`; the sandbox is
//!   then deleted.
//! - **Answers.** 429, 5xx and lost connections are tried again, up to a bound; a create answered
//!   409 adopts the sandbox of that name when it carries this sandbox's label; the whole spawn has
//!   a deadline, after which the half-made sandbox is deleted.

pub mod client;
pub mod follow;
pub mod launch;
pub mod preflight;
pub mod state;
pub mod tracked;
pub mod wire;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use reqwest::Url;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::client::{ApiError, Client, Connection};
use self::state::{Phase, phase, status_of};
use self::tracked::{Entry, State, Tracked};
use self::wire::{CreateSandbox, ExecuteRequest, Sandbox};
use super::{
    ListedSandbox, Provider, ProviderStatus, SANDBOX_LABEL, SandboxError, SandboxHandle,
    SpawnRequest,
};
use crate::repo::is_local;

/// How the daytona provider runs sandboxes.
#[derive(Clone, PartialEq)]
pub struct DaytonaConfig {
    pub connection: Connection,
    /// The snapshot every sandbox is made from; it holds `omoi-worker` on its `PATH`.
    pub snapshot: String,
    /// Minutes without activity before Daytona stops a sandbox (0: never).
    pub auto_stop_minutes: u32,
    /// How often the sandboxes are polled.
    pub poll_interval: Duration,
    /// The longest a spawn takes, from the create to the worker started.
    pub spawn_deadline: Duration,
    /// Per sandbox `sandboxes/<id>/sandbox.log`, kept when it ends.
    pub data_dir: PathBuf,
}

impl fmt::Debug for DaytonaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DaytonaConfig")
            .field("connection", &self.connection)
            .field("snapshot", &self.snapshot)
            .field("auto_stop_minutes", &self.auto_stop_minutes)
            .field("poll_interval", &self.poll_interval)
            .field("spawn_deadline", &self.spawn_deadline)
            .field("data_dir", &self.data_dir)
            .finish()
    }
}

impl DaytonaConfig {
    /// The defaults: 5 tries from 200 ms, auto-stop after 15 min, a poll every 10 s, 5 min to
    /// spawn.
    pub fn new(api_url: Url, api_key: String, snapshot: String, data_dir: PathBuf) -> Self {
        DaytonaConfig {
            connection: Connection {
                api_url,
                api_key,
                organization_id: None,
                max_tries: 5,
                retry_base: Duration::from_millis(200),
            },
            snapshot,
            auto_stop_minutes: 15,
            poll_interval: Duration::from_secs(10),
            spawn_deadline: Duration::from_secs(300),
            data_dir,
        }
    }
}

/// What the provider and its poll share.
#[derive(Debug)]
pub struct Shared {
    pub client: Client,
    pub config: DaytonaConfig,
    pub tracked: Tracked,
}

/// Runs sandboxes in Daytona.
#[derive(Debug, Clone)]
pub struct DaytonaProvider {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// How long a start-up (or a sandbox not started yet) is polled between tries.
const START_POLL: Duration = Duration::from_millis(500);

impl DaytonaProvider {
    /// Checks the key, organisation and snapshot (see [`preflight`]), finds the sandboxes already
    /// there, then starts the poll.
    pub async fn start(config: DaytonaConfig) -> Result<DaytonaProvider, SandboxError> {
        let client = Client::new(config.connection.clone())
            .map_err(|e| SandboxError::Provider(format!("daytona: {e}")))?;
        preflight::check(
            &client,
            &config.snapshot,
            config.connection.organization_id.as_deref(),
        )
        .await?;
        let shared = Arc::new(Shared {
            client,
            config,
            tracked: Tracked::default(),
        });
        follow::pass(&shared).await;
        let stop = CancellationToken::new();
        tokio::spawn(follow::run(shared.clone(), stop.clone()));
        tracing::info!(api = %shared.config.connection.api_url, snapshot = %shared.config.snapshot,
            "daytona provider connected");
        Ok(DaytonaProvider {
            inner: Arc::new(Inner { shared, stop }),
        })
    }

    /// Stops the poll (the sandboxes are left as they are).
    pub fn close(&self) {
        self.inner.stop.cancel();
    }

    /// The log of one sandbox, written when it ended.
    pub fn log_path(&self, sandbox_id: &str) -> PathBuf {
        follow::log_path(&self.inner.shared.config.data_dir, sandbox_id)
    }

    /// The requests sent to the API and toolboxes so far (tries included).
    pub fn requests_sent(&self) -> u64 {
        self.inner.shared.client.requests_sent()
    }

    async fn spawn_inner(&self, request: SpawnRequest) -> Result<SandboxHandle, SandboxError> {
        let id = request.sandbox_id.clone();
        let failed = |reason: String| SandboxError::Spawn {
            sandbox_id: id.clone(),
            reason,
        };
        if let Some(repo) = request.repo.as_deref().filter(|r| is_local(r)) {
            return Err(failed(format!(
                "the repository {repo:?} is a path on the coordinator's machine, which a Daytona \
                 sandbox cannot reach; the project must name a git URL"
            )));
        }
        launch::check(&request).map_err(failed)?;
        let shared = &self.inner.shared;
        let deadline = Instant::now() + shared.config.spawn_deadline;
        let body = CreateSandbox {
            name: launch::sandbox_name(&id),
            snapshot: shared.config.snapshot.clone(),
            env: launch::visible_env(&request),
            labels: request.sandbox_labels(),
            auto_stop_interval: shared.config.auto_stop_minutes,
            public: false,
        };
        let late = || {
            failed(format!(
                "not started within {} s",
                shared.config.spawn_deadline.as_secs()
            ))
        };
        let created = match tokio::time::timeout_at(deadline, create(&shared.client, &body, &id))
            .await
        {
            Ok(created) => created
                .map_err(|e| failed(format!("creating the Daytona sandbox {}: {e}", body.name)))?,
            Err(_) => {
                // The create may have gone through: its name finds it.
                if let Err(e) = shared.client.delete(&body.name).await {
                    tracing::warn!(name = %body.name, error = %e,
                        "deleting a sandbox whose create ran past the deadline");
                }
                return Err(late());
            }
        };
        shared.tracked.insert(
            &created.id,
            Entry {
                sandbox_id: id.clone(),
                toolbox: String::new(),
                state: State::Spawning,
                adopted: false,
                seen_at: std::time::Instant::now(),
            },
        );
        let daytona_id = created.id.clone();
        let started = tokio::time::timeout_at(deadline, start_worker(shared, created, &request))
            .await
            .unwrap_or_else(|_| {
                Err((
                    daytona_id,
                    format!(
                        "not started within {} s",
                        shared.config.spawn_deadline.as_secs()
                    ),
                ))
            });
        match started {
            Ok((daytona_id, toolbox)) => {
                shared.tracked.running(&daytona_id, &toolbox);
                tracing::info!(sandbox = %id, daytona = %daytona_id, "daytona sandbox started");
                Ok(SandboxHandle(daytona_id))
            }
            Err((daytona_id, reason)) => {
                shared.tracked.forget(&daytona_id);
                if let Err(e) = shared.client.delete(&daytona_id).await {
                    tracing::warn!(daytona = %daytona_id, error = %e,
                        "deleting a sandbox whose spawn failed");
                }
                Err(failed(reason))
            }
        }
    }

    async fn terminate_inner(&self, handle: &SandboxHandle) -> Result<(), SandboxError> {
        let shared = &self.inner.shared;
        if shared.tracked.terminating(&handle.0) {
            if let Some(entry) = shared.tracked.get(&handle.0) {
                follow::keep_logs(shared, &handle.0, &entry).await;
            }
        }
        shared.client.delete(&handle.0).await.map_err(|e| {
            SandboxError::Provider(format!("daytona: deleting the sandbox {}: {e}", handle.0))
        })?;
        shared.tracked.deleted(&handle.0);
        Ok(())
    }

    async fn list_inner(
        &self,
        labels: &BTreeMap<String, String>,
    ) -> Result<Vec<ListedSandbox>, SandboxError> {
        let shared = &self.inner.shared;
        let listed = shared
            .client
            .list(labels)
            .await
            .map_err(|e| SandboxError::Provider(format!("daytona: listing sandboxes: {e}")))?;
        let mut sandboxes: Vec<ListedSandbox> = listed
            .into_iter()
            .filter_map(|sandbox| {
                let phase = phase(sandbox.state.as_deref());
                if phase == Phase::Destroyed {
                    return None;
                }
                let status = match shared.tracked.status(&sandbox.id) {
                    Some(known @ (ProviderStatus::Exited { .. } | ProviderStatus::Lost { .. })) => {
                        known
                    }
                    _ => status_of(&phase, sandbox.error_reason.as_deref())
                        .unwrap_or(ProviderStatus::Running),
                };
                Some(ListedSandbox {
                    handle: SandboxHandle(sandbox.id),
                    labels: sandbox
                        .labels
                        .into_iter()
                        .filter(|(k, _)| k.starts_with("omoi."))
                        .collect(),
                    status,
                })
            })
            .collect();
        sandboxes.sort_by(|a, b| a.handle.0.cmp(&b.handle.0));
        Ok(sandboxes)
    }
}

/// Creates the sandbox; a 409 (a create that went through before, its answer lost) adopts the
/// sandbox of that name when it carries `sandbox_id`'s label.
async fn create(
    client: &Client,
    body: &CreateSandbox,
    sandbox_id: &str,
) -> Result<Sandbox, ApiError> {
    match client.create(body).await {
        Err(ApiError::Status { code: 409, message }) => {
            let there = client.sandbox(&body.name).await?;
            if there.labels.get(SANDBOX_LABEL).map(String::as_str) == Some(sandbox_id) {
                Ok(there)
            } else {
                Err(ApiError::Status { code: 409, message })
            }
        }
        other => other,
    }
}

/// Waits for the sandbox to start, then starts the worker: its Daytona id and toolbox, or the id
/// and why not.
async fn start_worker(
    shared: &Shared,
    mut sandbox: Sandbox,
    request: &SpawnRequest,
) -> Result<(String, String), (String, String)> {
    let id = sandbox.id.clone();
    loop {
        match phase(sandbox.state.as_deref()) {
            Phase::Started if !sandbox.toolbox_proxy_url.is_empty() => break,
            Phase::Started | Phase::Starting => {}
            other => {
                let status = status_of(&other, sandbox.error_reason.as_deref());
                let reason = status.map_or_else(|| "did not start".into(), |s| s.to_string());
                return Err((id, format!("the Daytona sandbox {reason}")));
            }
        }
        tokio::time::sleep(START_POLL).await;
        sandbox = shared
            .client
            .sandbox(&id)
            .await
            .map_err(|e| (id.clone(), format!("reading the Daytona sandbox {id}: {e}")))?;
    }
    let toolbox = sandbox.toolbox_proxy_url;
    let start = ExecuteRequest {
        command: launch::START.to_string(),
        timeout: 30,
        envs: launch::worker_env(request),
    };
    let answer = shared
        .client
        .execute(&toolbox, &id, &start)
        .await
        .map_err(|e| (id.clone(), format!("starting the worker in {id}: {e}")))?;
    if answer.exit_code != 0 {
        return Err((
            id.clone(),
            format!(
                "starting the worker in {id} failed with {}: {}",
                answer.exit_code,
                answer.result.trim()
            ),
        ));
    }
    Ok((id, toolbox))
}

impl Provider for DaytonaProvider {
    fn name(&self) -> &'static str {
        "daytona"
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
}
