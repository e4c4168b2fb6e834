//! Warm pools: standby sandboxes started in advance, so that a launch takes one that is already
//! running instead of waiting for a process or a container to start.
//!
//! A standby is spawned through the ordinary [`Provider::spawn`](crate::sandbox::Provider) with
//! a standby environment (the coordinator's URL, the standby's id and its own pool credential;
//! no secret, no work): its worker announces itself and long-polls for an assignment. A launch
//! ([`start`]) claims one idle standby of its image in one statement, puts the repository in
//! place when the provider shares no clone with the worker, and stores the sandbox's whole
//! environment as the standby's sealed assignment; the worker fetches it once and runs as a
//! worker started with that environment would. An empty pool is a cold start.
//!
//! The upkeep ([`run`]) keeps `Settings::warm_pool` standbys starting or idle per image on
//! each coordinator (a replica keeps its own), replaces those that died or went silent while
//! idle, and ends those that never registered or were claimed but never fetched their
//! assignment. A standby that dies after its assignment was fetched is an ordinary sandbox:
//! liveness finds it lost and recovers as for any other.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::app::AppState;
use crate::error::{Error, Result};
use crate::sandbox::{
    Limits, OWNER, OWNER_LABEL, ProviderStatus, SANDBOX_LABEL, SandboxHandle, SpawnRequest,
};
use crate::store::{NewStandby, Standby, StandbyState, new_id, now_ms};

/// The label that marks a standby sandbox (its value: the pool's image, or `default`).
pub const POOL_LABEL: &str = "omoi.pool";
/// A standby heard within this long may be claimed; one silent for longer is replaced. Its
/// worker polls at least every 25 s.
pub const FRESH: Duration = Duration::from_secs(40);
/// A standby that has not registered this long after its spawn is ended.
const START_LIMIT: Duration = Duration::from_secs(120);
/// A claimed standby whose worker has not fetched its assignment this long after the claim is
/// ended (the launch's sandbox is then lost, and recovered, as any silent sandbox).
const CLAIM_LIMIT: Duration = Duration::from_secs(60);
/// The most images this coordinator keeps pools for.
const MAX_POOLS: usize = 16;
/// How long a pool whose spawn failed, or whose standby ended before it registered, waits
/// before it spawns again.
const SPAWN_BACKOFF: Duration = Duration::from_secs(5);
/// The most claims one launch tries before it starts cold (a claimed standby may turn out to
/// be gone).
const CLAIM_TRIES: usize = 3;

/// How a launch's sandbox started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    pub handle: SandboxHandle,
    /// The coordinator whose provider spawned it (the standby's spawner for a warm start).
    pub replica_id: String,
    /// Whether it was a warm standby.
    pub warm: bool,
}

/// Whether this coordinator keeps warm pools: a size, and the key that seals assignments.
fn warm(state: &AppState) -> bool {
    state.settings.warm_pool > 0 && state.store.has_secret_key()
}

/// The pool of an image: `""` for the provider's default.
pub fn pool_key(image: Option<&str>) -> &str {
    image.unwrap_or("")
}

/// Starts the sandbox of `request`: a claimed standby of its image when the pool has one ready,
/// else a cold spawn. On a warm start the request's environment is the standby's assignment and
/// its repository (unless the worker clones it) is put into the running sandbox first.
/// A request that names its project's own image pull secrets starts cold: standbys are made with
/// the server's pull secrets only, so they never hold an image pulled with a project's credential.
pub async fn start(state: &AppState, request: SpawnRequest) -> Result<Started> {
    if warm(state) && request.image_pull_secrets.is_empty() {
        if let Some(started) = start_warm(state, &request).await? {
            return Ok(started);
        }
        state.metrics.pool_missed();
        state.pool_wake.notify_one();
    }
    let handle = state.provider.spawn(request).await?;
    Ok(Started {
        handle,
        replica_id: state.settings.replica_id.clone(),
        warm: false,
    })
}

async fn start_warm(state: &AppState, request: &SpawnRequest) -> Result<Option<Started>> {
    let key = pool_key(request.image.as_deref());
    remember_pool(state, key);
    let provider = state.provider.name();
    let repo = request
        .repo
        .as_deref()
        .filter(|_| !state.provider.clones_repository());
    // Before the claim: a repository that cannot be read fails the launch and takes no standby.
    if let Some(repo) = repo {
        state.provider.prepare_repository(repo).await?;
    }
    for _ in 0..CLAIM_TRIES {
        let fresh_since = now_ms().saturating_sub(millis(FRESH));
        let Some(standby) = state
            .store
            .claim_standby(provider, key, fresh_since)
            .await?
        else {
            return Ok(None);
        };
        let Some(handle) = standby.handle.clone().map(SandboxHandle) else {
            end(state, &standby, "claimed without a handle").await;
            continue;
        };
        if let Some(repo) = repo {
            if let Err(e) = state.provider.place_repository(&handle, repo).await {
                tracing::warn!(standby = %standby.id, error = %e, "putting the repository into a standby failed");
                end(
                    state,
                    &standby,
                    &format!("the repository could not be put in place: {e}"),
                )
                .await;
                return Ok(None);
            }
        }
        if !state
            .store
            .assign_standby(&standby.id, &request.sandbox_id, &request.env)
            .await?
        {
            // It died between the claim and the assignment; the upkeep removed it.
            continue;
        }
        state.standby_wakers.wake(&standby.id);
        state.metrics.pool_claimed();
        state.pool_wake.notify_one();
        tracing::info!(sandbox = %request.sandbox_id, standby = %standby.id, "warm sandbox claimed");
        return Ok(Some(Started {
            handle,
            replica_id: standby.replica_id,
            warm: true,
        }));
    }
    Ok(None)
}

/// Adds `key` to the pools this coordinator keeps (up to [`MAX_POOLS`]).
fn remember_pool(state: &AppState, key: &str) {
    let mut images = state
        .pool_images
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if images.len() < MAX_POOLS && !images.contains(key) {
        images.insert(key.to_string());
    }
}

/// Keeps the pools until `shutdown`: each `monitor_interval`, and early after a claim or a miss.
/// At shutdown this coordinator's standbys that wait (starting or idle) are ended and stopped:
/// they hold no work, and nothing would watch them (a claimed one is a launch's sandbox, left to
/// run as every sandbox is).
pub async fn run(state: AppState, shutdown: CancellationToken) {
    if state.settings.warm_pool > 0 && !state.store.has_secret_key() {
        tracing::error!(
            "--warm-pool needs the operator's key (assignments are stored sealed): no warm pool"
        );
    }
    if !warm(&state) {
        return;
    }
    let mut backoff: HashMap<String, Instant> = HashMap::new();
    loop {
        if let Err(e) = upkeep(&state, &mut backoff).await {
            tracing::error!(error = %e, "keeping the warm pools failed");
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = state.pool_wake.notified() => {}
            () = tokio::time::sleep(state.settings.monitor_interval) => {}
        }
    }
    if let Err(e) = drain(&state).await {
        tracing::warn!(error = %e, "stopping the warm pools' standbys failed");
    }
}

/// Ends and stops this coordinator's standbys that are starting or idle.
async fn drain(state: &AppState) -> Result<()> {
    let standbys = state
        .store
        .live_standbys_of_replica(&state.settings.replica_id, state.provider.name())
        .await?;
    let waiting = standbys
        .iter()
        .filter(|s| matches!(s.state, StandbyState::Starting | StandbyState::Idle));
    futures_util::future::join_all(
        waiting.map(|standby| end(state, standby, "the coordinator stopped")),
    )
    .await;
    Ok(())
}

/// One pass: ends the standbys that died, went silent or got stuck, then spawns what each pool
/// lacks (in parallel), and publishes the idle count.
pub async fn upkeep(state: &AppState, backoff: &mut HashMap<String, Instant>) -> Result<()> {
    let now = now_ms();
    let mut waiting: BTreeMap<String, u32> = BTreeMap::new();
    let mut idle = 0u64;
    let standbys = state
        .store
        .live_standbys_of_replica(&state.settings.replica_id, state.provider.name())
        .await?;
    for standby in standbys {
        let age = |since: i64| Duration::from_millis(u64::try_from(now - since).unwrap_or(0));
        let reason = match standby.state {
            StandbyState::Starting if age(standby.created_ms) > START_LIMIT => {
                Some("it never registered".to_string())
            }
            StandbyState::Idle if age(standby.seen_ms) > FRESH => {
                Some(format!("silent for {} s while idle", FRESH.as_secs()))
            }
            StandbyState::Claimed | StandbyState::Assigned
                if age(standby.claimed_ms.unwrap_or(standby.created_ms)) > CLAIM_LIMIT =>
            {
                Some("its assignment was never fetched".to_string())
            }
            StandbyState::Starting | StandbyState::Idle => match &standby.handle {
                Some(handle) => match state.provider.status(&SandboxHandle(handle.clone())).await {
                    Ok(ProviderStatus::Running) => None,
                    Ok(status) => Some(format!("the standby {status} before its assignment")),
                    Err(e) => {
                        tracing::warn!(standby = %standby.id, error = %e, "standby status unknown");
                        None
                    }
                },
                None => None,
            },
            _ => None,
        };
        if let Some(reason) = reason {
            tracing::warn!(standby = %standby.id, %reason, "standby sandbox removed");
            end(state, &standby, &reason).await;
            if standby.state == StandbyState::Starting {
                // One that ends before it registers (an image whose worker has no standby mode,
                // a coordinator it cannot reach) would end the same way again at once.
                backoff.insert(standby.pool.clone(), Instant::now() + SPAWN_BACKOFF);
            }
            continue;
        }
        if matches!(standby.state, StandbyState::Starting | StandbyState::Idle) {
            *waiting.entry(standby.pool.clone()).or_default() += 1;
            if standby.state == StandbyState::Idle {
                idle += 1;
            }
        }
    }
    state.metrics.set_pool_idle(idle);
    let images: Vec<String> = state
        .pool_images
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .iter()
        .cloned()
        .collect();
    let mut spawns = Vec::new();
    for image in images {
        if backoff
            .get(&image)
            .is_some_and(|until| *until > Instant::now())
        {
            continue;
        }
        let have = waiting.get(&image).copied().unwrap_or(0);
        for _ in have..state.settings.warm_pool {
            spawns.push(spawn_standby(state, image.clone()));
        }
    }
    for (image, spawned) in futures_util::future::join_all(spawns).await {
        if let Err(e) = spawned {
            tracing::warn!(image = %image, error = %e, "spawning a standby sandbox failed");
            backoff.insert(image, Instant::now() + SPAWN_BACKOFF);
        }
    }
    Ok(())
}

/// The environment of a standby sandbox: where the coordinator is, who the standby is and its
/// pool credential, how long to wait. Nothing of a project, no secret of the server's.
pub fn standby_env(
    public_url: &str,
    id: &str,
    token: &str,
    idle_secs: u64,
) -> BTreeMap<String, String> {
    use omoi_protocol::env;
    BTreeMap::from([
        (env::OMOIOS_API_URL.to_string(), public_url.to_string()),
        (env::STANDBY_ID.to_string(), id.to_string()),
        (env::STANDBY_TOKEN.to_string(), token.to_string()),
        (env::STANDBY_IDLE_SECS.to_string(), idle_secs.to_string()),
    ])
}

/// Records and spawns one standby of `image`'s pool.
async fn spawn_standby(state: &AppState, image: String) -> (String, Result<()>) {
    let spawned = async {
        let id = new_id();
        let token = state
            .store
            .open_standby(NewStandby {
                id: &id,
                pool: &image,
                provider: state.provider.name(),
                replica_id: &state.settings.replica_id,
            })
            .await?;
        let request = SpawnRequest {
            sandbox_id: id.clone(),
            image: (!image.is_empty()).then(|| image.clone()),
            env: standby_env(
                &state.settings.public_url,
                &id,
                &token,
                state.settings.standby_idle_secs,
            ),
            labels: BTreeMap::from([
                (OWNER_LABEL.to_string(), OWNER.to_string()),
                (SANDBOX_LABEL.to_string(), id.clone()),
                (
                    POOL_LABEL.to_string(),
                    if image.is_empty() {
                        "default".to_string()
                    } else {
                        image.clone()
                    },
                ),
            ]),
            limits: Limits::default(),
            repo: None,
            image_pull_secrets: Vec::new(),
        };
        match state.provider.spawn(request).await {
            Ok(SandboxHandle(handle)) => {
                state.store.set_standby_handle(&id, &handle).await?;
                state.metrics.sandbox_spawned();
                Ok(())
            }
            Err(e) => {
                state.store.end_standby(&id, &e.to_string()).await?;
                Err(Error::Sandbox(e))
            }
        }
    }
    .await;
    (image, spawned)
}

/// Ends a standby in the store and stops its sandbox.
async fn end(state: &AppState, standby: &Standby, reason: &str) {
    match state.store.end_standby(&standby.id, reason).await {
        Ok(true) => {}
        // Delivered or ended by someone else meanwhile: not ours to stop.
        Ok(false) => return,
        Err(e) => {
            tracing::warn!(standby = %standby.id, error = %e, "ending a standby failed");
            return;
        }
    }
    if let Some(handle) = &standby.handle {
        let handle = SandboxHandle(handle.clone());
        if let Err(e) = state.provider.terminate(&handle).await {
            tracing::warn!(standby = %standby.id, error = %e, "stopping a standby failed");
        }
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
