//! The JSON Schemas of the protocol, by file name, as committed under `protocol/schema/`.

use schemars::{JsonSchema, Schema, schema_for};

use crate::api::{EventBatch, IngestAck};
use crate::artifact::{
    DesignOutput, ExploreOutput, FinalSpec, RequirementsOutput, SyncOutput, TasksOutput,
};
use crate::context::{Checkpoint, PhaseContext};
use crate::eval::Evaluation;
use crate::event::Envelope;
use crate::phase::Phase;
use crate::standby::{Assignment, StandbyRegistration};
use crate::task::TaskContext;

/// Every committed schema: `(file name, schema)`.
pub fn all() -> Vec<(&'static str, Schema)> {
    vec![
        ("envelope.json", schema_for!(Envelope)),
        ("event_batch.json", schema_for!(EventBatch)),
        ("ingest_ack.json", schema_for!(IngestAck)),
        ("phase_context.json", schema_for!(PhaseContext)),
        ("checkpoint.json", schema_for!(Checkpoint)),
        ("task_context.json", schema_for!(TaskContext)),
        ("evaluation.json", schema_for!(Evaluation)),
        ("final_spec.json", schema_for!(FinalSpec)),
        ("explore.json", schema_for!(ExploreOutput)),
        ("requirements.json", schema_for!(RequirementsOutput)),
        ("design.json", schema_for!(DesignOutput)),
        ("tasks.json", schema_for!(TasksOutput)),
        ("sync.json", schema_for!(SyncOutput)),
        (
            "standby_registration.json",
            schema_for!(StandbyRegistration),
        ),
        ("assignment.json", schema_for!(Assignment)),
    ]
}

/// The schema of a phase's output; `None` for COMPLETE, which has none.
pub fn phase_output(phase: Phase) -> Option<Schema> {
    match phase {
        Phase::Explore => Some(schema_of::<ExploreOutput>()),
        Phase::Requirements => Some(schema_of::<RequirementsOutput>()),
        Phase::Design => Some(schema_of::<DesignOutput>()),
        Phase::Tasks => Some(schema_of::<TasksOutput>()),
        Phase::Sync => Some(schema_of::<SyncOutput>()),
        Phase::Complete => None,
    }
}

fn schema_of<T: JsonSchema>() -> Schema {
    schema_for!(T)
}
