//! Review between phases: replacing the output of the phase a spec stopped after.

use omoi_protocol::phase::Phase;

use super::{Store, now_ms};
use crate::error::Result;
use crate::model::SpecStatus;

/// A reviewed phase output to store in place of the agent's.
#[derive(Debug, Clone, Copy)]
pub struct ReviewedOutput<'a> {
    pub spec_id: &'a str,
    pub phase: Phase,
    /// The output as JSON (`PhaseOutput`, tagged by the phase).
    pub output: &'a str,
    /// The evaluator's score of it.
    pub score: f64,
}

impl Store {
    /// Replaces the stored output (and score) of `phase` while the spec is stopped after it:
    /// pending, with `stop_after` = `phase` and its checkpoint stored. One statement, so an
    /// approval racing it sees either the old or the new output, never a spec that moved on.
    /// Returns whether it was replaced.
    pub async fn replace_phase_output(&self, reviewed: ReviewedOutput<'_>) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE spec_phases SET output = $3, score = $4, updated_ms = $5
             WHERE spec_id = $1 AND phase = $2 AND output IS NOT NULL
               AND EXISTS (SELECT 1 FROM specs s
                           WHERE s.id = $1 AND s.status = $6 AND s.stop_after = $2)",
        )
        .bind(reviewed.spec_id)
        .bind(reviewed.phase.as_str())
        .bind(reviewed.output)
        .bind(reviewed.score)
        .bind(now_ms())
        .bind(SpecStatus::Pending.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }
}
