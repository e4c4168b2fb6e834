//! The check at start, so a misconfigured provider fails with one line naming the cause and never
//! at the first spec: the API answers, takes the key (401 refused), knows the organisation (403),
//! and has the snapshot (404), active.

use super::client::{ApiError, Client};
use crate::sandbox::SandboxError;

fn fail(message: String) -> SandboxError {
    SandboxError::Provider(format!("daytona: {message}"))
}

/// Reads the snapshot: the first thing that is wrong is the error.
pub async fn check(
    client: &Client,
    snapshot: &str,
    organization: Option<&str>,
) -> Result<(), SandboxError> {
    let found = client
        .snapshot(snapshot)
        .await
        .map_err(|e| match e.code() {
            Some(401) => fail(format!("DAYTONA_API_KEY was refused: {e}")),
            Some(403) => fail(match organization {
                Some(org) => format!(
                    "the organisation {org:?} (DAYTONA_ORGANIZATION_ID) is unknown, or the key may \
                 not use it: {e}"
                ),
                None => format!(
                    "the key may not read snapshots of its organisation (set \
                 DAYTONA_ORGANIZATION_ID?): {e}"
                ),
            }),
            Some(404) => fail(format!(
                "the snapshot {snapshot:?} (--daytona-snapshot) was not found: {e}"
            )),
            _ => fail(format!(
                "the API does not answer as expected: {}",
                describe(&e)
            )),
        })?;
    if found.state != "active" {
        return Err(fail(format!(
            "the snapshot {snapshot:?} is {}, not active{}",
            found.state,
            found
                .error_reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        )));
    }
    tracing::info!(
        snapshot,
        cpu = found.cpu,
        memory_gb = found.mem,
        disk_gb = found.disk,
        "daytona snapshot found; sandboxes get its resources"
    );
    Ok(())
}

fn describe(error: &ApiError) -> String {
    error.to_string()
}
