//! The worker's integration suite: one binary, one module per area under `suite/`.

mod suite;
