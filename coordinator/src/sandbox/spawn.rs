//! Spawning the sandbox of a spec phase: its record, token, environment (DESIGN §3.2) and the
//! phase context built from the stored checkpoints — inline as `PHASE_CONTEXT_B64`, or as
//! `PHASE_CONTEXT_URL` when it is too large for one environment variable.

use std::collections::BTreeMap;

use base64::Engine;
use omoi_protocol::context::PhaseContext;
use omoi_protocol::env;
use omoi_protocol::phase::Phase;

use super::{Limits, OWNER_LABEL, SANDBOX_LABEL, SPEC_LABEL, SandboxHandle, SpawnRequest};
use crate::error::{Error, Result};
use crate::model::{Project, Sandbox, SandboxStatus, Spec};
use crate::server::{AppState, Settings};
use crate::store::{NewSandbox, new_id};

/// The value of [`OWNER_LABEL`] on every sandbox of an omoi coordinator.
pub const OWNER: &str = "omoi";

/// Variables the coordinator sets itself; a project cannot override them. (`OMOI_GIT_TOKEN` comes
/// from the project's `git_token`, which is never served back, and goes to task sandboxes only.)
pub const RESERVED_ENV: [&str; 14] = [
    env::SPEC_ID,
    env::SPEC_PHASE,
    env::PHASE_CONTEXT_B64,
    env::PHASE_CONTEXT_URL,
    env::SPEC_STOP_AFTER,
    env::OMOIOS_API_URL,
    env::OMOIOS_PROJECT_ID,
    env::SANDBOX_ID,
    env::SANDBOX_TOKEN,
    env::TASK_ID,
    env::TASK_CONTEXT_B64,
    env::WORKSPACE,
    env::HEARTBEAT_SECS,
    env::GIT_TOKEN,
];

/// The longest description also passed as `SPEC_DESCRIPTION`.
const MAX_DESCRIPTION_IN_ENV: usize = 32 * 1024;

/// How the worker gets its phase context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContextDelivery {
    /// `PHASE_CONTEXT_B64` with this value.
    Inline(String),
    /// `PHASE_CONTEXT_URL` with this value (fetched with the sandbox token).
    Url(String),
}

/// Inline when `PHASE_CONTEXT_B64=<value>` fits in one environment string, else by URL.
pub fn context_delivery(
    context: &PhaseContext,
    public_url: &str,
    sandbox_id: &str,
) -> Result<ContextDelivery> {
    let json = serde_json::to_vec(context)
        .map_err(|e| Error::Internal(format!("encoding the phase context: {e}")))?;
    let encoded = base64::engine::general_purpose::STANDARD.encode(json);
    // `NAME=value` and the terminating NUL must fit.
    if env::PHASE_CONTEXT_B64.len() + 1 + encoded.len() < env::MAX_ENV_VALUE_BYTES {
        Ok(ContextDelivery::Inline(encoded))
    } else {
        Ok(ContextDelivery::Url(format!(
            "{public_url}/api/v1/sandboxes/{sandbox_id}/context"
        )))
    }
}

/// Everything that varies per spawned spec sandbox.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseLaunch<'a> {
    pub spec: &'a Spec,
    pub project: &'a Project,
    pub sandbox_id: &'a str,
    pub token: &'a str,
    pub phase: Phase,
    pub context: ContextDelivery,
}

/// The worker environment of a spec sandbox: the server's worker settings, the project's (which
/// win), then what the coordinator sets itself (which nobody overrides).
pub fn phase_env(settings: &Settings, launch: &PhaseLaunch<'_>) -> BTreeMap<String, String> {
    let mut vars = settings.worker_env.clone();
    vars.extend(launch.project.worker_env.clone());
    for name in RESERVED_ENV {
        vars.remove(name);
    }
    let mut set = |name: &str, value: &str| {
        vars.insert(name.to_string(), value.to_string());
    };
    set(env::SPEC_ID, &launch.spec.id);
    set(env::SPEC_PHASE, launch.phase.as_str());
    // The context carries the request (and wins); these only help someone reading the
    // environment, so a description too long for one variable is left out.
    set(env::SPEC_TITLE, &launch.spec.title);
    if launch.spec.description.len() <= MAX_DESCRIPTION_IN_ENV {
        set(env::SPEC_DESCRIPTION, &launch.spec.description);
    }
    match &launch.context {
        ContextDelivery::Inline(b64) => set(env::PHASE_CONTEXT_B64, b64),
        ContextDelivery::Url(url) => set(env::PHASE_CONTEXT_URL, url),
    }
    if let Some(stop) = launch.spec.stop_after {
        set(env::SPEC_STOP_AFTER, stop.as_str());
    }
    set(env::EXECUTION_MODE, "exploration");
    set(env::OMOIOS_API_URL, &settings.public_url);
    set(env::OMOIOS_PROJECT_ID, &launch.project.id);
    set(env::SANDBOX_ID, launch.sandbox_id);
    set(env::SANDBOX_TOKEN, launch.token);
    set(env::HEARTBEAT_SECS, &settings.heartbeat_secs.to_string());
    vars
}

/// Spawns a sandbox that runs `spec` from `phase` with `context`. On failure the sandbox is
/// recorded as failed and the error returned (the caller decides what happens to the spec).
pub async fn spawn_for_phase(
    state: &AppState,
    spec: &Spec,
    project: &Project,
    phase: Phase,
    context: PhaseContext,
) -> Result<Sandbox> {
    let sandbox_id = new_id();
    let delivery = context_delivery(&context, &state.settings.public_url, &sandbox_id)?;
    let (sandbox, token) = state
        .store
        .open_sandbox(&NewSandbox {
            id: sandbox_id.clone(),
            spec_id: Some(spec.id.clone()),
            task_id: None,
            provider: state.provider.name().to_string(),
            start_phase: Some(phase),
            context: Some(context),
        })
        .await?;
    let env = phase_env(
        &state.settings,
        &PhaseLaunch {
            spec,
            project,
            sandbox_id: &sandbox_id,
            token: &token,
            phase,
            context: delivery,
        },
    );
    let labels = BTreeMap::from([
        (OWNER_LABEL.to_string(), OWNER.to_string()),
        (SANDBOX_LABEL.to_string(), sandbox_id.clone()),
        (SPEC_LABEL.to_string(), spec.id.clone()),
    ]);
    let request = SpawnRequest {
        sandbox_id: sandbox_id.clone(),
        image: project.image.clone(),
        env,
        labels,
        limits: Limits::default(),
        repo: Some(project.repo_url.clone()),
    };
    match state.provider.spawn(request).await {
        Ok(SandboxHandle(handle)) => {
            state.store.set_sandbox_handle(&sandbox_id, &handle).await?;
            state.metrics.sandbox_spawned();
            tracing::info!(spec = %spec.id, sandbox = %sandbox_id, %phase, "spec sandbox spawned");
            Ok(Sandbox {
                handle: Some(handle),
                ..sandbox
            })
        }
        Err(e) => {
            let reason = e.to_string();
            state
                .store
                .end_sandbox(&sandbox_id, SandboxStatus::Failed, Some(&reason))
                .await?;
            Err(Error::Sandbox(e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use pretty_assertions::assert_eq;

    use crate::model::SpecStatus;

    fn spec() -> Spec {
        Spec {
            id: "spec-1".into(),
            project_id: "p-1".into(),
            title: "Add a flag".into(),
            description: "Add --verbose".into(),
            status: SpecStatus::Executing,
            current_phase: Some(Phase::Design),
            error: None,
            stop_after: Some(Phase::Tasks),
            recoveries: 0,
            branch: None,
            pull_request: None,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    fn project() -> Project {
        Project {
            id: "p-1".into(),
            name: "sample".into(),
            repo_url: "/repo".into(),
            base_branch: "main".into(),
            validation_command: None,
            provider: "local".into(),
            image: None,
            worker_env: BTreeMap::from([
                ("OMOI_LLM".to_string(), "scripted".to_string()),
                ("SANDBOX_TOKEN".to_string(), "stolen".to_string()),
            ]),
            github_api_url: None,
            has_git_token: false,
            git_token: None,
            created_at: Utc::now(),
        }
    }

    #[test]
    fn the_env_layers_server_then_project_then_the_coordinator() {
        let mut settings = Settings::new("http://127.0.0.1:9/");
        settings.worker_env = BTreeMap::from([
            ("OMOI_LLM".to_string(), "anthropic".to_string()),
            ("MODEL".to_string(), "m".to_string()),
        ]);
        let (spec, project) = (spec(), project());
        let env = phase_env(
            &settings,
            &PhaseLaunch {
                spec: &spec,
                project: &project,
                sandbox_id: "sb-1",
                token: "tok",
                phase: Phase::Design,
                context: ContextDelivery::Inline("e30=".into()),
            },
        );
        let expected: BTreeMap<String, String> = [
            ("EXECUTION_MODE", "exploration"),
            ("HEARTBEAT_SECS", "10"),
            ("MODEL", "m"),
            ("OMOIOS_API_URL", "http://127.0.0.1:9"),
            ("OMOIOS_PROJECT_ID", "p-1"),
            ("OMOI_LLM", "scripted"),
            ("PHASE_CONTEXT_B64", "e30="),
            ("SANDBOX_ID", "sb-1"),
            ("SANDBOX_TOKEN", "tok"),
            ("SPEC_DESCRIPTION", "Add --verbose"),
            ("SPEC_ID", "spec-1"),
            ("SPEC_PHASE", "design"),
            ("SPEC_STOP_AFTER", "tasks"),
            ("SPEC_TITLE", "Add a flag"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(env, expected);
    }

    #[test]
    fn a_large_context_goes_by_url() {
        let small = PhaseContext {
            title: "t".into(),
            ..PhaseContext::default()
        };
        let ContextDelivery::Inline(b64) = context_delivery(&small, "http://h", "sb").unwrap()
        else {
            panic!("a small context is inline");
        };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(
            serde_json::from_slice::<PhaseContext>(&decoded).unwrap(),
            small
        );

        let large = PhaseContext {
            title: "t".into(),
            description: "x".repeat(env::MAX_ENV_VALUE_BYTES),
            ..PhaseContext::default()
        };
        assert_eq!(
            context_delivery(&large, "http://h", "sb").unwrap(),
            ContextDelivery::Url("http://h/api/v1/sandboxes/sb/context".into())
        );
    }
}
