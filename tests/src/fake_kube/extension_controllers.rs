//! The fake cluster's controllers of the agent-sandbox extensions, as
//! `extensions/controllers/` behave:
//!
//! - a warm pool keeps `replicas` Sandboxes from its template, named `<pool>-<5 letters>`, with
//!   the labels `agents.x-k8s.io/warm-pool-sandbox` (the pool's name hash),
//!   `agents.x-k8s.io/sandbox-template-ref-hash`, `agents.x-k8s.io/launch-type: warm` and a
//!   controller ownerReference to the pool; one that is deleted is replaced (one whose pod ended
//!   is not: it counts until someone deletes it, as with the real controller);
//! - a claim adopts the oldest Ready Sandbox of its pool (the pool's labels removed, the claim's
//!   uid as `agents.x-k8s.io/claim-uid`, its `additionalPodMetadata`, the ownerReference moved to
//!   the claim; the pod's labels follow, as the Sandbox controller propagates them), or, when none
//!   is ready or the claim sets `env` or `volumeClaimTemplates`, makes a cold Sandbox named after
//!   the claim; `status.sandbox.name` and a `Ready` condition are filled in;
//! - a deleted claim takes its Sandbox (and so the pod) with it; a deleted template its Secrets.
//!
//! Not modelled: network policies, `shutdownTime`/`ttlSecondsAfterFinished`, update strategies
//! (a changed template is not rolled out), env injection policies, adopting a Sandbox that is
//! not Ready.

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::agent_sandbox::{self, NAME_HASH_LABEL, name_hash};
use super::agent_sandbox_extensions::{
    API_VERSION, CLAIM_UID_LABEL, CREATED_BY_LABEL, LAUNCH_TYPE_LABEL, TEMPLATE_HASH_LABEL,
    TEMPLATE_REF_ANNOTATION, TEMPLATE_REF_HASH_LABEL, WARM_POOL_LABEL, merge,
};
use super::store::Change;
use super::{Cluster, collect_garbage, lock};

/// The controllers' loop over the store's changes, until the fake stops.
pub async fn control(cluster: Arc<Cluster>, mut changes: broadcast::Receiver<Change>) {
    loop {
        match changes.recv().await {
            Ok(change) => match change.kind {
                "sandboxclaims" if change.kind_of_change == "DELETED" => {
                    let uid = change.object["metadata"]["uid"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    delete_owned_sandboxes(&cluster, &change.namespace, &uid);
                }
                "sandboxtemplates" if change.kind_of_change == "DELETED" => {
                    collect_garbage(&cluster);
                }
                "sandboxclaims" | "sandboxwarmpools" | "sandboxtemplates" | "sandboxes" => {
                    reconcile(&cluster);
                }
                _ => {}
            },
            Err(broadcast::error::RecvError::Lagged(_)) => reconcile(&cluster),
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

fn controller_uid(object: &Value) -> Option<&str> {
    object["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|o| o["controller"] == true)?["uid"]
        .as_str()
}

fn condition<'a>(sandbox: &'a Value, kind: &str) -> Option<&'a Value> {
    sandbox["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

fn is_ready(sandbox: &Value) -> bool {
    condition(sandbox, "Ready").is_some_and(|c| c["status"] == "True")
}

fn owner(api_version: &str, kind: &str, object: &Value) -> Value {
    json!({"apiVersion": api_version, "kind": kind, "name": object["metadata"]["name"],
        "uid": object["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true})
}

/// Five lowercase letters and digits, as the API server's `generateName` suffix.
fn suffix() -> String {
    const CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let uid = super::uid();
    let seed = name_hash(&uid);
    let n = u64::from_str_radix(&seed, 16).unwrap_or(0) ^ (uid.len() as u64);
    (0..5)
        .map(|i| CHARS[((n >> (i * 5)) % CHARS.len() as u64) as usize] as char)
        .collect()
}

/// Every pool's and every claim's step, until nothing changes.
fn reconcile(cluster: &Arc<Cluster>) {
    let claims = lock(&cluster.store).all("sandboxclaims");
    for (ns, claim) in claims {
        if claim["status"]["sandbox"]["name"].is_null() {
            bind(cluster, &ns, &claim);
        }
    }
    let pools = lock(&cluster.store).all("sandboxwarmpools");
    for (ns, pool) in pools {
        keep_pool(cluster, &ns, &pool);
    }
}

/// The pool's Sandboxes: ended ones replaced, `replicas` kept, its status written.
fn keep_pool(cluster: &Cluster, ns: &str, pool: &Value) {
    let mut store = lock(&cluster.store);
    let pool_name = pool["metadata"]["name"].as_str().unwrap_or_default();
    let pool_uid = pool["metadata"]["uid"].as_str().unwrap_or_default();
    let template_name = pool["spec"]["sandboxTemplateRef"]["name"]
        .as_str()
        .unwrap_or_default();
    let Some(template) = store.get("sandboxtemplates", ns, template_name).cloned() else {
        return;
    };
    // An ended Sandbox still counts: the real controller replaces only missing ones.
    let mut members: Vec<Value> = store
        .list("sandboxes", ns)
        .into_iter()
        .filter(|s| controller_uid(s) == Some(pool_uid))
        .collect();
    let replicas = pool["spec"]["replicas"].as_i64().unwrap_or(1).max(0) as usize;
    members.sort_by(|a, b| {
        (
            a["metadata"]["creationTimestamp"].as_str(),
            a["metadata"]["name"].as_str(),
        )
            .cmp(&(
                b["metadata"]["creationTimestamp"].as_str(),
                b["metadata"]["name"].as_str(),
            ))
    });
    while members.len() > replicas {
        if let Some(extra) = members.pop() {
            let name = extra["metadata"]["name"].as_str().unwrap_or_default();
            store.remove("sandboxes", ns, name);
        }
    }
    let pool_hash = name_hash(pool_name);
    let ref_hash = name_hash(template_name);
    for _ in members.len()..replicas {
        let name = format!("{pool_name}-{}", suffix());
        let mut pod_template = template["spec"]["podTemplate"].clone();
        let pool_labels = json!({WARM_POOL_LABEL: pool_hash, TEMPLATE_REF_HASH_LABEL: ref_hash,
            TEMPLATE_HASH_LABEL: ref_hash});
        merge(&mut pod_template["metadata"]["labels"], &pool_labels);
        let mut labels = pool_labels.clone();
        merge(
            &mut labels,
            &json!({LAUNCH_TYPE_LABEL: "warm", CREATED_BY_LABEL: "controller"}),
        );
        let sandbox = json!({
            "apiVersion": agent_sandbox::API_VERSION, "kind": "Sandbox",
            "metadata": {"name": name, "namespace": ns, "labels": labels,
                "annotations": {TEMPLATE_REF_ANNOTATION: template_name},
                "uid": super::uid(), "creationTimestamp": super::now(), "generation": 1,
                "ownerReferences": [owner(API_VERSION, "SandboxWarmPool", pool)]},
            "spec": {"podTemplate": pod_template},
        });
        store.put("sandboxes", ns, &name, sandbox, "ADDED");
        members.push(json!({}));
    }
    let ready = store
        .list("sandboxes", ns)
        .iter()
        .filter(|s| controller_uid(s) == Some(pool_uid) && is_ready(s))
        .count();
    let status = json!({"replicas": replicas, "readyReplicas": ready,
        "selector": format!("{WARM_POOL_LABEL}={pool_hash}"),
        "observedGeneration": pool["metadata"]["generation"]});
    if let Some(mut now) = store.get("sandboxwarmpools", ns, pool_name).cloned() {
        if now["status"] != status {
            now["status"] = status;
            store.put("sandboxwarmpools", ns, pool_name, now, "MODIFIED");
        }
    }
}

/// A claim gets the oldest Ready Sandbox of its pool, or a cold one from the pool's template.
fn bind(cluster: &Cluster, ns: &str, claim: &Value) {
    let mut store = lock(&cluster.store);
    let claim_name = claim["metadata"]["name"].as_str().unwrap_or_default();
    let claim_uid = claim["metadata"]["uid"].as_str().unwrap_or_default();
    let pool_name = claim["spec"]["warmPoolRef"]["name"]
        .as_str()
        .unwrap_or_default();
    let Some(pool) = store.get("sandboxwarmpools", ns, pool_name).cloned() else {
        return;
    };
    let template_name = pool["spec"]["sandboxTemplateRef"]["name"]
        .as_str()
        .unwrap_or_default();
    let Some(template) = store.get("sandboxtemplates", ns, template_name).cloned() else {
        return;
    };
    let pool_uid = pool["metadata"]["uid"].as_str().unwrap_or_default();
    let ref_hash = name_hash(template_name);
    let mut pod_labels = template["spec"]["podTemplate"]["metadata"]["labels"].clone();
    merge(
        &mut pod_labels,
        &json!({CLAIM_UID_LABEL: claim_uid, TEMPLATE_REF_HASH_LABEL: ref_hash}),
    );
    merge(
        &mut pod_labels,
        &claim["spec"]["additionalPodMetadata"]["labels"],
    );
    let cold_only =
        !claim["spec"]["env"].is_null() || !claim["spec"]["volumeClaimTemplates"].is_null();
    let mut candidates: Vec<Value> = store
        .list("sandboxes", ns)
        .into_iter()
        .filter(|s| {
            !cold_only
                && controller_uid(s) == Some(pool_uid)
                && is_ready(s)
                && s["metadata"]["deletionTimestamp"].is_null()
        })
        .collect();
    candidates.sort_by(|a, b| {
        a["metadata"]["creationTimestamp"]
            .as_str()
            .cmp(&b["metadata"]["creationTimestamp"].as_str())
    });
    let sandbox = match candidates.into_iter().next() {
        Some(mut sandbox) => {
            let name = sandbox["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let labels = &mut sandbox["metadata"]["labels"];
            if let Some(map) = labels.as_object_mut() {
                map.remove(WARM_POOL_LABEL);
                map.remove(TEMPLATE_HASH_LABEL);
            }
            merge(
                labels,
                &json!({LAUNCH_TYPE_LABEL: "warm", CLAIM_UID_LABEL: claim_uid}),
            );
            sandbox["metadata"]["ownerReferences"] =
                json!([owner(API_VERSION, "SandboxClaim", claim)]);
            sandbox["metadata"]["annotations"][agent_sandbox::POD_NAME_ANNOTATION] = json!(name);
            sandbox["spec"]["podTemplate"]["metadata"]["labels"] = pod_labels.clone();
            let stored = store.put("sandboxes", ns, &name, sandbox, "MODIFIED");
            // The Sandbox controller propagates the template's labels to the pod.
            if let Some(mut pod) = store.get("pods", ns, &name).cloned() {
                let mut labels = pod_labels.clone();
                merge(&mut labels, &json!({NAME_HASH_LABEL: name_hash(&name)}));
                pod["metadata"]["labels"] = labels;
                store.put("pods", ns, &name, pod, "MODIFIED");
            }
            stored
        }
        None => {
            let mut pod_template = template["spec"]["podTemplate"].clone();
            pod_template["metadata"]["labels"] = pod_labels;
            let sandbox = json!({
                "apiVersion": agent_sandbox::API_VERSION, "kind": "Sandbox",
                "metadata": {"name": claim_name, "namespace": ns,
                    "labels": {CLAIM_UID_LABEL: claim_uid, LAUNCH_TYPE_LABEL: "cold",
                        TEMPLATE_REF_HASH_LABEL: ref_hash},
                    "annotations": {TEMPLATE_REF_ANNOTATION: template_name},
                    "uid": super::uid(), "creationTimestamp": super::now(), "generation": 1,
                    "ownerReferences": [owner(API_VERSION, "SandboxClaim", claim)]},
                "spec": {"podTemplate": pod_template},
            });
            if store.get("sandboxes", ns, claim_name).is_some() {
                return;
            }
            store.put("sandboxes", ns, claim_name, sandbox, "ADDED")
        }
    };
    let ready = condition(&sandbox, "Ready").cloned().unwrap_or_else(|| {
        json!({"type": "Ready", "status": "False", "reason": "SandboxNotReady",
            "message": "", "lastTransitionTime": super::now()})
    });
    let Some(mut claim) = store.get("sandboxclaims", ns, claim_name).cloned() else {
        return;
    };
    claim["status"] = json!({"sandbox": {"name": sandbox["metadata"]["name"]},
        "conditions": [ready]});
    claim["metadata"]["annotations"]["agents.x-k8s.io/sandbox-name"] =
        sandbox["metadata"]["name"].clone();
    store.put("sandboxclaims", ns, claim_name, claim, "MODIFIED");
}

/// The Sandboxes a deleted claim owned go (their pods with them).
fn delete_owned_sandboxes(cluster: &Cluster, ns: &str, uid: &str) {
    let mut store = lock(&cluster.store);
    let owned: Vec<String> = store
        .list("sandboxes", ns)
        .into_iter()
        .filter(|s| controller_uid(s) == Some(uid))
        .filter_map(|s| s["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    for name in owned {
        store.remove("sandboxes", ns, &name);
    }
}
