//! The container of one sandbox as the Engine is asked to create it: image, environment, labels,
//! limits, and the locked-down host configuration (read-only root, no capabilities, no host
//! mounts, its own network).

use std::collections::{BTreeMap, HashMap};

use bollard::models::{
    ContainerCreateBody, HostConfig, HostConfigLogConfig, Mount, MountType, MountVolumeOptions,
};
use omoi_protocol::env;

use super::{DockerConfig, INSTANCE_LABEL};
use crate::sandbox::{Limits, SpawnRequest};

/// The directory the sandbox's files go into: an anonymous volume, the only writable place
/// besides the tmpfs mounts.
pub const WORK_DIR: &str = "/work";
/// The repository inside the container (`WORKSPACE`).
pub const WORKSPACE_DIR: &str = "/work/repo";
/// The home of the image's user, a tmpfs (the root filesystem is read-only).
pub const HOME_DIR: &str = "/home/omoi";
/// The uid and gid of the sandbox image's user `omoi` (images/README.md); the files uploaded into
/// `/work` belong to it.
pub const SANDBOX_UID: u64 = 1000;

/// The size of the tmpfs home directory.
const HOME_TMPFS_MB: u64 = 64;
/// The size of `/tmp` when the sandbox has no memory limit (with one, the limit: tmpfs pages are
/// charged to the container's memory anyway).
const TMP_TMPFS_MB: u64 = 1024;
/// The container log kept by the Engine while the sandbox runs, and copied to `sandbox.log` when
/// it ends: the last this many bytes.
const LOG_MAX_SIZE: &str = "50m";

const MIB: u64 = 1024 * 1024;

/// The limits a sandbox runs with: the request's where it sets them, else the provider's.
pub fn effective_limits(request: &Limits, defaults: &Limits) -> Limits {
    Limits {
        memory_mb: request.memory_mb.or(defaults.memory_mb),
        cpus: request.cpus.or(defaults.cpus),
    }
}

/// The labels of the container (and its volume): the request's (`omoi.owner`, `omoi.sandbox`,
/// `omoi.spec`, `omoi.task` of a task sandbox), this coordinator's instance, and the sandbox and
/// spec from the request when its labels do not name them.
pub fn labels(request: &SpawnRequest, instance: &str) -> HashMap<String, String> {
    let mut labels: HashMap<String, String> = request.sandbox_labels().into_iter().collect();
    labels.insert(INSTANCE_LABEL.to_string(), instance.to_string());
    labels
}

/// What `POST /containers/create` gets for `request`.
pub fn create_body(
    request: &SpawnRequest,
    config: &DockerConfig,
    instance: &str,
    network: &str,
) -> ContainerCreateBody {
    let limits = effective_limits(&request.limits, &config.limits);
    let mut vars: BTreeMap<&str, &str> = request
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    vars.insert(env::WORKSPACE, WORKSPACE_DIR);
    let labels = labels(request, instance);
    let memory = limits
        .memory_mb
        .map(|mb| i64::try_from(mb.saturating_mul(MIB)).unwrap_or(i64::MAX));
    let tmp_mb = limits.memory_mb.unwrap_or(TMP_TMPFS_MB);
    let host_config = HostConfig {
        memory,
        // Equal to the memory limit: no swap, so the limit is what the sandbox gets.
        memory_swap: memory,
        nano_cpus: limits.cpus.map(|cpus| (cpus * 1e9).round() as i64),
        pids_limit: Some(config.pids_limit),
        cap_drop: Some(vec!["ALL".to_string()]),
        security_opt: Some(vec!["no-new-privileges".to_string()]),
        privileged: Some(false),
        readonly_rootfs: Some(true),
        tmpfs: Some(HashMap::from([
            (
                "/tmp".to_string(),
                format!("rw,nosuid,nodev,size={tmp_mb}m"),
            ),
            (
                HOME_DIR.to_string(),
                format!(
                    "rw,nosuid,nodev,size={HOME_TMPFS_MB}m,uid={SANDBOX_UID},gid={SANDBOX_UID}"
                ),
            ),
        ])),
        mounts: Some(vec![Mount {
            target: Some(WORK_DIR.to_string()),
            typ: Some(MountType::VOLUME),
            volume_options: Some(MountVolumeOptions {
                labels: Some(labels.clone()),
                ..MountVolumeOptions::default()
            }),
            ..Mount::default()
        }]),
        network_mode: Some(network.to_string()),
        // No docker-init: it would keep the sandbox's secrets in `/proc/1/environ`, readable by
        // the agent's commands. The worker is PID 1 and its own init (it reaps what the
        // commands leave behind, and erases its environment first).
        init: Some(false),
        log_config: Some(HostConfigLogConfig {
            typ: Some("json-file".to_string()),
            config: Some(HashMap::from([(
                "max-size".to_string(),
                LOG_MAX_SIZE.to_string(),
            )])),
        }),
        ..HostConfig::default()
    };
    ContainerCreateBody {
        image: Some(
            request
                .image
                .clone()
                .unwrap_or_else(|| config.image.clone()),
        ),
        env: Some(vars.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        labels: Some(labels),
        working_dir: Some(WORKSPACE_DIR.to_string()),
        attach_stdin: Some(false),
        open_stdin: Some(false),
        tty: Some(false),
        host_config: Some(host_config),
        ..ContainerCreateBody::default()
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use pretty_assertions::assert_eq;

    fn request() -> SpawnRequest {
        SpawnRequest {
            sandbox_id: "sb-1".into(),
            image: None,
            image_pull_secrets: Vec::new(),
            env: BTreeMap::from([
                ("SPEC_ID".to_string(), "spec-1".to_string()),
                ("SANDBOX_TOKEN".to_string(), "secret".to_string()),
            ]),
            labels: BTreeMap::from([
                ("omoi.owner".to_string(), "omoi".to_string()),
                ("omoi.sandbox".to_string(), "sb-1".to_string()),
            ]),
            limits: Limits {
                memory_mb: Some(64),
                cpus: None,
            },
            repo: Some("/repo".into()),
        }
    }

    fn config() -> DockerConfig {
        DockerConfig {
            limits: Limits {
                memory_mb: Some(2048),
                cpus: Some(1.5),
            },
            ..DockerConfig::new(PathBuf::from("/data"))
        }
    }

    #[test]
    fn the_container_is_locked_down_and_carries_env_labels_and_limits() {
        let body = create_body(&request(), &config(), "inst-1", "omoi-inst-1");
        let labels = HashMap::from([
            ("omoi.owner".to_string(), "omoi".to_string()),
            ("omoi.sandbox".to_string(), "sb-1".to_string()),
            ("omoi.spec".to_string(), "spec-1".to_string()),
            ("omoi.instance".to_string(), "inst-1".to_string()),
        ]);
        let expected = ContainerCreateBody {
            image: Some("omoi-sandbox:latest".into()),
            env: Some(vec![
                "SANDBOX_TOKEN=secret".into(),
                "SPEC_ID=spec-1".into(),
                "WORKSPACE=/work/repo".into(),
            ]),
            labels: Some(labels.clone()),
            working_dir: Some("/work/repo".into()),
            attach_stdin: Some(false),
            open_stdin: Some(false),
            tty: Some(false),
            host_config: Some(HostConfig {
                memory: Some(64 * 1024 * 1024),
                memory_swap: Some(64 * 1024 * 1024),
                nano_cpus: Some(1_500_000_000),
                pids_limit: Some(1024),
                cap_drop: Some(vec!["ALL".into()]),
                security_opt: Some(vec!["no-new-privileges".into()]),
                privileged: Some(false),
                readonly_rootfs: Some(true),
                tmpfs: Some(HashMap::from([
                    ("/tmp".into(), "rw,nosuid,nodev,size=64m".into()),
                    (
                        "/home/omoi".into(),
                        "rw,nosuid,nodev,size=64m,uid=1000,gid=1000".into(),
                    ),
                ])),
                mounts: Some(vec![Mount {
                    target: Some("/work".into()),
                    typ: Some(MountType::VOLUME),
                    volume_options: Some(MountVolumeOptions {
                        labels: Some(labels),
                        ..MountVolumeOptions::default()
                    }),
                    ..Mount::default()
                }]),
                network_mode: Some("omoi-inst-1".into()),
                init: Some(false),
                log_config: Some(HostConfigLogConfig {
                    typ: Some("json-file".into()),
                    config: Some(HashMap::from([("max-size".into(), "50m".into())])),
                }),
                ..HostConfig::default()
            }),
            ..ContainerCreateBody::default()
        };
        assert_eq!(body, expected);
    }

    #[test]
    fn a_project_image_and_a_task_label_show_in_the_container() {
        let mut request = request();
        request.image = Some("my-sandbox:1".into());
        request.labels.insert("omoi.task".into(), "task-9".into());
        request.limits = Limits::default();
        let body = create_body(&request, &config(), "inst-1", "net");
        assert_eq!(body.image.as_deref(), Some("my-sandbox:1"));
        let labels = body.labels.unwrap_or_default();
        assert_eq!(labels.get("omoi.task").map(String::as_str), Some("task-9"));
        let host = body.host_config.unwrap_or_default();
        assert_eq!(
            (host.memory, host.nano_cpus),
            (Some(2048 * 1024 * 1024), Some(1_500_000_000))
        );
    }
}
