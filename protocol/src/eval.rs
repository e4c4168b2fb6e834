//! The result of an evaluator: a score, the criteria behind it, issues and warnings.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::phase::Phase;

/// What an evaluator concluded about one phase output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Evaluation {
    pub phase: Phase,
    /// Weighted sum of the criteria, clamped to 0..=1.
    pub score: f64,
    /// Score at or above the threshold and no blocking issue.
    pub passed: bool,
    pub criteria: Vec<Criterion>,
    pub issues: Vec<Issue>,
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// One named criterion and its sub-score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Criterion {
    pub name: String,
    /// Share of the total score (weights of one evaluator add up to 1).
    pub weight: f64,
    /// 0..=1.
    pub score: f64,
    /// Why the score is what it is.
    #[serde(default)]
    pub detail: String,
}

/// A problem found in the output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Issue {
    /// A blocking issue fails the gate whatever the score.
    pub blocking: bool,
    /// What the issue is about: an id, a path, a field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub message: String,
}
