//! The fake cluster's agent-sandbox part (kubernetes-sigs/agent-sandbox, `agents.x-k8s.io/v1beta1`):
//! the `Sandbox` type as its CRD has it (written from `api/v1beta1/sandbox_types.go`, separately
//! from the coordinator's, so that a wrong field name there is refused here), the checks its CRD
//! schema makes, the discovery documents of the group, and the controller: for each new Sandbox a
//! pod named after it from `spec.podTemplate` (the template's labels plus
//! `agents.x-k8s.io/sandbox-name-hash`, a controller ownerReference to the Sandbox), the
//! `agents.x-k8s.io/pod-name` annotation, and the status conditions `Ready`, `PodScheduled` and
//! `Finished` kept from the pod as `controllers/sandbox_controller.go` computes them. A deleted
//! Sandbox takes its pod and Secrets with it (the garbage collector's part).
//!
//! Not modelled: a pod deleted under a live Sandbox is not made again (the real controller makes
//! a new one), `operatingMode: Suspended`, `shutdownTime`, Services, volume claims, warm pools.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolumeClaimSpec, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::store::Change;
use super::{Cluster, collect_garbage, kubelet, lock};

pub const GROUP: &str = "agents.x-k8s.io";
pub const API_VERSION: &str = "agents.x-k8s.io/v1beta1";
/// The label the controller stamps on every pod of a Sandbox: FNV-1a of the Sandbox's name.
pub const NAME_HASH_LABEL: &str = "agents.x-k8s.io/sandbox-name-hash";
pub const POD_NAME_ANNOTATION: &str = "agents.x-k8s.io/pod-name";
const PROPAGATED_LABELS_ANNOTATION: &str = "agents.x-k8s.io/propagated-labels";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sandbox {
    #[serde(
        rename = "apiVersion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub spec: SandboxSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<SandboxStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxSpec {
    pub pod_template: PodTemplate,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_claim_templates: Option<Vec<PersistentVolumeClaimTemplate>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operating_mode: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PodTemplate {
    pub spec: PodSpec,
    #[serde(default)]
    pub metadata: PodMetadata,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PodMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PersistentVolumeClaimTemplate {
    #[serde(default)]
    pub metadata: EmbeddedObjectMetadata,
    pub spec: PersistentVolumeClaimSpec,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EmbeddedObjectMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SandboxStatus {
    #[serde(
        rename = "serviceFQDN",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub service_fqdn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    #[serde(rename = "podIPs", default, skip_serializing_if = "Option::is_none")]
    pub pod_ips: Option<Vec<String>>,
    #[serde(rename = "nodeName", default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
}

/// What the CRD's schema refuses before the body is decoded: required fields (422, as a missing
/// required field of a custom resource is).
pub fn required(body: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    if body["spec"].is_null() {
        problems.push("spec: Required value".to_string());
    } else if body["spec"]["podTemplate"].is_null() {
        problems.push("spec.podTemplate: Required value".to_string());
    } else if body["spec"]["podTemplate"]["spec"].is_null() {
        problems.push("spec.podTemplate.spec: Required value".to_string());
    }
    problems
}

/// The CRD's enums, and the pod template checked as a Pod's spec and labels are.
pub fn check(sandbox: &Sandbox, problems: &mut Vec<String>) {
    if let Some(mode) = &sandbox.spec.operating_mode {
        if !["Running", "Suspended"].contains(&mode.as_str()) {
            problems.push(format!(
                "spec.operatingMode: Unsupported value: {mode:?}: supported values: \"Running\", \"Suspended\""
            ));
        }
    }
    if let Some(policy) = &sandbox.spec.shutdown_policy {
        if !["Delete", "Retain"].contains(&policy.as_str()) {
            problems.push(format!(
                "spec.shutdownPolicy: Unsupported value: {policy:?}: supported values: \"Delete\", \"Retain\""
            ));
        }
    }
    let template = template_pod(sandbox);
    let mut template_problems = Vec::new();
    super::validate::pod(&template, &mut template_problems);
    for (key, value) in template.metadata.labels.iter().flatten() {
        if !super::validate::is_label_key(key) || !super::validate::is_label_value(value) {
            template_problems.push(format!(
                "metadata.labels: Invalid value: {key:?}={value:?}: not a label"
            ));
        }
    }
    problems.extend(
        template_problems
            .into_iter()
            .map(|p| format!("spec.podTemplate.{p}")),
    );
}

/// The pod the template makes (before the controller's own labels).
fn template_pod(sandbox: &Sandbox) -> Pod {
    Pod {
        metadata: ObjectMeta {
            labels: sandbox.spec.pod_template.metadata.labels.clone(),
            annotations: sandbox.spec.pod_template.metadata.annotations.clone(),
            ..ObjectMeta::default()
        },
        spec: Some(sandbox.spec.pod_template.spec.clone()),
        status: None,
    }
}

/// `NameHash` of the controller: FNV-1a (32 bits) of the name, as 8 hex digits.
pub fn name_hash(name: &str) -> String {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in name.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    format!("{hash:08x}")
}

/// `GET /apis/agents.x-k8s.io/v1beta1`: the resources of the group version.
pub fn resource_list() -> Value {
    json!({
        "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": API_VERSION,
        "resources": [
            {"name": "sandboxes", "singularName": "sandbox", "namespaced": true, "kind": "Sandbox",
             "verbs": ["delete", "deletecollection", "get", "list", "patch", "create", "update", "watch"],
             "shortNames": ["sandbox"], "storageVersionHash": "c2FuZGJveA=="},
            {"name": "sandboxes/status", "singularName": "", "namespaced": true, "kind": "Sandbox",
             "verbs": ["get", "patch", "update"]},
        ],
    })
}

/// `GET /apis/agents.x-k8s.io`: the group and its versions.
pub fn group() -> Value {
    json!({
        "kind": "APIGroup", "apiVersion": "v1", "name": GROUP,
        "versions": [
            {"groupVersion": API_VERSION, "version": "v1beta1"},
            {"groupVersion": "agents.x-k8s.io/v1alpha1", "version": "v1alpha1"},
        ],
        "preferredVersion": {"groupVersion": API_VERSION, "version": "v1beta1"},
    })
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn owned_by(object: &Value, uid: &str) -> bool {
    object["metadata"]["ownerReferences"]
        .as_array()
        .is_some_and(|owners| owners.iter().any(|o| o["uid"].as_str() == Some(uid)))
}

/// The controller's loop over the store's changes, until the fake stops.
pub async fn control(cluster: Arc<Cluster>, mut changes: broadcast::Receiver<Change>) {
    loop {
        match changes.recv().await {
            Ok(change) => react(&cluster, &change),
            // Fallen behind: look at every Sandbox again.
            Err(broadcast::error::RecvError::Lagged(_)) => resync(&cluster),
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

fn react(cluster: &Arc<Cluster>, change: &Change) {
    let name = change.object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    match (change.kind, change.kind_of_change) {
        ("sandboxes", "ADDED") => make_pod(cluster, &change.namespace, &name),
        ("sandboxes", "DELETED") => {
            let uid = change.object["metadata"]["uid"]
                .as_str()
                .unwrap_or_default();
            delete_owned(cluster, &change.namespace, uid);
        }
        ("pods", _) => {
            let owner = change.object["metadata"]["ownerReferences"]
                .as_array()
                .and_then(|owners| {
                    owners
                        .iter()
                        .find(|o| o["kind"] == "Sandbox" && o["controller"] == true)
                })
                .and_then(|o| o["name"].as_str().map(str::to_string));
            if let Some(sandbox) = owner {
                let pod = (change.kind_of_change != "DELETED").then_some(&change.object);
                set_status(cluster, &change.namespace, &sandbox, pod);
            }
        }
        _ => {}
    }
}

fn resync(cluster: &Arc<Cluster>) {
    let sandboxes = lock(&cluster.store).all("sandboxes");
    // Sandboxes deleted while the controller was behind: their pods and Secrets go.
    let live: std::collections::BTreeSet<String> = sandboxes
        .iter()
        .filter_map(|(_, s)| s["metadata"]["uid"].as_str().map(str::to_string))
        .collect();
    let orphaned: Vec<(String, String)> = lock(&cluster.store)
        .all("pods")
        .into_iter()
        .filter_map(|(ns, pod)| {
            let owner = pod["metadata"]["ownerReferences"]
                .as_array()?
                .iter()
                .find(|o| o["kind"] == "Sandbox")?["uid"]
                .as_str()?
                .to_string();
            (!live.contains(&owner)).then_some((ns, owner))
        })
        .collect();
    for (ns, uid) in orphaned {
        delete_owned(cluster, &ns, &uid);
    }
    for (ns, sandbox) in sandboxes {
        let name = sandbox["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let pod = lock(&cluster.store).get("pods", &ns, &name).cloned();
        match pod {
            None if sandbox["metadata"]["annotations"][POD_NAME_ANNOTATION].is_null() => {
                make_pod(cluster, &ns, &name)
            }
            pod => set_status(cluster, &ns, &name, pod.as_ref()),
        }
    }
}

/// Makes the Sandbox's pod from its template, notes its name on the Sandbox and starts it.
fn make_pod(cluster: &Arc<Cluster>, ns: &str, name: &str) {
    let created = {
        let mut store = lock(&cluster.store);
        let Some(sandbox) = store.get("sandboxes", ns, name).cloned() else {
            return;
        };
        if store.get("pods", ns, name).is_some() {
            return;
        }
        let template = &sandbox["spec"]["podTemplate"];
        let mut labels = template["metadata"]["labels"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let mut propagated: Vec<String> = labels.keys().cloned().collect();
        propagated.sort();
        labels.insert(NAME_HASH_LABEL.into(), json!(name_hash(name)));
        let mut annotations = template["metadata"]["annotations"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        if !propagated.is_empty() {
            annotations.insert(
                PROPAGATED_LABELS_ANNOTATION.into(),
                json!(propagated.join(",")),
            );
        }
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": name, "namespace": ns, "labels": labels, "annotations": annotations,
                "uid": super::uid(), "creationTimestamp": now(),
                "ownerReferences": [{"apiVersion": API_VERSION, "kind": "Sandbox", "name": name,
                    "uid": sandbox["metadata"]["uid"], "controller": true,
                    "blockOwnerDeletion": true}],
            },
            "spec": template["spec"],
            "status": {"phase": "Pending", "qosClass": "Guaranteed"},
        });
        store.put("pods", ns, name, pod, "ADDED");
        let mut sandbox = sandbox;
        sandbox["metadata"]["annotations"][POD_NAME_ANNOTATION] = json!(name);
        store.put("sandboxes", ns, name, sandbox, "MODIFIED");
        true
    };
    if created {
        kubelet::start(cluster.clone(), ns.to_string(), name.to_string());
    }
}

fn condition(kind: &str, status: bool, reason: &str, message: &str) -> Value {
    json!({"type": kind, "status": if status { "True" } else { "False" }, "reason": reason,
        "message": message, "lastTransitionTime": now(), "observedGeneration": 1})
}

/// The conditions the controller computes from the pod (`None`: the pod does not exist).
fn conditions(pod: Option<&Value>) -> Vec<Value> {
    let Some(pod) = pod else {
        return vec![condition(
            "Ready",
            false,
            "DependenciesNotReady",
            "Pod does not exist",
        )];
    };
    let phase = pod["status"]["phase"].as_str().unwrap_or_default();
    let pod_condition = |kind: &str| {
        pod["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == kind).cloned())
    };
    let mut out = Vec::new();
    let ready = match phase {
        "Succeeded" => condition("Ready", false, "PodSucceeded", "Pod completed successfully"),
        "Failed" => condition("Ready", false, "PodFailed", "Pod failed"),
        "Running" => {
            let pod_ready = pod_condition("Ready").is_some_and(|c| c["status"] == "True");
            let has_ip = pod["status"]["podIPs"]
                .as_array()
                .is_some_and(|ips| !ips.is_empty());
            match (pod_ready, has_ip) {
                (true, true) => condition("Ready", true, "DependenciesReady", "Pod is Ready"),
                (true, false) => condition(
                    "Ready",
                    false,
                    "DependenciesNotReady",
                    "Pod is Ready but has no podIPs yet",
                ),
                _ => condition(
                    "Ready",
                    false,
                    "DependenciesNotReady",
                    "Pod is Running but not Ready",
                ),
            }
        }
        other => condition(
            "Ready",
            false,
            "DependenciesNotReady",
            &format!("Pod exists with phase: {other}"),
        ),
    };
    out.push(ready);
    match pod_condition("PodScheduled") {
        Some(c) => {
            let status = c["status"] == "True";
            let reason = c["reason"]
                .as_str()
                .filter(|r| !r.is_empty())
                .unwrap_or("PodScheduled");
            out.push(condition(
                "PodScheduled",
                status,
                reason,
                c["message"].as_str().unwrap_or_default(),
            ));
        }
        None => out.push(condition("PodScheduled", false, "PodSchedulingUnknown", "")),
    }
    match phase {
        "Succeeded" => out.push(condition(
            "Finished",
            true,
            "PodSucceeded",
            "Pod completed successfully",
        )),
        "Failed" => out.push(condition("Finished", true, "PodFailed", "Pod failed")),
        _ => {}
    }
    out
}

/// Writes the Sandbox's status from its pod when it changed (the conditions' types, statuses,
/// reasons and messages; a transition time alone is no change).
fn set_status(cluster: &Cluster, ns: &str, name: &str, pod: Option<&Value>) {
    let mut store = lock(&cluster.store);
    let Some(mut sandbox) = store.get("sandboxes", ns, name).cloned() else {
        return;
    };
    let uid = sandbox["metadata"]["uid"].as_str().unwrap_or_default();
    // Only a pod this Sandbox owns drives its status.
    let pod = pod.filter(|p| owned_by(p, uid));
    let conditions = conditions(pod);
    let essence = |cs: &Value| -> Vec<(Value, Value, Value, Value)> {
        cs.as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                (
                    c["type"].clone(),
                    c["status"].clone(),
                    c["reason"].clone(),
                    c["message"].clone(),
                )
            })
            .collect()
    };
    let mut status = json!({
        "conditions": conditions,
        "selector": format!("{NAME_HASH_LABEL}={}", name_hash(name)),
    });
    if let Some(pod) = pod {
        if let Some(ips) = pod["status"]["podIPs"].as_array() {
            let ips: Vec<Value> = ips.iter().map(|ip| ip["ip"].clone()).collect();
            if !ips.is_empty() {
                status["podIPs"] = json!(ips);
            }
        }
        if let Some(node) = pod["spec"]["nodeName"].as_str() {
            status["nodeName"] = json!(node);
        }
    }
    let unchanged = essence(&sandbox["status"]["conditions"]) == essence(&status["conditions"])
        && sandbox["status"]["podIPs"] == status["podIPs"];
    if unchanged {
        return;
    }
    sandbox["status"] = status;
    store.put("sandboxes", ns, name, sandbox, "MODIFIED");
}

/// The garbage collector: the pods (deleted, gracefully) and Secrets a Sandbox owned.
fn delete_owned(cluster: &Arc<Cluster>, ns: &str, uid: &str) {
    let pods: Vec<(String, u64)> = {
        let mut store = lock(&cluster.store);
        let owned: Vec<Value> = store
            .list("pods", ns)
            .into_iter()
            .filter(|p| owned_by(p, uid))
            .collect();
        let mut out = Vec::new();
        for mut pod in owned {
            let name = pod["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let grace = pod["spec"]["terminationGracePeriodSeconds"]
                .as_u64()
                .unwrap_or(30);
            if pod["metadata"]["deletionTimestamp"].is_null() {
                pod["metadata"]["deletionTimestamp"] = json!(now());
                pod["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
                store.put("pods", ns, &name, pod, "MODIFIED");
                out.push((name, grace));
            }
        }
        out
    };
    for (name, grace) in pods {
        cluster
            .kubelet
            .kill(ns, &name, kubelet::Kill::Delete { grace });
    }
    collect_garbage(cluster);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_hash_is_fnv_1a_in_hex() {
        // FNV-1a 32 of "" is the offset basis; of "a" the published test vector.
        assert_eq!(name_hash(""), "811c9dc5");
        assert_eq!(name_hash("a"), "e40c292c");
        assert_eq!(name_hash("foobar"), "bf9cf968");
    }
}
