//! A live SSE stream of a spec's events, as a client reads it.

use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use pretty_assertions::assert_eq;
use reqwest::StatusCode;

use super::Api;

/// One SSE message: `(event name, id, data)`.
pub type Message = (String, String, serde_json::Value);

/// Opens the live stream of `spec`, resuming after `last_event_id` when given.
pub async fn connect(
    api: &Api,
    spec: &str,
    last_event_id: Option<&str>,
) -> impl futures_util::Stream<Item = Message> + Unpin + use<> {
    let mut request = api
        .raw(reqwest::Method::GET, &format!("/specs/{spec}/events"))
        .header("accept", "text/event-stream");
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    Box::pin(response.bytes_stream().eventsource().map(|m| {
        let m = m.unwrap();
        (m.event, m.id, serde_json::from_str(&m.data).unwrap())
    }))
}

/// The next message, within 10 s.
pub async fn next(stream: &mut (impl futures_util::Stream<Item = Message> + Unpin)) -> Message {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("an SSE message within 10 s")
        .expect("the stream is open")
}
