//! The proxy between a client and the fake Anthropic API: the key swap, the answer passed through
//! unchanged, usage events, the budget, and refusals.

use omoi_protocol::event::Envelope;
use omoi_tests::fake_anthropic::{API_KEY, API_VERSION, FakeAnthropic};
use omoi_tests::fake_llm::{Reply, Turn};
use pretty_assertions::assert_eq;
use tokio::sync::mpsc::UnboundedReceiver;

use super::*;
use crate::events::EventIds;

fn config(upstream: String, budget_usd: f64) -> ProxyConfig {
    ProxyConfig {
        wire: Wire::Anthropic,
        upstream,
        key: Some(Secret::new(API_KEY)),
        budget_usd,
        price: Some(Price::new(3.0, 15.0)),
    }
}

fn emitter() -> (Emitter, UnboundedReceiver<Envelope>) {
    Emitter::channel(EventIds {
        sandbox_id: "sb".to_string(),
        spec_id: None,
        task_id: None,
    })
}

fn body() -> serde_json::Value {
    json!({"model": "claude-test", "max_tokens": 100, "stream": true,
           "messages": [{"role": "user", "content": "hi"}]})
}

/// POSTs `body` to `{base}/v1/messages?beta=true` with `key`; returns status and body text.
async fn post(base: &str, key: &str, body: &serde_json::Value) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/messages?beta=true"))
        .header("x-api-key", key)
        .header("anthropic-version", API_VERSION)
        .json(body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

fn usage_events(rx: &mut UnboundedReceiver<Envelope>) -> Vec<AgentUsage> {
    let mut events = Vec::new();
    while let Ok(envelope) = rx.try_recv() {
        if let Event::AgentUsage(usage) = envelope.event {
            events.push(usage);
        }
    }
    events
}

#[tokio::test]
async fn swaps_the_credential_for_the_key_and_passes_the_stream_through() {
    let turn = Turn::text("hello there").with_usage(1000, 200);
    let fake = FakeAnthropic::start([Reply::Turn(turn.clone()), Reply::Turn(turn)]).await;
    let (emitter, mut rx) = emitter();
    let proxy = ModelProxy::start(config(fake.base_url(), 10.0), Some(emitter))
        .await
        .unwrap();
    let direct = post(&fake.base_url(), API_KEY, &body()).await;
    let proxied = post(&proxy.base_url(), proxy.credential(), &body()).await;
    assert_eq!(fake.violations(), Vec::<String>::new());
    // The fake numbers its messages; apart from that the bytes are the same.
    assert_eq!(
        proxied,
        (200, direct.1.replace("msg_fake_0001", "msg_fake_0002"))
    );
    let requests = fake.requests();
    assert_eq!(requests[1].path, "/v1/messages");
    assert_eq!(requests[1].headers.get("x-api-key").unwrap(), API_KEY);
    assert!(
        !requests[1]
            .headers
            .values()
            .any(|v| v.contains(proxy.credential())),
        "{:?}",
        requests[1].headers
    );
    assert_eq!(requests[1].body, body());
    let call = Usage {
        input_tokens: 1000,
        output_tokens: 200,
        cost_usd: (1000.0 * 3.0 + 200.0 * 15.0) / 1e6,
    };
    assert_eq!(
        usage_events(&mut rx),
        vec![AgentUsage {
            model: Some("claude-test".to_string()),
            call,
            total: call,
        }]
    );
    assert_eq!((proxy.calls(), proxy.total()), (1, call));
}

#[tokio::test]
async fn refuses_calls_without_the_credential() {
    let fake = FakeAnthropic::start([]).await;
    let proxy = ModelProxy::start(config(fake.base_url(), 10.0), None)
        .await
        .unwrap();
    let refused = (
        401,
        json!({"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}})
            .to_string(),
    );
    assert_eq!(post(&proxy.base_url(), API_KEY, &body()).await, refused);
    assert_eq!(post(&proxy.base_url(), "", &body()).await, refused);
    assert_eq!(fake.requests(), vec![]);
}

#[tokio::test]
async fn once_the_budget_is_spent_every_call_is_refused() {
    let turn = Turn::text("expensive").with_usage(1_000_000, 0);
    let fake = FakeAnthropic::start([Reply::Turn(turn.clone()), Reply::Turn(turn)]).await;
    let proxy = ModelProxy::start(config(fake.base_url(), 2.0), None)
        .await
        .unwrap();
    let (status, _) = post(&proxy.base_url(), proxy.credential(), &body()).await;
    assert_eq!(status, 200);
    tokio::time::timeout(Duration::from_secs(5), proxy.budget_spent())
        .await
        .unwrap();
    assert_eq!(
        post(&proxy.base_url(), proxy.credential(), &body()).await,
        (
            403,
            json!({"type": "error", "error": {"type": "permission_error",
                   "message": "the session's budget of $2.00 is spent"}})
            .to_string()
        )
    );
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn an_upstream_error_passes_through_uncounted() {
    let fake = FakeAnthropic::start([Reply::ServerError { status: 529 }]).await;
    let (emitter, mut rx) = emitter();
    let proxy = ModelProxy::start(config(fake.base_url(), 10.0), Some(emitter))
        .await
        .unwrap();
    assert_eq!(
        post(&proxy.base_url(), proxy.credential(), &body()).await,
        (
            529,
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
                .to_string()
        )
    );
    assert_eq!(usage_events(&mut rx), vec![]);
}

#[tokio::test]
async fn an_unreachable_upstream_and_a_path_outside_v1() {
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let proxy = ModelProxy::start(config(upstream, 10.0), None)
        .await
        .unwrap();
    assert_eq!(
        post(&proxy.base_url(), proxy.credential(), &body()).await,
        (
            502,
            json!({"type": "error", "error": {"type": "api_error", "message": "the model API is unreachable"}})
                .to_string()
        )
    );
    let outside = reqwest::Client::new()
        .get(format!("{}/healthz", proxy.base_url()))
        .header("x-api-key", proxy.credential())
        .send()
        .await
        .unwrap();
    assert_eq!(outside.status().as_u16(), 404);
}
