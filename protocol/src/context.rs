//! The phase context: the feature request and the outputs of the phases done so far.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::artifact::{
    DesignOutput, ExploreOutput, FinalSpec, PhaseOutput, RequirementsOutput, SyncOutput,
    TasksOutput,
};
use crate::phase::Phase;

/// What a phase starts from; after a passing phase, the checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PhaseContext {
    pub title: String,
    #[serde(default)]
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explore: Option<ExploreOutput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requirements: Option<RequirementsOutput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub design: Option<DesignOutput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks: Option<TasksOutput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncOutput>,
}

impl PhaseContext {
    /// Whether the output of `phase` is present (COMPLETE has none and is never present).
    pub fn has(&self, phase: Phase) -> bool {
        match phase {
            Phase::Explore => self.explore.is_some(),
            Phase::Requirements => self.requirements.is_some(),
            Phase::Design => self.design.is_some(),
            Phase::Tasks => self.tasks.is_some(),
            Phase::Sync => self.sync.is_some(),
            Phase::Complete => false,
        }
    }

    /// The phases before `start` whose outputs are missing, in order.
    pub fn missing_before(&self, start: Phase) -> Vec<Phase> {
        start.before().filter(|p| !self.has(*p)).collect()
    }

    /// Stores a phase output, replacing any earlier one of the same phase.
    pub fn set(&mut self, output: PhaseOutput) {
        match output {
            PhaseOutput::Explore(o) => self.explore = Some(o),
            PhaseOutput::Requirements(o) => self.requirements = Some(o),
            PhaseOutput::Design(o) => self.design = Some(o),
            PhaseOutput::Tasks(o) => self.tasks = Some(o),
            PhaseOutput::Sync(o) => self.sync = Some(o),
        }
    }

    /// The final spec, when every phase through SYNC is present.
    pub fn final_spec(&self) -> Option<FinalSpec> {
        Some(FinalSpec {
            title: self.title.clone(),
            description: self.description.clone(),
            explore: self.explore.clone()?,
            requirements: self.requirements.clone()?,
            design: self.design.clone()?,
            tasks: self.tasks.clone()?,
            sync: self.sync.clone()?,
        })
    }
}

/// The checkpoint file a worker keeps in `.omoi/checkpoint.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Checkpoint {
    pub spec_id: String,
    /// The last phase that passed its gate.
    pub completed: Phase,
    pub context: PhaseContext,
}
