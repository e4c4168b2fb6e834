//! A fake Daytona (axum) on the real wire: the API's `/api/snapshots/{id}`, `/api/sandbox`
//! (create, get, list by labels with a cursor, delete) and a toolbox's
//! `/{sandbox id}/process/execute`, with the bearer key and the organisation header checked,
//! bodies validated as the real services validate them ([`validate`]), the real error bodies and
//! status codes (401 key refused, 403 organisation, 404, 400 with class-validator messages, 409
//! name taken, 400 resources with a snapshot), state transitions (`creating` → `started` →
//! `destroyed`), and faults (answers of 429/500 a test queues, a sandbox destroyed or stopped
//! behind the client's back). Its runner ([`runner`]) runs each sandbox as local processes: the
//! snapshot's binary on the `PATH` as `omoi-worker`, the sandbox's `env` and each call's `envs`.
//!
//! Not modelled: auto-stop, archive, start/stop calls, volumes, declarative builds (refused with
//! 400), sessions and the other toolbox routes. Where the toolbox proxy's answer for a sandbox
//! that is not started could not be read from the source, the fake answers 400.

// A handler's steps answer early with the response to send, as `Err(Response)`.
#![allow(clippy::result_large_err)]

pub mod runner;
pub mod validate;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// The organisation header.
pub const ORGANIZATION_HEADER: &str = "x-daytona-organization-id";

/// A snapshot the fake has.
#[derive(Debug, Clone)]
pub struct FakeSnapshot {
    /// `active`, `pending`, `error`…
    pub state: String,
    /// The binary that is `omoi-worker` in its sandboxes.
    pub worker: Option<PathBuf>,
}

/// What the fake accepts.
#[derive(Debug, Clone)]
pub struct FakeDaytonaConfig {
    /// The API key it takes.
    pub key: String,
    /// The key's organisation: the only one the header may name.
    pub organization: String,
    pub snapshots: BTreeMap<String, FakeSnapshot>,
    /// Where the sandboxes' directories go.
    pub work_dir: PathBuf,
    /// How long a sandbox takes from `creating` to `started`.
    pub start_delay: Duration,
}

/// One sandbox.
#[derive(Debug, Clone)]
pub struct FakeSandbox {
    pub id: String,
    pub name: String,
    pub snapshot: String,
    pub env: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub state: String,
    pub auto_stop_interval: f64,
    pub created_at: String,
    pub dir: PathBuf,
    /// Process groups of its commands.
    pub groups: Vec<i32>,
}

/// The fake's state.
#[derive(Debug)]
pub struct World {
    pub config: FakeDaytonaConfig,
    sandboxes: Mutex<BTreeMap<String, FakeSandbox>>,
    faults: Mutex<HashMap<String, Vec<u16>>>,
    requests: Mutex<BTreeMap<String, u64>>,
    created: Mutex<Vec<Value>>,
    executed: Mutex<Vec<Value>>,
    next: AtomicU64,
    url: Mutex<String>,
}

/// A running fake; stops (killing every sandbox's processes) when dropped.
#[derive(Debug)]
pub struct FakeDaytona {
    pub addr: SocketAddr,
    pub world: Arc<World>,
    stop: Option<oneshot::Sender<()>>,
}

pub fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The API's error body.
pub fn error(code: u16, message: impl Into<Value>) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = json!({
        "statusCode": code,
        "error": status.canonical_reason().unwrap_or("Error"),
        "message": message.into(),
        "timestamp": now(),
    });
    (status, axum::Json(body)).into_response()
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl FakeDaytona {
    pub async fn start(config: FakeDaytonaConfig) -> FakeDaytona {
        let world = Arc::new(World {
            config,
            sandboxes: Mutex::new(BTreeMap::new()),
            faults: Mutex::new(HashMap::new()),
            requests: Mutex::new(BTreeMap::new()),
            created: Mutex::new(Vec::new()),
            executed: Mutex::new(Vec::new()),
            next: AtomicU64::new(1),
            url: Mutex::new(String::new()),
        });
        let app = Router::new()
            .route("/api/snapshots/{id}", get(snapshot))
            .route("/api/sandbox", get(list).post(create))
            .route("/api/sandbox/{id}", get(read).delete(delete))
            .route("/toolbox/{id}/process/execute", post(execute))
            .fallback(
                |uri: axum::http::Uri, method: axum::http::Method| async move {
                    error(404, format!("Cannot {method} {}", uri.path()))
                },
            )
            .with_state(world.clone());
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("the fake Daytona cannot listen: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("no local address: {e}"));
        *lock(&world.url) = format!("http://{addr}");
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        FakeDaytona {
            addr,
            world,
            stop: Some(stop),
        }
    }

    /// The API's base, as `DAYTONA_API_URL` names it.
    pub fn api_url(&self) -> String {
        format!("http://{}/api", self.addr)
    }

    /// The next answers of `route` (`snapshot`, `create`, `get`, `list`, `delete`, `execute`)
    /// are these statuses, one each, before it answers normally again.
    pub fn fault(&self, route: &str, codes: &[u16]) {
        lock(&self.world.faults)
            .entry(route.to_string())
            .or_default()
            .extend_from_slice(codes);
    }

    /// Requests by route (faults included).
    pub fn requests(&self) -> BTreeMap<String, u64> {
        lock(&self.world.requests).clone()
    }

    /// Every create body received, as sent.
    pub fn created(&self) -> Vec<Value> {
        lock(&self.world.created).clone()
    }

    /// Every execute body received, as sent.
    pub fn executed(&self) -> Vec<Value> {
        lock(&self.world.executed).clone()
    }

    /// The sandboxes not destroyed.
    pub fn sandboxes(&self) -> Vec<FakeSandbox> {
        lock(&self.world.sandboxes)
            .values()
            .filter(|s| s.state != "destroyed")
            .cloned()
            .collect()
    }

    /// Ends a sandbox behind the client's back: its processes killed, its state `destroyed` or
    /// `stopped` (as an auto-stop or a user in the dashboard would).
    pub fn end_sandbox(&self, id: &str, state: &str) {
        let groups = {
            let mut sandboxes = lock(&self.world.sandboxes);
            let Some(sandbox) = sandboxes.get_mut(id) else {
                return;
            };
            sandbox.state = state.to_string();
            std::mem::take(&mut sandbox.groups)
        };
        for group in groups {
            runner::signal(group, rustix::process::Signal::KILL);
        }
    }
}

impl Drop for FakeDaytona {
    fn drop(&mut self) {
        for sandbox in lock(&self.world.sandboxes).values() {
            for group in &sandbox.groups {
                runner::signal(*group, rustix::process::Signal::KILL);
            }
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Counts the request, checks the key and the organisation header, and answers a queued fault.
fn admit(world: &World, route: &str, headers: &HeaderMap) -> Result<(), Response> {
    *lock(&world.requests).entry(route.to_string()).or_default() += 1;
    let key = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if key != Some(world.config.key.as_str()) {
        return Err(error(401, "Unauthorized"));
    }
    if let Some(org) = headers.get(ORGANIZATION_HEADER) {
        if org.to_str().ok() != Some(world.config.organization.as_str()) {
            return Err(error(403, "Invalid authentication context"));
        }
    }
    let fault = {
        let mut faults = lock(&world.faults);
        faults
            .get_mut(route)
            .filter(|queued| !queued.is_empty())
            .map(|queued| queued.remove(0))
    };
    if let Some(code) = fault {
        let mut response = error(
            code,
            if code == 429 {
                "ThrottlerException: Too Many Requests"
            } else {
                "An unexpected error occurred."
            },
        );
        if code == 429 {
            response
                .headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("1"));
        }
        return Err(response);
    }
    Ok(())
}

fn sandbox_dto(world: &World, s: &FakeSandbox) -> Value {
    let url = lock(&world.url).clone();
    json!({
        "id": s.id, "organizationId": world.config.organization, "name": s.name,
        "snapshot": s.snapshot, "user": "daytona", "env": s.env, "labels": s.labels,
        "public": false, "networkBlockAll": false, "target": "us", "cpu": 1, "gpu": 0,
        "memory": 1, "disk": 3, "state": s.state, "desiredState": desired(&s.state),
        "autoStopInterval": s.auto_stop_interval, "autoArchiveInterval": 10080,
        "autoDeleteInterval": -1, "volumes": [], "createdAt": s.created_at,
        "updatedAt": s.created_at, "toolboxProxyUrl": format!("{url}/toolbox"),
    })
}

fn list_item(world: &World, s: &FakeSandbox) -> Value {
    let mut item = sandbox_dto(world, s);
    if let Some(fields) = item.as_object_mut() {
        for gone in ["env", "networkBlockAll", "volumes"] {
            fields.remove(gone);
        }
        fields.insert("toolboxProxyUrl".into(), json!(""));
    }
    item
}

fn desired(state: &str) -> &'static str {
    match state {
        "stopped" => "stopped",
        "destroyed" | "destroying" => "destroyed",
        _ => "started",
    }
}

/// The sandbox with this id or name, not destroyed.
fn find(world: &World, id_or_name: &str) -> Option<FakeSandbox> {
    lock(&world.sandboxes)
        .values()
        .find(|s| s.state != "destroyed" && (s.id == id_or_name || s.name == id_or_name))
        .cloned()
}

fn not_found(id_or_name: &str) -> Response {
    error(
        404,
        format!("Sandbox with ID or name {id_or_name} not found"),
    )
}

async fn snapshot(
    State(world): State<Arc<World>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = admit(&world, "snapshot", &headers) {
        return refused;
    }
    match world.config.snapshots.get(&id) {
        Some(found) => axum::Json(json!({
            "id": format!("snap-{id}"), "organizationId": world.config.organization,
            "general": false, "name": id, "imageName": format!("registry.local/{id}:latest"),
            "state": found.state, "size": 1.2, "entrypoint": null, "cpu": 1, "gpu": 0,
            "mem": 1, "disk": 3, "errorReason": null, "createdAt": now(), "updatedAt": now(),
            "lastUsedAt": null,
        }))
        .into_response(),
        None => error(404, format!("Snapshot with ID or name {id} not found")),
    }
}

async fn create(State(world): State<Arc<World>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(refused) = admit(&world, "create", &headers) {
        return refused;
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return error(400, "Unexpected token in JSON body");
    };
    lock(&world.created).push(body.clone());
    let problems = validate::create_sandbox(&body);
    if !problems.is_empty() {
        return error(400, problems);
    }
    if body.get("buildInfo").is_some_and(|b| !b.is_null()) {
        return error(400, "declarative builds are not modelled by this fake");
    }
    let truthy = |field: &str| body[field].as_f64().is_some_and(|n| n != 0.0);
    if ["cpu", "gpu", "memory", "disk"].iter().any(|f| truthy(f)) {
        return error(
            400,
            "Cannot specify Sandbox resources when using a snapshot",
        );
    }
    let snapshot = body["snapshot"]
        .as_str()
        .unwrap_or("daytonaio/sandbox")
        .to_string();
    let Some(found) = world.config.snapshots.get(&snapshot).cloned() else {
        return error(
            400,
            format!("Snapshot {snapshot} not found. Did you add it through the Daytona Dashboard?"),
        );
    };
    if found.state != "active" {
        return error(400, format!("Snapshot {snapshot} is {}", found.state));
    }
    let n = world.next.fetch_add(1, Ordering::Relaxed);
    let id = format!("7c1e{n:04x}-0000-4000-8000-{n:012x}");
    let name = body["name"].as_str().unwrap_or(&id).to_string();
    let dir = world.config.work_dir.join(&id);
    if let Err(e) = runner::prepare(&dir, found.worker.as_deref()) {
        return error(500, format!("preparing the sandbox: {e}"));
    }
    {
        let mut sandboxes = lock(&world.sandboxes);
        if sandboxes
            .values()
            .any(|s| s.name == name && s.state != "destroyed")
        {
            return error(409, format!("Sandbox with name {name} already exists"));
        }
        sandboxes.insert(
            id.clone(),
            FakeSandbox {
                id: id.clone(),
                name,
                snapshot,
                env: validate::strings(body.get("env")),
                labels: validate::strings(body.get("labels")),
                state: "creating".into(),
                auto_stop_interval: body["autoStopInterval"].as_f64().unwrap_or(15.0),
                created_at: now(),
                dir,
                groups: Vec::new(),
            },
        );
    }
    // The API answers once the sandbox has started (it waits up to 30 s).
    tokio::time::sleep(world.config.start_delay).await;
    let mut sandboxes = lock(&world.sandboxes);
    let Some(sandbox) = sandboxes.get_mut(&id) else {
        return not_found(&id);
    };
    if sandbox.state == "creating" {
        sandbox.state = "started".into();
    }
    let dto = sandbox_dto(&world, sandbox);
    axum::Json(dto).into_response()
}

async fn read(
    State(world): State<Arc<World>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = admit(&world, "get", &headers) {
        return refused;
    }
    match find(&world, &id) {
        Some(sandbox) => axum::Json(sandbox_dto(&world, &sandbox)).into_response(),
        None => not_found(&id),
    }
}

async fn list(
    State(world): State<Arc<World>>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = admit(&world, "list", &headers) {
        return refused;
    }
    let labels: BTreeMap<String, String> = match query.get("labels") {
        None => BTreeMap::new(),
        Some(text) => match serde_json::from_str(text) {
            Ok(labels) => labels,
            Err(_) => return error(400, "Invalid labels JSON format"),
        },
    };
    let limit = match query.get("limit").map(|l| l.parse::<usize>()) {
        None => 100,
        Some(Ok(n)) if (1..=100).contains(&n) => n,
        Some(_) => return error(400, vec!["limit must not be greater than 100"]),
    };
    let after = query.get("cursor").cloned().unwrap_or_default();
    let sandboxes = lock(&world.sandboxes);
    let matching: Vec<&FakeSandbox> = sandboxes
        .values()
        .filter(|s| s.state != "destroyed" && s.id > after)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
        .collect();
    let page: Vec<Value> = matching
        .iter()
        .take(limit)
        .map(|s| list_item(&world, s))
        .collect();
    let next = (matching.len() > limit).then(|| matching[limit - 1].id.clone());
    axum::Json(json!({"items": page, "nextCursor": next})).into_response()
}

async fn delete(
    State(world): State<Arc<World>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = admit(&world, "delete", &headers) {
        return refused;
    }
    let (dto, groups) = {
        let mut sandboxes = lock(&world.sandboxes);
        let Some(sandbox) = sandboxes
            .values_mut()
            .find(|s| s.state != "destroyed" && (s.id == id || s.name == id))
        else {
            return not_found(&id);
        };
        sandbox.state = "destroying".into();
        let dto = sandbox_dto(&world, sandbox);
        sandbox.state = "destroyed".into();
        (dto, std::mem::take(&mut sandbox.groups))
    };
    tokio::spawn(runner::stop(groups, Duration::from_secs(2)));
    axum::Json(dto).into_response()
}

async fn execute(
    State(world): State<Arc<World>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refused) = admit(&world, "execute", &headers) {
        return refused;
    }
    if let Ok(value) = serde_json::from_slice::<Value>(&body) {
        lock(&world.executed).push(value);
    }
    let Some(sandbox) = find(&world, &id) else {
        return not_found(&id);
    };
    if sandbox.state != "started" {
        return error(
            400,
            format!("Sandbox {id} is not started ({})", sandbox.state),
        );
    }
    let request = match validate::execute(&body) {
        Ok(request) => request,
        Err(message) => return error(400, message),
    };
    if let Some(cwd) = &request.cwd {
        return error(
            400,
            format!("the fake runs commands in the home only, not {cwd}"),
        );
    }
    let mut env = sandbox.env.clone();
    env.extend(request.envs);
    let timeout = request
        .timeout
        .filter(|t| *t > 0)
        .map(|t| Duration::from_secs(u64::from(t)));
    let record = |group: i32| {
        if let Some(s) = lock(&world.sandboxes).get_mut(&sandbox.id) {
            s.groups.push(group);
        }
    };
    let ran = runner::execute(&sandbox.dir, &env, &request.command, timeout, record).await;
    // Groups with no process left (every command but the one that started the worker) go.
    if let Some(s) = lock(&world.sandboxes).get_mut(&sandbox.id) {
        s.groups.retain(|g| runner::alive(*g));
    }
    match ran {
        Ok(Some((code, result))) => {
            axum::Json(json!({"exitCode": code, "result": result})).into_response()
        }
        Ok(None) => error(408, "command execution timeout"),
        Err(e) => axum::Json(json!({"exitCode": -1, "result": e.to_string()})).into_response(),
    }
}
