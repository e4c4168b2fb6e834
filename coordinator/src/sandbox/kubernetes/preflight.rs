//! The checks at start, so a misconfigured provider fails with one line naming the cause and never
//! at the first spec: a cluster configuration found (kubeconfig or in-cluster), the API server
//! answering, the namespace there, in Sandbox mode the `agents.x-k8s.io/v1beta1` API served (the
//! agent-sandbox CRD installed), and every verb the provider uses allowed by RBAC (asked with
//! `SelfSubjectAccessReview`, which every authenticated user may create).

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};

use super::{KubernetesApi, agent_sandbox};
use crate::sandbox::SandboxError;

/// One permission the provider needs: API group, resource, subresource, verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permission {
    pub group: &'static str,
    pub resource: &'static str,
    pub subresource: &'static str,
    pub verb: &'static str,
}

const fn permission(
    group: &'static str,
    resource: &'static str,
    subresource: &'static str,
    verb: &'static str,
) -> Permission {
    Permission {
        group,
        resource,
        subresource,
        verb,
    }
}

/// What the provider does with bare pods (images/kubernetes/role.yaml grants exactly these).
pub const POD_PERMISSIONS: [Permission; 9] = [
    permission("", "pods", "", "create"),
    permission("", "pods", "", "get"),
    permission("", "pods", "", "list"),
    permission("", "pods", "", "watch"),
    permission("", "pods", "", "delete"),
    permission("", "pods", "log", "get"),
    permission("", "secrets", "", "create"),
    permission("", "secrets", "", "get"),
    permission("", "secrets", "", "delete"),
];

/// What the provider does with the agent-sandbox extensions, when it keeps warm pools with them
/// (one template, Secret and pool per pool; one claim per warm start; the claimed Sandbox
/// labelled and its pool's listed).
pub const EXTENSION_PERMISSIONS: [Permission; 12] = [
    permission(
        "extensions.agents.x-k8s.io",
        "sandboxtemplates",
        "",
        "create",
    ),
    permission("extensions.agents.x-k8s.io", "sandboxtemplates", "", "get"),
    permission(
        "extensions.agents.x-k8s.io",
        "sandboxtemplates",
        "",
        "patch",
    ),
    permission(
        "extensions.agents.x-k8s.io",
        "sandboxwarmpools",
        "",
        "create",
    ),
    permission("extensions.agents.x-k8s.io", "sandboxwarmpools", "", "get"),
    permission(
        "extensions.agents.x-k8s.io",
        "sandboxwarmpools",
        "",
        "patch",
    ),
    permission("extensions.agents.x-k8s.io", "sandboxclaims", "", "create"),
    permission("extensions.agents.x-k8s.io", "sandboxclaims", "", "get"),
    permission("extensions.agents.x-k8s.io", "sandboxclaims", "", "delete"),
    permission("agents.x-k8s.io", "sandboxes", "", "patch"),
    permission("", "pods", "", "get"),
    permission("", "secrets", "", "get"),
];

/// What the provider does with `agents.x-k8s.io` sandboxes, besides reading their pods' logs.
pub const SANDBOX_PERMISSIONS: [Permission; 5] = [
    permission("agents.x-k8s.io", "sandboxes", "", "create"),
    permission("agents.x-k8s.io", "sandboxes", "", "get"),
    permission("agents.x-k8s.io", "sandboxes", "", "list"),
    permission("agents.x-k8s.io", "sandboxes", "", "watch"),
    permission("agents.x-k8s.io", "sandboxes", "", "delete"),
];

impl Permission {
    /// `create pods`, `get pods/log`, `list sandboxes.agents.x-k8s.io`.
    pub fn describe(&self) -> String {
        let mut resource = self.resource.to_string();
        if !self.group.is_empty() {
            resource = format!("{resource}.{}", self.group);
        }
        if !self.subresource.is_empty() {
            resource = format!("{resource}/{}", self.subresource);
        }
        format!("{} {resource}", self.verb)
    }
}

fn fail(message: String) -> SandboxError {
    SandboxError::Provider(format!("kubernetes: {message}"))
}

/// Runs every check; the first that fails is the error.
pub async fn check(
    client: &Client,
    namespace: &str,
    api: KubernetesApi,
) -> Result<(), SandboxError> {
    namespace_exists(client, namespace).await?;
    if api == KubernetesApi::Sandbox {
        sandboxes_served(client).await?;
    }
    let needed: Vec<Permission> = match api {
        KubernetesApi::Pod => POD_PERMISSIONS.to_vec(),
        KubernetesApi::Sandbox => POD_PERMISSIONS
            .iter()
            .filter(|p| p.resource != "pods" || p.subresource == "log" || p.verb == "get")
            .copied()
            .chain(SANDBOX_PERMISSIONS)
            .collect(),
    };
    let refused = refused(client, namespace, &needed).await?;
    if refused.is_empty() {
        Ok(())
    } else {
        Err(fail(format!(
            "RBAC does not let this account {} in the namespace {namespace:?}; grant the Role of \
             images/kubernetes/role.yaml",
            refused.join(", ")
        )))
    }
}

/// The permissions of `needed` that RBAC refuses this account in `namespace`, as kubectl names
/// them (one `SelfSubjectAccessReview` each).
pub async fn refused(
    client: &Client,
    namespace: &str,
    needed: &[Permission],
) -> Result<Vec<String>, SandboxError> {
    let reviews: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let mut refused = Vec::new();
    for permission in needed.iter().copied() {
        let review = SelfSubjectAccessReview {
            metadata: ObjectMeta::default(),
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    namespace: Some(namespace.to_string()),
                    verb: Some(permission.verb.to_string()),
                    group: Some(permission.group.to_string()),
                    resource: Some(permission.resource.to_string()),
                    subresource: (!permission.subresource.is_empty())
                        .then(|| permission.subresource.to_string()),
                    ..ResourceAttributes::default()
                }),
                ..SelfSubjectAccessReviewSpec::default()
            },
            status: None,
        };
        let answer = reviews
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| {
                fail(format!(
                    "asking the API server what this account may do: {}",
                    message(&e)
                ))
            })?;
        if !answer.status.is_some_and(|s| s.allowed) {
            refused.push(permission.describe());
        }
    }
    Ok(refused)
}

/// A dry-run create of a Secret: 404 means the namespace does not exist (a list would answer an
/// empty list, and reading the Namespace object needs a cluster-wide grant a Role cannot give).
async fn namespace_exists(client: &Client, namespace: &str) -> Result<(), SandboxError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let probe = Secret {
        metadata: ObjectMeta {
            name: Some("omoi-preflight".to_string()),
            ..ObjectMeta::default()
        },
        ..Secret::default()
    };
    let params = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    match secrets.create(&params, &probe).await {
        Ok(_) => Ok(()),
        // Exists already: the namespace is there.
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Err(fail(format!(
            "the namespace {namespace:?} does not exist (create it, or name another with --namespace)"
        ))),
        // Forbidden: the RBAC check below names what is missing.
        Err(kube::Error::Api(status)) if status.code == 403 => Ok(()),
        Err(e) => Err(fail(format!(
            "the API server does not answer as expected: {}",
            message(&e)
        ))),
    }
}

/// Discovery of `agents.x-k8s.io/v1beta1` lists `sandboxes`: the CRD is installed.
async fn sandboxes_served(client: &Client) -> Result<(), SandboxError> {
    let missing = || {
        fail(format!(
            "the API server does not serve {}/{}: install kubernetes-sigs/agent-sandbox (its CRDs \
             and controller), or use --kubernetes-api pod",
            agent_sandbox::API_VERSION,
            agent_sandbox::PLURAL
        ))
    };
    match client
        .list_api_group_resources(agent_sandbox::API_VERSION)
        .await
    {
        Ok(list)
            if list
                .resources
                .iter()
                .any(|r| r.name == agent_sandbox::PLURAL) =>
        {
            Ok(())
        }
        Ok(_) => Err(missing()),
        Err(kube::Error::Api(status)) if status.code == 404 => Err(missing()),
        Err(e) => Err(fail(format!(
            "asking the API server for {}: {}",
            agent_sandbox::API_VERSION,
            message(&e)
        ))),
    }
}

/// The API server's own message when it sent one, else the client's error.
pub fn message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) if !status.message.is_empty() => {
            format!("{} ({})", status.message, status.code)
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_read_as_kubectl_names_them() {
        assert_eq!(POD_PERMISSIONS[0].describe(), "create pods");
        assert_eq!(POD_PERMISSIONS[5].describe(), "get pods/log");
        assert_eq!(
            SANDBOX_PERMISSIONS[2].describe(),
            "list sandboxes.agents.x-k8s.io"
        );
    }
}
