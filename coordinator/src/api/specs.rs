//! Specs: create, launch, list, show, execute (resume), cancel, and their bridged tasks.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::auth::CurrentUser;
use super::types::{CreateSpec, ExecuteSpec};
use super::{ApiJson, OptionalJson};
use crate::app::AppState;
use crate::error::{Error, Result};
use crate::execution::{self, Start};
use crate::model::{Spec, SpecDetail, TaskRecord};

/// The longest title (it goes into ticket names, lists and an environment variable).
const MAX_TITLE_CHARS: usize = 200;

pub(super) async fn create(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiJson(body): ApiJson<CreateSpec>,
) -> Result<(StatusCode, Json<Spec>)> {
    if body.stop_after.is_some() {
        return Err(Error::Invalid(
            "stop_after belongs to execute or launch, not create".into(),
        ));
    }
    let spec = create_spec(&state, &user.id, &body).await?;
    Ok((StatusCode::CREATED, Json(spec)))
}

pub(super) async fn launch(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiJson(body): ApiJson<CreateSpec>,
) -> Result<(StatusCode, Json<SpecDetail>)> {
    let spec = create_spec(&state, &user.id, &body).await?;
    execution::execute(
        &state,
        &spec,
        Start::User {
            stop_after: body.stop_after,
        },
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(detail(&state, &user.id, &spec.id).await?),
    ))
}

/// Creates a spec of `user_id` from a checked body (also the dashboard's launch form).
pub(crate) async fn create_spec(
    state: &AppState,
    user_id: &str,
    body: &CreateSpec,
) -> Result<Spec> {
    let title = body.title.trim();
    if title.is_empty() {
        return Err(Error::Invalid("title must not be empty".into()));
    }
    crate::text::check_line("title", title).map_err(Error::Invalid)?;
    if title.chars().count() > MAX_TITLE_CHARS {
        return Err(Error::Invalid(format!(
            "title is longer than {MAX_TITLE_CHARS} characters; put the details in the description"
        )));
    }
    if state
        .store
        .project(user_id, &body.project_id)
        .await?
        .is_none()
    {
        return Err(Error::NotFound(format!("no project {}", body.project_id)));
    }
    state
        .store
        .create_spec(user_id, &body.project_id, title, body.description.trim())
        .await
}

pub(super) async fn list(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> Result<Json<Vec<Spec>>> {
    Ok(Json(state.store.specs(&user.id).await?))
}

pub(super) async fn show(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<SpecDetail>> {
    Ok(Json(detail(&state, &user.id, &id).await?))
}

pub(super) async fn execute(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<ExecuteSpec>,
) -> Result<Json<SpecDetail>> {
    let spec = state.store.spec(&user.id, &id).await?;
    execution::execute(
        &state,
        &spec,
        Start::User {
            stop_after: body.stop_after,
        },
    )
    .await?;
    Ok(Json(detail(&state, &user.id, &id).await?))
}

pub(super) async fn cancel(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<SpecDetail>> {
    let spec = state.store.spec(&user.id, &id).await?;
    execution::cancel(&state, &spec).await?;
    Ok(Json(detail(&state, &user.id, &id).await?))
}

pub(super) async fn tasks(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<Vec<TaskRecord>>> {
    let spec = state.store.spec(&user.id, &id).await?;
    Ok(Json(state.store.tasks_of_spec(&spec.id).await?))
}

pub(super) async fn task(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<TaskRecord>> {
    Ok(Json(state.store.task(&user.id, &id).await?))
}

/// A spec of the user with its phases, sandboxes, tasks and final spec.
pub(super) async fn detail(state: &AppState, user_id: &str, id: &str) -> Result<SpecDetail> {
    let spec = state.store.spec(user_id, id).await?;
    Ok(SpecDetail {
        phases: state.store.phases(id).await?,
        sandboxes: state.store.sandboxes_of_spec(id).await?,
        tasks: state.store.tasks_of_spec(id).await?,
        final_spec: state.store.final_spec(id).await?,
        spec,
    })
}
