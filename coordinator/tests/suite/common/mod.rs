//! What the suites share: the database backends every test runs on, a server on port 0, an HTTP
//! client that returns status and JSON, a fake sandbox provider that records what it is asked,
//! and [`Scenario`], a world with one launched spec. `tasks` sets up bridged tasks, `docker`
//! the docker suites.

pub mod daytona;
pub mod docker;
pub mod kube;
pub mod proxy;
pub mod remote;
pub mod replicas;
pub mod sse;
pub mod tasks;
pub mod webdriver;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use omoi_coordinator::model::User;
use omoi_coordinator::sandbox::{
    ListedSandbox, Provider, ProviderStatus, SandboxError, SandboxHandle, SpawnRequest,
};
use omoi_coordinator::store::Store;
use omoi_coordinator::{AppState, Settings, serve};
use omoi_protocol::event::RawEvent;
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::Connection;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// One database a test runs against.
#[derive(Debug)]
pub struct TestDb {
    pub url: String,
    pub backend: &'static str,
    _dir: Option<TempDir>,
    /// `(admin URL, database name)` of a PostgreSQL database to drop at the end.
    drop_pg: Option<(String, String)>,
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((admin, name)) = self.drop_pg.take() else {
            return;
        };
        // Drop runs outside any runtime we may block: use a thread with its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                sqlx::any::install_default_drivers();
                if let Ok(mut conn) = sqlx::AnyConnection::connect(&admin).await {
                    let _ =
                        sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                            .execute(&mut conn)
                            .await;
                    let _ = conn.close().await;
                }
            });
        })
        .join();
    }
}

/// A fresh SQLite database in a temporary directory.
pub fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    TestDb {
        url: format!("sqlite://{}", dir.path().join("omoi.db").display()),
        backend: "sqlite",
        _dir: Some(dir),
        drop_pg: None,
    }
}

/// A fresh PostgreSQL database on the server of `OMOI_TEST_POSTGRES_URL`.
pub async fn postgres(admin: &str) -> TestDb {
    sqlx::any::install_default_drivers();
    let name = format!("omoi_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::AnyConnection::connect(admin)
        .await
        .unwrap_or_else(|e| panic!("connecting to OMOI_TEST_POSTGRES_URL: {e}"));
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let (base, _) = admin.rsplit_once('/').unwrap();
    TestDb {
        url: format!("{base}/{name}"),
        backend: "postgres",
        _dir: None,
        drop_pg: Some((admin.to_string(), name)),
    }
}

/// The databases to test on: SQLite, and PostgreSQL when `OMOI_TEST_POSTGRES_URL` is set. With
/// `CI=true` a missing PostgreSQL fails the test, so CI never skips it silently.
pub async fn backends() -> Vec<TestDb> {
    let mut dbs = vec![sqlite()];
    match std::env::var("OMOI_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => dbs.push(postgres(&url).await),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => panic!(
            "CI=true but OMOI_TEST_POSTGRES_URL is unset: start PostgreSQL with \
             scripts/start-postgres.sh and export its URL"
        ),
        _ => {}
    }
    dbs
}

/// Runs `test` once per backend, naming the backend when it fails.
pub async fn each_backend<F, Fut>(test: F)
where
    F: Fn(TestDb) -> Fut,
    Fut: Future<Output = ()>,
{
    for db in backends().await {
        let backend = db.backend;
        let result = std::panic::AssertUnwindSafe(test(db)).catch_unwind().await;
        if let Err(panic) = result {
            eprintln!("the test failed on the {backend} backend");
            std::panic::resume_unwind(panic);
        }
    }
}

/// A project named `name` of a plain git remote, with nothing else set, for the store's calls.
pub fn new_project(name: &str) -> omoi_coordinator::store::NewProject {
    omoi_coordinator::store::NewProject {
        name: name.into(),
        repo_url: "https://git.example/r.git".into(),
        base_branch: "main".into(),
        validation_command: None,
        provider: "local".into(),
        image: None,
        image_pull_secrets: Vec::new(),
        worker_env: BTreeMap::new(),
        worker_secrets: BTreeMap::new(),
        github_api_url: None,
        git_token: None,
    }
}

/// The key test servers seal project secrets with (one for all, so a restarted server reads
/// what the first one stored).
pub fn test_secret_key() -> omoi_coordinator::secret::SecretKey {
    omoi_coordinator::secret::SecretKey::parse(&"5e".repeat(32), "the test key").unwrap()
}

/// A coordinator on 127.0.0.1:0.
pub struct TestServer {
    pub url: String,
    pub store: Store,
    shutdown: CancellationToken,
    handle: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    /// A server over `db` with `provider`; `tune` adjusts the settings.
    pub async fn start(
        db: &TestDb,
        provider: Arc<dyn Provider>,
        tune: impl FnOnce(&mut Settings),
    ) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::start_on(listener, db, provider, tune).await
    }

    /// A server on a given listener (to restart on the same port).
    pub async fn start_on(
        listener: TcpListener,
        db: &TestDb,
        provider: Arc<dyn Provider>,
        tune: impl FnOnce(&mut Settings),
    ) -> TestServer {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(tracing_subscriber::EnvFilter::new("omoi_coordinator=info"))
            .try_init();
        let addr = listener.local_addr().unwrap();
        let url = format!("http://{addr}");
        let store = Store::open(&db.url)
            .await
            .unwrap()
            .with_secret_key(test_secret_key());
        let mut settings = Settings::new(url.clone());
        settings.monitor_interval = Duration::from_millis(100);
        // The fixtures and the temporary repositories tests make are the local ones allowed.
        settings.allow_local_repos = [
            std::env::temp_dir(),
            omoi_tests::fixtures::sample_repo()
                .parent()
                .unwrap()
                .to_path_buf(),
        ]
        .iter()
        .map(|dir| std::fs::canonicalize(dir).unwrap())
        .collect();
        tune(&mut settings);
        let state = AppState::new(store.clone(), provider, settings);
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(serve(listener, state, shutdown.clone()));
        TestServer {
            url,
            store,
            shutdown,
            handle: Some(handle),
        }
    }

    /// A new user and its token.
    pub async fn user(&self, name: &str) -> (User, Api) {
        let user = self.store.create_user(name).await.unwrap();
        let token = self.store.create_user_token(&user.id).await.unwrap();
        (user, self.api(Some(&token)))
    }

    /// A client with `token` (or none).
    pub fn api(&self, token: Option<&str>) -> Api {
        Api {
            http: reqwest::Client::new(),
            base: self.url.clone(),
            token: token.map(str::to_string),
        }
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(handle) = self.handle.take() {
            handle.await.unwrap().unwrap();
        }
        self.store.close().await;
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// An HTTP client of the test server that answers `(status, JSON)`.
#[derive(Debug, Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
    pub token: Option<String>,
}

impl Api {
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let url = if path.starts_with('/')
            && !path.starts_with("/api")
            && !path.starts_with("/healthz")
            && !path.starts_with("/metrics")
        {
            format!("{}/api/v1{path}", self.base)
        } else {
            format!("{}{path}", self.base)
        };
        let builder = self.http.request(method, url);
        match &self.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        answer(
            self.request(reqwest::Method::GET, path)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        answer(
            self.request(reqwest::Method::POST, path)
                .json(body)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        answer(
            self.request(reqwest::Method::PATCH, path)
                .json(body)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// POST with a raw body and content type JSON.
    pub async fn post_raw(&self, path: &str, body: &str) -> (StatusCode, Value) {
        answer(
            self.request(reqwest::Method::POST, path)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// The raw request builder, for SSE and headers.
    pub fn raw(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.request(method, path)
    }

    /// Posts a batch of events as a sandbox.
    pub async fn ingest(&self, sandbox_id: &str, events: &[RawEvent]) -> (StatusCode, Value) {
        self.post(
            &format!("/sandboxes/{sandbox_id}/events"),
            &serde_json::json!({ "events": events }),
        )
        .await
    }
}

async fn answer(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.unwrap();
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, value)
}

/// The error body the API answers.
pub fn error(code: &str, message: &str) -> Value {
    serde_json::json!({ "error": { "code": code, "message": message } })
}

/// A provider that runs nothing: it records spawns and terminations, and reports what a test
/// sets.
#[derive(Debug, Default)]
pub struct FakeProvider {
    inner: Mutex<FakeState>,
}

#[derive(Debug, Default)]
struct FakeState {
    spawned: Vec<SpawnRequest>,
    statuses: HashMap<String, ProviderStatus>,
    terminated: Vec<String>,
    /// Listed in `list` beside the spawned ones (left over from an "earlier run").
    extra: Vec<ListedSandbox>,
    fail_spawns: bool,
    fail_task_spawns: bool,
    /// `(handle, repo)` of each repository put into a running sandbox (a claimed standby).
    placed: Vec<(String, String)>,
}

impl FakeProvider {
    pub fn new() -> Arc<FakeProvider> {
        Arc::new(FakeProvider::default())
    }

    /// Every spawn request so far.
    pub fn spawned(&self) -> Vec<SpawnRequest> {
        self.inner.lock().unwrap().spawned.clone()
    }

    /// The environment of the `n`th spawn.
    pub fn env(&self, n: usize) -> BTreeMap<String, String> {
        self.spawned()[n].env.clone()
    }

    /// Handles terminated so far.
    pub fn terminated(&self) -> Vec<String> {
        self.inner.lock().unwrap().terminated.clone()
    }

    /// Makes a sandbox report `status`.
    pub fn set_status(&self, handle: &str, status: ProviderStatus) {
        self.inner
            .lock()
            .unwrap()
            .statuses
            .insert(handle.to_string(), status);
    }

    /// Adds a sandbox only the provider knows.
    pub fn add_unknown(&self, listed: ListedSandbox) {
        self.inner.lock().unwrap().extra.push(listed);
    }

    /// Makes every later spawn fail.
    pub fn fail_spawns(&self) {
        self.inner.lock().unwrap().fail_spawns = true;
    }

    /// The repositories put into running sandboxes so far: `(handle, repo)`.
    pub fn placed(&self) -> Vec<(String, String)> {
        self.inner.lock().unwrap().placed.clone()
    }

    /// Makes every later spawn of a task sandbox (one with `TASK_ID` set) fail.
    pub fn fail_task_spawns(&self) {
        self.inner.lock().unwrap().fail_task_spawns = true;
    }
}

impl Provider for FakeProvider {
    fn name(&self) -> &'static str {
        "local"
    }

    fn scope(&self) -> Option<String> {
        // Replicas given one fake share its sandboxes; two fakes share nothing.
        Some(format!("fake:{:p}", std::ptr::from_ref(self)))
    }

    fn spawn(&self, request: SpawnRequest) -> BoxFuture<'_, Result<SandboxHandle, SandboxError>> {
        async move {
            let mut inner = self.inner.lock().unwrap();
            if inner.fail_spawns || (inner.fail_task_spawns && request.env.contains_key("TASK_ID"))
            {
                return Err(SandboxError::Spawn {
                    sandbox_id: request.sandbox_id.clone(),
                    reason: "no capacity".into(),
                });
            }
            let handle = format!("fake-{}", request.sandbox_id);
            inner
                .statuses
                .insert(handle.clone(), ProviderStatus::Running);
            inner.spawned.push(request);
            Ok(SandboxHandle(handle))
        }
        .boxed()
    }

    fn status<'a>(
        &'a self,
        handle: &'a SandboxHandle,
    ) -> BoxFuture<'a, Result<ProviderStatus, SandboxError>> {
        async move {
            Ok(self
                .inner
                .lock()
                .unwrap()
                .statuses
                .get(&handle.0)
                .cloned()
                .unwrap_or(ProviderStatus::NotFound))
        }
        .boxed()
    }

    fn terminate<'a>(
        &'a self,
        handle: &'a SandboxHandle,
    ) -> BoxFuture<'a, Result<(), SandboxError>> {
        async move {
            let mut inner = self.inner.lock().unwrap();
            inner.terminated.push(handle.0.clone());
            inner
                .statuses
                .insert(handle.0.clone(), ProviderStatus::Exited { code: Some(143) });
            for extra in &mut inner.extra {
                if extra.handle == *handle {
                    extra.status = ProviderStatus::Exited { code: Some(143) };
                }
            }
            Ok(())
        }
        .boxed()
    }

    fn list<'a>(
        &'a self,
        labels: &'a BTreeMap<String, String>,
    ) -> BoxFuture<'a, Result<Vec<ListedSandbox>, SandboxError>> {
        async move {
            let inner = self.inner.lock().unwrap();
            let mut listed: Vec<ListedSandbox> = inner
                .spawned
                .iter()
                .map(|r| {
                    let handle = SandboxHandle(format!("fake-{}", r.sandbox_id));
                    ListedSandbox {
                        status: inner
                            .statuses
                            .get(&handle.0)
                            .cloned()
                            .unwrap_or(ProviderStatus::NotFound),
                        handle,
                        labels: r.labels.clone(),
                    }
                })
                .collect();
            listed.extend(inner.extra.iter().cloned());
            listed.retain(|l| labels.iter().all(|(k, v)| l.labels.get(k) == Some(v)));
            Ok(listed)
        }
        .boxed()
    }

    /// A repository path that is not there is refused in git's words, as the docker provider
    /// refuses a repository it cannot list.
    fn prepare_repository<'a>(&'a self, repo: &'a str) -> BoxFuture<'a, Result<(), SandboxError>> {
        let missing = repo.starts_with('/') && !std::path::Path::new(repo).exists();
        futures_util::future::ready(if missing {
            Err(SandboxError::Provider(format!(
                "docker: git ls-remote {repo} failed: fatal: '{repo}' does not appear to be a git \
                 repository"
            )))
        } else {
            Ok(())
        })
        .boxed()
    }

    /// Records the repository; a sandbox that is not running refuses it, as a stopped
    /// container refuses an upload.
    fn place_repository<'a>(
        &'a self,
        handle: &'a SandboxHandle,
        repo: &'a str,
    ) -> BoxFuture<'a, Result<(), SandboxError>> {
        async move {
            let mut inner = self.inner.lock().unwrap();
            if inner.statuses.get(&handle.0) != Some(&ProviderStatus::Running) {
                return Err(SandboxError::Provider(format!(
                    "{} is not running",
                    handle.0
                )));
            }
            inner.placed.push((handle.0.clone(), repo.to_string()));
            Ok(())
        }
        .boxed()
    }
}

/// Waits until `check` holds, polling every 50 ms for at most `limit`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

/// An event of `sandbox` for `spec` at `seq`.
pub fn event(sandbox: &str, spec: &str, seq: u64, kind: &str, data: Value) -> RawEvent {
    RawEvent {
        v: 1,
        sandbox_id: sandbox.to_string(),
        seq,
        at: chrono::DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&chrono::Utc)
            + chrono::Duration::seconds(i64::try_from(seq).unwrap()),
        spec_id: Some(spec.to_string()),
        task_id: None,
        kind: kind.to_string(),
        data,
    }
}

/// The output the sample script submits for a generated phase, as the `PhaseOutput` JSON
/// (`{"explore": {...}}`).
pub fn phase_output(phase: &str) -> Value {
    let script = omoi_tests::fixtures::sample_script_json();
    let submit = script[phase][0]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|turn| turn["tool_calls"].as_array().cloned().unwrap_or_default())
        .find(|call| call["name"] == "submit")
        .unwrap();
    serde_json::json!({ phase: submit["input"] })
}

/// `spec.phase_completed` data for a phase of the sample script.
pub fn phase_completed(phase: &str, score: f64, attempts: u32) -> Value {
    serde_json::json!({
        "phase": phase,
        "score": score,
        "attempts": attempts,
        "duration_ms": 1200,
        "output": phase_output(phase),
    })
}

/// The sandbox id and token of the `n`th spawn of a fake provider.
pub fn sandbox_of(provider: &FakeProvider, n: usize) -> (String, String) {
    let env = provider.env(n);
    (env["SANDBOX_ID"].clone(), env["SANDBOX_TOKEN"].clone())
}

/// A coordinator with the fake provider, the user `ada` with a project, and one launched spec
/// whose sandbox the provider was asked to spawn.
pub struct Scenario {
    pub server: TestServer,
    pub provider: Arc<FakeProvider>,
    /// `ada`'s client.
    pub api: Api,
    /// The spec's id.
    pub spec: String,
    /// The id of the spec's sandbox.
    pub sandbox: String,
    /// The sandbox's token.
    pub token: String,
    /// A client with the sandbox's token.
    pub sandbox_api: Api,
}

impl Scenario {
    /// The world with the server's default settings.
    pub async fn launched(db: &TestDb) -> Scenario {
        Scenario::launched_with(db, |_| {}).await
    }

    /// The world with settings of the test's own.
    pub async fn launched_with(db: &TestDb, tune: impl FnOnce(&mut Settings)) -> Scenario {
        let provider = FakeProvider::new();
        let server = TestServer::start(db, provider.clone(), tune).await;
        let (_, api) = server.user("ada").await;
        let (_, project) = api
            .post(
                "/projects",
                &serde_json::json!({"name": "p", "repo_url": "https://git.example/r.git"}),
            )
            .await;
        let (_, spec) = api
            .post(
                "/specs/launch",
                &serde_json::json!({"project_id": project["id"], "title": "Add --shout"}),
            )
            .await;
        let spec = spec["id"].as_str().unwrap().to_string();
        let (sandbox, token) = sandbox_of(&provider, 0);
        let sandbox_api = server.api(Some(&token));
        Scenario {
            server,
            provider,
            api,
            spec,
            sandbox,
            token,
            sandbox_api,
        }
    }
}
