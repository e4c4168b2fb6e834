//! The fake cluster's kubelet: schedules each pod at once (or holds it unschedulable), "pulls"
//! its image (a binary the test named for it; another image fails with `ErrImagePull`), waits for
//! the Secrets its `envFrom` names (`CreateContainerConfigError` meanwhile), then runs the
//! container as a local process: an empty environment plus the image's (`PATH`, `HOME`), the
//! container's `env` and its Secrets' data, each `emptyDir` a directory of its own (a path in a
//! variable or the working directory that lies under a mount is translated to it). It reports the
//! process in the pod's status (running, terminated with its exit code), kills it when told
//! (SIGKILL, at the memory limit as `OOMKilled`, evicted, past `activeDeadlineSeconds`) and on
//! deletion (SIGTERM, SIGKILL after the grace period), then removes the pod.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{Cluster, collect_garbage, lock};

/// How a pod's container is ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kill {
    /// SIGKILL: the container ends with 137.
    Sigkill,
    /// Killed at its memory limit: 137, reason `OOMKilled`.
    OutOfMemory,
    /// The node evicts the pod (phase `Failed`, reason `Evicted`).
    Evict,
    /// The pod was deleted: SIGTERM, SIGKILL after `grace` seconds, then the pod is removed.
    Delete { grace: u64 },
}

/// The kubelet's pods, by namespace and name.
#[derive(Debug, Default)]
pub struct Kubelet {
    pods: Mutex<HashMap<(String, String), mpsc::UnboundedSender<Kill>>>,
    /// Process groups of running containers, to kill when the fake stops.
    groups: Mutex<HashMap<(String, String), i32>>,
}

impl Kubelet {
    pub fn kill(&self, namespace: &str, pod: &str, how: Kill) {
        if let Some(tx) = lock(&self.pods).get(&(namespace.to_string(), pod.to_string())) {
            let _ = tx.send(how);
        }
    }

    pub fn kill_all(&self) {
        for group in lock(&self.groups).values() {
            signal_group(*group, rustix::process::Signal::KILL);
        }
    }

    /// The container's output so far, once it has started.
    pub fn log(&self, work: &Path, namespace: &str, pod: &str) -> Option<String> {
        std::fs::read(log_path(work, namespace, pod))
            .ok()
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
    }
}

fn log_path(work: &Path, namespace: &str, pod: &str) -> PathBuf {
    work.join(namespace).join(format!("{pod}.log"))
}

fn signal_group(group: i32, signal: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(group) {
        let _ = rustix::process::kill_process_group(pid, signal);
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Changes a pod's status (a `MODIFIED` event); nothing when the pod is gone.
fn set_status(cluster: &Cluster, ns: &str, name: &str, change: impl FnOnce(&mut Value)) {
    let mut store = lock(&cluster.store);
    if let Some(mut pod) = store.get("pods", ns, name).cloned() {
        change(&mut pod["status"]);
        store.put("pods", ns, name, pod, "MODIFIED");
    }
}

fn container_status(state: Value, image: &str) -> Value {
    json!([{"name": "worker", "image": image, "imageID": "", "ready": state.get("running").is_some(),
        "restartCount": 0, "started": state.get("running").is_some(), "state": state}])
}

/// Sets the pod's `Ready` condition (no readiness probe: ready while its container runs).
fn set_ready(status: &mut Value, ready: bool) {
    let condition = json!({"type": "Ready", "status": if ready { "True" } else { "False" },
        "lastTransitionTime": now()});
    match status["conditions"].as_array_mut() {
        Some(conditions) => {
            conditions.retain(|c| c["type"] != "Ready");
            conditions.push(condition);
        }
        None => status["conditions"] = json!([condition]),
    }
}

/// Removes the pod (a `DELETED` event) and the Secrets it owned.
fn remove(cluster: &Cluster, ns: &str, name: &str) {
    lock(&cluster.store).remove("pods", ns, name);
    collect_garbage(cluster);
}

/// Starts the kubelet's work on a new pod.
pub fn start(cluster: Arc<Cluster>, ns: String, name: String) {
    let (tx, rx) = mpsc::unbounded_channel();
    lock(&cluster.kubelet.pods).insert((ns.clone(), name.clone()), tx);
    tokio::spawn(async move {
        run(&cluster, &ns, &name, rx).await;
        lock(&cluster.kubelet.pods).remove(&(ns.clone(), name.clone()));
        lock(&cluster.kubelet.groups).remove(&(ns, name));
    });
}

/// Waits until the pod is deleted, then removes it.
async fn until_deleted(
    cluster: &Cluster,
    ns: &str,
    name: &str,
    rx: &mut mpsc::UnboundedReceiver<Kill>,
) {
    while let Some(kill) = rx.recv().await {
        if let Kill::Delete { .. } = kill {
            break;
        }
    }
    remove(cluster, ns, name);
}

async fn run(cluster: &Arc<Cluster>, ns: &str, name: &str, mut rx: mpsc::UnboundedReceiver<Kill>) {
    let Some(pod) = lock(&cluster.store)
        .get("pods", ns, name)
        .cloned()
        .and_then(|v| serde_json::from_value::<Pod>(v).ok())
    else {
        return;
    };
    let Some(spec) = pod.spec.clone() else { return };
    let Some(container) = spec.containers.first().cloned() else {
        return;
    };
    let image = container.image.clone().unwrap_or_default();
    if *lock(&cluster.hold_scheduling) {
        set_status(cluster, ns, name, |s| {
            s["conditions"] = json!([{"type": "PodScheduled", "status": "False",
                "reason": "Unschedulable", "lastTransitionTime": now(),
                "message": "0/1 nodes are available: 1 Insufficient memory."}]);
        });
        return until_deleted(cluster, ns, name, &mut rx).await;
    }
    set_status(cluster, ns, name, |s| {
        s["conditions"] =
            json!([{"type": "PodScheduled", "status": "True", "lastTransitionTime": now()}]);
        s["hostIP"] = json!("127.0.0.1");
    });
    let Some(binary) = cluster.config.images.get(&image).cloned() else {
        set_status(cluster, ns, name, |s| {
            s["containerStatuses"] = container_status(
                json!({"waiting": {"reason": "ErrImagePull",
                    "message": format!("failed to pull image {image:?}: not found")}}),
                &image,
            );
        });
        return until_deleted(cluster, ns, name, &mut rx).await;
    };
    // The Secrets of `envFrom`: the container waits for them.
    let secret_names: Vec<String> = container
        .env_from
        .iter()
        .flatten()
        .filter_map(|e| e.secret_ref.as_ref().map(|s| s.name.clone()))
        .collect();
    let mut told = false;
    let secret_env = loop {
        let found: Option<BTreeMap<String, String>> = {
            let store = lock(&cluster.store);
            let mut vars = BTreeMap::new();
            let mut all = true;
            for secret in &secret_names {
                match store.get("secrets", ns, secret) {
                    Some(s) => {
                        for (k, v) in s["data"].as_object().into_iter().flatten() {
                            let bytes = base64::engine::general_purpose::STANDARD
                                .decode(v.as_str().unwrap_or_default())
                                .unwrap_or_default();
                            vars.insert(k.clone(), String::from_utf8_lossy(&bytes).into_owned());
                        }
                    }
                    None => all = false,
                }
            }
            all.then_some(vars)
        };
        if let Some(vars) = found {
            break vars;
        }
        if !told {
            told = true;
            let missing = secret_names.join(", ");
            set_status(cluster, ns, name, |s| {
                s["containerStatuses"] = container_status(
                    json!({"waiting": {"reason": "CreateContainerConfigError",
                        "message": format!("secret {missing:?} not found")}}),
                    &image,
                );
            });
        }
        tokio::select! {
            kill = rx.recv() => if let Some(Kill::Delete { .. }) | None = kill {
                return remove(cluster, ns, name);
            },
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    };
    // Volumes: each emptyDir a directory of the pod.
    let pod_dir = cluster.config.work_dir.join(ns).join(name);
    let mut mounts: Vec<(String, PathBuf)> = Vec::new();
    for mount in container.volume_mounts.iter().flatten() {
        let dir = pod_dir.join(&mount.name);
        let _ = std::fs::create_dir_all(&dir);
        mounts.push((mount.mount_path.clone(), dir));
    }
    let image_files = &cluster.config.image_files;
    let translate = |value: &str| -> String {
        if image_files.iter().any(|f| Path::new(value) == f.as_path()) {
            return value.to_string();
        }
        for (path, dir) in &mounts {
            if value == path {
                return dir.display().to_string();
            }
            if let Some(rest) = value.strip_prefix(&format!("{path}/")) {
                return dir.join(rest).display().to_string();
            }
        }
        value.to_string()
    };
    let mut env: BTreeMap<String, String> = BTreeMap::from([
        (
            "PATH".to_string(),
            std::env::var("PATH").unwrap_or_default(),
        ),
        ("HOME".to_string(), "/home/omoi".to_string()),
    ]);
    env.extend(secret_env);
    for var in container.env.iter().flatten() {
        // The downward API: the pod's own name, namespace and uid.
        let field = var
            .value_from
            .as_ref()
            .and_then(|from| from.field_ref.as_ref())
            .map(|f| match f.field_path.as_str() {
                "metadata.name" => pod.metadata.name.clone().unwrap_or_default(),
                "metadata.namespace" => ns.to_string(),
                "metadata.uid" => pod.metadata.uid.clone().unwrap_or_default(),
                _ => String::new(),
            });
        let value = field.unwrap_or_else(|| var.value.clone().unwrap_or_default());
        env.insert(var.name.clone(), value);
    }
    let env: BTreeMap<String, String> = env
        .into_iter()
        .map(|(k, v)| {
            let v = translate(&v);
            (k, v)
        })
        .collect();
    let workdir = container
        .working_dir
        .as_deref()
        .map(translate)
        .map_or_else(|| pod_dir.clone(), PathBuf::from);
    let log = log_path(&cluster.config.work_dir, ns, name);
    let opened = std::fs::File::create(&log).and_then(|out| Ok((out.try_clone()?, out)));
    let Ok((stdout, stderr)) = opened else {
        return until_deleted(cluster, ns, name, &mut rx).await;
    };
    let child = tokio::process::Command::new(&binary)
        .env_clear()
        .envs(&env)
        .current_dir(&workdir)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0)
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
            set_status(cluster, ns, name, |s| {
                s["phase"] = json!("Failed");
                s["containerStatuses"] = container_status(
                    json!({"terminated": {"exitCode": 128, "reason": "StartError",
                        "message": e.to_string()}}),
                    &image,
                );
            });
            return until_deleted(cluster, ns, name, &mut rx).await;
        }
    };
    let group = child.id().map_or(0, |id| id as i32);
    lock(&cluster.kubelet.groups).insert((ns.to_string(), name.to_string()), group);
    let started = now();
    set_status(cluster, ns, name, |s| {
        s["phase"] = json!("Running");
        s["startTime"] = json!(started);
        s["podIP"] = json!("127.0.0.1");
        s["podIPs"] = json!([{"ip": "127.0.0.1"}]);
        set_ready(s, true);
        s["containerStatuses"] =
            container_status(json!({"running": {"startedAt": started}}), &image);
    });
    let deadline = Duration::from_secs(
        spec.active_deadline_seconds
            .map_or(u64::MAX / 4, |s| s.max(0) as u64),
    );
    // How the container ended: exit code, its reason, and the pod's reason (eviction, deadline).
    let mut deleting = None;
    let (code, reason, pod_reason): (i32, &str, Option<(&str, &str)>) = tokio::select! {
        exited = child.wait() => {
            let code = exited.ok().and_then(|s| s.code()).unwrap_or(137);
            (code, if code == 0 { "Completed" } else { "Error" }, None)
        }
        () = tokio::time::sleep(deadline) => {
            signal_group(group, rustix::process::Signal::KILL);
            let _ = child.wait().await;
            (137, "Error", Some(("DeadlineExceeded",
                "Pod was active on the node longer than the specified deadline")))
        }
        kill = rx.recv() => {
            let kill = kill.unwrap_or(Kill::Sigkill);
            match kill {
                Kill::Delete { grace } => {
                    signal_group(group, rustix::process::Signal::TERM);
                    let code = match tokio::time::timeout(Duration::from_secs(grace), child.wait()).await {
                        Ok(exited) => exited.ok().and_then(|s| s.code()).unwrap_or(143),
                        Err(_) => {
                            signal_group(group, rustix::process::Signal::KILL);
                            let _ = child.wait().await;
                            137
                        }
                    };
                    deleting = Some(());
                    (code, "Error", None)
                }
                Kill::Sigkill | Kill::OutOfMemory | Kill::Evict => {
                    signal_group(group, rustix::process::Signal::KILL);
                    let _ = child.wait().await;
                    match kill {
                        Kill::OutOfMemory => (137, "OOMKilled", None),
                        Kill::Evict => (137, "Error", Some(("Evicted",
                            "The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi."))),
                        _ => (137, "Error", None),
                    }
                }
            }
        }
    };
    lock(&cluster.kubelet.groups).remove(&(ns.to_string(), name.to_string()));
    let finished = now();
    set_status(cluster, ns, name, |s| {
        s["phase"] = json!(if code == 0 && pod_reason.is_none() {
            "Succeeded"
        } else {
            "Failed"
        });
        set_ready(s, false);
        if let Some((reason, message)) = pod_reason {
            s["reason"] = json!(reason);
            s["message"] = json!(message);
        }
        s["containerStatuses"] = container_status(
            json!({"terminated": {"exitCode": code, "reason": reason,
                "startedAt": started, "finishedAt": finished}}),
            &image,
        );
    });
    if deleting.is_some() {
        return remove(cluster, ns, name);
    }
    until_deleted(cluster, ns, name, &mut rx).await;
}
