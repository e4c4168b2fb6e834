//! The standby protocol of warm pools: what a standby worker tells the coordinator when it
//! announces itself, and the assignment it waits for (DESIGN §5.3, "Warm pools").

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `POST /api/v1/standby/{id}/register`: a standby worker announces that it is up and waiting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StandbyRegistration {
    /// The worker's version (`CARGO_PKG_VERSION`).
    pub worker_version: String,
}

/// `GET /api/v1/standby/{id}/assignment`: the worker's environment contract (DESIGN §3.2) as one
/// document, the sandbox's own `SANDBOX_ID` and `SANDBOX_TOKEN` included. The standby worker lays
/// these variables over its own environment (the provider's `WORKSPACE`, `PATH`, …, without the
/// standby variables) and runs as a worker started with the result would. Delivered once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Assignment {
    /// Variable name → value.
    pub env: BTreeMap<String, String>,
}
