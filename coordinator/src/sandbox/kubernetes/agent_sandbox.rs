//! The `agents.x-k8s.io/v1beta1` `Sandbox` of kubernetes-sigs/agent-sandbox, written by hand from
//! its Go type (`api/v1beta1/sandbox_types.go`) with the real field names, and what its status
//! conditions say of the sandbox, without IO.
//!
//! A hand-written [`kube::Resource`] impl rather than kube's `CustomResource` derive: the derive
//! needs the `derive` feature (a proc-macro crate more) and a schemars schema of every field,
//! which only matters for generating the CRD, and the CRD is the agent-sandbox project's to install.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PersistentVolumeClaimSpec, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use serde::{Deserialize, Serialize};

/// The API group of the agent-sandbox core objects.
pub const GROUP: &str = "agents.x-k8s.io";
/// The version the provider speaks.
pub const VERSION: &str = "v1beta1";
/// `agents.x-k8s.io/v1beta1`.
pub const API_VERSION: &str = "agents.x-k8s.io/v1beta1";
/// The kind.
pub const KIND: &str = "Sandbox";
/// The resource (plural) of the REST paths.
pub const PLURAL: &str = "sandboxes";
/// The annotation the controller puts on a Sandbox naming its pod (when it differs from the
/// Sandbox's own name, e.g. a pod adopted from a warm pool).
pub const POD_NAME_ANNOTATION: &str = "agents.x-k8s.io/pod-name";

/// A `Sandbox`: one pod made from `spec.podTemplate` and kept by the agent-sandbox controller.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Sandbox {
    #[serde(rename = "apiVersion", default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub spec: SandboxSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<SandboxStatus>,
}

/// `SandboxSpec`: the blueprint (`podTemplate`, `volumeClaimTemplates`, `service`), the lifecycle
/// (`shutdownTime`, `shutdownPolicy`) and `operatingMode`, inlined as in Go.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxSpec {
    pub pod_template: PodTemplate,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_claim_templates: Option<Vec<PersistentVolumeClaimTemplate>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown_time: Option<Time>,
    /// `Delete` or `Retain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown_policy: Option<String>,
    /// `Running` (the default) or `Suspended`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operating_mode: Option<String>,
}

/// `PodTemplate`: the pod's spec and, of its metadata, only labels and annotations.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PodTemplate {
    pub spec: PodSpec,
    #[serde(default)]
    pub metadata: PodMetadata,
}

/// `PodMetadata`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PodMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// `PersistentVolumeClaimTemplate` (the provider sends none).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PersistentVolumeClaimTemplate {
    #[serde(default)]
    pub metadata: EmbeddedObjectMetadata,
    pub spec: PersistentVolumeClaimSpec,
}

/// `EmbeddedObjectMetadata`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct EmbeddedObjectMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// `SandboxStatus`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
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

/// A `kube::Resource` impl of a namespaced custom type: what kube's derive would write, without
/// the proc-macro crate and the schema only a CRD's installer uses.
macro_rules! namespaced_resource {
    ($type:ty, group: $group:expr, version: $version:expr, api_version: $api_version:expr,
     kind: $kind:expr, plural: $plural:expr) => {
        impl kube::Resource for $type {
            type DynamicType = ();
            type Scope = k8s_openapi::NamespaceResourceScope;

            fn kind(_: &()) -> std::borrow::Cow<'_, str> {
                std::borrow::Cow::Borrowed($kind)
            }

            fn group(_: &()) -> std::borrow::Cow<'_, str> {
                std::borrow::Cow::Borrowed($group)
            }

            fn version(_: &()) -> std::borrow::Cow<'_, str> {
                std::borrow::Cow::Borrowed($version)
            }

            fn api_version(_: &()) -> std::borrow::Cow<'_, str> {
                std::borrow::Cow::Borrowed($api_version)
            }

            fn plural(_: &()) -> std::borrow::Cow<'_, str> {
                std::borrow::Cow::Borrowed($plural)
            }

            fn meta(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &self.metadata
            }

            fn meta_mut(
                &mut self,
            ) -> &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &mut self.metadata
            }
        }
    };
}
pub(super) use namespaced_resource;

namespaced_resource!(Sandbox, group: GROUP, version: VERSION, api_version: API_VERSION,
                     kind: KIND, plural: PLURAL);

/// What a Sandbox's conditions say of its pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SandboxState {
    /// No pod running yet; why, when a condition says (`PodScheduled` false, a reconciler error).
    Pending { why: Option<String> },
    /// `Ready` is true: the pod runs.
    Running,
    /// `Finished` with `PodSucceeded`: every container exited 0.
    Succeeded,
    /// `Finished` with `PodFailed`: the pod's own status tells how (exit code, OOM, eviction).
    Failed,
}

fn condition<'a>(sandbox: &'a Sandbox, kind: &str) -> Option<&'a Condition> {
    sandbox
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind)
}

fn words(condition: &Condition) -> String {
    match (condition.reason.is_empty(), condition.message.is_empty()) {
        (false, false) => format!("{}: {}", condition.reason, condition.message),
        (false, true) => condition.reason.clone(),
        _ => condition.message.clone(),
    }
}

/// The state the conditions report. `Finished` decides an end; a `Ready` false with the reason
/// `PodSucceeded`/`PodFailed` (set together with it by the controller) counts as well.
pub fn classify(sandbox: &Sandbox) -> SandboxState {
    let ended = |reason: &str| match reason {
        "PodSucceeded" => Some(SandboxState::Succeeded),
        "PodFailed" => Some(SandboxState::Failed),
        _ => None,
    };
    if let Some(state) = condition(sandbox, "Finished")
        .filter(|c| c.status == "True")
        .and_then(|c| ended(&c.reason))
    {
        return state;
    }
    let ready = condition(sandbox, "Ready");
    if let Some(state) = ready.and_then(|c| ended(&c.reason)) {
        return state;
    }
    if ready.is_some_and(|c| c.status == "True") {
        return SandboxState::Running;
    }
    let unscheduled = condition(sandbox, "PodScheduled")
        .filter(|c| c.status == "False")
        .map(words);
    let trouble = ready
        .filter(|c| c.reason == "ReconcilerError" || c.reason == "MultiplePods")
        .map(words);
    SandboxState::Pending {
        why: unscheduled.or(trouble),
    }
}

/// The name of the Sandbox's pod: the annotation's when the controller set one, else its own.
pub fn pod_name(sandbox: &Sandbox) -> Option<String> {
    sandbox
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(POD_NAME_ANNOTATION))
        .filter(|n| !n.is_empty())
        .cloned()
        .or_else(|| sandbox.metadata.name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn with_conditions(conditions: serde_json::Value) -> Sandbox {
        serde_json::from_value(json!({
            "apiVersion": API_VERSION, "kind": KIND,
            "metadata": {"name": "omoi-a"},
            "spec": {"podTemplate": {"spec": {"containers": []}, "metadata": {}}},
            "status": {"conditions": conditions},
        }))
        .unwrap()
    }

    fn c(kind: &str, status: &str, reason: &str, message: &str) -> serde_json::Value {
        json!({"type": kind, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": "2026-12-02T10:00:00Z"})
    }

    #[test]
    fn the_conditions_tell_pending_running_and_how_it_ended() {
        assert_eq!(
            classify(&with_conditions(json!([]))),
            SandboxState::Pending { why: None }
        );
        assert_eq!(
            classify(&with_conditions(json!([
                c(
                    "Ready",
                    "False",
                    "DependenciesNotReady",
                    "Pod exists with phase: Pending"
                ),
                c(
                    "PodScheduled",
                    "False",
                    "Unschedulable",
                    "0/1 nodes are available"
                ),
            ]))),
            SandboxState::Pending {
                why: Some("Unschedulable: 0/1 nodes are available".into())
            }
        );
        assert_eq!(
            classify(&with_conditions(json!([c(
                "Ready",
                "True",
                "DependenciesReady",
                "Pod is Ready"
            )]))),
            SandboxState::Running
        );
        assert_eq!(
            classify(&with_conditions(json!([
                c("Ready", "False", "PodFailed", "Pod failed"),
                c("Finished", "True", "PodFailed", "Pod failed"),
            ]))),
            SandboxState::Failed
        );
        assert_eq!(
            classify(&with_conditions(json!([c(
                "Finished",
                "True",
                "PodSucceeded",
                ""
            )]))),
            SandboxState::Succeeded
        );
        // A controller without the Finished condition still says it in Ready's reason.
        assert_eq!(
            classify(&with_conditions(json!([c(
                "Ready",
                "False",
                "PodSucceeded",
                "Pod completed successfully"
            )]))),
            SandboxState::Succeeded
        );
    }

    #[test]
    fn the_type_speaks_the_real_field_names() {
        let sandbox = Sandbox {
            api_version: API_VERSION.into(),
            kind: KIND.into(),
            metadata: ObjectMeta {
                name: Some("omoi-a".into()),
                annotations: Some(BTreeMap::from([(
                    POD_NAME_ANNOTATION.to_string(),
                    "warm-1".to_string(),
                )])),
                ..ObjectMeta::default()
            },
            spec: SandboxSpec {
                operating_mode: Some("Running".into()),
                ..SandboxSpec::default()
            },
            status: Some(SandboxStatus {
                pod_ips: Some(vec!["10.0.0.1".into()]),
                service_fqdn: Some("a.svc".into()),
                ..SandboxStatus::default()
            }),
        };
        let value = serde_json::to_value(&sandbox).unwrap();
        assert_eq!(
            (
                &value["spec"]["podTemplate"]["metadata"],
                &value["spec"]["operatingMode"],
                &value["status"]["podIPs"],
                &value["status"]["serviceFQDN"],
            ),
            (
                &json!({}),
                &json!("Running"),
                &json!(["10.0.0.1"]),
                &json!("a.svc")
            )
        );
        assert_eq!(pod_name(&sandbox).as_deref(), Some("warm-1"));
        assert_eq!(
            <Sandbox as kube::Resource>::url_path(&(), Some("omoi")),
            "/apis/agents.x-k8s.io/v1beta1/namespaces/omoi/sandboxes"
        );
    }
}
