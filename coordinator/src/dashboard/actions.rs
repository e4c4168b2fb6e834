//! What a signed-in user can do from the dashboard, each a form POST with the session's CSRF
//! token, on the user's own specs only (another's is 404, as in the API): launch a spec on a
//! project, cancel, resume, inject a message into a running agent, approve a stopped spec, and
//! edit the output of the phase it stopped after.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use omoi_protocol::phase::Phase;
use serde::Deserialize;

use super::session::{Csrf, Session, Signed};
use super::{error_page, html, redirect, render_spec};
use crate::api::sandboxes::inject;
use crate::api::specs::create_spec;
use crate::api::types::CreateSpec;
use crate::app::AppState;
use crate::error::{Error, Result};
use crate::execution::{self, Start};
use crate::model::Spec;
use crate::review::{self, Verdict};

/// A phase named in a form: empty is none; anything else must be a phase.
fn form_phase(value: &str) -> Result<Option<Phase>> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    serde_json::from_value(serde_json::Value::String(value.to_string()))
        .map(Some)
        .map_err(|_| Error::Invalid(format!("{value:?} is not a phase")))
}

/// The user's spec `id`, once the form's CSRF token is checked: what every action on a spec
/// starts from.
async fn owned_spec(state: &AppState, session: &Session, csrf: &str, id: &str) -> Result<Spec> {
    session.check(csrf)?;
    state.store.spec(&session.user.id, id).await
}

/// After an action on spec `id`: back to its page, or the error's page.
fn to_spec_page<T>(id: &str, done: Result<T>) -> Response {
    match done {
        Ok(_) => redirect(&format!("/specs/{id}")),
        Err(e) => error_page(&e),
    }
}

#[derive(Debug, Deserialize)]
pub struct LaunchForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    project_id: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    stop_after: String,
}

/// Creates a spec on one of the user's projects and starts it; to its page.
pub async fn launch(
    State(state): State<AppState>,
    Signed(session): Signed,
    Form(form): Form<LaunchForm>,
) -> Response {
    let launched = async {
        session.check(&form.csrf)?;
        let body = CreateSpec {
            project_id: form.project_id.clone(),
            title: form.title.clone(),
            description: form.description.clone(),
            stop_after: form_phase(&form.stop_after)?,
        };
        let spec = create_spec(&state, &session.user.id, &body).await?;
        execution::execute(
            &state,
            &spec,
            Start::User {
                stop_after: body.stop_after,
            },
        )
        .await?;
        Ok::<_, Error>(spec.id)
    };
    match launched.await {
        Ok(id) => redirect(&format!("/specs/{id}")),
        Err(e) => error_page(&e),
    }
}

/// Cancels a spec.
pub async fn cancel(
    State(state): State<AppState>,
    Signed(session): Signed,
    Path(id): Path<String>,
    Form(form): Form<Csrf>,
) -> Response {
    let done = async {
        let spec = owned_spec(&state, &session, &form.csrf, &id).await?;
        execution::cancel(&state, &spec).await
    };
    to_spec_page(&id, done.await)
}

/// Resumes a spec after its last checkpoint (or restarts its failed tasks).
pub async fn resume(
    State(state): State<AppState>,
    Signed(session): Signed,
    Path(id): Path<String>,
    Form(form): Form<Csrf>,
) -> Response {
    let done = async {
        let spec = owned_spec(&state, &session, &form.csrf, &id).await?;
        execution::execute(&state, &spec, Start::User { stop_after: None }).await
    };
    to_spec_page(&id, done.await)
}

#[derive(Debug, Deserialize)]
pub struct MessageForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    sandbox_id: String,
    #[serde(default)]
    text: String,
}

/// Injects a message into the agent of one of the spec's live sandboxes.
pub async fn message(
    State(state): State<AppState>,
    Signed(session): Signed,
    Path(id): Path<String>,
    Form(form): Form<MessageForm>,
) -> Response {
    let done = async {
        let spec = owned_spec(&state, &session, &form.csrf, &id).await?;
        let sandbox = state.store.sandbox(&form.sandbox_id).await?;
        if sandbox.and_then(|s| s.spec_id) != Some(spec.id) {
            return Err(Error::NotFound(format!("no sandbox {}", form.sandbox_id)));
        }
        inject(&state, &session.user.id, &form.sandbox_id, &form.text).await
    };
    to_spec_page(&id, done.await)
}

#[derive(Debug, Deserialize)]
pub struct EditForm {
    #[serde(default)]
    csrf: String,
    phase: Phase,
    output: String,
}

/// Replaces the output of the phase the spec stopped after; a rejection shows the spec page
/// with the evaluator's feedback (422) and changes nothing.
pub async fn edit(
    State(state): State<AppState>,
    Signed(session): Signed,
    Path(id): Path<String>,
    Form(form): Form<EditForm>,
) -> Response {
    let verdict = async {
        let spec = owned_spec(&state, &session, &form.csrf, &id).await?;
        let document: serde_json::Value = serde_json::from_str(&form.output)
            .map_err(|e| Error::Invalid(format!("the output is not JSON: {e}")))?;
        review::replace_output(&state, &spec, form.phase, document).await
    };
    let rejected = match verdict.await {
        Ok(Verdict::Accepted(_)) => return redirect(&format!("/specs/{id}")),
        Ok(Verdict::Rejected(evaluation)) => review::rejection_message(&evaluation),
        Err(e @ (Error::Invalid(_) | Error::Conflict(_))) => e.to_string(),
        Err(e) => return error_page(&e),
    };
    let shown = Some((rejected.as_str(), form.output.as_str()));
    match render_spec(&state, &session, &id, shown, &Default::default()).await {
        Ok(body) => html(StatusCode::UNPROCESSABLE_ENTITY, body),
        Err(e) => error_page(&e),
    }
}

/// Approves a spec stopped after a phase: the next phase starts.
pub async fn approve(
    State(state): State<AppState>,
    Signed(session): Signed,
    Path(id): Path<String>,
    Form(form): Form<Csrf>,
) -> Response {
    let done = async {
        let spec = owned_spec(&state, &session, &form.csrf, &id).await?;
        review::approve(&state, &spec, None).await
    };
    to_spec_page(&id, done.await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn a_form_phase_is_empty_or_a_phase() {
        assert_eq!(form_phase("").unwrap(), None);
        assert_eq!(form_phase(" design ").unwrap(), Some(Phase::Design));
        assert!(matches!(form_phase("lunch"), Err(Error::Invalid(_))));
    }
}
