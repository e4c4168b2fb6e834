//! The Sandbox API's own warm pools (`extensions.agents.x-k8s.io`), kept for the coordinator's
//! pools ([`WarmPools`]): per pool one `SandboxTemplate` (the hardened pod of [`manifest`], its
//! environment from one Secret of the pool), one Secret (the standby environment: the
//! coordinator's URL, the pool's name and registration credential, the idle limit; owned by the
//! template) and one `SandboxWarmPool` of `replicas` Sandboxes. Every pod gets its own name and
//! uid through the downward API, with which its worker enrolls. A launch creates a
//! `SandboxClaim` (no `env`, so it may be warm), reads the Sandbox it got from
//! `status.sandbox.name`, and labels that Sandbox as the launch's sandbox; deleting the claim
//! deletes the Sandbox.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy};
use serde_json::json;

use super::agent_sandbox::{self, PodMetadata, PodTemplate, Sandbox, SandboxState};
use super::extensions::{
    self, LAUNCH_TYPE_LABEL, NameRef, SandboxClaim, SandboxClaimSpec, SandboxTemplate,
    SandboxTemplateSpec, SandboxWarmPool, SandboxWarmPoolSpec, TEMPLATE_REF_HASH_LABEL,
    WARM_POOL_LABEL,
};
use super::manifest::{self, CONTAINER, INSTANCE_LABEL};
use super::preflight::message;
use super::watch::{Shared, now_secs};
use super::{KubernetesConfig, lock};
use crate::sandbox::warm::{PoolMember, WarmPools};
use crate::sandbox::{
    Limits, OWNER, OWNER_LABEL, POOL_LABEL, SandboxError, SandboxHandle, SpawnRequest,
};

/// How often a claim is read while it waits for its Sandbox.
const CLAIM_POLL: Duration = Duration::from_millis(50);

/// The provider's pools over the extensions API.
#[derive(Debug)]
pub struct Pools {
    config: KubernetesConfig,
    templates: Api<SandboxTemplate>,
    pools: Api<SandboxWarmPool>,
    claims: Api<SandboxClaim>,
    sandboxes: Api<Sandbox>,
    pods: Api<Pod>,
    secrets: Api<Secret>,
    shared: Arc<Shared>,
    /// Pool name → the coordinator's pool key (its image), for the pools kept since start.
    names: Mutex<BTreeMap<String, String>>,
}

fn failed(what: &str, e: &kube::Error) -> SandboxError {
    SandboxError::Provider(format!("kubernetes: {what}: {}", message(e)))
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(status) if status.code == code)
}

impl Pools {
    pub fn new(client: kube::Client, config: KubernetesConfig, shared: Arc<Shared>) -> Pools {
        let ns = config.namespace.clone();
        Pools {
            templates: Api::namespaced(client.clone(), &ns),
            pools: Api::namespaced(client.clone(), &ns),
            claims: Api::namespaced(client.clone(), &ns),
            sandboxes: Api::namespaced(client.clone(), &ns),
            pods: Api::namespaced(client.clone(), &ns),
            secrets: Api::namespaced(client, &ns),
            config,
            shared,
            names: Mutex::new(BTreeMap::new()),
        }
    }

    /// The labels of a pool's own objects.
    fn pool_labels(&self, name: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (OWNER_LABEL.to_string(), OWNER.to_string()),
            (INSTANCE_LABEL.to_string(), self.config.instance.clone()),
            (POOL_LABEL.to_string(), name.to_string()),
        ])
    }

    /// The template of the pool `name` running `image`: [`manifest::pod_spec`]'s pod, its
    /// environment from the pool's Secret, plus the pod's own name and uid.
    pub fn template(&self, name: &str, image: &str) -> SandboxTemplate {
        let request = SpawnRequest {
            sandbox_id: name.to_string(),
            image: (!image.is_empty()).then(|| image.to_string()),
            image_pull_secrets: Vec::new(),
            env: BTreeMap::new(),
            labels: BTreeMap::new(),
            limits: Limits::default(),
            repo: None,
        };
        let mut spec = manifest::pod_spec(&request, &self.config, &manifest::secret_name(name));
        for container in spec.containers.iter_mut().filter(|c| c.name == CONTAINER) {
            let field = |var: &str, path: &str| EnvVar {
                name: var.to_string(),
                value: None,
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        api_version: Some("v1".to_string()),
                        field_path: path.to_string(),
                    }),
                    ..EnvVarSource::default()
                }),
            };
            let env = container.env.get_or_insert_with(Vec::new);
            env.push(field(omoi_protocol::env::STANDBY_POD, "metadata.name"));
            env.push(field(omoi_protocol::env::STANDBY_POD_UID, "metadata.uid"));
        }
        SandboxTemplate {
            api_version: extensions::API_VERSION.to_string(),
            kind: "SandboxTemplate".to_string(),
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(self.config.namespace.clone()),
                labels: Some(self.pool_labels(name)),
                ..ObjectMeta::default()
            },
            spec: SandboxTemplateSpec {
                pod_template: PodTemplate {
                    spec,
                    metadata: PodMetadata {
                        labels: Some(self.pool_labels(name)),
                        annotations: None,
                    },
                },
                // The pods must reach the coordinator, which the controller's default policy
                // (public internet only) would block; the cluster's own policies apply.
                network_policy_management: Some("Unmanaged".to_string()),
                env_vars_injection_policy: Some("Disallowed".to_string()),
                ..SandboxTemplateSpec::default()
            },
        }
    }

    /// Creates the pool's template, or brings its spec up to date.
    async fn keep_template(&self, name: &str, image: &str) -> Result<String, SandboxError> {
        let wanted = self.template(name, image);
        match self.templates.get(name).await {
            Ok(there) => {
                if there.spec != wanted.spec {
                    let patch = Patch::Merge(json!({"spec": wanted.spec}));
                    self.templates
                        .patch(name, &PatchParams::default(), &patch)
                        .await
                        .map_err(|e| failed(&format!("updating the SandboxTemplate {name}"), &e))?;
                }
                Ok(there.metadata.uid.unwrap_or_default())
            }
            Err(e) if is_status(&e, 404) => {
                let made = self
                    .templates
                    .create(&PostParams::default(), &wanted)
                    .await
                    .map_err(|e| failed(&format!("creating the SandboxTemplate {name}"), &e))?;
                Ok(made.metadata.uid.unwrap_or_default())
            }
            Err(e) => Err(failed(&format!("reading the SandboxTemplate {name}"), &e)),
        }
    }

    /// Creates the pool's Secret (owned by its template), or makes it again when it differs:
    /// `true` then (the pool's pods started with the old one).
    async fn keep_secret(
        &self,
        name: &str,
        template_uid: &str,
        env: &BTreeMap<String, String>,
    ) -> Result<bool, SandboxError> {
        let secret_name = manifest::secret_name(name);
        let data: BTreeMap<String, ByteString> = env
            .iter()
            .map(|(k, v)| (k.clone(), ByteString(v.clone().into_bytes())))
            .collect();
        let wanted = Secret {
            metadata: ObjectMeta {
                name: Some(secret_name.clone()),
                namespace: Some(self.config.namespace.clone()),
                labels: Some(self.pool_labels(name)),
                owner_references: Some(vec![OwnerReference {
                    api_version: extensions::API_VERSION.to_string(),
                    kind: "SandboxTemplate".to_string(),
                    name: name.to_string(),
                    uid: template_uid.to_string(),
                    controller: Some(false),
                    block_owner_deletion: Some(false),
                }]),
                ..ObjectMeta::default()
            },
            data: Some(data.clone()),
            type_: Some("Opaque".to_string()),
            ..Secret::default()
        };
        let replaced = match self.secrets.get(&secret_name).await {
            Ok(there) if there.data.as_ref() == Some(&data) => return Ok(false),
            Ok(_) => {
                self.secrets
                    .delete(&secret_name, &DeleteParams::default())
                    .await
                    .map_err(|e| failed(&format!("replacing the Secret {secret_name}"), &e))?;
                true
            }
            Err(e) if is_status(&e, 404) => false,
            Err(e) => return Err(failed(&format!("reading the Secret {secret_name}"), &e)),
        };
        self.secrets
            .create(&PostParams::default(), &wanted)
            .await
            .map_err(|e| failed(&format!("creating the Secret {secret_name}"), &e))?;
        Ok(replaced)
    }

    /// Deletes the pool's unclaimed Sandboxes: the pool makes them again (with the pool's
    /// current Secret).
    async fn renew(&self, name: &str) -> Result<(), SandboxError> {
        let selector = format!("{WARM_POOL_LABEL}={}", extensions::name_hash(name));
        let list = self
            .sandboxes
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| failed(&format!("listing the Sandboxes of {name}"), &e))?;
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..DeleteParams::default()
        };
        for sandbox in list.items.iter().filter_map(|s| s.metadata.name.as_deref()) {
            match self.sandboxes.delete(sandbox, &params).await {
                Ok(_) => {}
                Err(e) if is_status(&e, 404) => {}
                Err(e) => return Err(failed(&format!("deleting the Sandbox {sandbox}"), &e)),
            }
        }
        tracing::info!(pool = %name, renewed = list.items.len(),
            "the pool's environment changed: its waiting sandboxes are made again");
        Ok(())
    }

    /// Creates the `SandboxWarmPool`, or sets its `replicas`.
    async fn keep_pool(&self, name: &str, replicas: u32) -> Result<(), SandboxError> {
        let replicas = i32::try_from(replicas).unwrap_or(i32::MAX);
        match self.pools.get(name).await {
            Ok(there) if there.spec.replicas == Some(replicas) => Ok(()),
            Ok(_) => {
                let patch = Patch::Merge(json!({"spec": {"replicas": replicas}}));
                self.pools
                    .patch(name, &PatchParams::default(), &patch)
                    .await
                    .map_err(|e| failed(&format!("resizing the SandboxWarmPool {name}"), &e))?;
                tracing::info!(pool = %name, replicas, "warm pool resized");
                Ok(())
            }
            Err(e) if is_status(&e, 404) => {
                let pool = SandboxWarmPool {
                    api_version: extensions::API_VERSION.to_string(),
                    kind: "SandboxWarmPool".to_string(),
                    metadata: ObjectMeta {
                        name: Some(name.to_string()),
                        namespace: Some(self.config.namespace.clone()),
                        labels: Some(self.pool_labels(name)),
                        ..ObjectMeta::default()
                    },
                    spec: SandboxWarmPoolSpec {
                        replicas: Some(replicas),
                        template_ref: NameRef {
                            name: name.to_string(),
                        },
                        update_strategy: None,
                    },
                    status: None,
                };
                self.pools
                    .create(&PostParams::default(), &pool)
                    .await
                    .map_err(|e| failed(&format!("creating the SandboxWarmPool {name}"), &e))?;
                tracing::info!(pool = %name, replicas, "warm pool created");
                Ok(())
            }
            Err(e) => Err(failed(&format!("reading the SandboxWarmPool {name}"), &e)),
        }
    }

    async fn claim_inner(
        &self,
        request: &SpawnRequest,
        bound: Duration,
    ) -> Result<Option<SandboxHandle>, SandboxError> {
        let key = request.image.as_deref().unwrap_or("");
        let pool = self.pool_name(key);
        let name = claim_name(&request.sandbox_id);
        if !manifest::is_dns_label(&name) {
            return Err(SandboxError::Provider(format!(
                "kubernetes: the sandbox id {:?} does not make a claim name",
                request.sandbox_id
            )));
        }
        let labels = manifest::labels(request, &self.config.instance);
        let claim = SandboxClaim {
            api_version: extensions::API_VERSION.to_string(),
            kind: "SandboxClaim".to_string(),
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(self.config.namespace.clone()),
                labels: Some(labels.clone()),
                ..ObjectMeta::default()
            },
            spec: SandboxClaimSpec {
                warm_pool_ref: NameRef { name: pool },
                additional_pod_metadata: Some(PodMetadata {
                    labels: Some(labels),
                    annotations: None,
                }),
                ..SandboxClaimSpec::default()
            },
            status: None,
        };
        self.claims
            .create(&PostParams::default(), &claim)
            .await
            .map_err(|e| failed(&format!("creating the SandboxClaim {name}"), &e))?;
        let deadline = tokio::time::Instant::now() + bound;
        let got = loop {
            match self.claims.get(&name).await {
                Ok(claim) => {
                    if let Some(sandbox) = extensions::claimed_sandbox(&claim) {
                        break Some(sandbox.to_string());
                    }
                }
                Err(e) => tracing::warn!(claim = %name, error = %message(&e), "reading a claim"),
            }
            if tokio::time::Instant::now() + CLAIM_POLL > deadline {
                break None;
            }
            tokio::time::sleep(CLAIM_POLL).await;
        };
        let warm = match &got {
            Some(sandbox) => match self.sandboxes.get(sandbox).await {
                Ok(s) => extensions::labels_of(&s.metadata)
                    .get(LAUNCH_TYPE_LABEL)
                    .is_some_and(|t| t == "warm"),
                Err(_) => false,
            },
            None => false,
        };
        if !warm {
            tracing::info!(claim = %name, got = ?got, "the claim got no warm sandbox in time");
            self.release_inner(request).await?;
            return Ok(None);
        }
        Ok(got.map(SandboxHandle))
    }

    async fn adopt_inner(
        &self,
        handle: &SandboxHandle,
        request: &SpawnRequest,
    ) -> Result<(), SandboxError> {
        let claim = claim_name(&request.sandbox_id);
        self.shared
            .tracked
            .created(&handle.0, &request.sandbox_id, now_secs());
        lock(&self.shared.claims).insert(handle.0.clone(), claim);
        let labels = manifest::labels(request, &self.config.instance);
        let patch = Patch::Merge(json!({"metadata": {"labels": labels}}));
        if let Err(e) = self
            .sandboxes
            .patch(&handle.0, &PatchParams::default(), &patch)
            .await
        {
            self.shared.tracked.forget(&handle.0);
            return Err(failed(&format!("labelling the Sandbox {}", handle.0), &e));
        }
        Ok(())
    }

    async fn release_inner(&self, request: &SpawnRequest) -> Result<(), SandboxError> {
        let name = claim_name(&request.sandbox_id);
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..DeleteParams::default()
        };
        match self.claims.delete(&name, &params).await {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, 404) => Ok(()),
            Err(e) => Err(failed(&format!("deleting the SandboxClaim {name}"), &e)),
        }
    }

    async fn member_inner(
        &self,
        pool_name: &str,
        pod: &str,
        uid: &str,
    ) -> Result<Option<PoolMember>, SandboxError> {
        let Some(key) = lock(&self.names).get(pool_name).cloned() else {
            return Ok(None);
        };
        let found = match self.pods.get(pod).await {
            Ok(found) => found,
            Err(e) if is_status(&e, 404) => return Ok(None),
            Err(e) => return Err(failed(&format!("reading the pod {pod}"), &e)),
        };
        let meta = &found.metadata;
        let labels = extensions::labels_of(meta);
        let hash = extensions::name_hash(pool_name);
        let phase = found
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or("Pending");
        let owner = meta
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.kind == agent_sandbox::KIND && o.controller == Some(true))
            .map(|o| o.name.clone());
        let is_member = meta.uid.as_deref() == Some(uid)
            && meta.deletion_timestamp.is_none()
            && labels.get(WARM_POOL_LABEL) == Some(&hash)
            && labels.get(TEMPLATE_REF_HASH_LABEL) == Some(&hash)
            && labels.get(INSTANCE_LABEL) == Some(&self.config.instance)
            && matches!(phase, "Pending" | "Running");
        let (true, Some(sandbox)) = (is_member, owner) else {
            return Ok(None);
        };
        let created_ms = meta
            .creation_timestamp
            .as_ref()
            .map_or_else(|| now_secs() * 1000, |t| t.0.as_millisecond());
        Ok(Some(PoolMember {
            handle: SandboxHandle(sandbox),
            pool: key,
            created_ms,
        }))
    }

    async fn tend_inner(&self, key: &str) -> Result<BTreeSet<String>, SandboxError> {
        let name = self.pool_name(key);
        let selector = format!("{TEMPLATE_REF_HASH_LABEL}={}", extensions::name_hash(&name));
        let list = self
            .sandboxes
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| failed(&format!("listing the Sandboxes of {name}"), &e))?;
        let mut live = BTreeSet::new();
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..DeleteParams::default()
        };
        for sandbox in &list.items {
            let Some(sandbox_name) = sandbox.metadata.name.as_deref() else {
                continue;
            };
            if sandbox.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let ended = matches!(
                agent_sandbox::classify(sandbox),
                SandboxState::Succeeded | SandboxState::Failed
            );
            if !ended {
                live.insert(sandbox_name.to_string());
                continue;
            }
            let waiting = extensions::labels_of(&sandbox.metadata).contains_key(WARM_POOL_LABEL);
            if waiting {
                // The pool counts it until it is gone; a claimed one is its launch's to end.
                match self.sandboxes.delete(sandbox_name, &params).await {
                    Ok(_) => tracing::info!(pool = %name, sandbox = %sandbox_name,
                        "a waiting sandbox of the pool ended: deleted, to be replaced"),
                    Err(e) if is_status(&e, 404) => {}
                    Err(e) => {
                        return Err(failed(&format!("deleting the Sandbox {sandbox_name}"), &e));
                    }
                }
            }
        }
        Ok(live)
    }
}

/// The claim of a sandbox: `omoi-<sandbox id>-claim`.
pub fn claim_name(sandbox_id: &str) -> String {
    format!("{}-claim", manifest::pod_name(sandbox_id))
}

impl WarmPools for Pools {
    fn pool_name(&self, pool: &str) -> String {
        let hash = extensions::name_hash(&format!("{}\0{pool}", self.config.instance));
        format!("omoi-pool-{hash}")
    }

    fn keep<'a>(
        &'a self,
        pool: &'a str,
        replicas: u32,
        env: &'a BTreeMap<String, String>,
    ) -> BoxFuture<'a, Result<(), SandboxError>> {
        async move {
            let name = self.pool_name(pool);
            lock(&self.names).insert(name.clone(), pool.to_string());
            let uid = self.keep_template(&name, pool).await?;
            let replaced = self.keep_secret(&name, &uid, env).await?;
            self.keep_pool(&name, replicas).await?;
            if replaced {
                self.renew(&name).await?;
            }
            Ok(())
        }
        .boxed()
    }

    fn member<'a>(
        &'a self,
        pool_name: &'a str,
        pod: &'a str,
        uid: &'a str,
    ) -> BoxFuture<'a, Result<Option<PoolMember>, SandboxError>> {
        self.member_inner(pool_name, pod, uid).boxed()
    }

    fn tend<'a>(&'a self, pool: &'a str) -> BoxFuture<'a, Result<BTreeSet<String>, SandboxError>> {
        self.tend_inner(pool).boxed()
    }

    fn claim<'a>(
        &'a self,
        request: &'a SpawnRequest,
        bound: Duration,
    ) -> BoxFuture<'a, Result<Option<SandboxHandle>, SandboxError>> {
        self.claim_inner(request, bound).boxed()
    }

    fn adopt<'a>(
        &'a self,
        handle: &'a SandboxHandle,
        request: &'a SpawnRequest,
    ) -> BoxFuture<'a, Result<(), SandboxError>> {
        self.adopt_inner(handle, request).boxed()
    }

    fn release<'a>(&'a self, request: &'a SpawnRequest) -> BoxFuture<'a, Result<(), SandboxError>> {
        self.release_inner(request).boxed()
    }
}

/// Whether the cluster serves the extensions (`SandboxTemplate`, `SandboxWarmPool`,
/// `SandboxClaim` of `extensions.agents.x-k8s.io/v1beta1`).
pub async fn served(client: &kube::Client) -> bool {
    match client
        .list_api_group_resources(extensions::API_VERSION)
        .await
    {
        Ok(list) => extensions::RESOURCES
            .iter()
            .all(|wanted| list.resources.iter().any(|r| r.name == *wanted)),
        Err(e) => {
            tracing::debug!(error = %e, "no agent-sandbox extensions");
            false
        }
    }
}
