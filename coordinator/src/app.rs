//! The application state: the settings a server runs with and `AppState`, what the handlers and
//! the background services share (store, hub, provider, metrics, shutdown).

use std::collections::BTreeMap;
use std::ops::Deref;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::hub::Hub;
use crate::ingest::Quotas;
use crate::metrics::Metrics;
use crate::sandbox::Provider;
use crate::store::{Store, TaskPolicy};
use crate::throttle::Throttle;
use crate::wake::Wakers;

/// Failed dashboard sign-ins one address may make per window before it must wait.
const SIGN_IN_FAILURES: u32 = 10;
const SIGN_IN_WINDOW: Duration = Duration::from_secs(60);

/// How the server runs sandboxes and watches them; validated before it is built.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The base URL sandboxes call back, e.g. `http://127.0.0.1:8080`.
    pub public_url: String,
    /// Passed to workers as `HEARTBEAT_SECS`; a sandbox is lost after three times this of silence.
    pub heartbeat_secs: u64,
    /// How often the liveness monitor looks at the sandboxes.
    pub monitor_interval: Duration,
    /// How many times a spec's lost sandbox is replaced before the spec fails.
    pub max_recoveries: u32,
    /// Worker environment of every sandbox (a project's own values win).
    pub worker_env: BTreeMap<String, String>,
    /// Tasks running at once over all projects (0: this coordinator starts no task).
    pub max_running_tasks: u32,
    /// Tasks of one project running at once.
    pub max_running_tasks_per_project: u32,
    /// Attempts per task and the backoff between them.
    pub task_policy: TaskPolicy,
    /// How often the scheduler looks for ready tasks (it also runs after task events).
    pub scheduler_interval: Duration,
    /// Canonical directories under which a project may name a local repository (none: only git
    /// URLs).
    pub allow_local_repos: Vec<PathBuf>,
    /// What one sandbox may store and how far ahead its events may run.
    pub quotas: Quotas,
    /// This coordinator's name among the replicas on one database (metrics, sandbox ownership,
    /// its own notices); a fresh id unless given.
    pub replica_id: String,
    /// Standby sandboxes this coordinator keeps ready per image (0: no warm pool).
    pub warm_pool: u32,
    /// How long a standby waits for an assignment before its worker exits.
    pub standby_idle_secs: u64,
    /// How often a waiting assignment poll looks at the store besides its wake-ups (this
    /// replica's claims, and the other replicas' through the relay): the safety net for a lost
    /// notification.
    pub standby_recheck: Duration,
    /// Silence after which another replica counts as lost and its waiting standbys are taken
    /// over; each replica records that it is alive several times within it.
    pub replica_lost_after: Duration,
}

impl Settings {
    /// Settings with the defaults of `omoi serve` for a server reachable at `public_url`.
    pub fn new(public_url: impl Into<String>) -> Settings {
        Settings {
            public_url: public_url.into().trim_end_matches('/').to_string(),
            heartbeat_secs: 10,
            monitor_interval: Duration::from_secs(2),
            max_recoveries: 3,
            worker_env: BTreeMap::new(),
            max_running_tasks: 8,
            max_running_tasks_per_project: 4,
            task_policy: TaskPolicy::default(),
            scheduler_interval: Duration::from_secs(1),
            allow_local_repos: Vec::new(),
            quotas: Quotas::default(),
            replica_id: crate::store::new_id(),
            warm_pool: 0,
            standby_idle_secs: 600,
            standby_recheck: Duration::from_secs(2),
            replica_lost_after: Duration::from_secs(30),
        }
    }

    /// Silence after which a sandbox is lost.
    pub fn lost_after(&self) -> Duration {
        Duration::from_secs(self.heartbeat_secs.saturating_mul(3))
    }
}

/// Everything the handlers and background tasks share.
#[derive(Debug)]
pub struct AppInner {
    pub store: Store,
    pub hub: Hub,
    pub provider: Arc<dyn Provider>,
    /// Where the provider's sandboxes live (`Provider::scope`), read once at start.
    pub provider_scope: Option<String>,
    pub settings: Settings,
    pub metrics: Metrics,
    /// Cancelled when the server shuts down (ends live streams and the monitor).
    pub shutdown: CancellationToken,
    /// Wakes the scheduler early (after events that may have changed a task).
    pub scheduler_wake: tokio::sync::Notify,
    /// Failed dashboard sign-ins per client address.
    pub sign_in_failures: Throttle,
    /// Standby workers waiting for their assignment, by standby id.
    pub standby_wakers: Wakers,
    /// Wakes the warm pools' upkeep early (after a claim or a miss).
    pub pool_wake: tokio::sync::Notify,
    /// The images whose pools this coordinator keeps (`""`: the provider's default); grows when
    /// a launch of another image finds no pool, up to a bound.
    pub pool_images: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

/// The shared state; cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState(Arc<AppInner>);

impl AppState {
    /// The state of a server over `store` running sandboxes on `provider`.
    pub fn new(store: Store, provider: Arc<dyn Provider>, settings: Settings) -> AppState {
        AppState(Arc::new(AppInner {
            store,
            hub: Hub::default(),
            provider_scope: provider.scope(),
            provider,
            settings,
            metrics: Metrics::default(),
            shutdown: CancellationToken::new(),
            scheduler_wake: tokio::sync::Notify::new(),
            sign_in_failures: Throttle::new(SIGN_IN_FAILURES, SIGN_IN_WINDOW),
            standby_wakers: Wakers::default(),
            pool_wake: tokio::sync::Notify::new(),
            pool_images: std::sync::Mutex::new(std::collections::BTreeSet::from([String::new()])),
        }))
    }
}

impl Deref for AppState {
    type Target = AppInner;

    fn deref(&self) -> &AppInner {
        &self.0
    }
}
