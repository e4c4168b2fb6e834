//! The web dashboard at `/`: sign-in with a user token kept in an HttpOnly, SameSite=Strict
//! session cookie, the specs list, one spec, and approval; every form carries a CSRF token.
//! Server-rendered HTML (`pages`), no script needed to use it.

mod pages;

use axum::Form;
use axum::Router;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use omoi_protocol::phase::Phase;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::app::AppState;
use crate::error::{Error, Result};
use crate::model::User;
use crate::review::{self, Verdict};
use crate::store::TokenRecord;

/// The session cookie's name.
const SESSION: &str = "omoi_session";

/// The dashboard's routes, without state.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/sign-in", post(sign_in))
        .route("/sign-out", post(sign_out))
        .route("/specs/{id}", get(spec_page))
        .route("/specs/{id}/approve", post(approve))
        .route("/specs/{id}/edit", post(edit))
}

/// A signed-in browser: the user and the token of its session.
#[derive(Debug, Clone)]
struct Session {
    user: User,
    token: String,
}

impl Session {
    /// The CSRF token of this session: derived from the session token, so a page of another
    /// site, which cannot read the cookie, cannot know it.
    fn csrf(&self) -> String {
        csrf_of(&self.token)
    }

    /// Refuses a form whose CSRF token is not this session's.
    fn check(&self, sent: &str) -> Result<()> {
        if sent == self.csrf() {
            Ok(())
        } else {
            Err(Error::Forbidden(
                "the form's CSRF token is missing or wrong".into(),
            ))
        }
    }
}

fn csrf_of(token: &str) -> String {
    let digest = Sha256::digest(format!("omoi-csrf\n{token}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The session token in the request's cookies, if any.
fn session_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION)
        .map(|(_, value)| value.to_string())
        .filter(|value| !value.is_empty())
}

/// The session of a request, or `None` when it carries no valid user session.
async fn session(parts: &Parts, state: &AppState) -> Result<Option<Session>> {
    let Some(token) = session_token(&parts.headers) else {
        return Ok(None);
    };
    match state.store.token(&token).await? {
        Some(TokenRecord::User(user)) => Ok(Some(Session { user, token })),
        Some(TokenRecord::Sandbox { .. }) | None => Ok(None),
    }
}

/// A page that needs a session: without one it answers with the sign-in page (401).
struct Signed(Session);

impl FromRequestParts<AppState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        match session(parts, state).await {
            Ok(Some(session)) => Ok(Signed(session)),
            Ok(None) => Err(html(StatusCode::UNAUTHORIZED, pages::sign_in(None))),
            Err(e) => Err(e.into_response()),
        }
    }
}

fn html(status: StatusCode, body: String) -> Response {
    (status, [(CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

fn redirect(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(LOCATION, to)]).into_response()
}

/// An error as a page: the message for the caller's faults, opaque for the server's.
fn error_page(e: &Error) -> Response {
    let (status, _) = e.status_and_code();
    html(status, pages::error(&e.body().error.message))
}

async fn home(State(state): State<AppState>, parts: Parts) -> Response {
    match session(&parts, &state).await {
        Ok(Some(session)) => match state.store.specs(&session.user.id).await {
            Ok(specs) => html(
                StatusCode::OK,
                pages::specs(&session.user, &session.csrf(), &specs),
            ),
            Err(e) => error_page(&e),
        },
        Ok(None) => html(StatusCode::OK, pages::sign_in(None)),
        Err(e) => error_page(&e),
    }
}

#[derive(Debug, Deserialize)]
struct SignIn {
    token: String,
}

async fn sign_in(State(state): State<AppState>, Form(form): Form<SignIn>) -> Response {
    let token = form.token.trim();
    match state.store.token(token).await {
        Ok(Some(TokenRecord::User(_))) => {
            let cookie = format!("{SESSION}={token}; Path=/; HttpOnly; SameSite=Strict");
            let mut response = redirect("/");
            if let Ok(value) = cookie.parse() {
                response.headers_mut().insert(SET_COOKIE, value);
            }
            response
        }
        Ok(_) => html(
            StatusCode::UNAUTHORIZED,
            pages::sign_in(Some("That is not a user token.")),
        ),
        Err(e) => error_page(&e),
    }
}

#[derive(Debug, Deserialize)]
struct Csrf {
    #[serde(default)]
    csrf: String,
}

async fn sign_out(Signed(session): Signed, Form(form): Form<Csrf>) -> Response {
    if let Err(e) = session.check(&form.csrf) {
        return error_page(&e);
    }
    let mut response = redirect("/");
    let cookie = format!("{SESSION}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    if let Ok(value) = cookie.parse() {
        response.headers_mut().insert(SET_COOKIE, value);
    }
    response
}

async fn spec_page(
    State(state): State<AppState>,
    Signed(session): Signed,
    Path(id): Path<String>,
) -> Response {
    match render_spec(&state, &session, &id, None).await {
        Ok(body) => html(StatusCode::OK, body),
        Err(e) => error_page(&e),
    }
}

/// The spec page, with the evaluator's feedback on a rejected edit when there is one.
async fn render_spec(
    state: &AppState,
    session: &Session,
    id: &str,
    feedback: Option<&str>,
) -> Result<String> {
    let spec = state.store.spec(&session.user.id, id).await?;
    let phases = state.store.phases(id).await?;
    let tasks = state.store.tasks_of_spec(id).await?;
    Ok(pages::spec(&pages::SpecView {
        csrf: &session.csrf(),
        stopped: review::stopped_after(&spec).ok(),
        feedback,
        spec: &spec,
        phases: &phases,
        tasks: &tasks,
    }))
}

#[derive(Debug, Deserialize)]
struct EditForm {
    #[serde(default)]
    csrf: String,
    phase: Phase,
    output: String,
}

/// Replaces the output of the phase the spec stopped after; a rejection shows the spec page
/// with the evaluator's feedback (422) and changes nothing.
async fn edit(
    State(state): State<AppState>,
    Signed(session): Signed,
    Path(id): Path<String>,
    Form(form): Form<EditForm>,
) -> Response {
    let verdict = async {
        session.check(&form.csrf)?;
        let spec = state.store.spec(&session.user.id, &id).await?;
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
    match render_spec(&state, &session, &id, Some(&rejected)).await {
        Ok(body) => html(StatusCode::UNPROCESSABLE_ENTITY, body),
        Err(e) => error_page(&e),
    }
}

async fn approve(
    State(state): State<AppState>,
    Signed(session): Signed,
    Path(id): Path<String>,
    Form(form): Form<Csrf>,
) -> Response {
    let done = async {
        session.check(&form.csrf)?;
        let spec = state.store.spec(&session.user.id, &id).await?;
        review::approve(&state, &spec, None).await
    };
    match done.await {
        Ok(()) => redirect(&format!("/specs/{id}")),
        Err(e) => error_page(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use pretty_assertions::assert_eq;

    #[test]
    fn the_session_cookie_is_found_among_others_and_an_empty_one_is_none() {
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            HeaderValue::from_static("a=1; omoi_session=tok; b=2"),
        );
        assert_eq!(session_token(&headers), Some("tok".to_string()));
        headers.insert(COOKIE, HeaderValue::from_static("omoi_session="));
        assert_eq!(session_token(&headers), None);
        assert_eq!(session_token(&HeaderMap::new()), None);
    }

    #[test]
    fn the_csrf_token_depends_on_the_session() {
        assert_eq!(csrf_of("a"), csrf_of("a"));
        assert_ne!(csrf_of("a"), csrf_of("b"));
        assert_eq!(csrf_of("a").len(), 64);
    }
}
