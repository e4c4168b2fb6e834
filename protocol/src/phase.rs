//! The closed set of spec phases and their order.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A phase of the spec state machine, in execution order.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Explore,
    Requirements,
    Design,
    Tasks,
    Sync,
    Complete,
}

impl Phase {
    /// Every phase, in order.
    pub const ALL: [Phase; 6] = [
        Phase::Explore,
        Phase::Requirements,
        Phase::Design,
        Phase::Tasks,
        Phase::Sync,
        Phase::Complete,
    ];

    /// The phases whose output an agent writes (SYNC is computed, COMPLETE is terminal).
    pub const GENERATED: [Phase; 4] = [
        Phase::Explore,
        Phase::Requirements,
        Phase::Design,
        Phase::Tasks,
    ];

    /// The lowercase wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Explore => "explore",
            Phase::Requirements => "requirements",
            Phase::Design => "design",
            Phase::Tasks => "tasks",
            Phase::Sync => "sync",
            Phase::Complete => "complete",
        }
    }

    /// The phase after this one; `None` after COMPLETE.
    pub fn next(self) -> Option<Phase> {
        match self {
            Phase::Explore => Some(Phase::Requirements),
            Phase::Requirements => Some(Phase::Design),
            Phase::Design => Some(Phase::Tasks),
            Phase::Tasks => Some(Phase::Sync),
            Phase::Sync => Some(Phase::Complete),
            Phase::Complete => None,
        }
    }

    /// The phases strictly before this one, in order.
    pub fn before(self) -> impl Iterator<Item = Phase> {
        Phase::ALL.into_iter().take_while(move |p| *p < self)
    }

    /// The phases from this one through COMPLETE, in order.
    pub fn from_here(self) -> impl Iterator<Item = Phase> {
        Phase::ALL.into_iter().skip_while(move |p| *p < self)
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a phase name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownPhase(pub String);

impl fmt::Display for UnknownPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown phase {:?}: expected one of explore, requirements, design, tasks, sync, complete",
            self.0
        )
    }
}

impl std::error::Error for UnknownPhase {}

impl FromStr for Phase {
    type Err = UnknownPhase;

    /// Parses a wire name, case-insensitively; `all` means EXPLORE (the whole spec).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "explore" | "all" => Ok(Phase::Explore),
            "requirements" => Ok(Phase::Requirements),
            "design" => Ok(Phase::Design),
            "tasks" => Ok(Phase::Tasks),
            "sync" => Ok(Phase::Sync),
            "complete" => Ok(Phase::Complete),
            _ => Err(UnknownPhase(s.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_and_navigation() {
        assert_eq!(Phase::Explore.next(), Some(Phase::Requirements));
        assert_eq!(Phase::Complete.next(), None);
        assert_eq!(
            Phase::Design.before().collect::<Vec<_>>(),
            vec![Phase::Explore, Phase::Requirements]
        );
        assert_eq!(
            Phase::Sync.from_here().collect::<Vec<_>>(),
            vec![Phase::Sync, Phase::Complete]
        );
        for p in Phase::ALL {
            assert_eq!(p.as_str().parse::<Phase>(), Ok(p));
            assert_eq!(serde_json::to_string(&p).unwrap(), format!("\"{p}\""));
        }
    }

    #[test]
    fn parse_accepts_all_and_case_and_rejects_unknown() {
        assert_eq!("all".parse::<Phase>(), Ok(Phase::Explore));
        assert_eq!(" Design ".parse::<Phase>(), Ok(Phase::Design));
        let err = "planning".parse::<Phase>().unwrap_err();
        assert_eq!(err, UnknownPhase("planning".into()));
        assert!(err.to_string().contains("explore, requirements"));
    }
}
