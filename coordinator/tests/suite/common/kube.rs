//! Support of the kubernetes suites: the fake API server (`omoi_tests::fake_kube`) whose kubelet
//! runs the real `omoi-worker` for the sandbox image, and a provider connected to it; the git
//! remote the pods clone from and the launched spec come from [`super::remote`].

use std::collections::BTreeMap;
use std::path::Path;

use omoi_coordinator::sandbox::SandboxError;
use omoi_coordinator::sandbox::kubernetes::{
    DEFAULT_IMAGE, KubernetesApi, KubernetesConfig, KubernetesProvider,
};
use omoi_tests::fake_kube::{FakeKube, FakeKubeConfig};
use serde_json::json;

pub use super::remote::{Remote, launch, reasons};

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

/// Writes every object the provider created in the fake to `target/tmp/k8s-manifests/`, one JSON
/// file each, for CI to check with an independent schema validator. The validator knows no
/// agent-sandbox CRD: a Sandbox or a SandboxTemplate is written as the `v1` `PodTemplate` of its
/// `spec.podTemplate` (the pod it makes, which is what the schemas can check; the fake checked
/// the rest), and a SandboxWarmPool or SandboxClaim, which holds no pod, is not written.
pub fn dump_manifests(fake: &FakeKube, test: &str) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("k8s-manifests");
    std::fs::create_dir_all(&dir).unwrap();
    for (i, object) in fake.created().iter().enumerate() {
        if object["kind"] == "SandboxWarmPool" || object["kind"] == "SandboxClaim" {
            continue;
        }
        let object = if object["kind"] == "Sandbox" || object["kind"] == "SandboxTemplate" {
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
