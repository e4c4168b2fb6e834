//! Spawning the sandbox of a task attempt: its record, token, environment (DESIGN §3.2, task
//! mode) and the task context, through the same provider as the spec sandboxes.
//!
//! The workspace starts empty: the worker fetches the repository itself, so a token reaches git
//! only through the worker's credential helper.

use std::collections::BTreeMap;

use base64::Engine;
use omoi_protocol::env;
use omoi_protocol::task::TaskContext;

use super::spawn::{OWNER, RESERVED_ENV};
use super::{Limits, OWNER_LABEL, SANDBOX_LABEL, SPEC_LABEL, SandboxHandle, SpawnRequest};
use crate::error::{Error, Result};
use crate::model::{Project, Spec};
use crate::server::{AppState, Settings};
use crate::store::ClaimedTask;

/// The label that names the task a sandbox runs (the coordinator's task id).
pub const TASK_LABEL: &str = "omoi.task";

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
    let json = serde_json::to_vec(context)
        .map_err(|e| Error::Internal(format!("encoding the task context: {e}")))?;
    let encoded = base64::engine::general_purpose::STANDARD.encode(json);
    if env::TASK_CONTEXT_B64.len() + 1 + encoded.len() < env::MAX_ENV_VALUE_BYTES {
        Ok(encoded)
    } else {
        Err(Error::Invalid(format!(
            "the context of {} is {} bytes in base64, more than one environment variable holds",
            context.task.id,
            encoded.len()
        )))
    }
}

/// The worker environment of a task sandbox: the server's worker settings, the project's (which
/// win), then what the coordinator sets itself (which nobody overrides). `TASK_ID` is the spec's
/// id of the task (`TSK-NNN`), as the worker checks it against the context.
pub fn task_env(settings: &Settings, launch: &TaskLaunch<'_>) -> Result<BTreeMap<String, String>> {
    let mut vars = settings.worker_env.clone();
    vars.extend(launch.project.worker_env.clone());
    for name in RESERVED_ENV {
        vars.remove(name);
    }
    let context = encode_context(launch.context)?;
    let mut set = |name: &str, value: &str| {
        vars.insert(name.to_string(), value.to_string());
    };
    set(env::TASK_ID, &launch.context.task.id);
    set(env::TASK_CONTEXT_B64, &context);
    set(env::EXECUTION_MODE, "implementation");
    set(env::OMOIOS_API_URL, &settings.public_url);
    set(env::OMOIOS_PROJECT_ID, &launch.project.id);
    set(env::SANDBOX_ID, launch.sandbox_id);
    set(env::SANDBOX_TOKEN, launch.token);
    set(env::HEARTBEAT_SECS, &settings.heartbeat_secs.to_string());
    if let Some(token) = &launch.project.git_token {
        set(env::GIT_TOKEN, token.expose());
    }
    Ok(vars)
}

/// Spawns the sandbox recorded for the attempt of `claimed` (a task of `spec`) and answers the
/// provider's handle, for the caller to store. On an error the caller ends the sandbox and the
/// attempt.
pub async fn spawn_for_task(
    state: &AppState,
    spec: &Spec,
    project: &Project,
    claimed: &ClaimedTask,
    context: &TaskContext,
) -> Result<String> {
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
    let labels = BTreeMap::from([
        (OWNER_LABEL.to_string(), OWNER.to_string()),
        (SANDBOX_LABEL.to_string(), sandbox_id.clone()),
        (SPEC_LABEL.to_string(), spec.id.clone()),
        (TASK_LABEL.to_string(), claimed.id.clone()),
    ]);
    let request = SpawnRequest {
        sandbox_id: sandbox_id.clone(),
        image: project.image.clone(),
        env,
        labels,
        limits: Limits::default(),
        repo: None,
    };
    let SandboxHandle(handle) = state.provider.spawn(request).await?;
    state.metrics.sandbox_spawned();
    tracing::info!(
        spec = %spec.id, task = %context.task.id, sandbox = %sandbox_id,
        "task sandbox spawned"
    );
    Ok(handle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use omoi_protocol::artifact::{Priority, SpecTask, TaskKind};
    use pretty_assertions::assert_eq;

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
}
