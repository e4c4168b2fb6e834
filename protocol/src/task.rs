//! The context of one task in task mode (`TASK_CONTEXT_B64`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::artifact::{
    Component, DesignOutput, Requirement, RequirementsOutput, SpecTask, TasksOutput,
};

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
    /// The final spec to record in the repository with this task's commit; given to the tasks
    /// that depend on no other (one of them lands first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_record: Option<SpecRecord>,
}

/// The final spec as it lands in the repository: a Kiro spec folder (`requirements.md`,
/// `design.md`, `tasks.md`) at `dir`, written with the commit of the task that carries it unless
/// the branch holds it already.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SpecRecord {
    /// The folder, relative to the repository's root: `.kiro/specs/<name>`.
    pub dir: String,
    pub requirements: RequirementsOutput,
    pub design: DesignOutput,
    pub tasks: TasksOutput,
}
