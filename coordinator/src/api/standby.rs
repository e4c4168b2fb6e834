//! The standby routes of warm pools: a standby worker announces itself and long-polls for its
//! assignment, with its pool credential (which works for its own standby and these two routes
//! only). The assignment is answered once; the statement that reads it marks it delivered.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use omoi_protocol::standby::{Assignment, Enrolled, StandbyEnrollment, StandbyRegistration};
use serde::Deserialize;

use super::auth::StandbyCredential;
use super::{ApiJson, ApiQuery};
use crate::app::AppState;
use crate::error::{Error, Result};
use crate::store::{NewStandby, Standby, StandbyState};

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

/// The longest pool name, pod name, pod uid and worker version an enrollment may carry.
const MAX_NAME_BYTES: usize = 253;

/// What is wrong with an enrollment's body, before anything is looked up.
fn check_enrollment(body: &StandbyEnrollment) -> Result<()> {
    let plain = |what: &str, value: &str| {
        if value.is_empty()
            || value.len() > MAX_NAME_BYTES
            || !value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        {
            return Err(Error::Invalid(format!(
                "{what} must be 1 to {MAX_NAME_BYTES} letters, digits, '-', '.' or '_'"
            )));
        }
        Ok(())
    };
    plain("pool", &body.pool)?;
    plain("pod", &body.pod)?;
    plain("pod_uid", &body.pod_uid)?;
    if body.worker_version.is_empty() || body.worker_version.len() > 64 {
        return Err(Error::Invalid(
            "worker_version must be 1 to 64 bytes".into(),
        ));
    }
    Ok(())
}

/// `POST /standby/enroll`, with a pool's registration credential: records a standby for the pod
/// the body names once the provider confirms it is a live, unclaimed member of that pool, and
/// answers the standby's own id and pool credential. 401: not that pool's credential; 403: not
/// a member; 409: the pod enrolled already; 404: this coordinator keeps no such pools.
pub(super) async fn enroll(
    State(state): State<AppState>,
    credential: StandbyCredential,
    ApiJson(body): ApiJson<StandbyEnrollment>,
) -> Result<Json<Enrolled>> {
    let Some(pools) = state.provider.warm_pools() else {
        return Err(Error::NotFound(
            "this coordinator keeps no warm pools of its provider's own".into(),
        ));
    };
    check_enrollment(&body)?;
    let expected = state.store.pool_credential(&body.pool).ok_or_else(|| {
        Error::NotFound("this coordinator keeps no warm pools (no operator's key)".into())
    })?;
    if !same(&expected, &credential.0) {
        return Err(Error::Unauthorized(format!(
            "not the registration credential of the pool {}",
            body.pool
        )));
    }
    let Some(member) = pools.member(&body.pool, &body.pod, &body.pod_uid).await? else {
        return Err(Error::Forbidden(format!(
            "{} is not a running, unclaimed sandbox of the pool {}",
            body.pod, body.pool
        )));
    };
    let id = body.pod_uid.clone();
    let Some(token) = state
        .store
        .enroll_standby(
            NewStandby {
                id: &id,
                pool: &member.pool,
                provider: state.provider.name(),
                replica_id: &state.settings.replica_id,
            },
            &member.handle.0,
            member.created_ms,
        )
        .await?
    else {
        return Err(Error::Conflict(format!(
            "the sandbox {} has enrolled already",
            body.pod
        )));
    };
    tracing::info!(standby = %id, sandbox = %member.handle.0, worker = %body.worker_version,
        "standby sandbox enrolled");
    Ok(Json(Enrolled { id, token }))
}

/// Compares two credentials in time that does not depend on where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
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
