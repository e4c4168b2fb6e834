//! Live stream latency: from the moment a sandbox starts posting an event batch to the moment each
//! of many SSE subscribers of that spec has read the event, against an `omoi serve` process.
//!
//! The sender and the subscribers are tasks of this one process, separate from the server, so
//! both ends read the same clock; each event's `at` is the instant its POST began. With
//! `--replicas 2` (PostgreSQL) a second `omoi serve` shares the database: the sender posts to the
//! first, the subscribers read the second, so every event crosses replicas (LISTEN/NOTIFY).

use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{Value, json};

use crate::api::{Api, SseReader, post_batch};
use crate::server::{Coordinator, omoi_binary};
use crate::stand_in::{self, Sandbox};
use crate::{Result, figure, flag, quantile};

/// `omoi-bench stream [--omoi PATH] [--database URL] [--replicas 1|2] [--subscribers 100]
/// [--events 2000] [--batch 10] [--interval-ms 20] [--runs 3]`.
pub fn run(args: &[String]) -> Result<()> {
    let omoi = omoi_binary(flag(args, "--omoi"))?;
    let database = flag(args, "--database").map(str::to_string);
    let replicas: usize = flag(args, "--replicas").unwrap_or("1").parse()?;
    if !(1..=2).contains(&replicas) || (replicas == 2 && database.is_none()) {
        return Err("--replicas is 1, or 2 with --database postgres://…".into());
    }
    let subscribers: usize = flag(args, "--subscribers").unwrap_or("100").parse()?;
    let events: u64 = flag(args, "--events").unwrap_or("2000").parse()?;
    let batch: u64 = flag(args, "--batch").unwrap_or("10").parse()?;
    let interval = Duration::from_millis(flag(args, "--interval-ms").unwrap_or("20").parse()?);
    let runs: usize = flag(args, "--runs").unwrap_or("3").parse()?;
    if batch == 0 || events % batch != 0 {
        return Err("--events must be a multiple of --batch (≥ 1)".into());
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let scratch = tempfile::tempdir()?;
        let options = stand_in::serve_options(scratch.path(), omoi, database)?;
        let coordinator = Coordinator::start(&options).await?;
        let api = coordinator.api()?;
        let second = match replicas {
            2 => Some(Coordinator::start(&options).await?),
            _ => None,
        };
        let readers = match &second {
            Some(other) => other.api()?,
            None => api.clone(),
        };
        let sandboxes = stand_in::open(
            &api,
            &coordinator.data_dir,
            &scratch.path().join("repo"),
            runs,
        )
        .await?;
        let (mut p50s, mut p99s, mut maxes) = (Vec::new(), Vec::new(), Vec::new());
        for sandbox in &sandboxes {
            let ends = Ends {
                sender: &api,
                readers: &readers,
            };
            let mut sample = one_run(ends, sandbox, subscribers, events, batch, interval).await?;
            sample.sort_by(f64::total_cmp);
            let (p50, p99, max) = (
                quantile(&sample, 0.5),
                quantile(&sample, 0.99),
                quantile(&sample, 1.0),
            );
            eprintln!(
                "bench: stream: {} deliveries, p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms",
                sample.len()
            );
            p50s.push(p50);
            p99s.push(p99);
            maxes.push(max);
        }
        stand_in::close(&api, &sandboxes).await?;
        if let Some(other) = second {
            other.stop().await?;
        }
        coordinator.stop().await?;
        let rate = batch as f64 * 1000.0 / interval.as_millis().max(1) as f64;
        let shape = format!("{subscribers} subscribers, {rate:.0} events/s in batches of {batch}");
        let (what, p99_target) = match replicas {
            2 => ("SSE latency ingest on A → subscriber on B", 50.0),
            _ => ("SSE latency ingest → subscriber", 20.0),
        };
        figure(&format!("{what} p50 ({shape})"), p50s, "ms", f64::NAN);
        figure(&format!("{what} p99 ({shape})"), p99s, "ms", p99_target);
        figure(&format!("{what} max ({shape})"), maxes, "ms", f64::NAN);
        Ok(())
    })
}

/// Where the events go in and where they are read.
#[derive(Clone, Copy)]
struct Ends<'a> {
    sender: &'a Api,
    readers: &'a Api,
}

/// Connects the subscribers, sends `events` events, and answers every (event, subscriber)
/// latency in milliseconds.
async fn one_run(
    Ends {
        sender: api,
        readers: read_on,
    }: Ends<'_>,
    sandbox: &Sandbox,
    subscribers: usize,
    events: u64,
    batch: u64,
    interval: Duration,
) -> Result<Vec<f64>> {
    let mut readers = Vec::with_capacity(subscribers);
    for _ in 0..subscribers {
        let mut reader = read_on.subscribe(&sandbox.spec_id).await?;
        // The first message is the spec's status: the stream is live from here on.
        match reader.next().await? {
            Some(message) if message.event == "status" => {}
            other => return Err(format!("expected a status message first, got {other:?}").into()),
        }
        readers.push(reader);
    }
    let listeners: Vec<_> = readers
        .into_iter()
        .map(|reader| tokio::spawn(listen(reader, events)))
        .collect();
    let url = api.url(&format!("/sandboxes/{}/events", sandbox.sandbox_id));
    let bearer = sandbox.bearer();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq = 1;
    while seq <= events {
        ticker.tick().await;
        let at = Utc::now();
        let body: Vec<Value> = (seq..seq + batch)
            .map(|s| crate::ingest::envelope(sandbox, s, at))
            .collect();
        let body = serde_json::to_vec(&json!({ "events": body }))?;
        post_batch(api.http(), &url, &bearer, body).await?;
        seq += batch;
    }
    let mut sample = Vec::new();
    for listener in listeners {
        sample.extend(listener.await.map_err(|e| e.to_string())??);
    }
    Ok(sample)
}

/// Reads until `events` events arrived; answers each one's latency (receipt − `at`) in ms.
async fn listen(mut reader: SseReader, events: u64) -> std::result::Result<Vec<f64>, String> {
    let mut latencies = Vec::with_capacity(events as usize);
    let deadline = Instant::now() + Duration::from_secs(120);
    while (latencies.len() as u64) < events {
        let message = tokio::time::timeout_at(deadline.into(), reader.next())
            .await
            .map_err(|_| "the stream stalled".to_string())?
            .map_err(|e| e.to_string())?
            .ok_or("the stream ended early")?;
        let received = Utc::now();
        if message.event == "status" {
            continue;
        }
        let envelope: Value = serde_json::from_str(&message.data).map_err(|e| e.to_string())?;
        let at: chrono::DateTime<Utc> = envelope["at"]
            .as_str()
            .and_then(|at| at.parse().ok())
            .ok_or_else(|| format!("no `at` in {envelope}"))?;
        latencies.push((received - at).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e3);
    }
    Ok(latencies)
}
