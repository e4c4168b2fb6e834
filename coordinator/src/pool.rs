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
//! each coordinator (a replica keeps its own, and those it adopted from a lost replica: see
//! `presence`), replaces those that died or went silent while idle, and ends those that never
//! registered or were claimed but never fetched their assignment. A standby that dies after its assignment was fetched is an ordinary sandbox:
//! liveness finds it lost and recovers as for any other.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::app::AppState;
use crate::error::{Error, Result};
use crate::sandbox::warm::WarmPools;
use crate::sandbox::{
    Limits, OWNER, OWNER_LABEL, ProviderStatus, SANDBOX_LABEL, SandboxHandle, SpawnRequest,
    pool_label_value,
};
use crate::store::{NewStandby, Reach, Standby, StandbyState, new_id, now_ms};

pub use crate::sandbox::POOL_LABEL;
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
/// How long a launch waits for a provider's pool to hand out a sandbox whose standby is ready,
/// before it withdraws the claim and starts cold.
pub const CLAIM_BOUND: Duration = Duration::from_secs(5);
/// How often a launch looks for the claimed sandbox's standby in the store.
const ENROLL_POLL: Duration = Duration::from_millis(50);

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
pub fn keeps_pools(state: &AppState) -> bool {
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
    if keeps_pools(state) && request.image_pull_secrets.is_empty() {
        let started = match state.provider.warm_pools() {
            Some(pools) => start_claimed(state, pools, &request).await?,
            None => start_warm(state, &request).await?,
        };
        if let Some(started) = started {
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
    // A standby into which the repository is put must be one this replica's provider reaches.
    let reach = if repo.is_some() {
        Reach::Scope {
            replica_id: &state.settings.replica_id,
            scope: state.provider_scope.as_deref(),
        }
    } else {
        Reach::Any
    };
    for _ in 0..CLAIM_TRIES {
        let fresh_since = now_ms().saturating_sub(millis(FRESH));
        let Some(standby) = state
            .store
            .claim_standby(provider, key, fresh_since, reach)
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

/// A warm start from a provider's own pool: a claim hands out one of its sandboxes (the provider
/// chooses which); the standby enrolled for that sandbox is claimed in the store by its handle,
/// so two launches — of one coordinator or of several — never assign one sandbox twice. A claim
/// not handed a warm sandbox whose standby is ready within [`CLAIM_BOUND`] is withdrawn (a miss:
/// the launch starts cold).
async fn start_claimed(
    state: &AppState,
    pools: &dyn WarmPools,
    request: &SpawnRequest,
) -> Result<Option<Started>> {
    let key = pool_key(request.image.as_deref());
    remember_pool(state, key);
    let started = Instant::now();
    let handle = match pools.claim(request, CLAIM_BOUND).await {
        Ok(Some(handle)) => handle,
        Ok(None) => return Ok(None),
        Err(e) => {
            // The launch starts cold; whatever the claim made goes with it.
            tracing::warn!(sandbox = %request.sandbox_id, error = %e, "claiming a warm sandbox failed");
            release(pools, request).await;
            return Ok(None);
        }
    };
    let provider = state.provider.name();
    let standby = loop {
        if let Some(standby) = state
            .store
            .claim_standby_by_handle(provider, &handle.0)
            .await?
        {
            break Some(standby);
        }
        if started.elapsed() + ENROLL_POLL > CLAIM_BOUND {
            break None;
        }
        tokio::time::sleep(ENROLL_POLL).await;
    };
    let Some(standby) = standby else {
        tracing::info!(sandbox = %handle.0, "the claimed sandbox's standby was not ready in time");
        release(pools, request).await;
        return Ok(None);
    };
    if let Err(e) = pools.adopt(&handle, request).await {
        tracing::warn!(sandbox = %handle.0, error = %e, "adopting a claimed sandbox failed");
        let _ = state.store.end_standby(&standby.id, &e.to_string()).await;
        release(pools, request).await;
        return Ok(None);
    }
    if !state
        .store
        .assign_standby(&standby.id, &request.sandbox_id, &request.env)
        .await?
    {
        release(pools, request).await;
        return Ok(None);
    }
    state.standby_wakers.wake(&standby.id);
    state.metrics.pool_claimed();
    tracing::info!(sandbox = %request.sandbox_id, standby = %standby.id, handle = %handle.0,
        ms = started.elapsed().as_millis(), "warm sandbox claimed from the provider's pool");
    Ok(Some(Started {
        handle,
        replica_id: standby.replica_id,
        warm: true,
    }))
}

/// Withdraws a launch's claim; a failure is logged (the launch starts cold either way).
async fn release(pools: &dyn WarmPools, request: &SpawnRequest) {
    if let Err(e) = pools.release(request).await {
        tracing::warn!(sandbox = %request.sandbox_id, error = %e, "withdrawing a claim failed");
    }
}

/// Adds `key` to the pools this coordinator keeps (up to [`MAX_POOLS`]).
pub fn remember_pool(state: &AppState, key: &str) {
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
    if !keeps_pools(&state) {
        return;
    }
    let mut backoff: HashMap<String, Instant> = HashMap::new();
    let mut kept: HashSet<String> = HashSet::new();
    let mut checked: Option<Instant> = None;
    loop {
        // The provider is asked about each waiting standby once per monitor interval, not at
        // every pass a claim wakes (a burst of claims would ask about the whole pool each time).
        let ask = checked.is_none_or(|at| at.elapsed() >= state.settings.monitor_interval);
        if ask {
            checked = Some(Instant::now());
        }
        let kept_up = match state.provider.warm_pools() {
            Some(pools) => keep_provider_pools(&state, pools, &mut kept).await,
            None => upkeep(&state, &mut backoff, ask).await,
        };
        if let Err(e) = kept_up {
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

/// One pass: ends the standbys that died (asking the provider when `ask`), went silent or got
/// stuck, then spawns what each pool lacks (in parallel), and publishes the idle count.
pub async fn upkeep(
    state: &AppState,
    backoff: &mut HashMap<String, Instant>,
    ask: bool,
) -> Result<()> {
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
            StandbyState::Starting | StandbyState::Idle if ask => match &standby.handle {
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

/// One pass over a provider's own pools: each pool of this coordinator is created, or resized
/// to `--warm-pool`, once since start (`kept`; again after a failure), and tended (its ended
/// waiting sandboxes deleted, so that the provider replaces them); this replica's standbys whose
/// sandbox is no longer among the pool's are ended; the idle count is published. The provider
/// makes the sandboxes.
async fn keep_provider_pools(
    state: &AppState,
    pools: &dyn WarmPools,
    kept: &mut HashSet<String>,
) -> Result<()> {
    let images: Vec<String> = state
        .pool_images
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .iter()
        .cloned()
        .collect();
    for image in &images {
        if kept.contains(image) {
            continue;
        }
        let name = pools.pool_name(image);
        let Some(credential) = state.store.pool_credential(&name) else {
            continue;
        };
        let env = enrolling_env(
            &state.settings.public_url,
            &name,
            &credential,
            state.settings.standby_idle_secs,
        );
        match pools.keep(image, state.settings.warm_pool, &env).await {
            Ok(()) => {
                kept.insert(image.clone());
            }
            Err(e) => tracing::warn!(pool = %name, error = %e, "keeping a warm pool failed"),
        }
    }
    let standbys = state
        .store
        .live_standbys_of_replica(&state.settings.replica_id, state.provider.name())
        .await?;
    // One list per pool: its live Sandboxes (claimed ones included); its ended waiting ones are
    // deleted there, which makes its controller replace them.
    let mut members: HashMap<String, std::collections::BTreeSet<String>> = HashMap::new();
    for image in kept.iter() {
        match pools.tend(image).await {
            Ok(found) => {
                members.insert(image.clone(), found);
            }
            Err(e) => tracing::warn!(error = %e, "tending a warm pool failed"),
        }
    }
    let mut idle = 0u64;
    for standby in standbys {
        let claimed_since = standby.claimed_ms.unwrap_or(standby.created_ms);
        let stuck = matches!(
            standby.state,
            StandbyState::Claimed | StandbyState::Assigned
        ) && now_ms().saturating_sub(claimed_since) > millis(CLAIM_LIMIT);
        if stuck {
            // Its sandbox is a launch's now, which liveness ends when it stays silent; only
            // the record ends here.
            let _ = state
                .store
                .end_standby(&standby.id, "its assignment was never fetched")
                .await;
            continue;
        }
        if !matches!(standby.state, StandbyState::Starting | StandbyState::Idle) {
            continue;
        }
        let Some(found) = members.get(&standby.pool) else {
            // Not kept yet, or not listed this time: judged at the next pass.
            continue;
        };
        let alive = standby.handle.as_ref().is_some_and(|h| found.contains(h));
        if alive {
            if standby.state == StandbyState::Idle {
                idle += 1;
            }
            continue;
        }
        // Gone from its pool (ended and deleted, or deleted): its record ends. A Sandbox a claim
        // took meanwhile is still among the pool's, so a launch's claim is never cut short here.
        match state
            .store
            .end_standby(&standby.id, "its sandbox left the pool")
            .await
        {
            Ok(true) => tracing::warn!(standby = %standby.id, "standby sandbox left its pool"),
            Ok(false) => {}
            Err(e) => tracing::warn!(standby = %standby.id, error = %e, "ending a standby failed"),
        }
    }
    state.metrics.set_pool_idle(idle);
    Ok(())
}

/// The environment of every sandbox of a provider's pool `pool_name`: where the coordinator is,
/// the pool's name and registration credential, how long to wait. Nothing of a project.
pub fn enrolling_env(
    public_url: &str,
    pool_name: &str,
    credential: &str,
    idle_secs: u64,
) -> BTreeMap<String, String> {
    use omoi_protocol::env;
    BTreeMap::from([
        (env::OMOIOS_API_URL.to_string(), public_url.to_string()),
        (env::STANDBY_POOL.to_string(), pool_name.to_string()),
        (
            env::STANDBY_ENROLL_TOKEN.to_string(),
            credential.to_string(),
        ),
        (env::STANDBY_IDLE_SECS.to_string(), idle_secs.to_string()),
    ])
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
                (POOL_LABEL.to_string(), pool_label_value(&image)),
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
