//! The coordinator's integration tests: one binary, the suites under `suite/`.

// Test helpers outside `#[test]` functions may unwrap too: a failure is the test's failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod suite;
