//! The context of one task in task mode (`TASK_CONTEXT_B64`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::artifact::{Component, Requirement, SpecTask};

/// Everything a task sandbox needs: the task, its spec context, where the code lives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskContext {
    pub task: SpecTask,
    pub spec_id: String,
    pub spec_title: String,
    #[serde(default)]
    pub spec_description: String,
    /// The requirements this task serves, in full.
    #[serde(default)]
    pub requirements: Vec<Requirement>,
    /// The design components that serve those requirements.
    #[serde(default)]
    pub components: Vec<Component>,
    /// Git URL or local path of the repository.
    pub repo_url: String,
    pub base_branch: String,
    /// The spec branch every task of the spec commits to.
    pub branch: String,
    /// Shell command that must pass before a commit, e.g. `cargo test`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_command: Option<String>,
}
