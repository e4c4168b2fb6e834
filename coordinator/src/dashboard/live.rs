//! The dashboard's live streams, authenticated by the session cookie: one spec's events (the
//! API's SSE stream: store cursor first, then the hub, resumed after `Last-Event-ID`), and for
//! the list a `change` message naming a spec whenever one of the user's recent specs moves.

use std::convert::Infallible;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use futures_util::stream;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use super::error_page;
use super::session::Signed;
use crate::api::events::live_stream;
use crate::app::AppState;
use crate::error::Error;
use crate::hub::StatusNotice;

/// How many of a user's latest specs the list's stream follows.
const LIST_SPECS: usize = 200;

#[derive(Debug, Deserialize)]
pub struct After {
    #[serde(default)]
    after: Option<i64>,
}

/// `GET /specs/{id}/live`: the spec's event stream from `after` (or `Last-Event-ID`).
pub async fn spec_live(
    State(state): State<AppState>,
    Signed(session): Signed,
    Path(id): Path<String>,
    Query(query): Query<After>,
    headers: HeaderMap,
) -> Response {
    let spec = match state.store.spec(&session.user.id, &id).await {
        Ok(spec) => spec,
        Err(e) => return error_page(&e),
    };
    let after = match headers.get("last-event-id") {
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<i64>().ok()),
        None => Some(query.after.unwrap_or(0)),
    };
    let Some(after) = after.filter(|a| *a >= 0) else {
        return error_page(&Error::BadRequest(
            "the cursor must be a number, not negative".into(),
        ));
    };
    let receiver = state.hub.subscribe(&spec.id);
    let notice = StatusNotice::from(&spec);
    let events = live_stream(state, spec.id, after, receiver, notice);
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// `GET /live`: `change` with a spec id whenever one of the user's latest specs has news.
pub async fn list_live(State(state): State<AppState>, Signed(session): Signed) -> Response {
    let specs = match state.store.specs(&session.user.id).await {
        Ok(specs) => specs,
        Err(e) => return error_page(&e),
    };
    let mut specs = specs;
    specs.sort_by_key(|s| std::cmp::Reverse(s.created_at));
    let streams = specs.into_iter().take(LIST_SPECS).map(|spec| {
        let receiver = state.hub.subscribe(&spec.id);
        stream::unfold((receiver, spec.id), |(mut receiver, id)| async move {
            match receiver.recv().await {
                Ok(_) | Err(RecvError::Lagged(_)) => {
                    let event = SseEvent::default().event("change").data(id.clone());
                    Some((Ok::<_, Infallible>(event), (receiver, id)))
                }
                Err(RecvError::Closed) => None,
            }
        })
        .boxed()
    });
    let merged = stream::select_all(streams).take_until(state.shutdown.clone().cancelled_owned());
    Sse::new(merged)
        .keep_alive(KeepAlive::default())
        .into_response()
}
