//! The sandbox routes: event ingest and phase context (the sandbox's own token), and injected
//! messages (posted by the spec's owner, polled by the sandbox).

use std::time::Instant;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use omoi_protocol::api::{IngestAck, InjectedMessage, RawEventBatch};
use omoi_protocol::context::PhaseContext;

use super::auth::{CurrentSandbox, CurrentUser};
use super::types::{MessagesQuery, PostMessage};
use super::{ApiJson, ApiQuery};
use crate::app::AppState;
use crate::error::{Error, Result};
use crate::execution::refresh_status;
use crate::hub::StreamItem;
use crate::ingest::validate_batch;

/// The longest message a user may inject.
const MAX_MESSAGE_BYTES: usize = 16 * 1024;

pub(super) async fn ingest(
    State(state): State<AppState>,
    auth: CurrentSandbox,
    Path(id): Path<String>,
    ApiJson(batch): ApiJson<RawEventBatch>,
) -> Result<Json<IngestAck>> {
    auth.require(&id)?;
    let sandbox = state
        .store
        .sandbox(&id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no sandbox {id}")))?;
    validate_batch(&sandbox, &batch.events)?;
    let stream = sandbox
        .spec_id
        .clone()
        .unwrap_or_else(|| sandbox.id.clone());
    let lock = state.hub.ingest_lock(&stream);
    let _in_order = lock.lock().await;
    let started = Instant::now();
    let settings = &state.settings;
    let outcome = match state
        .store
        .ingest(
            &sandbox,
            &batch.events,
            &settings.task_policy,
            &settings.quotas,
        )
        .await
    {
        Err(Error::Quota { kind, message }) => {
            state.metrics.quota_refused(kind);
            tracing::warn!(sandbox = %sandbox.id, quota = kind.as_str(), %message, "batch refused");
            return Err(Error::Quota { kind, message });
        }
        other => other?,
    };
    state
        .metrics
        .observe_ingest(outcome.stored, started.elapsed());
    // A finished spec or a task's (or its sandbox's) end may make tasks ready, free a slot, or
    // make a spec publishable; other events change nothing the scheduler reads.
    if outcome.released.iter().any(|e| {
        matches!(
            e.event.kind.as_str(),
            "task.completed"
                | "task.failed"
                | "spec.execution_completed"
                | "agent.completed"
                | "agent.failed"
        )
    }) {
        state.scheduler_wake.notify_one();
    }
    if let Some(spec_id) = &sandbox.spec_id {
        for event in outcome.released {
            state.hub.publish(spec_id, StreamItem::Event(event));
        }
        if outcome.status_changed {
            refresh_status(&state, spec_id).await?;
        }
    }
    Ok(Json(IngestAck {
        acked_seq: outcome.acked_seq,
    }))
}

pub(super) async fn context(
    State(state): State<AppState>,
    auth: CurrentSandbox,
    Path(id): Path<String>,
) -> Result<Json<PhaseContext>> {
    auth.require(&id)?;
    state
        .store
        .sandbox_context(&id)
        .await?
        .map(Json)
        .ok_or_else(|| Error::NotFound(format!("sandbox {id} has no phase context")))
}

pub(super) async fn messages(
    State(state): State<AppState>,
    auth: CurrentSandbox,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<MessagesQuery>,
) -> Result<Json<Vec<InjectedMessage>>> {
    auth.require(&id)?;
    let after = query.after.unwrap_or(0);
    Ok(Json(state.store.messages_after(&id, after).await?))
}

pub(super) async fn post_message(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<PostMessage>,
) -> Result<(StatusCode, Json<InjectedMessage>)> {
    let message = inject(&state, &user.id, &id, &body.text).await?;
    Ok((StatusCode::CREATED, Json(message)))
}

/// Stores a message of `user_id` for the agent of a live sandbox of one of the user's specs
/// (404 for anyone else's; also the dashboard's message form).
pub(crate) async fn inject(
    state: &AppState,
    user_id: &str,
    id: &str,
    text: &str,
) -> Result<InjectedMessage> {
    let not_found = || Error::NotFound(format!("no sandbox {id}"));
    let sandbox = state.store.sandbox(id).await?.ok_or_else(not_found)?;
    let spec_id = sandbox.spec_id.as_deref().ok_or_else(not_found)?;
    // 404 unless the sandbox runs a spec of this user.
    state
        .store
        .spec(user_id, spec_id)
        .await
        .map_err(|_| not_found())?;
    let text = text.trim();
    if text.is_empty() {
        return Err(Error::Invalid("text must not be empty".into()));
    }
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(Error::Invalid(format!(
            "text is {} bytes; at most {MAX_MESSAGE_BYTES}",
            text.len()
        )));
    }
    if !sandbox.status.is_live() {
        return Err(Error::Conflict(format!(
            "sandbox {id} is {}; messages reach running sandboxes only",
            sandbox.status
        )));
    }
    state.store.create_message(id, text).await
}
