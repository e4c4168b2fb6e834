//! Support of the docker suites: the precondition (an Engine and the sandbox image), a provider
//! per test with a guard that removes what the test leaves on the Engine, a git remote on the
//! sandbox network's gateway, a coordinator there with a launched spec, and the checks the suites
//! share.
//!
//! Without an Engine or the image the docker tests say so and pass, unless `CI=true` or
//! `OMOI_TEST_DOCKER=1`, where they fail.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListVolumesOptions,
    RemoveContainerOptionsBuilder,
};
use omoi_coordinator::Settings;
use omoi_coordinator::sandbox::docker::{
    DEFAULT_IMAGE, DEFAULT_SOCKET, DockerConfig, DockerProvider, SandboxFile,
};
use pretty_assertions::assert_eq;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::{Api, TestDb, TestServer, eventually};

/// How long a whole spec in containers may take.
pub const WAIT: Duration = Duration::from_secs(180);

/// The script's path inside every sandbox.
pub const SCRIPT_IN_SANDBOX: &str = "/work/script.json";

/// Whether a missing Engine or image fails the test instead of skipping it.
fn docker_required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
        || std::env::var("OMOI_TEST_DOCKER").is_ok_and(|v| v == "1")
}

/// `None` (and a line saying why) when the Engine or the sandbox image `image` is missing and
/// the tests may skip; a failure when they may not.
async fn engine_or_skip(image: &str) -> Option<()> {
    let why = match Docker::connect_with_unix(DEFAULT_SOCKET, 30, bollard::API_DEFAULT_VERSION) {
        Err(e) => Some(format!("no Docker Engine at {DEFAULT_SOCKET}: {e}")),
        Ok(docker) => match docker.negotiate_version().await {
            Err(e) => Some(format!("the Docker Engine does not answer: {e}")),
            Ok(docker) => match docker.inspect_image(image).await {
                Ok(_) => None,
                Err(e) => Some(format!(
                    "no image {image} ({e}); build it with scripts/build-images.sh{}",
                    if image == DEFAULT_IMAGE {
                        ""
                    } else {
                        " --with-agents"
                    }
                )),
            },
        },
    };
    match why {
        None => Some(()),
        Some(why) if docker_required() => panic!("docker tests: {why}"),
        Some(why) => {
            eprintln!("docker test skipped: {why} (CI=true or OMOI_TEST_DOCKER=1 makes this fail)");
            None
        }
    }
}

/// A docker provider for one test, with its own instance (data directory) and network, and a
/// guard that removes whatever of that instance is left when the test ends, passed or not.
pub struct Sandboxes {
    pub provider: Arc<DockerProvider>,
    pub data: PathBuf,
    _cleanup: Cleanup,
}

impl Sandboxes {
    /// `None` when the test is skipped (see [`engine_or_skip`]).
    pub async fn start(data: &Path, tune: impl FnOnce(&mut DockerConfig)) -> Option<Sandboxes> {
        let mut config = DockerConfig::new(data.to_path_buf());
        tune(&mut config);
        engine_or_skip(&config.image).await?;
        let provider = Arc::new(DockerProvider::connect(config).await.unwrap());
        let cleanup = Cleanup {
            instance: provider.instance().to_string(),
        };
        Some(Sandboxes {
            provider,
            data: data.to_path_buf(),
            _cleanup: cleanup,
        })
    }

    /// Closes the provider and asserts that no container, volume or network of the test is left.
    pub async fn close_and_assert_clean(&self) {
        let remaining = self.provider.close(Duration::from_secs(60)).await.unwrap();
        assert_eq!(remaining, Vec::<String>::new(), "containers still there");
        assert_eq!(
            leftovers(self.provider.client(), self.provider.instance()).await,
            Vec::<String>::new()
        );
    }
}

/// Removes every container, volume and network of an instance (on drop, in a thread of its own,
/// so that it also runs when the test panicked).
struct Cleanup {
    instance: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let instance = self.instance.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(remove_everything(&instance));
        })
        .join();
    }
}

async fn remove_everything(instance: &str) {
    let Ok(docker) = Docker::connect_with_unix(DEFAULT_SOCKET, 60, bollard::API_DEFAULT_VERSION)
    else {
        return;
    };
    let Ok(docker) = docker.negotiate_version().await else {
        return;
    };
    let filters = label_filter(instance);
    let options = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters)
        .build();
    for container in docker
        .list_containers(Some(options))
        .await
        .unwrap_or_default()
    {
        if let Some(id) = container.id {
            let options = RemoveContainerOptionsBuilder::new()
                .force(true)
                .v(true)
                .build();
            let _ = docker.remove_container(&id, Some(options)).await;
        }
    }
    let volumes = docker
        .list_volumes(Some(ListVolumesOptions {
            filters: Some(filters.clone()),
        }))
        .await
        .ok()
        .and_then(|v| v.volumes)
        .unwrap_or_default();
    for volume in volumes {
        let _ = docker
            .remove_volume(
                &volume.name,
                None::<bollard::query_parameters::RemoveVolumeOptions>,
            )
            .await;
    }
    let options = ListNetworksOptionsBuilder::new().filters(&filters).build();
    for network in docker
        .list_networks(Some(options))
        .await
        .unwrap_or_default()
    {
        if let Some(name) = network.name {
            let _ = docker.remove_network(&name).await;
        }
    }
}

fn label_filter(instance: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_string(),
        vec![format!("omoi.instance={instance}")],
    )])
}

/// Every container, volume and network that carries the instance's label, e.g.
/// `["container omoi-…", "network omoi-…"]`.
pub async fn leftovers(docker: &Docker, instance: &str) -> Vec<String> {
    let filters = label_filter(instance);
    let mut found = Vec::new();
    let options = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters)
        .build();
    for c in docker.list_containers(Some(options)).await.unwrap() {
        found.push(format!("container {:?}", c.names.unwrap_or_default()));
    }
    let volumes = docker
        .list_volumes(Some(ListVolumesOptions {
            filters: Some(filters.clone()),
        }))
        .await
        .unwrap();
    for v in volumes.volumes.unwrap_or_default() {
        found.push(format!("volume {}", v.name));
    }
    let options = ListNetworksOptionsBuilder::new().filters(&filters).build();
    for n in docker.list_networks(Some(options)).await.unwrap() {
        found.push(format!("network {}", n.name.unwrap_or_default()));
    }
    found
}

/// The sample script with `change` applied, written into `dir`, and the provider setting that
/// copies it into every sandbox.
pub fn script(dir: &Path, change: impl FnOnce(&mut Value)) -> SandboxFile {
    let mut script = omoi_tests::fixtures::sample_script_json();
    change(&mut script);
    SandboxFile {
        source: omoi_tests::fixtures::write_script(dir, "script.json", &script),
        name: "script.json".into(),
    }
}

/// The settings of a coordinator whose sandboxes run the scripted model from the copied script.
pub fn tune(settings: &mut Settings, heartbeat_secs: u64) {
    settings.heartbeat_secs = heartbeat_secs;
    for (name, value) in [
        ("OMOI_LLM", "scripted"),
        ("OMOI_SCRIPT", SCRIPT_IN_SANDBOX),
        ("OMOI_RETRY_BASE_MS", "10"),
    ] {
        settings.worker_env.insert(name.into(), value.into());
    }
}

/// A `git daemon` on the sandbox network's gateway, pushes enabled: a remote that both the
/// coordinator and the containers reach, as they would a hosted git service (a container sees no
/// path of the host). Killed on drop.
pub struct GatewayGit {
    child: Child,
    addr: SocketAddr,
    /// The bare repository the spec's tasks push to.
    pub remote: PathBuf,
}

impl GatewayGit {
    /// Serves a bare copy of the sample repository, `remote.git` under `dir`.
    pub fn start(gateway: IpAddr, dir: &Path) -> GatewayGit {
        let remote = omoi_tests::git::seed_bare_repo(
            &omoi_tests::fixtures::sample_repo(),
            &dir.join("remote.git"),
        );
        let port = std::net::TcpListener::bind((gateway, 0))
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let addr = SocketAddr::new(gateway, port);
        // The daemon itself: `git daemon` runs it as a child that killing `git` would leave.
        let exec_path = omoi_tests::git::git(dir, &["--exec-path"]);
        let child = Command::new(Path::new(&exec_path).join("git-daemon"))
            .args(["--export-all", "--enable=receive-pack", "--reuseaddr"])
            .arg(format!("--listen={gateway}"))
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", dir.display()))
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "git daemon did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        GatewayGit {
            child,
            addr,
            remote,
        }
    }

    pub fn url(&self) -> String {
        format!("git://{}/remote.git", self.addr)
    }
}

impl Drop for GatewayGit {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A coordinator on the sandbox network's gateway (where containers reach it), its user's client,
/// the git remote of the project, and a launched spec of the sample request.
pub struct Launched {
    pub server: TestServer,
    pub api: Api,
    pub spec_id: String,
    pub git: GatewayGit,
}

pub async fn launch(
    db: &TestDb,
    sandboxes: &Sandboxes,
    settings: impl FnOnce(&mut Settings),
) -> Launched {
    launch_warm(db, sandboxes, settings, 0).await
}

/// [`launch`] on a coordinator that keeps `pool` standby sandboxes, once they are all idle.
pub async fn launch_warm(
    db: &TestDb,
    sandboxes: &Sandboxes,
    settings: impl FnOnce(&mut Settings),
    pool: u32,
) -> Launched {
    let gateway = sandboxes.provider.gateway();
    let git = GatewayGit::start(gateway, &sandboxes.data.join("git"));
    let listener = TcpListener::bind((gateway, 0)).await.unwrap();
    let server = TestServer::start_on(listener, db, sandboxes.provider.clone(), |s| {
        settings(s);
        s.warm_pool = pool;
    })
    .await;
    if pool > 0 {
        eventually(WAIT, "the warm pool to fill", || async {
            let (_, text) = server.api(None).get("/metrics").await;
            text.as_str()
                .unwrap()
                .lines()
                .any(|line| line == format!("omoi_pool_idle {pool}"))
        })
        .await;
    }
    let (_, api) = server.user("ada").await;
    let (status, project) = api
        .post(
            "/projects",
            &json!({"name": "sample", "repo_url": git.url()}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{project}");
    let (title, description) = omoi_tests::fixtures::sample_request();
    let (status, spec) = api
        .post(
            "/specs/launch",
            &json!({"project_id": project["id"], "title": title, "description": description}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{spec}");
    Launched {
        server,
        api,
        spec_id: spec["id"].as_str().unwrap().to_string(),
        git,
    }
}

/// The spec's own sandboxes (not its tasks'), oldest first.
pub fn spec_sandboxes(detail: &Value) -> Vec<Value> {
    detail["sandboxes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s.get("task_id").is_none())
        .cloned()
        .collect()
}

pub async fn detail(api: &Api, spec_id: &str) -> Value {
    api.get(&format!("/specs/{spec_id}")).await.1
}

/// Waits until the spec is `status`; fails at once when it ends otherwise.
pub async fn wait_for_status(api: &Api, spec_id: &str, status: &str) -> Value {
    eventually(WAIT, &format!("the spec to be {status}"), || async {
        let d = detail(api, spec_id).await;
        assert!(
            d["status"] == status || d["status"] == "executing" || d["status"] == "implementing",
            "the spec ended {}: {}",
            d["status"],
            d["error"]
        );
        d["status"] == status
    })
    .await;
    detail(api, spec_id).await
}

/// Waits until the spec's DESIGN phase has started; returns its first sandbox's id.
pub async fn wait_for_design(api: &Api, spec_id: &str) -> String {
    eventually(WAIT, "DESIGN to start", || async {
        let d = detail(api, spec_id).await;
        d["phases"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["phase"] == "design"))
    })
    .await;
    spec_sandboxes(&detail(api, spec_id).await)[0]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

pub fn phase_summary(detail: &Value) -> Vec<(String, String)> {
    detail["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["phase"].as_str().unwrap().to_string(),
                p["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

pub fn all_completed() -> Vec<(String, String)> {
    ["explore", "requirements", "design", "tasks", "sync"]
        .iter()
        .map(|p| (p.to_string(), "completed".to_string()))
        .collect()
}

/// The stored seqs of a sandbox are exactly 1..=acked, each once, and the spec's event stream
/// holds them in that order. Returns how many there are.
pub async fn assert_every_event_once_in_order(launched: &Launched, sandbox_id: &str) -> u64 {
    let store = &launched.server.store;
    let seqs: Vec<u64> = store
        .sandbox_events(sandbox_id)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    let n = seqs.len() as u64;
    assert_eq!(seqs, (1..=n).collect::<Vec<_>>());
    let sandbox = store.sandbox(sandbox_id).await.unwrap().unwrap();
    assert_eq!(sandbox.acked_seq, n);
    let (_, page) = launched
        .api
        .get(&format!("/specs/{}/events?limit=1000", launched.spec_id))
        .await;
    let streamed: Vec<u64> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"]["sandbox_id"] == sandbox_id)
        .map(|e| e["event"]["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(streamed, (1..=n).collect::<Vec<_>>());
    n
}
