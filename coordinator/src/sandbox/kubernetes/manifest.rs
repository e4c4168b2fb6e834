//! The objects the kubernetes provider asks for, built without IO: one sandbox's Pod (hardened:
//! non-root, read-only root filesystem with `emptyDir` volumes for the workspace, `/tmp` and the
//! home, every capability dropped, `RuntimeDefault` seccomp, no service-account token, restart
//! policy `Never`, a deadline, requests and limits), its Secret (the worker's whole environment,
//! owned by the Pod so that it goes with it), the `agents.x-k8s.io` `Sandbox` whose pod template is
//! that same Pod's, and the names and labels they carry.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvFromSource, EnvVar, LocalObjectReference,
    Pod, PodSecurityContext, PodSpec, ResourceRequirements, SeccompProfile, Secret,
    SecretEnvSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use omoi_protocol::env;

use super::KubernetesConfig;
use super::agent_sandbox::{self, PodMetadata, PodTemplate, Sandbox, SandboxSpec};
use crate::sandbox::{Limits, SpawnRequest};

/// The label naming the coordinator (its `--instance`) whose sandbox an object is: watches,
/// lists and reconcile select on it, so coordinators of separate databases share a namespace.
pub use crate::sandbox::INSTANCE_LABEL;
/// The instance of a coordinator started without `--instance`.
pub const DEFAULT_INSTANCE: &str = "default";

/// The worker's container in every sandbox pod.
pub const CONTAINER: &str = "worker";
/// The workspace (`WORKSPACE`): an `emptyDir`, empty at start; the worker clones into it.
pub const WORKSPACE_DIR: &str = "/workspace";
/// `/tmp`, an `emptyDir` (the root filesystem is read-only).
pub const TMP_DIR: &str = "/tmp";
/// The home of the image's user, an `emptyDir`.
pub const HOME_DIR: &str = "/home/omoi";
/// The uid and gid of the sandbox image's user `omoi` (images/README.md).
pub const SANDBOX_UID: i64 = 1000;
/// How long a deleted pod's worker gets to drain its events after SIGTERM.
pub const GRACE_SECS: i64 = 10;
/// The size limit of the home directory's volume.
const HOME_LIMIT: &str = "64Mi";

/// The pod (or `Sandbox`, whose cold-started pod the controller names after it) of a sandbox:
/// `omoi-<sandbox id>`.
pub fn pod_name(sandbox_id: &str) -> String {
    format!("omoi-{sandbox_id}")
}

/// The Secret of a sandbox's pod: `omoi-<sandbox id>-env`.
pub fn secret_name(pod_name: &str) -> String {
    format!("{pod_name}-env")
}

/// Whether `name` is a DNS label (RFC 1123): 1–63 of `a-z`, `0-9`, `-`, starting and ending
/// with a letter or digit. Pod and Secret names of sandboxes are kept to labels.
pub fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// Whether `value` is a label value: at most 63 of letters, digits, `-`, `_`, `.`, starting and
/// ending with a letter or digit (or empty).
pub fn is_label_value(value: &str) -> bool {
    let bytes = value.as_bytes();
    bytes.is_empty()
        || (bytes.len() <= 63
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
            && bytes.last().is_some_and(u8::is_ascii_alphanumeric))
}

/// Whether `name` may be a key of a Secret's data (and so a variable set by `envFrom`).
pub fn is_secret_key(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The labels of a sandbox's objects: the request's, the sandbox and spec when they are not
/// among them, and the coordinator's instance.
pub fn labels(request: &SpawnRequest, instance: &str) -> BTreeMap<String, String> {
    let mut labels = request.sandbox_labels();
    labels.insert(INSTANCE_LABEL.to_string(), instance.to_string());
    labels
}

/// What is wrong with a request before anything is sent: names and labels the API server would
/// refuse, variables a Secret cannot hold.
pub fn check(request: &SpawnRequest, instance: &str) -> Result<(), String> {
    let pod = pod_name(&request.sandbox_id);
    if !is_dns_label(&secret_name(&pod)) {
        return Err(format!(
            "the sandbox id {:?} does not make a DNS label for its pod",
            request.sandbox_id
        ));
    }
    if let Some((key, value)) = labels(request, instance)
        .iter()
        .find(|(_, value)| !is_label_value(value))
    {
        return Err(format!("the label {key}={value:?} is not a label value"));
    }
    if let Some(name) = request.env.keys().find(|name| !is_secret_key(name)) {
        return Err(format!(
            "the worker variable {name:?} cannot be a key of the sandbox's Secret"
        ));
    }
    Ok(())
}

/// The limits a sandbox runs with: the request's where it sets them, else the provider's.
pub fn effective_limits(request: &Limits, defaults: &Limits) -> Limits {
    Limits {
        memory_mb: request.memory_mb.or(defaults.memory_mb),
        cpus: request.cpus.or(defaults.cpus),
    }
}

/// Requests equal to the limits (the Guaranteed QoS class: the scheduler places a sandbox where
/// what it may use is free).
fn resources(limits: &Limits) -> Option<ResourceRequirements> {
    let mut amounts = BTreeMap::new();
    if let Some(mb) = limits.memory_mb {
        amounts.insert("memory".to_string(), Quantity(format!("{mb}Mi")));
    }
    if let Some(cpus) = limits.cpus.filter(|c| c.is_finite() && *c > 0.0) {
        let millis = (cpus * 1000.0).round().max(1.0) as u64;
        amounts.insert("cpu".to_string(), Quantity(format!("{millis}m")));
    }
    (!amounts.is_empty()).then(|| ResourceRequirements {
        limits: Some(amounts.clone()),
        requests: Some(amounts),
        ..ResourceRequirements::default()
    })
}

fn runtime_default() -> Option<SeccompProfile> {
    Some(SeccompProfile {
        type_: "RuntimeDefault".to_string(),
        localhost_profile: None,
    })
}

fn empty_dir(name: &str, size_limit: Option<&str>) -> Volume {
    Volume {
        name: name.to_string(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: None,
            size_limit: size_limit.map(|s| Quantity(s.to_string())),
        }),
        ..Volume::default()
    }
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.to_string(),
        mount_path: path.to_string(),
        ..VolumeMount::default()
    }
}

/// The pod template of a sandbox (its spec and labels), for a bare Pod or a `Sandbox`'s
/// `podTemplate`. The environment comes from the Secret `secret` alone: the spec names no value
/// of the worker's variables but `WORKSPACE`.
pub fn pod_spec(request: &SpawnRequest, config: &KubernetesConfig, secret: &str) -> PodSpec {
    let limits = effective_limits(&request.limits, &config.limits);
    let container = Container {
        name: CONTAINER.to_string(),
        image: Some(
            request
                .image
                .clone()
                .unwrap_or_else(|| config.image.clone()),
        ),
        image_pull_policy: Some("IfNotPresent".to_string()),
        env: Some(vec![EnvVar {
            name: env::WORKSPACE.to_string(),
            value: Some(WORKSPACE_DIR.to_string()),
            value_from: None,
        }]),
        env_from: Some(vec![EnvFromSource {
            secret_ref: Some(SecretEnvSource {
                name: secret.to_string(),
                optional: Some(false),
            }),
            ..EnvFromSource::default()
        }]),
        working_dir: Some(WORKSPACE_DIR.to_string()),
        resources: resources(&limits),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            run_as_user: Some(SANDBOX_UID),
            run_as_group: Some(SANDBOX_UID),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_string()]),
                add: None,
            }),
            seccomp_profile: runtime_default(),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![
            mount("workspace", WORKSPACE_DIR),
            mount("tmp", TMP_DIR),
            mount("home", HOME_DIR),
        ]),
        termination_message_policy: Some("FallbackToLogsOnError".to_string()),
        ..Container::default()
    };
    PodSpec {
        containers: vec![container],
        restart_policy: Some("Never".to_string()),
        active_deadline_seconds: Some(i64::try_from(config.deadline_secs).unwrap_or(i64::MAX)),
        termination_grace_period_seconds: Some(GRACE_SECS),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        image_pull_secrets: pull_secrets(request, config),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(SANDBOX_UID),
            run_as_group: Some(SANDBOX_UID),
            fs_group: Some(SANDBOX_UID),
            seccomp_profile: runtime_default(),
            ..PodSecurityContext::default()
        }),
        volumes: Some(vec![
            empty_dir("workspace", None),
            empty_dir("tmp", None),
            empty_dir("home", Some(HOME_LIMIT)),
        ]),
        ..PodSpec::default()
    }
}

/// The Secrets the image is pulled with: the request's (its project's) when it names any, else
/// the provider's (`--image-pull-secret`).
fn pull_secrets(
    request: &SpawnRequest,
    config: &KubernetesConfig,
) -> Option<Vec<LocalObjectReference>> {
    let names = if request.image_pull_secrets.is_empty() {
        &config.image_pull_secrets
    } else {
        &request.image_pull_secrets
    };
    (!names.is_empty()).then(|| {
        names
            .iter()
            .map(|name| LocalObjectReference { name: name.clone() })
            .collect()
    })
}

/// The Pod of a sandbox.
pub fn pod(request: &SpawnRequest, config: &KubernetesConfig) -> Pod {
    let name = pod_name(&request.sandbox_id);
    let secret = secret_name(&name);
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(config.namespace.clone()),
            labels: Some(labels(request, &config.instance)),
            ..ObjectMeta::default()
        },
        spec: Some(pod_spec(request, config, &secret)),
        status: None,
    }
}

/// The `Sandbox` of a sandbox: its pod template is the Pod of [`pod`] (spec and labels), so the
/// controller's pod is as hardened as a bare one; `operatingMode` is left to its default
/// (`Running`) and no Service, volume claim or shutdown time is asked for.
pub fn sandbox(request: &SpawnRequest, config: &KubernetesConfig) -> Sandbox {
    let pod = pod(request, config);
    Sandbox {
        api_version: agent_sandbox::API_VERSION.to_string(),
        kind: agent_sandbox::KIND.to_string(),
        metadata: ObjectMeta {
            name: pod.metadata.name,
            namespace: pod.metadata.namespace,
            labels: pod.metadata.labels.clone(),
            ..ObjectMeta::default()
        },
        spec: SandboxSpec {
            pod_template: PodTemplate {
                spec: pod.spec.unwrap_or_default(),
                metadata: PodMetadata {
                    labels: pod.metadata.labels,
                    annotations: None,
                },
            },
            ..SandboxSpec::default()
        },
        status: None,
    }
}

/// The owner of a sandbox's Secret: its Pod (or `Sandbox`), so that the cluster's garbage
/// collector deletes the Secret with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
}

/// The Secret that holds a sandbox's worker environment, owned by `owner`.
pub fn secret(request: &SpawnRequest, config: &KubernetesConfig, owner: &Owner) -> Secret {
    let data = request
        .env
        .iter()
        .filter(|(name, _)| name.as_str() != env::WORKSPACE)
        .map(|(name, value)| (name.clone(), ByteString(value.clone().into_bytes())))
        .collect();
    Secret {
        metadata: ObjectMeta {
            name: Some(secret_name(&pod_name(&request.sandbox_id))),
            namespace: Some(config.namespace.clone()),
            labels: Some(labels(request, &config.instance)),
            owner_references: Some(vec![OwnerReference {
                api_version: owner.api_version.clone(),
                kind: owner.kind.clone(),
                name: owner.name.clone(),
                uid: owner.uid.clone(),
                controller: Some(false),
                block_owner_deletion: Some(false),
            }]),
            ..ObjectMeta::default()
        },
        data: Some(data),
        immutable: Some(true),
        type_: Some("Opaque".to_string()),
        string_data: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::kubernetes::KubernetesConfig;

    fn request() -> SpawnRequest {
        SpawnRequest {
            sandbox_id: "0b8f6c1e-1111-4c1e-9a9a-000000000001".into(),
            image: None,
            image_pull_secrets: Vec::new(),
            env: BTreeMap::from([
                ("SPEC_ID".to_string(), "spec-1".to_string()),
                ("SANDBOX_TOKEN".to_string(), "omoi_sbx_secret".to_string()),
            ]),
            labels: BTreeMap::from([("omoi.owner".to_string(), "omoi".to_string())]),
            limits: Limits::default(),
            repo: None,
        }
    }

    #[test]
    fn names_are_dns_labels_and_bad_ones_are_refused() {
        assert!(is_dns_label("omoi-0b8f6c1e-1111"));
        for bad in ["", "Omoi", "-a", "a-", "a_b", "a.b", &"a".repeat(64)] {
            assert!(!is_dns_label(bad), "{bad}");
        }
        assert!(is_label_value("") && is_label_value("a.b_c-9"));
        assert!(
            !is_label_value("a b") && !is_label_value("-a") && !is_label_value(&"a".repeat(64))
        );
        let mut bad = request();
        bad.sandbox_id = "Not/A-Label".into();
        assert!(
            check(&bad, "default")
                .unwrap_err()
                .contains("does not make a DNS label")
        );
        let mut bad = request();
        bad.labels.insert("omoi.spec".into(), "a b".into());
        assert_eq!(
            check(&bad, "default").unwrap_err(),
            "the label omoi.spec=\"a b\" is not a label value"
        );
        let mut bad = request();
        bad.env.insert("A=B".into(), "x".into());
        assert!(check(&bad, "default").unwrap_err().contains("\"A=B\""));
        assert_eq!(check(&request(), "default"), Ok(()));
    }

    #[test]
    fn the_pod_is_hardened_and_names_no_secret_value() {
        let config = KubernetesConfig::new("omoi".into(), "/data".into());
        let pod = pod(&request(), &config);
        let json = serde_json::to_string(&pod).unwrap();
        assert!(!json.contains("omoi_sbx_secret"), "{json}");
        let spec = pod.spec.unwrap();
        let container = &spec.containers[0];
        let security = container.security_context.clone().unwrap();
        assert_eq!(
            (
                spec.restart_policy.as_deref(),
                spec.automount_service_account_token,
                security.read_only_root_filesystem,
                security.allow_privilege_escalation,
                security.run_as_non_root,
                security.capabilities.unwrap().drop,
                security.seccomp_profile.unwrap().type_,
            ),
            (
                Some("Never"),
                Some(false),
                Some(true),
                Some(false),
                Some(true),
                Some(vec!["ALL".to_string()]),
                "RuntimeDefault".to_string()
            )
        );
        let limits = container.resources.clone().unwrap().limits.unwrap();
        assert_eq!(
            (limits["memory"].0.as_str(), limits["cpu"].0.as_str()),
            ("2048Mi", "2000m")
        );
        let labels = pod.metadata.labels.unwrap();
        assert_eq!(
            (
                labels.get("omoi.sandbox").map(String::as_str),
                labels.get("omoi.instance").map(String::as_str)
            ),
            (
                Some("0b8f6c1e-1111-4c1e-9a9a-000000000001"),
                Some("default")
            )
        );
    }

    #[test]
    fn the_projects_pull_secrets_win_over_the_servers() {
        let mut config = KubernetesConfig::new("omoi".into(), "/data".into());
        config.image_pull_secrets = vec!["server-cred".into()];
        let names = |request: &SpawnRequest| -> Vec<String> {
            pod(request, &config)
                .spec
                .unwrap()
                .image_pull_secrets
                .unwrap_or_default()
                .into_iter()
                .map(|r| r.name)
                .collect()
        };
        assert_eq!(names(&request()), vec!["server-cred".to_string()]);
        let mut own = request();
        own.image_pull_secrets = vec!["project-cred".into(), "mirror-cred".into()];
        assert_eq!(
            names(&own),
            vec!["project-cred".to_string(), "mirror-cred".to_string()]
        );
        config.image_pull_secrets.clear();
        assert_eq!(
            pod(&request(), &config).spec.unwrap().image_pull_secrets,
            None
        );
    }

    #[test]
    fn the_sandbox_templates_the_same_pod() {
        let mut config = KubernetesConfig::new("omoi".into(), "/data".into());
        config.instance = "blue".into();
        let bare = pod(&request(), &config);
        let sandbox = sandbox(&request(), &config);
        assert_eq!(
            (
                sandbox.api_version.as_str(),
                sandbox.kind.as_str(),
                sandbox.metadata.name.as_deref(),
                Some(&sandbox.spec.pod_template.spec),
                sandbox.spec.pod_template.metadata.labels.as_ref(),
                sandbox.metadata.labels.as_ref(),
            ),
            (
                "agents.x-k8s.io/v1beta1",
                "Sandbox",
                Some("omoi-0b8f6c1e-1111-4c1e-9a9a-000000000001"),
                bare.spec.as_ref(),
                bare.metadata.labels.as_ref(),
                bare.metadata.labels.as_ref(),
            )
        );
        assert_eq!(
            bare.metadata.labels.unwrap()["omoi.instance"].as_str(),
            "blue"
        );
        let json = serde_json::to_string(&sandbox).unwrap();
        assert!(!json.contains("omoi_sbx_secret"), "{json}");
    }

    #[test]
    fn the_secret_holds_the_environment_and_is_owned_by_the_pod() {
        let config = KubernetesConfig::new("omoi".into(), "/data".into());
        let owner = Owner {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name: "omoi-x".into(),
            uid: "uid-1".into(),
        };
        let secret = secret(&request(), &config, &owner);
        let data = secret.data.unwrap();
        assert_eq!(data["SANDBOX_TOKEN"].0, b"omoi_sbx_secret");
        let owners = secret.metadata.owner_references.unwrap();
        assert_eq!(
            (owners[0].kind.as_str(), owners[0].uid.as_str()),
            ("Pod", "uid-1")
        );
    }
}
