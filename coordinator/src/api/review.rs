//! Review between phases: approve a spec stopped after a phase, replace that phase's output.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use omoi_protocol::api::ErrorDetail;
use omoi_protocol::phase::Phase;

use super::OptionalJson;
use super::auth::CurrentUser;
use super::specs::detail;
use super::types::{ExecuteSpec, OutputRejected, OutputReview};
use crate::app::AppState;
use crate::error::{Error, Result};
use crate::model::SpecDetail;
use crate::review::{self, Verdict};

pub(super) async fn approve(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<ExecuteSpec>,
) -> Result<Json<SpecDetail>> {
    let spec = state.store.spec(&user.id, &id).await?;
    review::approve(&state, &spec, body.stop_after).await?;
    Ok(Json(detail(&state, &user.id, &id).await?))
}

pub(super) async fn replace_output(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path((id, phase)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response> {
    let spec = state.store.spec(&user.id, &id).await?;
    let phase: Phase = serde_json::from_value(serde_json::Value::String(phase.clone()))
        .map_err(|_| Error::NotFound(format!("no phase {phase}")))?;
    let body: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| Error::BadRequest(format!("the body is not JSON: {e}")))?;
    Ok(
        match review::replace_output(&state, &spec, phase, body).await? {
            Verdict::Accepted(evaluation) => Json(OutputReview {
                feedback: omoi_worker::evaluate::feedback(&evaluation),
                evaluation,
            })
            .into_response(),
            Verdict::Rejected(evaluation) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(OutputRejected {
                    error: ErrorDetail {
                        code: "rejected".into(),
                        message: review::rejection_message(&evaluation),
                    },
                    evaluation,
                }),
            )
                .into_response(),
        },
    )
}
