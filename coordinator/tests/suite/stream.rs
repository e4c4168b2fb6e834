//! The event history (cursor pages) and the live SSE stream with `Last-Event-ID` resume.

use omoi_coordinator::model::StreamEvent;
use omoi_protocol::event::RawEvent;
use pretty_assertions::assert_eq;
use reqwest::StatusCode;
use serde_json::json;

use super::common::sse::{connect, next};
use super::common::{Api, FakeProvider, TestServer, each_backend, error, event, sandbox_of};

/// An `agent.message` event of a spec sandbox.
pub(super) fn message(sandbox: &str, spec: &str, seq: u64) -> RawEvent {
    event(
        sandbox,
        spec,
        seq,
        "agent.message",
        json!({"text": format!("m{seq}")}),
    )
}

async fn setup(db: &super::common::TestDb) -> (TestServer, Api, String, String, Api) {
    let provider = FakeProvider::new();
    let server = TestServer::start(db, provider.clone(), |_| {}).await;
    let (_, api) = server.user("ada").await;
    let (_, project) = api
        .post(
            "/projects",
            &json!({"name": "p", "repo_url": "https://git.example/r.git"}),
        )
        .await;
    let (_, spec) = api
        .post(
            "/specs/launch",
            &json!({"project_id": project["id"], "title": "t"}),
        )
        .await;
    let (sandbox, token) = sandbox_of(&provider, 0);
    let sb = server.api(Some(&token));
    (
        server,
        api,
        spec["id"].as_str().unwrap().to_string(),
        sandbox,
        sb,
    )
}

#[tokio::test]
async fn history_pages_by_cursor() {
    each_backend(|db| async move {
        let (server, api, spec, sandbox, sb) = setup(&db).await;
        let events: Vec<_> = (1..=5).map(|s| message(&sandbox, &spec, s)).collect();
        sb.ingest(&sandbox, &events).await;

        let (status, page) = api.get(&format!("/specs/{spec}/events?limit=2")).await;
        assert_eq!(status, StatusCode::OK);
        let first: Vec<StreamEvent> = serde_json::from_value(page["events"].clone()).unwrap();
        assert_eq!(
            first.iter().map(|e| e.event.clone()).collect::<Vec<_>>(),
            events[..2]
        );
        assert_eq!(
            (page["next_cursor"].as_i64(), &page["has_more"]),
            (Some(first[1].cursor), &json!(true))
        );

        let mut seen = first;
        let mut after = page["next_cursor"].as_i64().unwrap();
        loop {
            let (_, page) = api
                .get(&format!("/specs/{spec}/events?after={after}&limit=2"))
                .await;
            let batch: Vec<StreamEvent> = serde_json::from_value(page["events"].clone()).unwrap();
            seen.extend(batch);
            after = page["next_cursor"].as_i64().unwrap();
            if page["has_more"] == json!(false) {
                break;
            }
        }
        assert_eq!(
            seen.into_iter().map(|e| e.event).collect::<Vec<_>>(),
            events
        );
        // Past the end: an empty page that keeps the cursor.
        assert_eq!(
            api.get(&format!("/specs/{spec}/events?after={after}"))
                .await,
            (
                StatusCode::OK,
                json!({"events": [], "next_cursor": after, "has_more": false})
            )
        );

        for query in ["limit=0", "limit=1001", "after=-1"] {
            let (status, body) = api.get(&format!("/specs/{spec}/events?{query}")).await;
            assert_eq!(
                (status, &body["error"]["code"]),
                (StatusCode::BAD_REQUEST, &json!("bad_request")),
                "{query}"
            );
        }
        assert_eq!(
            api.get(&format!("/specs/{spec}/events?after=abc")).await.0,
            StatusCode::BAD_REQUEST
        );
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_reconnecting_stream_gets_exactly_what_it_missed() {
    each_backend(|db| async move {
        let (server, api, spec, sandbox, sb) = setup(&db).await;
        sb.ingest(
            &sandbox,
            &[message(&sandbox, &spec, 1), message(&sandbox, &spec, 2)],
        )
        .await;

        let mut stream = connect(&api, &spec, None).await;
        let (kind, _, status) = next(&mut stream).await;
        assert_eq!(
            (kind.as_str(), &status["status"]),
            ("status", &json!("executing"))
        );
        let (kind, id1, data) = next(&mut stream).await;
        assert_eq!(
            (kind.as_str(), data),
            (
                "agent.message",
                serde_json::to_value(message(&sandbox, &spec, 1)).unwrap()
            )
        );
        let (_, id2, data) = next(&mut stream).await;
        assert_eq!(
            data,
            serde_json::to_value(message(&sandbox, &spec, 2)).unwrap()
        );
        assert!(id1.parse::<i64>().unwrap() < id2.parse::<i64>().unwrap());

        // Live: an event ingested now arrives on the open stream.
        sb.ingest(&sandbox, &[message(&sandbox, &spec, 3)]).await;
        let (_, id3, data) = next(&mut stream).await;
        assert_eq!(
            data,
            serde_json::to_value(message(&sandbox, &spec, 3)).unwrap()
        );
        drop(stream);

        // While disconnected, two more; the reconnect after id3 gets exactly those, then live ones.
        sb.ingest(
            &sandbox,
            &[message(&sandbox, &spec, 4), message(&sandbox, &spec, 5)],
        )
        .await;
        let mut stream = connect(&api, &spec, Some(&id3)).await;
        assert_eq!(next(&mut stream).await.0, "status");
        let mut got = Vec::new();
        for _ in 0..2 {
            got.push(next(&mut stream).await.2);
        }
        sb.ingest(&sandbox, &[message(&sandbox, &spec, 6)]).await;
        got.push(next(&mut stream).await.2);
        let expected: Vec<_> = (4..=6)
            .map(|s| serde_json::to_value(message(&sandbox, &spec, s)).unwrap())
            .collect();
        assert_eq!(got, expected);

        // A status change is pushed too.
        api.post(&format!("/specs/{spec}/cancel"), &json!({})).await;
        let (kind, _, status) = next(&mut stream).await;
        assert_eq!(
            (kind.as_str(), &status["status"]),
            ("status", &json!("cancelled"))
        );

        let bad = api
            .raw(reqwest::Method::GET, &format!("/specs/{spec}/events"))
            .header("accept", "text/event-stream")
            .header("last-event-id", "yesterday")
            .send()
            .await
            .unwrap();
        assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            bad.json::<serde_json::Value>().await.unwrap(),
            error("bad_request", "Last-Event-ID must be a cursor number")
        );
        server.stop().await;
    })
    .await;
}
