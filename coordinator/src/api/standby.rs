//! The standby routes of warm pools: a standby worker announces itself and long-polls for its
//! assignment, with its pool credential (which works for its own standby and these two routes
//! only). The assignment is answered once; the statement that reads it marks it delivered.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use omoi_protocol::standby::{Assignment, StandbyRegistration};
use serde::Deserialize;

use super::auth::StandbyCredential;
use super::{ApiJson, ApiQuery};
use crate::app::AppState;
use crate::error::{Error, Result};
use crate::store::{Standby, StandbyState};

/// The longest an assignment poll may wait.
pub const MAX_WAIT_SECS: u64 = 30;

/// `?wait_secs=N` of the assignment poll.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignmentQuery {
    /// Seconds to wait for the assignment (0 to 30, default 0: answer at once).
    pub wait_secs: Option<u64>,
}

/// The standby `id` if `credential` is its pool credential; 401 otherwise (a wrong token and
/// another standby's token alike).
async fn authenticate(
    state: &AppState,
    id: &str,
    credential: &StandbyCredential,
) -> Result<Standby> {
    state
        .store
        .standby_with_token(id, &credential.0)
        .await?
        .ok_or_else(|| {
            Error::Unauthorized(format!("not the pool credential of a standby sandbox {id}"))
        })
}

fn ended(standby: &Standby) -> Option<Error> {
    match standby.state {
        StandbyState::Delivered => Some(Error::Conflict(format!(
            "the assignment of {} was delivered already",
            standby.id
        ))),
        StandbyState::Dead => Some(Error::Conflict(format!(
            "the standby sandbox {} has ended",
            standby.id
        ))),
        StandbyState::Starting
        | StandbyState::Idle
        | StandbyState::Claimed
        | StandbyState::Assigned => None,
    }
}

/// `POST /standby/{id}/register`: 204 when the standby is waiting (again) for its assignment.
pub(super) async fn register(
    State(state): State<AppState>,
    credential: StandbyCredential,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<StandbyRegistration>,
) -> Result<StatusCode> {
    let standby = authenticate(&state, &id, &credential).await?;
    if let Some(error) = ended(&standby) {
        return Err(error);
    }
    if body.worker_version.is_empty() || body.worker_version.len() > 64 {
        return Err(Error::Invalid(
            "worker_version must be 1 to 64 bytes".into(),
        ));
    }
    if !state.store.register_standby(&id).await? {
        return Err(Error::Conflict(format!(
            "the standby sandbox {id} is claimed already"
        )));
    }
    if standby.state == StandbyState::Starting {
        let took = crate::store::now_ms().saturating_sub(standby.created_ms);
        state
            .metrics
            .observe_refill(Duration::from_millis(u64::try_from(took).unwrap_or(0)));
        tracing::info!(standby = %id, ms = took, worker = %body.worker_version, "standby sandbox ready");
        // The upkeep counts it (the idle gauge) now rather than at its next pass.
        state.pool_wake.notify_one();
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /standby/{id}/assignment?wait_secs=N`: 200 with the assignment (once), 204 when none
/// came within the wait, 409 once delivered or ended.
pub(super) async fn assignment(
    State(state): State<AppState>,
    credential: StandbyCredential,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<AssignmentQuery>,
) -> Result<Response> {
    let wait = query.wait_secs.unwrap_or(0);
    if wait > MAX_WAIT_SECS {
        return Err(Error::BadRequest(format!(
            "wait_secs is {wait}; at most {MAX_WAIT_SECS}"
        )));
    }
    let standby = authenticate(&state, &id, &credential).await?;
    if let Some(error) = ended(&standby) {
        return Err(error);
    }
    if standby.state == StandbyState::Starting {
        return Err(Error::Conflict(format!(
            "the standby sandbox {id} has not registered"
        )));
    }
    state.store.touch_standby(&id).await?;
    let waiter = state.standby_wakers.waiter(&id);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    loop {
        if let Some(env) = state.store.take_assignment(&id).await? {
            tracing::info!(standby = %id, "assignment delivered");
            return Ok(Json(Assignment { env }).into_response());
        }
        if let Some(standby) = state.store.standby(&id).await? {
            if let Some(error) = ended(&standby) {
                return Err(error);
            }
        }
        // The wake-up comes from this replica's claim or, through the relay, another's; the
        // re-check only covers a notification lost on the way.
        let recheck = (tokio::time::Instant::now() + state.settings.standby_recheck).min(deadline);
        tokio::select! {
            () = waiter.notified() => {}
            () = tokio::time::sleep_until(recheck) => {}
            () = state.shutdown.cancelled() => return Ok(StatusCode::NO_CONTENT.into_response()),
        }
        if tokio::time::Instant::now() >= deadline {
            // One last look: a claim may have landed at the deadline.
            if let Some(env) = state.store.take_assignment(&id).await? {
                return Ok(Json(Assignment { env }).into_response());
            }
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
    }
}
