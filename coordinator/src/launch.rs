//! Launching sandboxes: the one place that builds a worker's environment (DESIGN §3.2), its
//! labels and its spawn request, for spec phases and task attempts alike, and hands them to the
//! provider.
//!
//! The sandbox itself comes from [`pool::start`]: a warm standby when its pool has one, else a
//! cold spawn; the environment built here is the same either way.
//!
//! A spec sandbox gets its phase context inline as `PHASE_CONTEXT_B64`, or as `PHASE_CONTEXT_URL`
//! when it is too large for one environment variable. A task sandbox's workspace starts empty:
//! the worker fetches the repository itself, so a token reaches git only through the worker's
//! credential helper.

use std::collections::BTreeMap;

use base64::Engine;
use omoi_protocol::context::PhaseContext;
use omoi_protocol::env;
use omoi_protocol::phase::Phase;
use omoi_protocol::task::{SpecRecord, TaskContext};
use serde::Serialize;

use crate::app::{AppState, Settings};
use crate::error::{Error, Result};
use crate::model::{Project, Sandbox, SandboxStatus, Spec};
use crate::pool::{self, Started};
use crate::sandbox::{
    Limits, OWNER, OWNER_LABEL, SANDBOX_LABEL, SPEC_LABEL, SandboxHandle, SpawnRequest, TASK_LABEL,
};
use crate::store::{ClaimedTask, NewSandbox, new_id};

/// Variables the coordinator sets itself; a project cannot override them. (`OMOI_GIT_TOKEN` comes
/// from the project's `git_token`, which is never served back, and goes to task sandboxes only.)
pub const RESERVED_ENV: [&str; 16] = [
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
    env::REPO_URL,
    env::BASE_BRANCH,
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

/// `value` as JSON in base64, and whether `NAME=<it>` with its terminating NUL fits one
/// environment string.
fn base64_json(value: &impl Serialize, name: &str, what: &str) -> Result<(String, bool)> {
    let json = serde_json::to_vec(value)
        .map_err(|e| Error::Internal(format!("encoding the {what}: {e}")))?;
    let encoded = base64::engine::general_purpose::STANDARD.encode(json);
    let fits = name.len() + 1 + encoded.len() < env::MAX_ENV_VALUE_BYTES;
    Ok((encoded, fits))
}

/// Room left in `TASK_CONTEXT_B64` for the task and its slice when the context also carries the
/// final spec.
const ROOM_FOR_THE_TASK: usize = 16 * 1024;

/// Whether the final spec, as a task context carries it, leaves [`ROOM_FOR_THE_TASK`] in one
/// environment string. A record that does not is not handed to any task, so the spec is not
/// recorded in the repository (and the pull request does not say it is).
pub fn record_fits(record: &SpecRecord) -> bool {
    base64_json(record, env::TASK_CONTEXT_B64, "spec record")
        .is_ok_and(|(encoded, _)| encoded.len() + ROOM_FOR_THE_TASK < env::MAX_ENV_VALUE_BYTES)
}

/// Inline when `PHASE_CONTEXT_B64=<value>` fits in one environment string, else by URL.
pub fn context_delivery(
    context: &PhaseContext,
    public_url: &str,
    sandbox_id: &str,
) -> Result<ContextDelivery> {
    let (encoded, fits) = base64_json(context, env::PHASE_CONTEXT_B64, "phase context")?;
    if fits {
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
    /// The worker clones the repository itself (the provider shares no disk with it).
    pub clones: bool,
}

/// Everything that varies per spawned task sandbox.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskLaunch<'a> {
    pub project: &'a Project,
    pub context: &'a TaskContext,
    pub sandbox_id: &'a str,
    pub token: &'a str,
}

/// `TASK_CONTEXT_B64` of a context; an error when it cannot fit one environment variable.
pub fn encode_context(context: &TaskContext) -> Result<String> {
    let (encoded, fits) = base64_json(context, env::TASK_CONTEXT_B64, "task context")?;
    if fits {
        Ok(encoded)
    } else if context.spec_record.is_some() {
        // The task itself matters more than the record of the spec: it runs without it.
        tracing::warn!(
            spec = %context.spec_id, task = %context.task.id, bytes = encoded.len(),
            "the final spec does not fit the task's environment with it: this task will not \
             record the spec in the repository"
        );
        encode_context(&TaskContext {
            spec_record: None,
            ..context.clone()
        })
    } else {
        Err(Error::Invalid(format!(
            "the context of {} is {} bytes in base64, more than one environment variable holds",
            context.task.id,
            encoded.len()
        )))
    }
}

/// The part of a worker's environment every sandbox shares: the server's worker settings, the
/// project's (which win), then the variables that tell the worker who it is and where the
/// coordinator is (which nobody overrides).
fn base_env(
    settings: &Settings,
    project: &Project,
    sandbox_id: &str,
    token: &str,
) -> BTreeMap<String, String> {
    let mut vars = settings.worker_env.clone();
    vars.extend(project.worker_env.clone());
    vars.extend(
        project
            .worker_secrets
            .iter()
            .map(|(name, value)| (name.clone(), value.expose().to_string())),
    );
    for name in RESERVED_ENV {
        vars.remove(name);
    }
    let mut set = |name: &str, value: &str| {
        vars.insert(name.to_string(), value.to_string());
    };
    set(env::OMOIOS_API_URL, &settings.public_url);
    set(env::OMOIOS_PROJECT_ID, &project.id);
    set(env::SANDBOX_ID, sandbox_id);
    set(env::SANDBOX_TOKEN, token);
    set(env::HEARTBEAT_SECS, &settings.heartbeat_secs.to_string());
    vars
}

/// The worker environment of a spec sandbox: [`base_env`], then the spec, the phase and the
/// context; where the worker clones the repository itself, its address, base branch and the
/// project's git token.
pub fn phase_env(settings: &Settings, launch: &PhaseLaunch<'_>) -> BTreeMap<String, String> {
    let mut vars = base_env(settings, launch.project, launch.sandbox_id, launch.token);
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
    if launch.clones {
        set(env::REPO_URL, &launch.project.repo_url);
        set(env::BASE_BRANCH, &launch.project.base_branch);
        if let Some(token) = &launch.project.git_token {
            set(env::GIT_TOKEN, token.expose());
        }
    }
    vars
}

/// The worker environment of a task sandbox: [`base_env`], then the task, its context and the
/// project's git token. `TASK_ID` is the spec's id of the task (`TSK-NNN`), as the worker checks
/// it against the context.
pub fn task_env(settings: &Settings, launch: &TaskLaunch<'_>) -> Result<BTreeMap<String, String>> {
    let context = encode_context(launch.context)?;
    let mut vars = base_env(settings, launch.project, launch.sandbox_id, launch.token);
    let mut set = |name: &str, value: &str| {
        vars.insert(name.to_string(), value.to_string());
    };
    set(env::TASK_ID, &launch.context.task.id);
    set(env::TASK_CONTEXT_B64, &context);
    set(env::EXECUTION_MODE, "implementation");
    if let Some(token) = &launch.project.git_token {
        set(env::GIT_TOKEN, token.expose());
    }
    Ok(vars)
}

/// The labels of a sandbox: the owner, the sandbox, its spec and, for a task attempt, the task
/// (the coordinator's task id).
pub fn labels(sandbox_id: &str, spec_id: &str, task_id: Option<&str>) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (OWNER_LABEL.to_string(), OWNER.to_string()),
        (SANDBOX_LABEL.to_string(), sandbox_id.to_string()),
        (SPEC_LABEL.to_string(), spec_id.to_string()),
    ]);
    if let Some(task_id) = task_id {
        labels.insert(TASK_LABEL.to_string(), task_id.to_string());
    }
    labels
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
            clones: state.provider.clones_repository(),
        },
    );
    let request = SpawnRequest {
        sandbox_id: sandbox_id.clone(),
        image: project.image.clone(),
        image_pull_secrets: project.image_pull_secrets.clone(),
        env,
        labels: labels(&sandbox_id, &spec.id, None),
        limits: Limits::default(),
        repo: Some(project.repo_url.clone()),
    };
    match pool::start(state, request).await {
        Ok(Started {
            handle: SandboxHandle(handle),
            replica_id,
            warm,
        }) => {
            state
                .store
                .set_sandbox_handle(&sandbox_id, &handle, &replica_id)
                .await?;
            if !warm {
                state.metrics.sandbox_spawned();
            }
            tracing::info!(spec = %spec.id, sandbox = %sandbox_id, %phase, warm, "spec sandbox started");
            Ok(Sandbox {
                handle: Some(handle),
                ..sandbox
            })
        }
        Err(e) => {
            // The sandbox keeps the provider's own words.
            let reason = match &e {
                Error::Sandbox(provider) => provider.to_string(),
                other => other.to_string(),
            };
            state
                .store
                .end_sandbox(&sandbox_id, SandboxStatus::Failed, Some(&reason))
                .await?;
            Err(e)
        }
    }
}

/// Spawns (or takes warm) the sandbox recorded for the attempt of `claimed` (a task of `spec`)
/// and answers how it started, for the caller to store. On an error the caller ends the
/// sandbox and the attempt.
pub async fn spawn_for_task(
    state: &AppState,
    spec: &Spec,
    project: &Project,
    claimed: &ClaimedTask,
    context: &TaskContext,
) -> Result<Started> {
    let sandbox_id = &claimed.sandbox.id;
    let env = task_env(
        &state.settings,
        &TaskLaunch {
            project,
            context,
            sandbox_id,
            token: &claimed.token,
        },
    )?;
    let request = SpawnRequest {
        sandbox_id: sandbox_id.clone(),
        image: project.image.clone(),
        image_pull_secrets: project.image_pull_secrets.clone(),
        env,
        labels: labels(sandbox_id, &spec.id, Some(&claimed.id)),
        limits: Limits::default(),
        repo: None,
    };
    let started = pool::start(state, request).await?;
    if !started.warm {
        state.metrics.sandbox_spawned();
    }
    tracing::info!(
        spec = %spec.id, task = %context.task.id, sandbox = %sandbox_id, warm = started.warm,
        "task sandbox started"
    );
    Ok(started)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use omoi_protocol::artifact::{Priority, SpecTask, TaskKind};
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
            image_pull_secrets: Vec::new(),
            worker_env: BTreeMap::from([
                ("OMOI_LLM".to_string(), "scripted".to_string()),
                ("SANDBOX_TOKEN".to_string(), "stolen".to_string()),
            ]),
            secret_env: Vec::new(),
            worker_secrets: BTreeMap::new(),
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
                clones: false,
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

    fn context(description: String) -> TaskContext {
        TaskContext {
            task: SpecTask {
                id: "TSK-007".into(),
                title: "t".into(),
                description,
                kind: TaskKind::Implementation,
                priority: Priority::Low,
                estimate_hours: 1.0,
                files: vec![],
                acceptance_criteria: vec![],
                depends_on: vec![],
                requirements: vec![],
            },
            spec_id: "s".into(),
            spec_title: "t".into(),
            spec_description: String::new(),
            requirements: vec![],
            components: vec![],
            repo_url: "/r".into(),
            base_branch: "main".into(),
            branch: "omoi/s".into(),
            validation_command: None,
            spec_record: None,
        }
    }

    #[test]
    fn a_context_round_trips_through_base64_and_one_too_large_is_refused() {
        let small = context("d".into());
        let encoded = encode_context(&small).unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        assert_eq!(
            serde_json::from_slice::<TaskContext>(&decoded).unwrap(),
            small
        );
        let large = context("x".repeat(env::MAX_ENV_VALUE_BYTES));
        let error = encode_context(&large).unwrap_err().to_string();
        assert!(
            error.starts_with("the context of TSK-007 is ")
                && error.ends_with(" bytes in base64, more than one environment variable holds"),
            "{error}"
        );
    }

    #[test]
    fn a_spec_record_too_large_for_the_environment_is_left_out_not_the_task() {
        let record = |overview: String| omoi_protocol::task::SpecRecord {
            dir: ".kiro/specs/t".into(),
            requirements: omoi_protocol::artifact::RequirementsOutput {
                requirements: vec![],
            },
            design: omoi_protocol::artifact::DesignOutput {
                overview,
                components: vec![],
                data_models: vec![],
                apis: vec![],
                error_handling: String::new(),
                testing_strategy: String::new(),
                security: String::new(),
            },
            tasks: omoi_protocol::artifact::TasksOutput { tasks: vec![] },
        };
        let decode = |encoded: String| -> TaskContext {
            let json = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .unwrap();
            serde_json::from_slice(&json).unwrap()
        };
        let small = TaskContext {
            spec_record: Some(record("o".into())),
            ..context("d".into())
        };
        assert_eq!(decode(encode_context(&small).unwrap()), small);
        let large = TaskContext {
            spec_record: Some(record("o".repeat(env::MAX_ENV_VALUE_BYTES))),
            ..context("d".into())
        };
        assert_eq!(decode(encode_context(&large).unwrap()), context("d".into()));
    }

    #[test]
    fn a_task_sandbox_carries_the_task_label_besides_the_spec_sandbox_labels() {
        let labels_of = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            labels("sb-1", "spec-1", None),
            labels_of(&[
                ("omoi.owner", "omoi"),
                ("omoi.sandbox", "sb-1"),
                ("omoi.spec", "spec-1"),
            ])
        );
        assert_eq!(
            labels("sb-2", "spec-1", Some("task-9")),
            labels_of(&[
                ("omoi.owner", "omoi"),
                ("omoi.sandbox", "sb-2"),
                ("omoi.spec", "spec-1"),
                ("omoi.task", "task-9"),
            ])
        );
    }
}
