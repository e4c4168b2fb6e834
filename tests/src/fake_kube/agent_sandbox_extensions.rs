//! The fake cluster's agent-sandbox extensions (`extensions.agents.x-k8s.io/v1beta1`, served only
//! once a test installs them): `SandboxTemplate`, `SandboxWarmPool` and `SandboxClaim` as their
//! CRDs have them (written from `extensions/api/v1beta1/*_types.go`, separately from the
//! coordinator's rendering), their required fields and enums, create, get, list, delete and JSON
//! merge patches (of these and of Sandboxes), and the group's discovery documents. Their
//! controllers are [`super::extension_controllers`].
//!
//! Not modelled: watches of these kinds, the `/scale` subresource.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::core::v1::{PersistentVolumeClaimSpec, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::agent_sandbox;
use super::validate::{self, Refusal, strict};
use super::{Cluster, admit, lock, not_found, ok, refused, status};

pub const GROUP: &str = "extensions.agents.x-k8s.io";
pub const API_VERSION: &str = "extensions.agents.x-k8s.io/v1beta1";
pub const WARM_POOL_LABEL: &str = "agents.x-k8s.io/warm-pool-sandbox";
pub const TEMPLATE_REF_HASH_LABEL: &str = "agents.x-k8s.io/sandbox-template-ref-hash";
pub const TEMPLATE_HASH_LABEL: &str = "agents.x-k8s.io/sandbox-template-hash";
pub const LAUNCH_TYPE_LABEL: &str = "agents.x-k8s.io/launch-type";
pub const CREATED_BY_LABEL: &str = "agents.x-k8s.io/created-by";
pub const CLAIM_UID_LABEL: &str = "agents.x-k8s.io/claim-uid";
pub const TEMPLATE_REF_ANNOTATION: &str = "agents.x-k8s.io/sandbox-template-ref";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxTemplate {
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
    pub spec: SandboxTemplateSpec,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxTemplateSpec {
    pub pod_template: agent_sandbox::PodTemplate,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_claim_templates: Option<Vec<agent_sandbox::PersistentVolumeClaimTemplate>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_policy: Option<NetworkPolicySpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_policy_management: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_vars_injection_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_claim_templates_policy: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetworkPolicySpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<Vec<k8s_openapi::api::networking::v1::NetworkPolicyIngressRule>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<Vec<k8s_openapi::api::networking::v1::NetworkPolicyEgressRule>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxWarmPool {
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
    pub spec: SandboxWarmPoolSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<SandboxWarmPoolStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxWarmPoolSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    pub sandbox_template_ref: Ref,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_strategy: Option<UpdateStrategy>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpdateStrategy {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ref {
    pub name: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxWarmPoolStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxClaim {
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
    pub spec: SandboxClaimSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<SandboxClaimStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxClaimSpec {
    pub warm_pool_ref: Ref,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Lifecycle>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_pod_metadata: Option<agent_sandbox::PodMetadata>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<ClaimEnvVar>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_claim_templates: Option<Vec<VolumeClaimTemplate>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VolumeClaimTemplate {
    #[serde(default)]
    pub metadata: agent_sandbox::EmbeddedObjectMetadata,
    pub spec: PersistentVolumeClaimSpec,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lifecycle {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds_after_finished: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown_policy: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimEnvVar {
    pub name: String,
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SandboxClaimStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<ClaimedSandbox>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClaimedSandbox {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "podIPs", default, skip_serializing_if = "Option::is_none")]
    pub pod_ips: Option<Vec<String>>,
}

/// The kinds the group serves: resource → kind.
fn kind_of(resource: &str) -> Option<(&'static str, &'static str)> {
    match resource {
        "sandboxtemplates" => Some(("sandboxtemplates", "SandboxTemplate")),
        "sandboxwarmpools" => Some(("sandboxwarmpools", "SandboxWarmPool")),
        "sandboxclaims" => Some(("sandboxclaims", "SandboxClaim")),
        _ => None,
    }
}

fn installed(cluster: &Cluster) -> bool {
    *lock(&cluster.extensions)
}

fn one_of(problems: &mut Vec<String>, path: &str, value: Option<&String>, allowed: &[&str]) {
    if let Some(value) = value {
        if !allowed.contains(&value.as_str()) {
            let listed: Vec<String> = allowed.iter().map(|a| format!("{a:?}")).collect();
            problems.push(format!(
                "{path}: Unsupported value: {value:?}: supported values: {}",
                listed.join(", ")
            ));
        }
    }
}

fn labels_valid(problems: &mut Vec<String>, path: &str, labels: Option<&BTreeMap<String, String>>) {
    for (key, value) in labels.into_iter().flatten() {
        if !validate::is_label_key(key) || !validate::is_label_value(value) {
            problems.push(format!(
                "{path}: Invalid value: {key:?}={value:?}: not a label"
            ));
        }
    }
}

/// What the CRDs' schemas refuse: required fields first (before decoding, as a custom
/// resource's missing required field is refused), then the decoded object's enums and bounds.
/// Answers the object as stored, or the refusal.
fn decode(resource: &str, body: &Value, ns: &str) -> Result<(String, Value), Refusal> {
    let (_, kind) = kind_of(resource).unwrap_or(("", ""));
    let name = body["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut missing = Vec::new();
    let spec = &body["spec"];
    if spec.is_null() {
        missing.push("spec: Required value".to_string());
    } else {
        match resource {
            "sandboxtemplates" => {
                if spec["podTemplate"].is_null() {
                    missing.push("spec.podTemplate: Required value".to_string());
                } else if spec["podTemplate"]["spec"].is_null() {
                    missing.push("spec.podTemplate.spec: Required value".to_string());
                }
            }
            "sandboxwarmpools" => {
                if !spec["sandboxTemplateRef"]["name"].is_string() {
                    missing.push("spec.sandboxTemplateRef.name: Required value".to_string());
                }
            }
            _ => {
                if !spec["warmPoolRef"]["name"].is_string() {
                    missing.push("spec.warmPoolRef.name: Required value".to_string());
                }
                for (i, var) in spec["env"].as_array().into_iter().flatten().enumerate() {
                    for field in ["name", "value"] {
                        if !var[field].is_string() {
                            missing.push(format!("spec.env[{i}].{field}: Required value"));
                        }
                    }
                }
            }
        }
    }
    if !missing.is_empty() {
        return Err(Refusal::invalid(kind, &name, &missing));
    }
    let mut problems = Vec::new();
    let object = match resource {
        "sandboxtemplates" => {
            let template: SandboxTemplate = strict(body)?;
            validate::metadata(&template.metadata, ns, &mut problems);
            let spec = &template.spec;
            one_of(
                &mut problems,
                "spec.networkPolicyManagement",
                spec.network_policy_management.as_ref(),
                &["Managed", "Unmanaged"],
            );
            for (path, value) in [
                (
                    "spec.envVarsInjectionPolicy",
                    spec.env_vars_injection_policy.as_ref(),
                ),
                (
                    "spec.volumeClaimTemplatesPolicy",
                    spec.volume_claim_templates_policy.as_ref(),
                ),
            ] {
                one_of(
                    &mut problems,
                    path,
                    value,
                    &["Disallowed", "Allowed", "Overrides"],
                );
            }
            let pod = Pod {
                metadata: ObjectMeta {
                    labels: spec.pod_template.metadata.labels.clone(),
                    ..ObjectMeta::default()
                },
                spec: Some(spec.pod_template.spec.clone()),
                status: None,
            };
            let mut pod_problems = Vec::new();
            validate::pod(&pod, &mut pod_problems);
            labels_valid(
                &mut pod_problems,
                "metadata.labels",
                spec.pod_template.metadata.labels.as_ref(),
            );
            problems.extend(
                pod_problems
                    .into_iter()
                    .map(|p| format!("spec.podTemplate.{p}")),
            );
            super::json_of(&template)
        }
        "sandboxwarmpools" => {
            let mut pool: SandboxWarmPool = strict(body)?;
            validate::metadata(&pool.metadata, ns, &mut problems);
            if pool.spec.replicas.is_some_and(|r| r < 0) {
                problems.push(
                    "spec.replicas: Invalid value: should be greater than or equal to 0".into(),
                );
            }
            if pool.spec.sandbox_template_ref.name.is_empty() {
                problems.push("spec.sandboxTemplateRef.name: Required value".into());
            }
            one_of(
                &mut problems,
                "spec.updateStrategy.type",
                pool.spec
                    .update_strategy
                    .as_ref()
                    .and_then(|u| u.type_.as_ref()),
                &["Recreate", "OnReplenish"],
            );
            // +kubebuilder:default=1
            pool.spec.replicas.get_or_insert(1);
            pool.status = None;
            super::json_of(&pool)
        }
        _ => {
            let mut claim: SandboxClaim = strict(body)?;
            validate::metadata(&claim.metadata, ns, &mut problems);
            if claim.spec.warm_pool_ref.name.is_empty() {
                problems.push("spec.warmPoolRef.name: Required value".into());
            }
            if let Some(lifecycle) = &claim.spec.lifecycle {
                one_of(
                    &mut problems,
                    "spec.lifecycle.shutdownPolicy",
                    lifecycle.shutdown_policy.as_ref(),
                    &["Delete", "DeleteForeground", "Retain"],
                );
                if lifecycle.ttl_seconds_after_finished.is_some_and(|t| t < 0) {
                    problems.push(
                        "spec.lifecycle.ttlSecondsAfterFinished: Invalid value: should be \
                         greater than or equal to 0"
                            .into(),
                    );
                }
            }
            if let Some(meta) = &claim.spec.additional_pod_metadata {
                labels_valid(
                    &mut problems,
                    "spec.additionalPodMetadata.labels",
                    meta.labels.as_ref(),
                );
            }
            claim.status = None;
            super::json_of(&claim)
        }
    };
    if problems.is_empty() {
        Ok((name, object))
    } else {
        Err(Refusal::invalid(kind, &name, &problems))
    }
}

/// `POST …/namespaces/{ns}/{resource}`.
pub async fn create(
    State(cluster): State<Arc<Cluster>>,
    UrlPath((ns, resource)): UrlPath<(String, String)>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some((resource, kind)) = kind_of(&resource).filter(|_| installed(&cluster)) else {
        return not_found();
    };
    if let Err(answer) = admit(&cluster, &headers, "create", resource, &ns) {
        return answer;
    }
    if !super::namespace_exists(&cluster, &ns) {
        return super::no_namespace(&ns);
    }
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return status(400, "BadRequest", &format!("the body is not JSON: {e}")),
    };
    let (name, mut object) = match decode(resource, &body, &ns) {
        Ok(decoded) => decoded,
        Err(refusal) => return refused(refusal),
    };
    let mut store = lock(&cluster.store);
    if store.get(resource, &ns, &name).is_some() {
        return status(
            409,
            "AlreadyExists",
            &format!("{resource}.{GROUP} {name:?} already exists"),
        );
    }
    object["apiVersion"] = json!(API_VERSION);
    object["kind"] = json!(kind);
    object["metadata"]["namespace"] = json!(ns);
    object["metadata"]["uid"] = json!(super::uid());
    object["metadata"]["creationTimestamp"] = json!(super::now());
    object["metadata"]["generation"] = json!(1);
    if query.get("dryRun").is_some_and(|v| v == "All") {
        return ok(object);
    }
    lock(&cluster.created).push(body);
    let stored = store.put(resource, &ns, &name, object, "ADDED");
    (StatusCode::CREATED, axum::Json(stored)).into_response()
}

/// `GET …/namespaces/{ns}/{resource}` (a list; `labelSelector` of `k=v` terms).
pub async fn list(
    State(cluster): State<Arc<Cluster>>,
    UrlPath((ns, resource)): UrlPath<(String, String)>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let Some((resource, kind)) = kind_of(&resource).filter(|_| installed(&cluster)) else {
        return not_found();
    };
    if query.get("watch").is_some_and(|v| v == "true" || v == "1") {
        return status(
            405,
            "MethodNotAllowed",
            "the fake serves no watch of the extensions",
        );
    }
    if let Err(answer) = admit(&cluster, &headers, "list", resource, &ns) {
        return answer;
    }
    let selector = match super::selector(&query) {
        Ok(s) => s,
        Err(answer) => return answer,
    };
    let store = lock(&cluster.store);
    let items: Vec<Value> = store
        .list(resource, &ns)
        .into_iter()
        .filter(|o| super::matches(o, &selector))
        .collect();
    ok(
        json!({"kind": format!("{kind}List"), "apiVersion": API_VERSION,
        "metadata": {"resourceVersion": store.version().to_string()}, "items": items}),
    )
}

/// `GET …/namespaces/{ns}/{resource}/{name}`.
pub async fn get_one(
    State(cluster): State<Arc<Cluster>>,
    UrlPath((ns, resource, name)): UrlPath<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let Some((resource, _)) = kind_of(&resource).filter(|_| installed(&cluster)) else {
        return not_found();
    };
    if let Err(answer) = admit(&cluster, &headers, "get", resource, &ns) {
        return answer;
    }
    match lock(&cluster.store).get(resource, &ns, &name) {
        Some(object) => ok(object.clone()),
        None => status(
            404,
            "NotFound",
            &format!("{resource}.{GROUP} {name:?} not found"),
        ),
    }
}

/// `DELETE …/namespaces/{ns}/{resource}/{name}`: the object goes; the controllers take what it
/// owned.
pub async fn delete(
    State(cluster): State<Arc<Cluster>>,
    UrlPath((ns, resource, name)): UrlPath<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some((resource, _)) = kind_of(&resource).filter(|_| installed(&cluster)) else {
        return not_found();
    };
    if let Err(answer) = admit(&cluster, &headers, "delete", resource, &ns) {
        return answer;
    }
    if !body.is_empty() {
        let value: Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => return status(400, "BadRequest", &format!("the body is not JSON: {e}")),
        };
        if let Err(refusal) =
            strict::<k8s_openapi::apimachinery::pkg::apis::meta::v1::DeleteOptions>(&value)
        {
            return refused(refusal);
        }
    }
    match lock(&cluster.store).remove(resource, &ns, &name) {
        Some(object) => ok(object),
        None => status(
            404,
            "NotFound",
            &format!("{resource}.{GROUP} {name:?} not found"),
        ),
    }
}

/// RFC 7386: `patch` merged into `target` (objects merged member by member, `null` removes,
/// anything else replaces).
pub(super) fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(target) = target {
        for (key, value) in patch {
            if value.is_null() {
                target.remove(key);
            } else {
                merge(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

/// A merge patch of one object of `resource`: the result decoded and checked as a create would
/// be; the status, uid and creation time stay (the status is a subresource).
fn patch_in(
    cluster: &Cluster,
    resource: &'static str,
    ns: &str,
    name: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    if let Err(answer) = admit(cluster, headers, "patch", resource, ns) {
        return answer;
    }
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !content_type.starts_with("application/merge-patch+json") {
        return status(
            415,
            "UnsupportedMediaType",
            &format!("the body of the request was in an unknown format: {content_type}"),
        );
    }
    let patch: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return status(400, "BadRequest", &format!("the body is not JSON: {e}")),
    };
    let mut store = lock(&cluster.store);
    let Some(before) = store.get(resource, ns, name).cloned() else {
        return status(404, "NotFound", &format!("{resource} {name:?} not found"));
    };
    let mut after = before.clone();
    merge(&mut after, &patch);
    for kept in [
        "uid",
        "creationTimestamp",
        "namespace",
        "name",
        "generation",
    ] {
        after["metadata"][kept] = before["metadata"][kept].clone();
    }
    after["status"] = before["status"].clone();
    let mut body = after.clone();
    if let Some(map) = body.as_object_mut() {
        map.remove("status");
    }
    if let Some(meta) = body["metadata"].as_object_mut() {
        meta.remove("resourceVersion");
    }
    let problems = if resource == "sandboxes" {
        let missing = agent_sandbox::required(&body);
        if !missing.is_empty() {
            return refused(Refusal::invalid("Sandbox", name, &missing));
        }
        match strict::<agent_sandbox::Sandbox>(&body) {
            Ok(sandbox) => {
                let mut problems = Vec::new();
                validate::metadata(&sandbox.metadata, ns, &mut problems);
                agent_sandbox::check(&sandbox, &mut problems);
                problems
            }
            Err(refusal) => return refused(refusal),
        }
    } else {
        match decode(resource, &body, ns) {
            Ok(_) => Vec::new(),
            Err(refusal) => return refused(refusal),
        }
    };
    if !problems.is_empty() {
        return refused(Refusal::invalid("Sandbox", name, &problems));
    }
    if after["spec"] != before["spec"] {
        let generation = before["metadata"]["generation"].as_i64().unwrap_or(1);
        after["metadata"]["generation"] = json!(generation + 1);
    }
    if after == before {
        return ok(before);
    }
    ok(store.put(resource, ns, name, after, "MODIFIED"))
}

/// `PATCH …/namespaces/{ns}/{resource}/{name}` of the extensions.
pub async fn patch(
    State(cluster): State<Arc<Cluster>>,
    UrlPath((ns, resource, name)): UrlPath<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some((resource, _)) = kind_of(&resource).filter(|_| installed(&cluster)) else {
        return not_found();
    };
    patch_in(&cluster, resource, &ns, &name, &headers, &body)
}

/// `PATCH /apis/agents.x-k8s.io/v1beta1/namespaces/{ns}/sandboxes/{name}`.
pub async fn patch_sandbox(
    State(cluster): State<Arc<Cluster>>,
    UrlPath((ns, resource, name)): UrlPath<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if resource != "sandboxes" || !*lock(&cluster.agent_sandbox) {
        return not_found();
    }
    patch_in(&cluster, "sandboxes", &ns, &name, &headers, &body)
}

/// `GET /apis/extensions.agents.x-k8s.io/v1beta1`.
pub async fn resources(State(cluster): State<Arc<Cluster>>, headers: HeaderMap) -> Response {
    if let Err(answer) = super::authenticated(&cluster, &headers) {
        return answer;
    }
    if !installed(&cluster) {
        return not_found();
    }
    let verbs = json!([
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "create",
        "update",
        "watch"
    ]);
    let resource = |name: &str, singular: &str, kind: &str| {
        json!({"name": name, "singularName": singular, "namespaced": true, "kind": kind,
               "verbs": verbs})
    };
    ok(json!({
        "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": API_VERSION,
        "resources": [
            resource("sandboxclaims", "sandboxclaim", "SandboxClaim"),
            {"name": "sandboxclaims/status", "singularName": "", "namespaced": true,
             "kind": "SandboxClaim", "verbs": ["get", "patch", "update"]},
            resource("sandboxtemplates", "sandboxtemplate", "SandboxTemplate"),
            resource("sandboxwarmpools", "sandboxwarmpool", "SandboxWarmPool"),
            {"name": "sandboxwarmpools/scale", "singularName": "", "namespaced": true,
             "group": "autoscaling", "version": "v1", "kind": "Scale",
             "verbs": ["get", "patch", "update"]},
            {"name": "sandboxwarmpools/status", "singularName": "", "namespaced": true,
             "kind": "SandboxWarmPool", "verbs": ["get", "patch", "update"]},
        ],
    }))
}

/// `GET /apis/extensions.agents.x-k8s.io`.
pub async fn group(State(cluster): State<Arc<Cluster>>, headers: HeaderMap) -> Response {
    if let Err(answer) = super::authenticated(&cluster, &headers) {
        return answer;
    }
    if !installed(&cluster) {
        return not_found();
    }
    ok(json!({
        "kind": "APIGroup", "apiVersion": "v1", "name": GROUP,
        "versions": [{"groupVersion": API_VERSION, "version": "v1beta1"}],
        "preferredVersion": {"groupVersion": API_VERSION, "version": "v1beta1"},
    }))
}
