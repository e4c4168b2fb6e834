//! The worker's integration suite: one binary, one module per area under `suite/`.

// Helpers of the suite live outside `#[test]` functions; a failed setup must fail the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod suite;
