//! What one sandbox may store: its seq may run a bounded window ahead of the acknowledged one,
//! a bounded number of events may wait for a gap, its event data is bounded; and bodies beyond a
//! route's limit answer 413.

use omoi_coordinator::ingest::Quotas;
use omoi_protocol::event::RawEvent;
use pretty_assertions::assert_eq;
use reqwest::StatusCode;
use serde_json::json;

use super::common::{Scenario, TestServer, each_backend, error, event};

fn message(sandbox: &str, spec: &str, seq: u64, text: &str) -> RawEvent {
    event(sandbox, spec, seq, "agent.message", json!({ "text": text }))
}

/// The `omoi_quota_refusals_total` lines of `/metrics`.
async fn refusals(server: &TestServer) -> Vec<String> {
    let text = reqwest::get(format!("{}/metrics", server.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|line| line.starts_with("omoi_quota_refusals_total{"))
        .map(str::to_string)
        .collect()
}

fn refused(seq_window: u64, held: u64, bytes: u64) -> Vec<String> {
    vec![
        format!("omoi_quota_refusals_total{{quota=\"seq_window\"}} {seq_window}"),
        format!("omoi_quota_refusals_total{{quota=\"held_events\"}} {held}"),
        format!("omoi_quota_refusals_total{{quota=\"stored_bytes\"}} {bytes}"),
    ]
}

#[tokio::test]
async fn an_event_far_past_the_acknowledged_seq_is_refused_and_nothing_is_kept() {
    each_backend(|db| async move {
        let Scenario {
            server,
            spec,
            sandbox,
            sandbox_api: sb,
            ..
        } = Scenario::launched(&db).await;
        let mut far = message(&sandbox, &spec, 1, "never released");
        far.seq = (1 << 63) - 1;
        assert_eq!(
            sb.ingest(&sandbox, &[far]).await,
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                error(
                    "quota_exceeded",
                    "event seq 9223372036854775807 is more than 10000 past the acknowledged \
                     seq 0"
                )
            )
        );
        assert_eq!(server.store.sandbox_events(&sandbox).await.unwrap(), vec![]);
        assert_eq!(refusals(&server).await, refused(1, 0, 0));
        let first = message(&sandbox, &spec, 1, "m1");
        assert_eq!(
            sb.ingest(&sandbox, &[first]).await,
            (StatusCode::OK, json!({"acked_seq": 1}))
        );
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn held_back_events_and_stored_bytes_are_bounded() {
    each_backend(|db| async move {
        let Scenario {
            server,
            spec,
            sandbox,
            sandbox_api: sb,
            ..
        } = Scenario::launched_with(&db, |settings| {
            settings.quotas = Quotas {
                seq_window: 100,
                held_events: 3,
                stored_bytes: 2000,
            };
        })
        .await;
        let waiting: Vec<_> = (3..=5).map(|s| message(&sandbox, &spec, s, "w")).collect();
        assert_eq!(
            sb.ingest(&sandbox, &waiting).await,
            (StatusCode::OK, json!({"acked_seq": 0}))
        );
        assert_eq!(
            sb.ingest(&sandbox, &[message(&sandbox, &spec, 6, "w")])
                .await,
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                error(
                    "quota_exceeded",
                    "4 events would wait for a gap in the seq; at most 3 may"
                )
            )
        );
        let gap: Vec<_> = (1..=2).map(|s| message(&sandbox, &spec, s, "g")).collect();
        assert_eq!(
            sb.ingest(&sandbox, &gap).await,
            (StatusCode::OK, json!({"acked_seq": 5}))
        );
        // Five events of `{"text":"w"}` or `{"text":"g"}` (12 bytes each) are stored.
        let big = message(&sandbox, &spec, 6, &"x".repeat(1500));
        assert_eq!(
            sb.ingest(&sandbox, std::slice::from_ref(&big)).await,
            (StatusCode::OK, json!({"acked_seq": 6}))
        );
        let more = message(&sandbox, &spec, 7, &"y".repeat(1000));
        assert_eq!(
            sb.ingest(&sandbox, &[more]).await,
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                error(
                    "quota_exceeded",
                    "the sandbox's events would take 2582 bytes; at most 2000 may be stored"
                )
            )
        );
        assert_eq!(
            server.store.sandbox_events(&sandbox).await.unwrap().len(),
            6
        );
        assert_eq!(refusals(&server).await, refused(0, 1, 1));
        server.stop().await;
    })
    .await;
}

/// The bytes a sandbox's events count against its quota, as the store keeps them.
async fn stored_bytes(db_url: &str, sandbox: &str) -> i64 {
    use sqlx::{Connection, Row};
    let mut conn = sqlx::AnyConnection::connect(db_url).await.unwrap();
    let bytes = sqlx::query("SELECT stored_bytes FROM sandboxes WHERE id = $1")
        .bind(sandbox)
        .fetch_one(&mut conn)
        .await
        .unwrap()
        .get::<i64, _>("stored_bytes");
    conn.close().await.unwrap();
    bytes
}

#[tokio::test]
async fn an_event_sent_again_counts_once_toward_the_stored_bytes() {
    each_backend(|db| async move {
        let Scenario {
            server,
            spec,
            sandbox,
            sandbox_api: sb,
            ..
        } = Scenario::launched_with(&db, |settings| {
            settings.quotas = Quotas {
                seq_window: 100,
                held_events: 10,
                stored_bytes: 2000,
            };
        })
        .await;
        // 811 bytes of data: `{"text":"…"}` around 800 characters.
        let held = message(&sandbox, &spec, 3, &"h".repeat(800));
        let bytes = 811;
        // Held back for the gap, then sent again alone, and twice within one batch.
        for batch in [
            vec![held.clone()],
            vec![held.clone()],
            vec![held.clone(), held.clone()],
        ] {
            assert_eq!(
                sb.ingest(&sandbox, &batch).await,
                (StatusCode::OK, json!({"acked_seq": 0}))
            );
            assert_eq!(stored_bytes(&db.url, &sandbox).await, bytes);
        }
        // The gap fills, with the held event sent once more beside it.
        let gap = vec![
            message(&sandbox, &spec, 1, "g"),
            message(&sandbox, &spec, 2, "g"),
            held.clone(),
        ];
        assert_eq!(
            sb.ingest(&sandbox, &gap).await,
            (StatusCode::OK, json!({"acked_seq": 3}))
        );
        assert_eq!(stored_bytes(&db.url, &sandbox).await, bytes + 2 * 12);
        // Acknowledged events sent again are ignored, and count nothing.
        assert_eq!(
            sb.ingest(&sandbox, &gap).await,
            (StatusCode::OK, json!({"acked_seq": 3}))
        );
        // A contiguous batch with a seq twice counts it once.
        let fourth = message(&sandbox, &spec, 4, &"f".repeat(800));
        assert_eq!(
            sb.ingest(&sandbox, &[fourth.clone(), fourth]).await,
            (StatusCode::OK, json!({"acked_seq": 4}))
        );
        assert_eq!(stored_bytes(&db.url, &sandbox).await, 2 * bytes + 2 * 12);
        assert_eq!(refusals(&server).await, refused(0, 0, 0));
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_body_beyond_the_route_limit_answers_413() {
    each_backend(|db| async move {
        let Scenario {
            server,
            api,
            spec,
            sandbox,
            sandbox_api: sb,
            ..
        } = Scenario::launched(&db).await;
        let name = "n".repeat(3 * 1024 * 1024);
        let body = json!({"name": name, "repo_url": "https://git.example/r.git"});
        let (status, answer) = api.post("/projects", &body).await;
        assert_eq!(
            (status, answer["error"]["code"].clone()),
            (StatusCode::PAYLOAD_TOO_LARGE, json!("too_large"))
        );
        let huge = message(&sandbox, &spec, 1, &"z".repeat(33 * 1024 * 1024));
        let (status, answer) = sb.ingest(&sandbox, &[huge]).await;
        assert_eq!(
            (status, answer["error"]["code"].clone()),
            (StatusCode::PAYLOAD_TOO_LARGE, json!("too_large"))
        );
        server.stop().await;
    })
    .await;
}
