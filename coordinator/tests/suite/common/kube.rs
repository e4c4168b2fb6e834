//! Support of the kubernetes suites: the fake API server (`omoi_tests::fake_kube`) whose kubelet
//! runs the real `omoi-worker` for the sandbox image, a provider connected to it, a git daemon
//! the pods clone from and push to, and a coordinator with a launched spec.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use omoi_coordinator::Settings;
use omoi_coordinator::sandbox::SandboxError;
use omoi_coordinator::sandbox::kubernetes::{
    DEFAULT_IMAGE, KubernetesApi, KubernetesConfig, KubernetesProvider,
};
use omoi_tests::fake_kube::{FakeKube, FakeKubeConfig};
use omoi_tests::git::GitDaemon;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{Api, TestDb, TestServer};

/// The namespace of the fake cluster.
pub const NS: &str = "omoi";
/// The bearer token the fake cluster accepts.
pub const TOKEN: &str = "fake-cluster-token-0123456789";

/// A fake cluster whose image `omoi-sandbox:latest` is this build's worker (holding the scripts
/// the tests write into `dir`).
pub async fn fake(dir: &Path) -> FakeKube {
    FakeKube::start(FakeKubeConfig {
        namespaces: vec![NS.to_string()],
        token: TOKEN.to_string(),
        images: BTreeMap::from([(
            DEFAULT_IMAGE.to_string(),
            crate::suite::worker_e2e::worker_bin(),
        )]),
        work_dir: dir.join("kubelet"),
        image_files: vec![dir.join("script.json")],
    })
    .await
}

/// A kube client of the fake, as a kubeconfig with a token would make it.
pub fn client(fake: &FakeKube) -> kube::Client {
    let mut config = kube::Config::new(fake.url().parse().unwrap());
    config.default_namespace = NS.to_string();
    config.auth_info = serde_json::from_value(json!({ "token": TOKEN })).unwrap();
    kube::Client::try_from(config).unwrap()
}

/// Sandbox mode: an `agents.x-k8s.io` Sandbox per sandbox.
pub fn sandbox_mode(config: &mut KubernetesConfig) {
    config.api = KubernetesApi::Sandbox;
}

/// The provider on the fake with `tune` applied to its settings.
pub async fn provider(
    fake: &FakeKube,
    data: &Path,
    tune: impl FnOnce(&mut KubernetesConfig),
) -> Result<KubernetesProvider, SandboxError> {
    let mut config = KubernetesConfig::new(NS.to_string(), data.to_path_buf());
    tune(&mut config);
    KubernetesProvider::start(client(fake), config).await
}

/// A git daemon serving a bare copy of the sample repository as `remote.git`.
pub struct Remote {
    pub daemon: GitDaemon,
    pub bare: PathBuf,
}

impl Remote {
    pub fn start(dir: &Path) -> Remote {
        let bare = omoi_tests::git::seed_bare_repo(
            &omoi_tests::fixtures::sample_repo(),
            &dir.join("remote.git"),
        );
        Remote {
            daemon: GitDaemon::start(dir),
            bare,
        }
    }

    pub fn url(&self) -> String {
        self.daemon.url("remote.git")
    }
}

/// A coordinator on `provider`, its user's client and a launched spec of the sample request,
/// whose workers replay `script` (read from this machine: the kubelet runs them here).
pub struct Launched {
    pub server: TestServer,
    pub api: Api,
    pub spec_id: String,
}

pub async fn launch(
    db: &TestDb,
    provider: Arc<KubernetesProvider>,
    remote: &Remote,
    script: &Path,
    stop_after: Option<&str>,
) -> Launched {
    let script = script.display().to_string();
    let server = TestServer::start(db, provider, |s: &mut Settings| {
        s.heartbeat_secs = 2;
        for (name, value) in [
            ("OMOI_LLM", "scripted"),
            ("OMOI_SCRIPT", script.as_str()),
            ("OMOI_RETRY_BASE_MS", "10"),
        ] {
            s.worker_env.insert(name.into(), value.into());
        }
    })
    .await;
    let (_, api) = server.user("ada").await;
    let (status, project) = api
        .post(
            "/projects",
            &json!({"name": "sample", "repo_url": remote.url()}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{project}");
    let (title, description) = omoi_tests::fixtures::sample_request();
    let mut body = json!({"project_id": project["id"], "title": title, "description": description});
    if let Some(phase) = stop_after {
        body["stop_after"] = json!(phase);
    }
    let (status, spec) = api.post("/specs/launch", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{spec}");
    Launched {
        server,
        api,
        spec_id: spec["id"].as_str().unwrap().to_string(),
    }
}

/// Writes every object the provider created in the fake to `target/tmp/k8s-manifests/`, one JSON
/// file each, for CI to check with an independent schema validator. The validator knows no
/// agent-sandbox CRD: a Sandbox is written as the `v1` `PodTemplate` of its `spec.podTemplate`
/// (the pod it makes, which is what the schemas can check; the fake checked the rest).
pub fn dump_manifests(fake: &FakeKube, test: &str) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("k8s-manifests");
    std::fs::create_dir_all(&dir).unwrap();
    for (i, object) in fake.created().iter().enumerate() {
        let object = if object["kind"] == "Sandbox" {
            json!({"apiVersion": "v1", "kind": "PodTemplate",
                "metadata": {"name": object["metadata"]["name"], "labels": object["metadata"]["labels"]},
                "template": object["spec"]["podTemplate"]})
        } else {
            object.clone()
        };
        let kind = object["kind"].as_str().unwrap_or("object").to_lowercase();
        let path = dir.join(format!("{test}-{i:03}-{kind}.json"));
        std::fs::write(path, serde_json::to_vec_pretty(&object).unwrap()).unwrap();
    }
}

/// The reasons of the spec's own sandboxes, oldest first.
pub fn reasons(detail: &Value) -> Vec<(String, String)> {
    super::docker::spec_sandboxes(detail)
        .iter()
        .map(|s| {
            (
                s["status"].as_str().unwrap_or_default().to_string(),
                s["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}
