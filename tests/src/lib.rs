//! Test support for omoi: fake servers that speak the real wire formats, fixtures, helpers.

// Test support: a fixture that cannot be set up must fail the test that asked for it, loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod fake_anthropic;
pub mod fake_daytona;
pub mod fake_github;
pub mod fake_kube;
pub mod fake_llm;
pub mod fake_openai;
pub mod fake_responses;
pub mod fixtures;
pub mod git;
pub mod prompt_cache;
pub mod sink;
