//! The outputs of each spec phase, and the final spec the coordinator bridges into tasks.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::phase::Phase;

/// EXPLORE: what the agent learned about the repository.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ExploreOutput {
    /// What the codebase is and does, in a few sentences.
    pub summary: String,
    /// The kind of project, e.g. "cli", "web service", "library".
    pub project_type: String,
    /// Languages, frameworks and tools in use.
    pub tech_stack: Vec<String>,
    /// Files that matter for the feature, each with why. Every path must exist in the workspace.
    pub key_files: Vec<KeyFile>,
    /// Coding conventions observed (naming, layout, error handling, tests).
    pub conventions: Vec<String>,
    /// Where execution starts (binaries, main modules, handlers).
    pub entry_points: Vec<String>,
    /// How and where tests live and run.
    pub test_layout: String,
    /// Open questions about the request.
    #[serde(default)]
    pub questions: Vec<String>,
}

/// A file of the workspace and its purpose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct KeyFile {
    /// Path relative to the workspace root.
    pub path: String,
    pub purpose: String,
}

/// REQUIREMENTS: the EARS requirements of the feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RequirementsOutput {
    pub requirements: Vec<Requirement>,
}

/// One requirement, `REQ-<AREA>-<NNN>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Requirement {
    /// `REQ-<AREA>-<NNN>`: AREA is 2–12 uppercase letters or digits, NNN three digits.
    pub id: String,
    pub title: String,
    /// The requirement in one EARS pattern with SHALL.
    pub text: String,
    #[serde(rename = "type")]
    pub kind: RequirementKind,
    pub priority: Priority,
    /// At least two testable criteria.
    pub acceptance_criteria: Vec<String>,
}

/// What kind of requirement it is. A documentation, process or constraint requirement may be
/// met without a code component: the design then says how it is met (naming its id in its text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequirementKind {
    Functional,
    NonFunctional,
    Constraint,
    /// Documentation to write (a guide, a runbook, API docs).
    Documentation,
    /// A way of working: a review, a test campaign, a release step.
    Process,
}

impl RequirementKind {
    /// Whether a requirement of this kind may be met without a code component.
    pub fn needs_no_component(self) -> bool {
        match self {
            RequirementKind::Functional | RequirementKind::NonFunctional => false,
            RequirementKind::Constraint
            | RequirementKind::Documentation
            | RequirementKind::Process => true,
        }
    }
}

/// Priority of a requirement or task.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Low,
    Medium,
    High,
    Critical,
}

/// DESIGN: how the requirements will be met.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DesignOutput {
    pub overview: String,
    pub components: Vec<Component>,
    #[serde(default)]
    pub data_models: Vec<DataModel>,
    #[serde(default)]
    pub apis: Vec<ApiItem>,
    pub error_handling: String,
    pub testing_strategy: String,
    pub security: String,
}

/// A component of the design and the requirements it serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Component {
    pub name: String,
    pub responsibility: String,
    #[serde(default)]
    pub interfaces: Vec<String>,
    /// Requirement ids this component serves.
    pub requirements: Vec<String>,
}

/// A data model of the design.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DataModel {
    pub name: String,
    pub description: String,
    #[serde(default)]
    pub fields: Vec<String>,
}

/// An interface the design adds or changes: a route, a function, a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ApiItem {
    pub name: String,
    /// Signature, route or usage line.
    pub signature: String,
    pub description: String,
}

/// TASKS: the work, as a dependency graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TasksOutput {
    pub tasks: Vec<SpecTask>,
}

/// One task of the spec, `TSK-<NNN>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SpecTask {
    /// `TSK-<NNN>`.
    pub id: String,
    pub title: String,
    pub description: String,
    #[serde(rename = "type")]
    pub kind: TaskKind,
    pub priority: Priority,
    pub estimate_hours: f64,
    /// Files the task is expected to touch.
    #[serde(default)]
    pub files: Vec<String>,
    pub acceptance_criteria: Vec<String>,
    /// Ids of tasks that must complete first.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Ids of the requirements this task serves.
    pub requirements: Vec<String>,
}

/// What kind of work a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    Implementation,
    Test,
    Refactor,
    Documentation,
    Configuration,
}

/// SYNC: computed from requirements and tasks, never generated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SyncOutput {
    /// For each requirement, the tasks that serve it.
    pub coverage: Vec<CoverageEntry>,
    /// Percentage of requirements served by at least one task (0..=100).
    pub coverage_percent: f64,
    /// Requirement ids no task serves.
    pub uncovered: Vec<String>,
    /// Every task id, dependencies first (ties broken by id).
    pub topological_order: Vec<String>,
    /// Waves of tasks that can run at the same time; wave n depends only on earlier waves.
    pub parallel_groups: Vec<Vec<String>>,
    /// The longest chain by estimated hours.
    pub critical_path: Vec<String>,
    pub critical_path_hours: f64,
    pub total_hours: f64,
    /// True when coverage is complete and the graph is a valid DAG.
    pub ready_for_execution: bool,
    /// What keeps the spec from execution, if anything.
    #[serde(default)]
    pub issues: Vec<String>,
}

/// The tasks serving one requirement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CoverageEntry {
    pub requirement: String,
    pub tasks: Vec<String>,
}

/// The output of one phase, tagged by the phase's name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PhaseOutput {
    Explore(ExploreOutput),
    Requirements(RequirementsOutput),
    Design(DesignOutput),
    Tasks(TasksOutput),
    Sync(SyncOutput),
}

impl PhaseOutput {
    /// The phase this output belongs to.
    pub fn phase(&self) -> Phase {
        match self {
            PhaseOutput::Explore(_) => Phase::Explore,
            PhaseOutput::Requirements(_) => Phase::Requirements,
            PhaseOutput::Design(_) => Phase::Design,
            PhaseOutput::Tasks(_) => Phase::Tasks,
            PhaseOutput::Sync(_) => Phase::Sync,
        }
    }
}

/// The finished spec: everything the coordinator needs to bridge it into tasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FinalSpec {
    pub title: String,
    pub description: String,
    pub explore: ExploreOutput,
    pub requirements: RequirementsOutput,
    pub design: DesignOutput,
    pub tasks: TasksOutput,
    pub sync: SyncOutput,
}
