//! The omoi coordinator.
