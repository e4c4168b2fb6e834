//! The `extensions.agents.x-k8s.io/v1beta1` objects of kubernetes-sigs/agent-sandbox, written by
//! hand from their Go types (`extensions/api/v1beta1/sandbox{template,warmpool,claim}_types.go`)
//! with the real field names, as [`super::agent_sandbox`] writes the `Sandbox`: a
//! `SandboxTemplate` (a Sandbox's blueprint and its policies), a `SandboxWarmPool` (`replicas`
//! Sandboxes kept ready from a template) and a `SandboxClaim` (one Sandbox taken from a pool, or
//! made cold from its template when none is ready or the claim sets `env`).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use serde::{Deserialize, Serialize};

use super::agent_sandbox::{
    PersistentVolumeClaimTemplate, PodMetadata, PodTemplate, namespaced_resource,
};

/// The API group of the agent-sandbox extensions.
pub const GROUP: &str = "extensions.agents.x-k8s.io";
/// The version the provider speaks.
pub const VERSION: &str = "v1beta1";
/// `extensions.agents.x-k8s.io/v1beta1`.
pub const API_VERSION: &str = "extensions.agents.x-k8s.io/v1beta1";
/// The label the pool's controller puts on the Sandboxes (and pods) made from a template:
/// `NameHash` of the template's name. It stays on a Sandbox once a claim adopted it.
pub const TEMPLATE_REF_HASH_LABEL: &str = "agents.x-k8s.io/sandbox-template-ref-hash";
/// The label of a Sandbox still in its pool (removed when a claim adopts it).
pub const WARM_POOL_LABEL: &str = "agents.x-k8s.io/warm-pool-sandbox";
/// `warm` on a Sandbox a pool made (and kept when adopted), `cold` on one a claim made.
pub const LAUNCH_TYPE_LABEL: &str = "agents.x-k8s.io/launch-type";

/// `SandboxTemplate`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SandboxTemplate {
    #[serde(rename = "apiVersion", default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub spec: SandboxTemplateSpec,
}

/// `SandboxTemplateSpec`: the `SandboxBlueprint` inlined (`podTemplate`, `volumeClaimTemplates`,
/// `service`) and the template's policies.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxTemplateSpec {
    pub pod_template: PodTemplate,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_claim_templates: Option<Vec<PersistentVolumeClaimTemplate>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<bool>,
    /// `NetworkPolicySpec` (`ingress`, `egress`); the provider sends none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_policy: Option<serde_json::Value>,
    /// `Managed` (the default) or `Unmanaged`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_policy_management: Option<String>,
    /// `Disallowed` (the default), `Allowed` or `Overrides`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_vars_injection_policy: Option<String>,
    /// `Disallowed` (the default), `Allowed` or `Overrides`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_claim_templates_policy: Option<String>,
}

/// `SandboxWarmPool`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SandboxWarmPool {
    #[serde(rename = "apiVersion", default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub spec: SandboxWarmPoolSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<SandboxWarmPoolStatus>,
}

/// `SandboxWarmPoolSpec`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxWarmPoolSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    #[serde(rename = "sandboxTemplateRef")]
    pub template_ref: NameRef,
    /// `{type: Recreate | OnReplenish}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_strategy: Option<UpdateStrategy>,
}

/// `SandboxWarmPoolUpdateStrategy`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct UpdateStrategy {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
}

/// `SandboxTemplateRef`, `SandboxWarmPoolRef`: `{name}`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct NameRef {
    pub name: String,
}

/// `SandboxWarmPoolStatus`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxWarmPoolStatus {
    #[serde(default)]
    pub replicas: i32,
    #[serde(default)]
    pub ready_replicas: i32,
    #[serde(default)]
    pub selector: String,
    #[serde(default)]
    pub observed_generation: i64,
}

/// `SandboxClaim`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SandboxClaim {
    #[serde(rename = "apiVersion", default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub spec: SandboxClaimSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<SandboxClaimStatus>,
}

/// `SandboxClaimSpec`. Setting `env` or `volumeClaimTemplates` makes the claim start cold.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxClaimSpec {
    pub warm_pool_ref: NameRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Lifecycle>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_pod_metadata: Option<PodMetadata>,
    /// `[{name, value, containerName}]`; the provider sends none (so the claim may be warm).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_claim_templates: Option<Vec<PersistentVolumeClaimTemplate>>,
}

/// `Lifecycle` of a claim.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lifecycle {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown_time: Option<Time>,
    #[serde(
        rename = "ttlSecondsAfterFinished",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ttl_seconds_after_finished: Option<i32>,
    /// `Delete`, `DeleteForeground` or `Retain` (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown_policy: Option<String>,
}

/// `SandboxClaimStatus`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SandboxClaimStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
    #[serde(rename = "sandbox", default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<ClaimedSandbox>,
}

/// `SandboxStatus` of a claim: the Sandbox it got.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ClaimedSandbox {
    #[serde(default)]
    pub name: String,
    #[serde(rename = "podIPs", default, skip_serializing_if = "Option::is_none")]
    pub pod_ips: Option<Vec<String>>,
}

namespaced_resource!(SandboxTemplate, group: GROUP, version: VERSION, api_version: API_VERSION,
                     kind: "SandboxTemplate", plural: "sandboxtemplates");
namespaced_resource!(SandboxWarmPool, group: GROUP, version: VERSION, api_version: API_VERSION,
                     kind: "SandboxWarmPool", plural: "sandboxwarmpools");
namespaced_resource!(SandboxClaim, group: GROUP, version: VERSION, api_version: API_VERSION,
                     kind: "SandboxClaim", plural: "sandboxclaims");

/// The resources a coordinator needs of the group (what discovery must list).
pub const RESOURCES: [&str; 3] = ["sandboxtemplates", "sandboxwarmpools", "sandboxclaims"];

/// `NameHash` of the controllers: FNV-1a (32 bits) of `name`, as 8 hex digits.
pub fn name_hash(name: &str) -> String {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in name.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    format!("{hash:08x}")
}

/// The name of the Sandbox a claim got, when it got one.
pub fn claimed_sandbox(claim: &SandboxClaim) -> Option<&str> {
    claim
        .status
        .as_ref()?
        .sandbox
        .as_ref()
        .map(|s| s.name.as_str())
        .filter(|n| !n.is_empty())
}

/// Labels of `object` (empty when it has none).
pub fn labels_of(meta: &ObjectMeta) -> BTreeMap<String, String> {
    meta.labels.clone().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_types_speak_the_real_field_names() {
        let pool = SandboxWarmPool {
            api_version: API_VERSION.into(),
            kind: "SandboxWarmPool".into(),
            metadata: ObjectMeta::default(),
            spec: SandboxWarmPoolSpec {
                replicas: Some(2),
                template_ref: NameRef { name: "t".into() },
                update_strategy: None,
            },
            status: None,
        };
        assert_eq!(
            serde_json::to_value(&pool).unwrap()["spec"],
            json!({"replicas": 2, "sandboxTemplateRef": {"name": "t"}})
        );
        let claim: SandboxClaim = serde_json::from_value(json!({
            "metadata": {"name": "c"},
            "spec": {"warmPoolRef": {"name": "p"}, "lifecycle": {"shutdownPolicy": "Delete"}},
            "status": {"sandbox": {"name": "p-abcde", "podIPs": ["10.0.0.2"]}},
        }))
        .unwrap();
        assert_eq!(claim.spec.warm_pool_ref.name, "p");
        assert_eq!(claimed_sandbox(&claim), Some("p-abcde"));
        let template = SandboxTemplateSpec {
            network_policy_management: Some("Unmanaged".into()),
            ..SandboxTemplateSpec::default()
        };
        assert_eq!(
            serde_json::to_value(&template).unwrap(),
            json!({"podTemplate": {"spec": {"containers": []}, "metadata": {}},
                   "networkPolicyManagement": "Unmanaged"})
        );
        assert_eq!(
            <SandboxClaim as kube::Resource>::url_path(&(), Some("omoi")),
            "/apis/extensions.agents.x-k8s.io/v1beta1/namespaces/omoi/sandboxclaims"
        );
        assert_eq!(name_hash("a"), "e40c292c");
    }
}
