//! A fake Kubernetes API server (axum) on the real wire: the REST paths and verbs of pods,
//! `pods/log`, Secrets, `agents.x-k8s.io/v1beta1` Sandboxes and `SelfSubjectAccessReview`s
//! (create, get, list, watch with resource versions, delete, dry runs), the discovery documents of
//! the agents.x-k8s.io group, bearer-token auth, strict validation against the official types
//! (`validate`; the Sandbox's own in `agent_sandbox`), RBAC refusals a test sets, ownerReference
//! garbage collection of Secrets and of a Sandbox's pod, and faults (answers of 409/429/500,
//! watches that expire). Its kubelet (`kubelet`) runs each pod's container as a local process of
//! the binary the test names for the image, with the pod's environment (its `env` and its Secrets'
//! data), and reports it in the pod's status; its agent-sandbox controller (`agent_sandbox`) makes
//! each Sandbox's pod and keeps the Sandbox's conditions.
//!
//! Not modelled: scheduling (a pod is scheduled at once unless the test holds scheduling),
//! patches other than JSON merge patches of Sandboxes and the extensions
//! (`agent_sandbox_extensions`), field selectors, set-based label selectors (refused with 400),
//! other kinds.

// A handler's steps answer early with the response to send, as `Err(Response)`.
#![allow(clippy::result_large_err)]

pub mod agent_sandbox;
pub mod agent_sandbox_extensions;
pub mod extension_controllers;
pub mod kubelet;
pub mod store;
pub mod validate;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use k8s_openapi::api::authorization::v1::SelfSubjectAccessReview;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::DeleteOptions;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use self::agent_sandbox_extensions as ext;
use self::store::Store;
use self::validate::{Refusal, strict};

/// The account the fake's token belongs to (in RBAC messages).
const USER: &str = "system:serviceaccount:omoi:omoi";

/// How the fake answers one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer this status without doing anything.
    Fail(u16),
    /// Do the request, then answer this status (the answer was lost on the way).
    DoThenFail(u16),
}

/// The fake's settings.
#[derive(Debug, Clone)]
pub struct FakeKubeConfig {
    /// The namespaces that exist.
    pub namespaces: Vec<String>,
    /// The bearer token every request must carry.
    pub token: String,
    /// Which binary runs a pod of an image; an image not here fails to pull (`ErrImagePull`).
    pub images: BTreeMap<String, PathBuf>,
    /// Where pods' volumes and logs live.
    pub work_dir: PathBuf,
    /// Files the image holds, seen in the container at the same path (a path under one is never
    /// translated to a volume), e.g. a scripted model's script.
    pub image_files: Vec<PathBuf>,
}

/// Shared state of the server and its kubelet.
#[derive(Debug)]
pub struct Cluster {
    pub config: FakeKubeConfig,
    pub store: Mutex<Store>,
    /// `(verb, resource)` pairs RBAC refuses, e.g. `("create", "pods")`.
    forbidden: Mutex<BTreeSet<(String, String)>>,
    /// `(verb, resource)` → faults for the next requests, in order.
    faults: Mutex<HashMap<(String, String), Vec<Fault>>>,
    /// Requests served, by `verb resource`.
    requests: Mutex<BTreeMap<String, u64>>,
    /// Every object created (not dry runs), as it was sent.
    created: Mutex<Vec<Value>>,
    /// Whether new pods stay unschedulable.
    pub hold_scheduling: Mutex<bool>,
    /// Whether the agent-sandbox CRD is installed (the agents.x-k8s.io group served).
    agent_sandbox: Mutex<bool>,
    /// Whether its extensions are (`extensions.agents.x-k8s.io`; not unless a test installs them).
    extensions: Mutex<bool>,
    pub kubelet: kubelet::Kubelet,
}

/// A running fake API server; stopped (and its pods' processes killed) on drop.
#[derive(Debug)]
pub struct FakeKube {
    pub addr: SocketAddr,
    pub cluster: Arc<Cluster>,
    stop: Option<oneshot::Sender<()>>,
    controllers: [tokio::task::JoinHandle<()>; 2],
}

impl FakeKube {
    /// Serves on a free port of 127.0.0.1.
    pub async fn start(config: FakeKubeConfig) -> FakeKube {
        let cluster = Arc::new(Cluster {
            config,
            store: Mutex::new(Store::default()),
            forbidden: Mutex::new(BTreeSet::new()),
            faults: Mutex::new(HashMap::new()),
            requests: Mutex::new(BTreeMap::new()),
            created: Mutex::new(Vec::new()),
            hold_scheduling: Mutex::new(false),
            agent_sandbox: Mutex::new(true),
            extensions: Mutex::new(false),
            kubelet: kubelet::Kubelet::default(),
        });
        let changes = lock(&cluster.store).subscribe();
        let controller = tokio::spawn(agent_sandbox::control(cluster.clone(), changes));
        let extension_changes = lock(&cluster.store).subscribe();
        let extensions = tokio::spawn(extension_controllers::control(
            cluster.clone(),
            extension_changes,
        ));
        let app = Router::new()
            .route(
                "/api/v1/namespaces/{ns}/{resource}",
                get(list_or_watch).post(create),
            )
            .route(
                "/api/v1/namespaces/{ns}/{resource}/{name}",
                get(get_one).delete(delete),
            )
            .route("/api/v1/namespaces/{ns}/pods/{name}/log", get(logs))
            .route(
                "/apis/agents.x-k8s.io/v1beta1/namespaces/{ns}/{resource}",
                get(list_or_watch_sandboxes).post(create_sandbox),
            )
            .route(
                "/apis/agents.x-k8s.io/v1beta1/namespaces/{ns}/{resource}/{name}",
                get(get_sandbox)
                    .delete(delete_sandbox)
                    .patch(ext::patch_sandbox),
            )
            .route(
                "/apis/extensions.agents.x-k8s.io/v1beta1/namespaces/{ns}/{resource}",
                get(ext::list).post(ext::create),
            )
            .route(
                "/apis/extensions.agents.x-k8s.io/v1beta1/namespaces/{ns}/{resource}/{name}",
                get(ext::get_one).delete(ext::delete).patch(ext::patch),
            )
            .route(
                "/apis/extensions.agents.x-k8s.io/v1beta1",
                get(ext::resources),
            )
            .route("/apis/extensions.agents.x-k8s.io", get(ext::group))
            .route("/apis/agents.x-k8s.io/v1beta1", get(sandbox_resources))
            .route("/apis/agents.x-k8s.io", get(sandbox_group))
            .route("/api/v1/namespaces/{ns}", get(namespace))
            .route(
                "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                post(access_review),
            )
            .route("/fake/requests", get(request_counts))
            .fallback(|| async {
                status(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                )
            })
            .with_state(cluster.clone());
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("the fake API server cannot listen: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("no local address: {e}"));
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        FakeKube {
            addr,
            cluster,
            stop: Some(stop),
            controllers: [controller, extensions],
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Writes a kubeconfig that names this server, its token and `namespace` as the default.
    pub fn write_kubeconfig(&self, path: &Path, namespace: &str) {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n\
             users:\n- name: omoi\n  user:\n    token: {}\ncontexts:\n- name: fake\n  context:\n    \
             cluster: fake\n    user: omoi\n    namespace: {namespace}\ncurrent-context: fake\n",
            self.url(),
            self.cluster.config.token
        );
        std::fs::write(path, text).unwrap_or_else(|e| panic!("writing the kubeconfig: {e}"));
    }

    /// The agent-sandbox CRD is not installed from now on: its group answers 404.
    pub fn uninstall_agent_sandbox(&self) {
        *lock(&self.cluster.agent_sandbox) = false;
    }

    /// The agent-sandbox extensions are installed from now on (their group served, their
    /// controllers at work).
    pub fn install_extensions(&self) {
        *lock(&self.cluster.extensions) = true;
    }

    /// A Sandbox as stored (`None` when there is none), as JSON.
    pub fn sandbox(&self, namespace: &str, name: &str) -> Option<Value> {
        lock(&self.cluster.store)
            .get("sandboxes", namespace, name)
            .cloned()
    }

    /// RBAC refuses `verb` on `resource` (`pods`, `pods/log`, `secrets`, `sandboxes`) from now on.
    pub fn forbid(&self, verb: &str, resource: &str) {
        lock(&self.cluster.forbidden).insert((verb.to_string(), resource.to_string()));
    }

    /// The next `faults.len()` requests of `verb` on `resource` get these faults.
    pub fn fault(&self, verb: &str, resource: &str, faults: &[Fault]) {
        lock(&self.cluster.faults)
            .entry((verb.to_string(), resource.to_string()))
            .or_default()
            .extend(faults.iter().copied());
    }

    /// Drops the faults not yet used.
    pub fn clear_faults(&self) {
        lock(&self.cluster.faults).clear();
    }

    /// Requests served so far by `verb resource` (`create pods`, `watch pods`, `get pods/log` …).
    pub fn requests(&self) -> BTreeMap<String, u64> {
        lock(&self.cluster.requests).clone()
    }

    /// New pods stay pending, unschedulable, while `hold` is true.
    pub fn hold_scheduling(&self, hold: bool) {
        *lock(&self.cluster.hold_scheduling) = hold;
    }

    /// Ends every watch and compacts the history: a watch resumed from an older version is
    /// answered 410 Gone.
    pub fn expire_watches(&self) {
        lock(&self.cluster.store).compact();
    }

    /// Every object created so far, as the client sent it (for validation by other tools).
    pub fn created(&self) -> Vec<Value> {
        lock(&self.cluster.created).clone()
    }

    /// A pod as stored (`None` when there is none).
    pub fn pod(&self, namespace: &str, name: &str) -> Option<Pod> {
        let store = lock(&self.cluster.store);
        let value = store.get("pods", namespace, name)?.clone();
        serde_json::from_value(value).ok()
    }

    /// The names of the objects of `resource` (`pods`, `secrets`, `sandboxes`) in `namespace`.
    pub fn names(&self, namespace: &str, resource: &'static str) -> Vec<String> {
        lock(&self.cluster.store)
            .list(resource, namespace)
            .iter()
            .filter_map(|v| v["metadata"]["name"].as_str().map(str::to_string))
            .collect()
    }

    /// Every object of `resource` sent to the fake and stored, as JSON.
    pub fn objects(&self, namespace: &str, resource: &'static str) -> Vec<Value> {
        lock(&self.cluster.store).list(resource, namespace)
    }

    /// Kills a pod's container: SIGKILL, exit 137, or killed at its memory limit (`OOMKilled`), or
    /// the pod evicted from its node.
    pub fn kill(&self, namespace: &str, pod: &str, how: kubelet::Kill) {
        self.cluster.kubelet.kill(namespace, pod, how);
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        for controller in &self.controllers {
            controller.abort();
        }
        self.cluster.kubelet.kill_all();
    }
}

pub fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A `Status` answer.
pub fn status(code: u16, reason: &str, message: &str) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code,
    });
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, axum::Json(body)).into_response()
}

fn refused(refusal: Refusal) -> Response {
    status(refusal.code, refusal.reason, &refusal.message)
}

fn ok(value: Value) -> Response {
    (StatusCode::OK, axum::Json(value)).into_response()
}

/// Auth, RBAC, faults and the request count for one request; `Err` is the answer to send.
fn admit(
    cluster: &Cluster,
    headers: &HeaderMap,
    verb: &str,
    resource: &str,
    namespace: &str,
) -> Result<Option<Fault>, Response> {
    let expected = format!("Bearer {}", cluster.config.token);
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return Err(status(401, "Unauthorized", "Unauthorized"));
    }
    *lock(&cluster.requests)
        .entry(format!("{verb} {resource}"))
        .or_default() += 1;
    if lock(&cluster.forbidden).contains(&(verb.to_string(), resource.to_string())) {
        let (resource, sub) = resource.split_once('/').unwrap_or((resource, ""));
        let group = if resource == "sandboxes" {
            agent_sandbox::GROUP
        } else {
            ""
        };
        let sub = if sub.is_empty() {
            String::new()
        } else {
            format!("/{sub}")
        };
        return Err(status(
            403,
            "Forbidden",
            &format!(
                "{resource}{sub} is forbidden: User \"{USER}\" cannot {verb} resource \
                 \"{resource}{sub}\" in API group \"{group}\" in the namespace \"{namespace}\""
            ),
        ));
    }
    let fault = {
        let mut faults = lock(&cluster.faults);
        faults
            .get_mut(&(verb.to_string(), resource.to_string()))
            .filter(|queue| !queue.is_empty())
            .map(|queue| queue.remove(0))
    };
    match fault {
        Some(Fault::Fail(code)) => Err(fault_answer(code)),
        other => Ok(other),
    }
}

fn fault_answer(code: u16) -> Response {
    match code {
        409 => status(
            409,
            "Conflict",
            "Operation cannot be fulfilled: the object has been modified",
        ),
        429 => {
            let mut answer = status(
                429,
                "TooManyRequests",
                "Too many requests, please try again later.",
            );
            answer
                .headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("1"));
            answer
        }
        500 => status(
            500,
            "InternalError",
            "Internal error occurred: etcdserver: request timed out",
        ),
        code => status(code, "", "injected fault"),
    }
}

/// The API group of a route: the core group (`/api/v1`) or agent-sandbox's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    Core,
    AgentSandbox,
}

/// The resource and kind a group serves under `resource`.
fn kind_of(
    cluster: &Cluster,
    group: Group,
    resource: &str,
) -> Option<(&'static str, &'static str)> {
    match (group, resource) {
        (Group::Core, "pods") => Some(("pods", "Pod")),
        (Group::Core, "secrets") => Some(("secrets", "Secret")),
        (Group::AgentSandbox, "sandboxes") if *lock(&cluster.agent_sandbox) => {
            Some(("sandboxes", "Sandbox"))
        }
        _ => None,
    }
}

fn api_version(resource: &str) -> &'static str {
    if resource == "sandboxes" {
        agent_sandbox::API_VERSION
    } else {
        "v1"
    }
}

fn not_found() -> Response {
    status(
        404,
        "NotFound",
        "the server could not find the requested resource",
    )
}

async fn create_sandbox(
    State(cluster): State<Arc<Cluster>>,
    UrlPath((ns, resource)): UrlPath<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    create_in(
        cluster,
        Group::AgentSandbox,
        ns,
        resource,
        query,
        headers,
        body,
    )
    .await
}

async fn list_or_watch_sandboxes(
    State(cluster): State<Arc<Cluster>>,
    UrlPath((ns, resource)): UrlPath<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    list_or_watch_in(cluster, Group::AgentSandbox, ns, resource, query, headers)
}

async fn get_sandbox(
    State(cluster): State<Arc<Cluster>>,
    UrlPath((ns, resource, name)): UrlPath<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    get_in(
        &cluster,
        Group::AgentSandbox,
        &ns,
        &resource,
        &name,
        &headers,
    )
}

async fn delete_sandbox(
    State(cluster): State<Arc<Cluster>>,
    UrlPath((ns, resource, name)): UrlPath<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    delete_in(
        &cluster,
        Group::AgentSandbox,
        &ns,
        &resource,
        &name,
        &headers,
        &body,
    )
}

/// Discovery of `agents.x-k8s.io/v1beta1` (404 when the CRD is not installed).
async fn sandbox_resources(State(cluster): State<Arc<Cluster>>, headers: HeaderMap) -> Response {
    if let Err(answer) = authenticated(&cluster, &headers) {
        return answer;
    }
    if *lock(&cluster.agent_sandbox) {
        ok(agent_sandbox::resource_list())
    } else {
        not_found()
    }
}

/// Discovery of the group `agents.x-k8s.io`.
async fn sandbox_group(State(cluster): State<Arc<Cluster>>, headers: HeaderMap) -> Response {
    if let Err(answer) = authenticated(&cluster, &headers) {
        return answer;
    }
    if *lock(&cluster.agent_sandbox) {
        ok(agent_sandbox::group())
    } else {
        not_found()
    }
}

fn authenticated(cluster: &Cluster, headers: &HeaderMap) -> Result<(), Response> {
    let expected = format!("Bearer {}", cluster.config.token);
    if headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(expected.as_str()) {
        Ok(())
    } else {
        Err(status(401, "Unauthorized", "Unauthorized"))
    }
}

fn namespace_exists(cluster: &Cluster, namespace: &str) -> bool {
    cluster.config.namespaces.iter().any(|n| n == namespace)
}

fn no_namespace(namespace: &str) -> Response {
    status(
        404,
        "NotFound",
        &format!("namespaces {namespace:?} not found"),
    )
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A new uid (random enough for a test: time and a counter).
fn uid() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let t = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default() as u64;
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        t as u32,
        (t >> 32) as u16,
        n & 0xfff,
        (n >> 12) & 0xfff,
        n
    )
}

async fn create(
    State(cluster): State<Arc<Cluster>>,
    UrlPath((ns, resource)): UrlPath<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    create_in(cluster, Group::Core, ns, resource, query, headers, body).await
}

async fn create_in(
    cluster: Arc<Cluster>,
    group: Group,
    ns: String,
    resource: String,
    query: HashMap<String, String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some((resource, kind)) = kind_of(&cluster, group, &resource) else {
        return not_found();
    };
    let fault = match admit(&cluster, &headers, "create", resource, &ns) {
        Ok(fault) => fault,
        Err(answer) => return answer,
    };
    if !namespace_exists(&cluster, &ns) {
        return no_namespace(&ns);
    }
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return status(400, "BadRequest", &format!("the body is not JSON: {e}")),
    };
    let sent = body.clone();
    let mut problems = Vec::new();
    let (name, mut object) = match resource {
        "pods" => match strict::<Pod>(&body) {
            Ok(pod) => {
                validate::metadata(&pod.metadata, &ns, &mut problems);
                validate::pod(&pod, &mut problems);
                if pod.status.is_some() {
                    problems.push("status: Forbidden: set by the system".into());
                }
                (pod.metadata.name.clone().unwrap_or_default(), json_of(&pod))
            }
            Err(refusal) => return refused(refusal),
        },
        "sandboxes" => {
            let missing = agent_sandbox::required(&body);
            if !missing.is_empty() {
                let name = body["metadata"]["name"].as_str().unwrap_or_default();
                return refused(Refusal::invalid(kind, name, &missing));
            }
            match strict::<agent_sandbox::Sandbox>(&body) {
                Ok(mut sandbox) => {
                    validate::metadata(&sandbox.metadata, &ns, &mut problems);
                    agent_sandbox::check(&sandbox, &mut problems);
                    // The status subresource: a status sent with the object is dropped.
                    sandbox.status = None;
                    (
                        sandbox.metadata.name.clone().unwrap_or_default(),
                        json_of(&sandbox),
                    )
                }
                Err(refusal) => return refused(refusal),
            }
        }
        _ => match strict::<Secret>(&body) {
            Ok(secret) => {
                validate::metadata(&secret.metadata, &ns, &mut problems);
                validate::secret(&secret, &mut problems);
                (
                    secret.metadata.name.clone().unwrap_or_default(),
                    json_of(&secret),
                )
            }
            Err(refusal) => return refused(refusal),
        },
    };
    if !problems.is_empty() {
        return refused(Refusal::invalid(kind, &name, &problems));
    }
    let dry_run = query.get("dryRun").is_some_and(|v| v == "All");
    let stored = {
        let mut store = lock(&cluster.store);
        if store.get(resource, &ns, &name).is_some() {
            return status(
                409,
                "AlreadyExists",
                &format!("{resource} {name:?} already exists"),
            );
        }
        object["apiVersion"] = json!(api_version(resource));
        object["kind"] = json!(kind);
        let meta = &mut object["metadata"];
        meta["namespace"] = json!(ns);
        meta["uid"] = json!(uid());
        meta["creationTimestamp"] = json!(now());
        if resource == "pods" {
            object["status"] = json!({"phase": "Pending", "qosClass": "Guaranteed"});
        }
        if resource == "sandboxes" {
            object["metadata"]["generation"] = json!(1);
        }
        if dry_run {
            return ok(object);
        }
        lock(&cluster.created).push(sent);
        store.put(resource, &ns, &name, object, "ADDED")
    };
    match resource {
        "pods" => kubelet::start(cluster.clone(), ns.clone(), name.clone()),
        // The controller hears of it on the store's changes.
        "sandboxes" => {}
        _ => collect_garbage(&cluster),
    }
    match fault {
        Some(Fault::DoThenFail(code)) => fault_answer(code),
        _ => (StatusCode::CREATED, axum::Json(stored)).into_response(),
    }
}

fn json_of<T: serde::Serialize>(object: &T) -> Value {
    serde_json::to_value(object).unwrap_or(Value::Null)
}

/// `a=b,c=d` → pairs; other selector forms are refused.
fn selector(query: &HashMap<String, String>) -> Result<Vec<(String, String)>, Response> {
    let Some(text) = query.get("labelSelector").filter(|s| !s.is_empty()) else {
        return Ok(Vec::new());
    };
    text.split(',')
        .map(|term| match term.split_once('=') {
            Some((k, v)) if !k.is_empty() && !v.contains('=') && !k.ends_with('!') => {
                Ok((k.trim().to_string(), v.trim().to_string()))
            }
            _ => Err(status(
                400,
                "BadRequest",
                &format!("unable to parse requirement: {term:?} (the fake knows only k=v)"),
            )),
        })
        .collect()
}

fn matches(object: &Value, selector: &[(String, String)]) -> bool {
    selector
        .iter()
        .all(|(k, v)| object["metadata"]["labels"][k].as_str() == Some(v.as_str()))
}

async fn list_or_watch(
    State(cluster): State<Arc<Cluster>>,
    UrlPath((ns, resource)): UrlPath<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    list_or_watch_in(cluster, Group::Core, ns, resource, query, headers)
}

fn list_or_watch_in(
    cluster: Arc<Cluster>,
    group: Group,
    ns: String,
    resource: String,
    query: HashMap<String, String>,
    headers: HeaderMap,
) -> Response {
    let Some((resource, kind)) = kind_of(&cluster, group, &resource) else {
        return not_found();
    };
    let watching = query.get("watch").is_some_and(|v| v == "true" || v == "1");
    let verb = if watching { "watch" } else { "list" };
    if let Err(answer) = admit(&cluster, &headers, verb, resource, &ns) {
        return answer;
    }
    let selector = match selector(&query) {
        Ok(s) => s,
        Err(answer) => return answer,
    };
    if watching {
        return watch(cluster, ns, resource, selector, &query);
    }
    let store = lock(&cluster.store);
    let items: Vec<Value> = store
        .list(resource, &ns)
        .into_iter()
        .filter(|o| matches(o, &selector))
        .map(|mut o| {
            if let Some(map) = o.as_object_mut() {
                map.remove("apiVersion");
                map.remove("kind");
            }
            o
        })
        .collect();
    ok(json!({
        "kind": format!("{kind}List"), "apiVersion": api_version(resource),
        "metadata": {"resourceVersion": store.version().to_string()},
        "items": items,
    }))
}

fn watch(
    cluster: Arc<Cluster>,
    ns: String,
    resource: &'static str,
    selector: Vec<(String, String)>,
    query: &HashMap<String, String>,
) -> Response {
    let from = query
        .get("resourceVersion")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(1800);
    let (past, mut live, mut epoch) = {
        let store = lock(&cluster.store);
        let compacted = store.compacted();
        match store.watch_from(from) {
            Some((past, live)) => (past, live, store.epoch.subscribe()),
            None => {
                let gone = json!({"type": "ERROR", "object": {
                    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": format!("too old resource version: {from} ({compacted})"),
                    "reason": "Expired", "code": 410}});
                let line = format!("{gone}\n");
                return (StatusCode::OK, line).into_response();
            }
        }
    };
    epoch.mark_unchanged();
    let wanted = move |c: &store::Change| {
        c.kind == resource && c.namespace == ns && matches(&c.object, &selector)
    };
    let line = |c: &store::Change| {
        Bytes::from(format!(
            "{}\n",
            json!({"type": c.kind_of_change, "object": c.object})
        ))
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1024);
    tokio::spawn(async move {
        for change in past.iter().filter(|c| wanted(c)) {
            if tx.send(line(change)).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::sleep(Duration::from_secs(timeout));
        let mut deadline = std::pin::pin!(deadline);
        loop {
            tokio::select! {
                () = &mut deadline => return,
                _ = epoch.changed() => return,
                change = live.recv() => match change {
                    Ok(change) if wanted(&change) => {
                        if tx.send(line(&change)).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    // Too far behind: end the watch; the client resumes from what it saw.
                    Err(_) => return,
                },
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|bytes| (Ok::<Bytes, std::convert::Infallible>(bytes), rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| status(500, "InternalError", "building the watch answer"))
}

async fn get_one(
    State(cluster): State<Arc<Cluster>>,
    UrlPath((ns, resource, name)): UrlPath<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    get_in(&cluster, Group::Core, &ns, &resource, &name, &headers)
}

fn get_in(
    cluster: &Cluster,
    group: Group,
    ns: &str,
    resource: &str,
    name: &str,
    headers: &HeaderMap,
) -> Response {
    let Some((resource, _)) = kind_of(cluster, group, resource) else {
        return not_found();
    };
    if let Err(answer) = admit(cluster, headers, "get", resource, ns) {
        return answer;
    }
    match lock(&cluster.store).get(resource, ns, name) {
        Some(object) => ok(object.clone()),
        None => status(404, "NotFound", &format!("{resource} {name:?} not found")),
    }
}

async fn delete(
    State(cluster): State<Arc<Cluster>>,
    UrlPath((ns, resource, name)): UrlPath<(String, String, String)>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    debug_assert_eq!(method, Method::DELETE);
    delete_in(
        &cluster,
        Group::Core,
        &ns,
        &resource,
        &name,
        &headers,
        &body,
    )
}

fn delete_in(
    cluster: &Cluster,
    group: Group,
    ns: &str,
    resource: &str,
    name: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let Some((resource, kind)) = kind_of(cluster, group, resource) else {
        return not_found();
    };
    let fault = match admit(cluster, headers, "delete", resource, ns) {
        Ok(fault) => fault,
        Err(answer) => return answer,
    };
    let options: DeleteOptions = if body.is_empty() {
        DeleteOptions::default()
    } else {
        let value: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return status(400, "BadRequest", &format!("the body is not JSON: {e}")),
        };
        match strict::<DeleteOptions>(&value) {
            Ok(options) => options,
            Err(refusal) => return refused(refusal),
        }
    };
    let answer = {
        let mut store = lock(&cluster.store);
        let Some(object) = store.get(resource, ns, name).cloned() else {
            return status(404, "NotFound", &format!("{resource} {name:?} not found"));
        };
        if resource == "pods" {
            let grace = options.grace_period_seconds.unwrap_or(30).max(0) as u64;
            let mut object = object;
            if object["metadata"]["deletionTimestamp"].is_null() {
                object["metadata"]["deletionTimestamp"] = json!(now());
                object["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
                let object = store.put(resource, ns, name, object, "MODIFIED");
                drop(store);
                cluster
                    .kubelet
                    .kill(ns, name, kubelet::Kill::Delete { grace });
                ok(object)
            } else {
                ok(object)
            }
        } else if resource == "sandboxes" {
            // A custom resource answers the deleted object; the controller's watch hears of it
            // and the garbage collector takes its pod and Secret.
            store.remove(resource, ns, name);
            ok(object)
        } else {
            store.remove(resource, ns, name);
            ok(
                json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": {"name": name, "kind": kind.to_lowercase() + "s",
                "uid": object["metadata"]["uid"]}}),
            )
        }
    };
    match fault {
        Some(Fault::DoThenFail(code)) => fault_answer(code),
        _ => answer,
    }
}

/// Deletes Secrets whose every owner (a pod or a Sandbox) is gone (the garbage collector's part
/// the fake plays).
pub fn collect_garbage(cluster: &Cluster) {
    let mut store = lock(&cluster.store);
    let pods: BTreeSet<String> = store
        .all("pods")
        .iter()
        .chain(store.all("sandboxes").iter())
        .chain(store.all("sandboxtemplates").iter())
        .filter_map(|(_, p)| p["metadata"]["uid"].as_str().map(str::to_string))
        .collect();
    let orphans: Vec<(String, String)> = store
        .all("secrets")
        .into_iter()
        .filter(|(_, s)| {
            s["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|owners| {
                    !owners.is_empty()
                        && owners
                            .iter()
                            .all(|o| !o["uid"].as_str().is_some_and(|uid| pods.contains(uid)))
                })
        })
        .filter_map(|(ns, s)| Some((ns, s["metadata"]["name"].as_str()?.to_string())))
        .collect();
    for (ns, name) in orphans {
        store.remove("secrets", &ns, &name);
    }
}

async fn logs(
    State(cluster): State<Arc<Cluster>>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(answer) = admit(&cluster, &headers, "get", "pods/log", &ns) {
        return answer;
    }
    if lock(&cluster.store).get("pods", &ns, &name).is_none() {
        return status(404, "NotFound", &format!("pods {name:?} not found"));
    }
    match cluster.kubelet.log(&cluster.config.work_dir, &ns, &name) {
        Some(text) => (StatusCode::OK, text).into_response(),
        None => status(
            400,
            "BadRequest",
            &format!("container \"worker\" in pod {name:?} is waiting to start: ContainerCreating"),
        ),
    }
}

/// Not of the Kubernetes API: the requests served so far, for a benchmark in another process.
async fn request_counts(State(cluster): State<Arc<Cluster>>, headers: HeaderMap) -> Response {
    let expected = format!("Bearer {}", cluster.config.token);
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return status(401, "Unauthorized", "Unauthorized");
    }
    ok(json!(*lock(&cluster.requests)))
}

async fn namespace(
    State(cluster): State<Arc<Cluster>>,
    UrlPath(ns): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(answer) = admit(&cluster, &headers, "get", "namespaces", &ns) {
        return answer;
    }
    if namespace_exists(&cluster, &ns) {
        ok(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns},
            "status": {"phase": "Active"}}),
        )
    } else {
        no_namespace(&ns)
    }
}

async fn access_review(
    State(cluster): State<Arc<Cluster>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(answer) = admit(&cluster, &headers, "create", "selfsubjectaccessreviews", "") {
        return answer;
    }
    let value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return status(400, "BadRequest", &format!("the body is not JSON: {e}")),
    };
    let review = match strict::<SelfSubjectAccessReview>(&value) {
        Ok(review) => review,
        Err(refusal) => return refused(refusal),
    };
    let Some(attributes) = review.spec.resource_attributes.clone() else {
        return refused(Refusal::invalid(
            "SelfSubjectAccessReview",
            "",
            &["spec.resourceAttributes: Required value".to_string()],
        ));
    };
    let mut resource = attributes.resource.clone().unwrap_or_default();
    if let Some(sub) = attributes.subresource.as_deref().filter(|s| !s.is_empty()) {
        resource = format!("{resource}/{sub}");
    }
    let verb = attributes.verb.clone().unwrap_or_default();
    let allowed = !lock(&cluster.forbidden).contains(&(verb, resource));
    let mut answer = json_of(&review);
    answer["status"] = json!({"allowed": allowed});
    (StatusCode::CREATED, axum::Json(answer)).into_response()
}
