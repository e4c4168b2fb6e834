//! Test support for omoi: fake servers that speak the real wire formats, fixtures, helpers.

pub mod fixtures;
