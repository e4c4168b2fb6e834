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

/// `POST /api/v1/standby/enroll`, with the pool's registration credential: a standby worker in a
/// pool whose sandboxes share one template (so none carries an id or token of its own) names
/// its pool and pod; the coordinator checks with the cluster that the pod is an unclaimed member
/// of that pool and records one standby for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StandbyEnrollment {
    /// The pool's name (its `SandboxWarmPool`).
    pub pool: String,
    /// The pod's name.
    pub pod: String,
    /// The pod's uid: a pod of the same name made again is another sandbox.
    pub pod_uid: String,
    /// The worker's version (`CARGO_PKG_VERSION`).
    pub worker_version: String,
}

/// The answer to an enrollment: the standby's own id and pool credential, with which it then
/// registers and polls for its assignment as every standby does.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Enrolled {
    /// The standby's id.
    pub id: String,
    /// Its own pool credential (`omoi_p_…`).
    pub token: String,
}

impl std::fmt::Debug for Enrolled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enrolled")
            .field("id", &self.id)
            .field("token", &"<redacted>")
            .finish()
    }
}
