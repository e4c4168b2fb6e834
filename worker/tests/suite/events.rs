//! Integration tests: event delivery to a fake coordinator (batching, retries, the spool, drain,
//! heartbeats), started the way the worker starts it.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use omoi_protocol::event::{
    AgentHeartbeat, AgentMessage, AgentToolResult, Counters, ENVELOPE_VERSION, Envelope, Event,
    Usage,
};
use omoi_protocol::phase::Phase;
use omoi_tests::sink::{FakeSink, SinkOptions, TOKEN};
use omoi_worker::error::Error;
use omoi_worker::events::spool::{SPOOL_FILE, Spool};
use omoi_worker::events::{self, DeliveryReport, Emitter, EventIds, EventsConfig, SinkConfig};
use omoi_worker::secrets::Masker;
use pretty_assertions::assert_eq;

const SANDBOX: &str = "sb-7";

fn ids() -> EventIds {
    EventIds {
        sandbox_id: SANDBOX.to_string(),
        spec_id: Some("spec-1".to_string()),
        task_id: None,
    }
}

fn config(sink: &FakeSink, spool_dir: &Path, heartbeat: Duration) -> EventsConfig {
    EventsConfig {
        ids: ids(),
        sink: SinkConfig::Http {
            base_url: sink.url(),
            token: TOKEN.to_string(),
            spool_dir: spool_dir.to_path_buf(),
        },
        heartbeat,
        masker: Masker::default(),
    }
}

async fn start(
    sink: &FakeSink,
    spool_dir: &Path,
) -> omoi_worker::error::Result<(Emitter, events::Delivery)> {
    events::start(config(sink, spool_dir, Duration::ZERO)).await
}

fn message(seq: u64) -> Event {
    Event::AgentMessage(AgentMessage {
        text: format!("message {seq}"),
    })
}

fn emit_messages(emitter: &Emitter, seqs: impl IntoIterator<Item = u64>) {
    for seq in seqs {
        assert_eq!(emitter.emit(message(seq)), seq);
    }
}

fn fixed_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()
}

/// The envelope the worker should have sent, with the time fixed.
fn expected(seq: u64, event: Event) -> Envelope {
    Envelope {
        v: ENVELOPE_VERSION,
        sandbox_id: SANDBOX.to_string(),
        seq,
        at: fixed_time(),
        spec_id: Some("spec-1".to_string()),
        task_id: None,
        event,
    }
}

fn expected_messages(seqs: impl IntoIterator<Item = u64>) -> Vec<Envelope> {
    seqs.into_iter()
        .map(|seq| expected(seq, message(seq)))
        .collect()
}

/// What the sink stored, with the time fixed.
fn stored(sink: &FakeSink) -> Vec<Envelope> {
    sink.envelopes()
        .into_iter()
        .map(|envelope| Envelope {
            at: fixed_time(),
            ..envelope
        })
        .collect()
}

fn no_protocol_errors(sink: &FakeSink) {
    assert_eq!(sink.protocol_errors(), Vec::<String>::new());
}

/// Everything emitted, `1..=n`, was delivered once, in order, without a protocol error.
fn assert_delivered_in_order(sink: &FakeSink, report: &DeliveryReport, n: u64) {
    assert_eq!(
        *report,
        DeliveryReport {
            delivered: n,
            unsent: 0
        }
    );
    assert_eq!(stored(sink), expected_messages(1..=n));
    no_protocol_errors(sink);
}

#[tokio::test]
async fn many_events_go_in_few_requests() {
    let sink = FakeSink::start(SinkOptions::default()).await;
    let spool = tempfile::tempdir().unwrap();
    let (emitter, delivery) = start(&sink, spool.path()).await.unwrap();

    emit_messages(&emitter, 1..=250);
    let report = delivery.finish(Duration::from_secs(10)).await;

    assert_eq!(
        report,
        DeliveryReport {
            delivered: 250,
            unsent: 0
        }
    );
    assert_eq!(stored(&sink), expected_messages(1..=250));
    assert_eq!(sink.requests(), 3);
    assert_eq!(sink.duplicates(), 0);
    no_protocol_errors(&sink);
}

#[tokio::test]
async fn events_are_sent_after_the_batch_window_without_a_finish() {
    let sink = FakeSink::start(SinkOptions::default()).await;
    let spool = tempfile::tempdir().unwrap();
    let (emitter, delivery) = start(&sink, spool.path()).await.unwrap();

    emit_messages(&emitter, 1..=3);
    assert!(
        sink.wait_until(Duration::from_secs(5), |events| events.len() == 3)
            .await
    );
    emit_messages(&emitter, 4..=5);
    let report = delivery.finish(Duration::from_secs(5)).await;

    assert_eq!(
        report,
        DeliveryReport {
            delivered: 5,
            unsent: 0
        }
    );
    assert_eq!(stored(&sink), expected_messages(1..=5));
    assert_eq!(sink.requests(), 2);
    no_protocol_errors(&sink);
}

#[tokio::test(start_paused = true)]
async fn an_event_after_a_quiet_spell_goes_at_once_and_a_burst_waits_for_the_window() {
    let sink = FakeSink::start(SinkOptions::default()).await;
    let spool = tempfile::tempdir().unwrap();
    let (emitter, delivery) = start(&sink, spool.path()).await.unwrap();
    let window = events::sender::BATCH_WINDOW;

    // Emits message `seq` and waits until the sink holds it; how long that took.
    let emit_and_wait = async |seq: u64| {
        let emitted = tokio::time::Instant::now();
        emit_messages(&emitter, [seq]);
        assert!(
            sink.wait_until(Duration::from_secs(5), |events| events.len() as u64 == seq)
                .await
        );
        emitted.elapsed()
    };

    // The first event of the run (agent.started, in the worker) does not wait for company.
    let waited = emit_and_wait(1).await;
    assert!(waited < window, "waited {waited:?}");

    // Neither does the first event after a quiet spell.
    tokio::time::sleep(window * 3).await;
    let quiet = tokio::time::Instant::now();
    let waited = emit_and_wait(2).await;
    assert!(waited < window, "waited {waited:?}");

    // Events right after a batch wait for the window and go together.
    emit_messages(&emitter, [3]);
    tokio::time::sleep(window / 4).await;
    emit_messages(&emitter, [4]);
    assert!(
        sink.wait_until(Duration::from_secs(5), |events| events.len() == 4)
            .await
    );
    assert!(quiet.elapsed() >= window, "waited {:?}", quiet.elapsed());
    assert_eq!(sink.requests(), 3);

    let report = delivery.finish(Duration::from_secs(5)).await;
    assert_delivered_in_order(&sink, &report, 4);
}

#[tokio::test(start_paused = true)]
async fn a_sink_that_refuses_for_a_while_gets_every_event_once_in_order() {
    let sink = FakeSink::start(SinkOptions {
        refuse_first: 4,
        ..SinkOptions::default()
    })
    .await;
    let spool = tempfile::tempdir().unwrap();
    let (emitter, delivery) = start(&sink, spool.path()).await.unwrap();

    emit_messages(&emitter, 1..=10);
    // New events keep coming while the sender backs off; they join in order.
    for seq in 11..=20 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        emit_messages(&emitter, [seq]);
    }
    let report = delivery.finish(Duration::from_secs(120)).await;

    assert_eq!(
        report,
        DeliveryReport {
            delivered: 20,
            unsent: 0
        }
    );
    assert_eq!(stored(&sink), expected_messages(1..=20));
    assert!(sink.requests() > 4, "{} requests", sink.requests());
    assert_eq!(sink.duplicates(), 0);
    no_protocol_errors(&sink);
}

#[tokio::test(start_paused = true)]
async fn a_sink_that_refuses_until_told_otherwise_gets_everything_after() {
    let sink = FakeSink::start(SinkOptions::default()).await;
    sink.set_refusing(true);
    let spool = tempfile::tempdir().unwrap();
    let (emitter, delivery) = start(&sink, spool.path()).await.unwrap();

    emit_messages(&emitter, 1..=5);
    tokio::time::sleep(Duration::from_secs(60)).await;
    let refused = sink.refused();
    assert!(refused >= 3, "{refused} requests refused");
    assert_eq!(sink.requests(), refused);
    assert_eq!(stored(&sink), Vec::<Envelope>::new());

    sink.set_refusing(false);
    emit_messages(&emitter, 6..=7);
    let report = delivery.finish(Duration::from_secs(60)).await;

    assert_delivered_in_order(&sink, &report, 7);
}

#[tokio::test(start_paused = true)]
async fn a_partly_stored_batch_is_resent_from_the_ack() {
    let sink = FakeSink::start(SinkOptions {
        store_at_most: Some(3),
        ..SinkOptions::default()
    })
    .await;
    let spool = tempfile::tempdir().unwrap();
    let (emitter, delivery) = start(&sink, spool.path()).await.unwrap();

    emit_messages(&emitter, 1..=10);
    let report = delivery.finish(Duration::from_secs(10)).await;

    assert_eq!(
        report,
        DeliveryReport {
            delivered: 10,
            unsent: 0
        }
    );
    assert_eq!(stored(&sink), expected_messages(1..=10));
    // 1-3, 4-6, 7-9, 10: only what was not stored is sent again.
    assert_eq!(sink.requests(), 4);
    assert_eq!(sink.duplicates(), 0);
    no_protocol_errors(&sink);
}

#[tokio::test(start_paused = true)]
async fn unsent_events_are_resent_by_the_next_start_and_the_seq_continues() {
    let sink = FakeSink::start(SinkOptions::default()).await;
    sink.set_refusing(true);
    let spool = tempfile::tempdir().unwrap();

    let (emitter, delivery) = start(&sink, spool.path()).await.unwrap();
    emit_messages(&emitter, 1..=5);
    let report = delivery.finish(Duration::from_secs(2)).await;
    assert_eq!(
        report,
        DeliveryReport {
            delivered: 0,
            unsent: 5
        }
    );
    drop(emitter);
    assert_eq!(stored(&sink), Vec::<Envelope>::new());

    sink.set_refusing(false);
    let (emitter, delivery) = start(&sink, spool.path()).await.unwrap();
    emit_messages(&emitter, 6..=8);
    let report = delivery.finish(Duration::from_secs(10)).await;

    assert_delivered_in_order(&sink, &report, 8);

    // Everything is acknowledged: a third start has nothing to resend and goes on at 9.
    let (emitter, delivery) = start(&sink, spool.path()).await.unwrap();
    emit_messages(&emitter, [9]);
    let report = delivery.finish(Duration::from_secs(10)).await;
    assert_eq!(
        report,
        DeliveryReport {
            delivered: 1,
            unsent: 0
        }
    );
    assert_eq!(stored(&sink), expected_messages(1..=9));
}

#[tokio::test(start_paused = true)]
async fn events_stored_but_never_acked_locally_are_resent_and_deduplicated() {
    let sink = FakeSink::start(SinkOptions::default()).await;
    let spool = tempfile::tempdir().unwrap();

    let (emitter, delivery) = start(&sink, spool.path()).await.unwrap();
    emit_messages(&emitter, 1..=3);
    let report = delivery.finish(Duration::from_secs(10)).await;
    assert_eq!(
        report,
        DeliveryReport {
            delivered: 3,
            unsent: 0
        }
    );
    drop(emitter);
    // As if the worker was killed after the coordinator stored the events but before the
    // ack reached the spool.
    std::fs::remove_file(spool.path().join("spool.acked")).unwrap();

    let (emitter, delivery) = start(&sink, spool.path()).await.unwrap();
    emit_messages(&emitter, [4]);
    let report = delivery.finish(Duration::from_secs(10)).await;

    assert_eq!(
        report,
        DeliveryReport {
            delivered: 4,
            unsent: 0
        }
    );
    assert_eq!(stored(&sink), expected_messages(1..=4));
    assert_eq!(sink.duplicates(), 3);
    no_protocol_errors(&sink);
}

#[tokio::test(start_paused = true)]
async fn a_corrupt_spool_line_is_skipped_and_the_rest_is_delivered() {
    let sink = FakeSink::start(SinkOptions::default()).await;
    let spool = tempfile::tempdir().unwrap();
    let line = |seq: u64| serde_json::to_string(&expected(seq, message(seq))).unwrap();
    let half = line(3);
    std::fs::write(
        spool.path().join(SPOOL_FILE),
        format!(
            "{}\n{{\"v\":1,\"sandb\n{}\n{}",
            line(1),
            line(2),
            &half[..20]
        ),
    )
    .unwrap();

    let (emitter, delivery) = start(&sink, spool.path()).await.unwrap();
    emit_messages(&emitter, 3..=4);
    let report = delivery.finish(Duration::from_secs(10)).await;

    assert_delivered_in_order(&sink, &report, 4);
}

#[tokio::test]
async fn a_spool_left_by_another_sandbox_does_not_leak_into_this_one() {
    let sink = FakeSink::start(SinkOptions::default()).await;
    let spool = tempfile::tempdir().unwrap();
    let other = Envelope {
        sandbox_id: "sb-old".to_string(),
        ..expected(41, message(41))
    };
    std::fs::write(
        spool.path().join(SPOOL_FILE),
        format!("{}\n", serde_json::to_string(&other).unwrap()),
    )
    .unwrap();

    let (emitter, delivery) = start(&sink, spool.path()).await.unwrap();
    emit_messages(&emitter, 1..=2);
    let report = delivery.finish(Duration::from_secs(10)).await;

    assert_delivered_in_order(&sink, &report, 2);
}

#[tokio::test]
async fn a_bad_url_is_a_config_error() {
    let spool = tempfile::tempdir().unwrap();
    let config = EventsConfig {
        ids: ids(),
        sink: SinkConfig::Http {
            base_url: "localhost:8080".to_string(),
            token: TOKEN.to_string(),
            spool_dir: spool.path().to_path_buf(),
        },
        heartbeat: Duration::ZERO,
        masker: Masker::default(),
    };
    let err = events::start(config).await.err().unwrap();
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "OMOIOS_API_URL: must be an http or https URL, not \"localhost\""
    );
}

#[tokio::test(start_paused = true)]
async fn a_refused_token_keeps_the_events_and_retries_slowly() {
    let sink = FakeSink::start(SinkOptions {
        token: Some("another-token".to_string()),
        ..SinkOptions::default()
    })
    .await;
    let spool = tempfile::tempdir().unwrap();
    let (emitter, delivery) = start(&sink, spool.path()).await.unwrap();

    emit_messages(&emitter, 1..=3);
    let report = delivery.finish(Duration::from_secs(30)).await;
    drop(emitter);

    assert_eq!(
        report,
        DeliveryReport {
            delivered: 0,
            unsent: 3
        }
    );
    assert_eq!(stored(&sink), Vec::<Envelope>::new());
    // Retried at the capped delay (10 to 20 s) rather than hammering.
    let requests = sink.requests();
    assert!((2..=3).contains(&requests), "{requests} requests in 30 s");
    no_protocol_errors(&sink);
    let recovered = Spool::open(spool.path()).unwrap();
    assert_eq!(
        recovered
            .unacked
            .iter()
            .map(|envelope| envelope.seq)
            .collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(recovered.next_seq, 4);
}

#[tokio::test(start_paused = true)]
async fn finish_sends_what_is_queued_without_waiting_for_the_batch_window() {
    let sink = FakeSink::start(SinkOptions::default()).await;
    let spool = tempfile::tempdir().unwrap();
    let (emitter, delivery) = start(&sink, spool.path()).await.unwrap();

    emit_messages(&emitter, 1..=3);
    let started = tokio::time::Instant::now();
    let report = delivery.finish(Duration::from_secs(5)).await;

    assert_eq!(
        report,
        DeliveryReport {
            delivered: 3,
            unsent: 0
        }
    );
    assert_eq!(stored(&sink), expected_messages(1..=3));
    assert!(started.elapsed() < events::sender::BATCH_WINDOW);
    // An event emitted after the drain is not lost either: it stays in the spool.
    emitter.emit(message(4));
    drop(emitter);
    let recovered = Spool::open(spool.path()).unwrap();
    let unacked: Vec<Envelope> = recovered
        .unacked
        .into_iter()
        .map(|envelope| Envelope {
            at: fixed_time(),
            ..envelope
        })
        .collect();
    assert_eq!(unacked, expected_messages([4]));
    assert_eq!(recovered.next_seq, 5);
}

#[tokio::test(start_paused = true)]
async fn finish_gives_up_at_the_deadline_when_the_sink_is_down() {
    let sink = FakeSink::start(SinkOptions::default()).await;
    sink.set_refusing(true);
    let spool = tempfile::tempdir().unwrap();
    let (emitter, delivery) = start(&sink, spool.path()).await.unwrap();

    emit_messages(&emitter, 1..=4);
    let started = tokio::time::Instant::now();
    let report = delivery.finish(Duration::from_secs(3)).await;

    assert_eq!(
        report,
        DeliveryReport {
            delivered: 0,
            unsent: 4
        }
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn heartbeats_come_at_the_configured_interval_with_the_status() {
    let sink = FakeSink::start(SinkOptions::default()).await;
    let spool = tempfile::tempdir().unwrap();
    let (emitter, delivery) = events::start(config(&sink, spool.path(), Duration::from_secs(1)))
        .await
        .unwrap();
    emitter.set_phase(Some(Phase::Design));
    emitter.count_turn();
    emitter.count_tool_call();
    emitter.add_usage(Usage {
        input_tokens: 10,
        output_tokens: 5,
        cost_usd: 0.5,
    });

    tokio::time::sleep(Duration::from_millis(3500)).await;
    let report = delivery.finish(Duration::from_secs(5)).await;

    let heartbeat = Event::AgentHeartbeat(AgentHeartbeat {
        phase: Some(Phase::Design),
        task_id: None,
        counters: Counters {
            turns: 1,
            tool_calls: 1,
            usage: Usage {
                input_tokens: 10,
                output_tokens: 5,
                cost_usd: 0.5,
            },
        },
    });
    assert_eq!(
        report,
        DeliveryReport {
            delivered: 3,
            unsent: 0
        }
    );
    assert_eq!(
        stored(&sink),
        (1..=3)
            .map(|seq| expected(seq, heartbeat.clone()))
            .collect::<Vec<_>>()
    );
}

/// The sink's own checks: without them, "no protocol errors" above would prove nothing.
#[tokio::test]
async fn the_sink_answers_like_the_coordinator_and_records_protocol_errors() {
    let sink = FakeSink::start(SinkOptions::default()).await;
    let client = reqwest::Client::new();
    let url = format!("{}/api/v1/sandboxes/{SANDBOX}/events", sink.url());
    let batch = |seqs: &[u64]| serde_json::json!({ "events": seqs.iter().map(|seq| expected(*seq, message(*seq))).collect::<Vec<_>>() });
    let post = |body: serde_json::Value, token: &str| {
        client.post(&url).bearer_auth(token).json(&body).send()
    };
    let status_and_body = |response: reqwest::Response| async move {
        (response.status().as_u16(), response.text().await.unwrap())
    };

    // Out of order storage: the ack stays at the highest contiguous seq.
    let answer = status_and_body(post(batch(&[2, 3]), TOKEN).await.unwrap()).await;
    assert_eq!(answer, (200, r#"{"acked_seq":0}"#.to_string()));
    let answer = status_and_body(post(batch(&[1, 2]), TOKEN).await.unwrap()).await;
    assert_eq!(answer, (200, r#"{"acked_seq":3}"#.to_string()));
    assert_eq!(sink.duplicates(), 1);
    assert_eq!(stored(&sink), expected_messages(1..=3));

    let answer = status_and_body(post(batch(&[4]), "wrong").await.unwrap()).await;
    assert_eq!(answer.0, 401);
    let other_sandbox = serde_json::json!({
        "events": [Envelope { sandbox_id: "sb-other".to_string(), ..expected(4, message(4)) }]
    });
    assert_eq!(
        post(other_sandbox, TOKEN).await.unwrap().status().as_u16(),
        422
    );
    assert_eq!(
        post(batch(&[5, 4]), TOKEN).await.unwrap().status().as_u16(),
        422
    );
    assert_eq!(
        post(batch(&[]), TOKEN).await.unwrap().status().as_u16(),
        422
    );
    let not_json = client
        .post(&url)
        .bearer_auth(TOKEN)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status().as_u16(), 400);
    let wrong_method = client.get(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(wrong_method.status().as_u16(), 405);

    assert_eq!(
        sink.protocol_errors(),
        vec![
            "event seq 4 carries sandbox id \"sb-other\" but was posted for \"sb-7\"".to_string(),
            "seq 4 follows seq 5; a batch is in rising seq order from 1".to_string(),
            "empty batch".to_string(),
            "content-type is \"text/plain\", not application/json".to_string(),
            "GET on the ingest route; only POST is allowed".to_string(),
        ]
    );
    assert_eq!(sink.requests(), 8);
    assert_eq!(stored(&sink), expected_messages(1..=3));
}

#[tokio::test]
async fn every_event_is_masked_before_it_is_spooled_or_sent() {
    let key = "sk-ant-api03-masked0123456789";
    let (emitter, mut rx) = Emitter::channel(ids());
    emitter.set_masker(Masker::new([key]).unwrap());
    emitter.emit(Event::AgentToolResult(AgentToolResult {
        call_id: format!("call-{key}"),
        ok: true,
        output_summary: format!("ANTHROPIC_API_KEY={key}\n"),
    }));
    emitter.emit(Event::AgentMessage(AgentMessage {
        text: "nothing to hide".into(),
    }));
    let events: Vec<Event> = [rx.recv().await.unwrap(), rx.recv().await.unwrap()]
        .into_iter()
        .map(|envelope| envelope.event)
        .collect();
    assert_eq!(
        events,
        [
            Event::AgentToolResult(AgentToolResult {
                call_id: "call-***".into(),
                ok: true,
                output_summary: "ANTHROPIC_API_KEY=***\n".into(),
            }),
            Event::AgentMessage(AgentMessage {
                text: "nothing to hide".into(),
            }),
        ]
    );
}
