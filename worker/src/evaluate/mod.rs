//! Deterministic evaluators: the quality gate after each phase.
