//! The web dashboard at `/`: sign-in into a server-side session (an HttpOnly, SameSite=Strict
//! cookie holding a random session id), the specs list, one spec, live updates over SSE, and
//! the actions (launch, cancel, resume, message, approve, edit), each a form with a CSRF token.
//! Server-rendered HTML (`pages`, `graph`); a small embedded script (`live.js`) keeps the pages
//! current without a reload; without it they still work.

mod actions;
mod graph;
mod live;
pub mod pages;
mod session;
mod tally;

pub use graph::{Layout, layout, svg as graph_svg};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use crate::app::AppState;
use crate::error::{Error, Result};
use crate::model::SpecStatus;
use crate::review;
use crate::store::{SessionKind, Store};
use session::{LINK_TTL_MS, Session, Signed};

/// A sign-in link for `user_id` that works once, within a day: `<base>/sign-in/link?code=…`.
pub async fn sign_in_link(store: &Store, base_url: &str, user_id: &str) -> Result<String> {
    let code = store
        .create_session(user_id, SessionKind::Link, LINK_TTL_MS)
        .await?;
    Ok(format!(
        "{}/sign-in/link?code={code}",
        base_url.trim_end_matches('/')
    ))
}

/// The most events a spec page shows at first (the live stream adds the rest).
const PAGE_EVENTS: u32 = 200;
/// The longest event filter.
const MAX_FILTER: usize = 200;

/// The dashboard's routes, without state.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/live", get(live::list_live))
        .route("/assets/live.js", get(script))
        .route("/sign-in", post(session::sign_in))
        .route("/sign-in/link", get(session::sign_in_link))
        .route("/sign-out", post(session::sign_out))
        .route("/launch", post(actions::launch))
        .route("/specs/{id}", get(spec_page))
        .route("/specs/{id}/live", get(live::spec_live))
        .route("/specs/{id}/approve", post(actions::approve))
        .route("/specs/{id}/edit", post(actions::edit))
        .route("/specs/{id}/cancel", post(actions::cancel))
        .route("/specs/{id}/resume", post(actions::resume))
        .route("/specs/{id}/message", post(actions::message))
}

/// The live-update script, embedded.
const LIVE_JS: &str = include_str!("live.js");

async fn script() -> Response {
    (
        [
            (CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (CACHE_CONTROL, "max-age=300"),
        ],
        LIVE_JS,
    )
        .into_response()
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (CONTENT_TYPE, "text/html; charset=utf-8"),
            (CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

fn redirect(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(LOCATION, to)]).into_response()
}

/// An error as a page: the message for the caller's faults, opaque for the server's.
fn error_page(e: &Error) -> Response {
    let (status, _) = e.status_and_code();
    html(status, pages::error(&e.body().error.message))
}

/// The list's filters.
#[derive(Debug, Default, Deserialize)]
pub struct ListFilter {
    #[serde(default)]
    pub project: String,
    #[serde(default)]
    pub status: String,
}

async fn home(State(state): State<AppState>, parts: Parts) -> Response {
    let filter = Query::<ListFilter>::try_from_uri(&parts.uri)
        .map(|Query(f)| f)
        .unwrap_or_default();
    match session::session(&parts, &state).await {
        Ok(Some(session)) => match render_list(&state, &session, &filter).await {
            Ok(body) => html(StatusCode::OK, body),
            Err(e) => error_page(&e),
        },
        Ok(None) => html(StatusCode::OK, pages::sign_in(None)),
        Err(e) => error_page(&e),
    }
}

async fn render_list(state: &AppState, session: &Session, filter: &ListFilter) -> Result<String> {
    let status = match filter.status.trim() {
        "" => None,
        s => Some(
            s.parse::<SpecStatus>()
                .map_err(|e| Error::BadRequest(e.to_string()))?,
        ),
    };
    let projects = state.store.projects(&session.user.id).await?;
    let mut specs = state.store.specs(&session.user.id).await?;
    specs.retain(|s| {
        (filter.project.is_empty() || s.project_id == filter.project)
            && status.is_none_or(|st| s.status == st)
    });
    specs.sort_by_key(|s| std::cmp::Reverse(s.created_at));
    let progress = state.store.task_progress(&session.user.id).await?;
    let costs = state.store.cost_so_far(&session.user.id).await?;
    Ok(pages::specs(&pages::ListView {
        user: &session.user,
        csrf: &session.csrf(),
        projects: &projects,
        specs: &specs,
        progress: &progress,
        costs: &costs,
        filter_project: &filter.project,
        filter_status: status,
        now: chrono::Utc::now(),
    }))
}

/// The spec page's event filter: a type prefix and a sandbox.
#[derive(Debug, Default, Deserialize)]
pub struct EventFilter {
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub sandbox: String,
}

async fn spec_page(
    State(state): State<AppState>,
    Signed(session): Signed,
    Path(id): Path<String>,
    parts: Parts,
) -> Response {
    let filter = match Query::<EventFilter>::try_from_uri(&parts.uri) {
        Ok(Query(filter)) => filter,
        Err(e) => return error_page(&Error::BadRequest(e.body_text())),
    };
    match render_spec(&state, &session, &id, None, &filter).await {
        Ok(body) => html(StatusCode::OK, body),
        Err(e) => error_page(&e),
    }
}

/// The spec page, with the evaluator's feedback on a rejected edit when there is one.
async fn render_spec(
    state: &AppState,
    session: &Session,
    id: &str,
    feedback: Option<(&str, &str)>,
    filter: &EventFilter,
) -> Result<String> {
    if filter.kind.len() > MAX_FILTER || filter.sandbox.len() > MAX_FILTER {
        return Err(Error::BadRequest(format!(
            "an event filter is at most {MAX_FILTER} bytes"
        )));
    }
    let spec = state.store.spec(&session.user.id, id).await?;
    let phases = state.store.phases(id).await?;
    let tasks = state.store.tasks_of_spec(id).await?;
    let sandboxes = state.store.sandboxes_of_spec(id).await?;
    let tallied = tally::tally(&state.store.tallied_events(id).await?);
    let kind = Some(filter.kind.trim()).filter(|k| !k.is_empty());
    let sandbox = Some(filter.sandbox.trim()).filter(|s| !s.is_empty());
    let events = state
        .store
        .latest_events(id, kind, sandbox, PAGE_EVENTS)
        .await?;
    let last_cursor = state
        .store
        .latest_events(id, None, None, 1)
        .await?
        .last()
        .map_or(0, |e| e.cursor);
    Ok(pages::spec(&pages::SpecView {
        csrf: &session.csrf(),
        stopped: review::stopped_after(&spec).ok(),
        feedback,
        spec: &spec,
        phases: &phases,
        tasks: &tasks,
        sandboxes: &sandboxes,
        tally: &tallied,
        events: &events,
        last_cursor,
        filter_kind: kind.unwrap_or(""),
        filter_sandbox: sandbox.unwrap_or(""),
    }))
}
