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
    /// REQUIREMENTS: how each requirement text reads as EARS, in the order of the requirements
    /// (texts that are not EARS are left out; their issue says why).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ears: Vec<EarsReading>,
}

/// How one requirement text reads as EARS: its pattern and its parts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EarsReading {
    /// The requirement id.
    pub requirement: String,
    pub pattern: EarsPattern,
    /// The precondition clauses in the order written (none for a ubiquitous requirement).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clauses: Vec<EarsClause>,
    /// The system named before SHALL.
    pub system: String,
    /// What follows SHALL.
    pub response: String,
}

/// One precondition clause of an EARS requirement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EarsClause {
    pub keyword: EarsKeyword,
    /// The condition, trigger, state or feature, without its keyword.
    pub text: String,
}

/// The EARS pattern of a requirement text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum EarsPattern {
    /// `The <system> shall <response>`.
    Ubiquitous,
    /// `When <trigger>, the <system> shall …`.
    EventDriven,
    /// `While <state>, the <system> shall …`.
    StateDriven,
    /// `If <condition>, then the <system> shall …`.
    Unwanted,
    /// `Where <feature>, the <system> shall …`.
    Optional,
    /// More than one precondition clause.
    Complex,
}

/// A precondition keyword of EARS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EarsKeyword {
    When,
    While,
    If,
    Where,
}

impl std::fmt::Display for EarsPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EarsPattern::Ubiquitous => "ubiquitous",
            EarsPattern::EventDriven => "event-driven",
            EarsPattern::StateDriven => "state-driven",
            EarsPattern::Unwanted => "unwanted behaviour",
            EarsPattern::Optional => "optional feature",
            EarsPattern::Complex => "complex",
        })
    }
}

impl std::fmt::Display for EarsKeyword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EarsKeyword::When => "WHEN",
            EarsKeyword::While => "WHILE",
            EarsKeyword::If => "IF",
            EarsKeyword::Where => "WHERE",
        })
    }
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
