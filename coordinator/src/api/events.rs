//! `GET /specs/{id}/events`: the history page by page, or with `Accept: text/event-stream` a live
//! SSE stream that resumes after `Last-Event-ID`.
//!
//! The stream subscribes to the hub first, then reads the store after the client's cursor, then
//! forwards live events it has not sent; when it falls behind the hub it reads the store again.
//! So a reconnecting client gets exactly what it missed. Events another replica stored arrive as
//! a cursor only; the stream reads them from the store the same way.

use std::convert::Infallible;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::http::header::ACCEPT;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use std::collections::VecDeque;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use super::ApiQuery;
use super::auth::CurrentUser;
use super::types::{EventPage, EventsQuery};
use crate::app::AppState;
use crate::error::{Error, Result};
use crate::hub::{StatusNotice, StreamItem};
use crate::model::StreamEvent;

/// Default and largest page of the history.
const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;
/// How many stored events a live stream reads at a time while catching up.
const CATCH_UP_PAGE: u32 = 500;

pub(super) async fn spec_events(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<EventsQuery>,
    headers: HeaderMap,
) -> Result<Response> {
    let spec = state.store.spec(&user.id, &id).await?;
    let after = match headers.get("last-event-id") {
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<i64>().ok())
            .ok_or_else(|| Error::BadRequest("Last-Event-ID must be a cursor number".into()))?,
        None => query.after.unwrap_or(0),
    };
    if after < 0 {
        return Err(Error::BadRequest("after must not be negative".into()));
    }
    let wants_stream = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    if wants_stream {
        let receiver = state.hub.subscribe(&spec.id);
        let notice = StatusNotice::from(&spec);
        let stream = live_stream(state, spec.id, after, receiver, notice);
        return Ok(Sse::new(stream)
            .keep_alive(KeepAlive::default())
            .into_response());
    }
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(Error::BadRequest(format!("limit must be 1..={MAX_LIMIT}")));
    }
    let events = state.store.events_after(&spec.id, after, limit).await?;
    let next_cursor = events.last().map_or(after, |e| e.cursor);
    let has_more = events.len() == usize::try_from(limit).unwrap_or(usize::MAX);
    Ok(Json(EventPage {
        events,
        next_cursor,
        has_more,
    })
    .into_response())
}

/// Where a live stream is.
struct LiveStream {
    state: AppState,
    spec_id: String,
    /// The last cursor sent.
    last: i64,
    receiver: broadcast::Receiver<StreamItem>,
    /// Read from the store, not yet sent.
    backlog: VecDeque<StreamEvent>,
    /// Whether the store may hold more than the backlog (catching up).
    catching_up: bool,
    first: Option<StatusNotice>,
}

pub(crate) fn live_stream(
    state: AppState,
    spec_id: String,
    after: i64,
    receiver: broadcast::Receiver<StreamItem>,
    notice: StatusNotice,
) -> impl Stream<Item = std::result::Result<SseEvent, Infallible>> {
    let start = LiveStream {
        state,
        spec_id,
        last: after,
        receiver,
        backlog: VecDeque::new(),
        catching_up: true,
        first: Some(notice),
    };
    stream::unfold(start, |mut s| async move {
        let event = s.next().await?;
        Some((Ok(event), s))
    })
}

impl LiveStream {
    /// The next SSE event; `None` ends the stream (server shutdown).
    async fn next(&mut self) -> Option<SseEvent> {
        if let Some(notice) = self.first.take() {
            return Some(status_event(&notice));
        }
        loop {
            if let Some(event) = self.backlog.pop_front() {
                if event.cursor > self.last {
                    self.last = event.cursor;
                    return Some(stream_event(&event));
                }
                continue;
            }
            if self.catching_up {
                match self
                    .state
                    .store
                    .events_after(&self.spec_id, self.last, CATCH_UP_PAGE)
                    .await
                {
                    Ok(page) => {
                        self.catching_up = page.len() == CATCH_UP_PAGE as usize;
                        self.backlog.extend(page);
                    }
                    Err(e) => {
                        tracing::error!(spec = %self.spec_id, error = %e, "reading events failed");
                        return None;
                    }
                }
                continue;
            }
            let item = tokio::select! {
                () = self.state.shutdown.cancelled() => return None,
                item = self.receiver.recv() => item,
            };
            match item {
                Ok(StreamItem::Event(event)) => self.backlog.push_back(event),
                Ok(StreamItem::Status(notice)) => return Some(status_event(&notice)),
                Ok(StreamItem::Stored(cursor)) => self.catching_up = cursor > self.last,
                Ok(StreamItem::Reread) => self.catching_up = true,
                Err(RecvError::Lagged(_)) => self.catching_up = true,
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

fn stream_event(event: &StreamEvent) -> SseEvent {
    let sse = SseEvent::default()
        .id(event.cursor.to_string())
        .event(event.event.kind.clone());
    sse.json_data(&event.event)
        .unwrap_or_else(|_| SseEvent::default().comment("unencodable event"))
}

fn status_event(notice: &StatusNotice) -> SseEvent {
    SseEvent::default()
        .event("status")
        .json_data(notice)
        .unwrap_or_else(|_| SseEvent::default().comment("unencodable status"))
}
