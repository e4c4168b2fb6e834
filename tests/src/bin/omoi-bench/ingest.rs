//! Coordinator ingest throughput: concurrent senders, each a distinct sandbox posting batches of
//! events to `POST /sandboxes/{id}/events` one request at a time (as a worker does), against an
//! `omoi serve` process on SQLite or PostgreSQL.
//!
//! The senders are tasks of this process, not of the server; their request bodies are encoded
//! before the clock starts, so the load generator spends its CPU on HTTP only. With
//! `--replicas 2` (PostgreSQL) two `omoi serve` share the database and the senders alternate
//! between them; the server CPU is the sum of both.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::server::{Coordinator, cpu_secs, omoi_binary};
use crate::stand_in::{self, Sandbox};
use crate::{Result, api, figure, flag, quantile};

/// The event types a worker sends most, in the proportions of a scripted spec run.
fn event_data(seq: u64) -> (&'static str, Value) {
    match seq % 4 {
        0 => (
            "agent.message",
            json!({"text": "I will read the entry point first, then the tests, to see how options are parsed and where the greeting is printed."}),
        ),
        1 => (
            "agent.tool_use",
            json!({"tool": "read_file", "call_id": format!("call_{seq}"), "input_summary": "{\"path\":\"bin/greet\"}"}),
        ),
        2 => (
            "agent.tool_result",
            json!({"call_id": format!("call_{}", seq - 1), "ok": true, "output_summary": "#!/bin/sh\n# Prints a greeting.\nname=${1:-world}\necho \"Hello, $name\"\n"}),
        ),
        _ => (
            "agent.usage",
            json!({"model": "scripted", "call": {"input_tokens": 1520, "output_tokens": 180, "cost_usd": 0.0072}, "total": {"input_tokens": 9120, "output_tokens": 1080, "cost_usd": 0.0432}}),
        ),
    }
}

/// One event envelope of `sandbox`, as a worker writes it.
pub fn envelope(sandbox: &Sandbox, seq: u64, at: DateTime<Utc>) -> Value {
    let (kind, data) = event_data(seq);
    json!({
        "v": 1, "sandbox_id": sandbox.sandbox_id, "seq": seq, "at": at,
        "spec_id": sandbox.spec_id, "type": kind, "data": data,
    })
}

/// The encoded body of one batch: seqs `first..first + size`.
pub fn batch_body(sandbox: &Sandbox, first: u64, size: u64, at: DateTime<Utc>) -> Result<Vec<u8>> {
    let events: Vec<Value> = (first..first + size)
        .map(|seq| envelope(sandbox, seq, at))
        .collect();
    Ok(serde_json::to_vec(&json!({ "events": events }))?)
}

/// `omoi-bench ingest [--omoi PATH] [--database URL] [--replicas 1|2] [--label NAME]
/// [--senders 50] [--batch 100] [--batches 20] [--runs 5] [--target EVENTS_PER_S]
/// [--wrap "COMMAND ARGS"]`; `--wrap` runs the server under another program, e.g.
/// `valgrind --tool=callgrind` to profile the ingest path.
pub fn run(args: &[String]) -> Result<()> {
    let omoi = omoi_binary(flag(args, "--omoi"))?;
    let database = flag(args, "--database").map(str::to_string);
    let label = flag(args, "--label").unwrap_or("SQLite").to_string();
    let senders: usize = flag(args, "--senders").unwrap_or("50").parse()?;
    let batch: u64 = flag(args, "--batch").unwrap_or("100").parse()?;
    let batches: u64 = flag(args, "--batches").unwrap_or("20").parse()?;
    let runs: usize = flag(args, "--runs").unwrap_or("5").parse()?;
    let target: f64 = flag(args, "--target").map_or(Ok(f64::NAN), str::parse)?;
    let wrap = crate::server::wrap_flag(args);
    let replicas: usize = flag(args, "--replicas").unwrap_or("1").parse()?;
    if !(1..=2).contains(&replicas) || (replicas == 2 && database.is_none()) {
        return Err("--replicas is 1, or 2 with --database postgres://…".into());
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let scratch = tempfile::tempdir()?;
        let mut options = stand_in::serve_options(scratch.path(), omoi, database)?;
        options.wrap = wrap;
        let coordinator = Coordinator::start(&options).await?;
        let api = coordinator.api()?;
        let sandboxes =
            stand_in::open(&api, &coordinator.data_dir, &scratch.path().join("repo"), senders)
                .await?;
        let mut servers = vec![coordinator];
        if replicas == 2 {
            servers.push(Coordinator::start(&options).await?);
        }
        let apis = servers
            .iter()
            .map(Coordinator::api)
            .collect::<Result<Vec<_>>>()?;
        let cluster = Cluster {
            apis: &apis,
            servers: &servers,
        };
        let log_tail = || servers[0].log_tail();
        let mut next_seq = vec![1u64; senders];
        // A warm-up round: connections, statement caches, the first pages of every table.
        measure(cluster, &sandboxes, &mut next_seq, batch, 2)
            .await
            .map_err(|e| format!("{e}\nserver log:\n{}", log_tail()))?;
        let mut rates = Vec::new();
        let mut server_cpu = Vec::new();
        let mut p99 = Vec::new();
        for _ in 0..runs {
            let run = measure(cluster, &sandboxes, &mut next_seq, batch, batches)
                .await
                .map_err(|e| format!("{e}\nserver log:\n{}", log_tail()))?;
            eprintln!(
                "bench: ingest {label}: {:.0} events/s, server CPU {:.2} s, bench CPU {:.2} s over {:.2} s",
                run.events_per_sec, run.server_cpu_secs, run.bench_cpu_secs, run.wall_secs
            );
            rates.push(run.events_per_sec);
            server_cpu.push(run.server_cpu_secs * 1e6 / run.events as f64);
            p99.push(run.request_p99_ms);
        }
        stand_in::close(&api, &sandboxes).await?;
        for server in servers {
            server.stop().await?;
        }
        let shape = format!("{senders} senders × batches of {batch}");
        figure(&format!("coordinator ingest, {label} ({shape})"), rates, "events/s", target);
        figure(
            &format!("coordinator CPU per event ingested, {label}"),
            server_cpu,
            "µs",
            f64::NAN,
        );
        figure(
            &format!("ingest request p99 under that load, {label}"),
            p99,
            "ms",
            f64::NAN,
        );
        Ok(())
    })
}

/// What one round of sending measured.
struct Round {
    events: u64,
    wall_secs: f64,
    events_per_sec: f64,
    server_cpu_secs: f64,
    bench_cpu_secs: f64,
    request_p99_ms: f64,
}

/// The coordinators under load and a client of each.
#[derive(Clone, Copy)]
struct Cluster<'a> {
    apis: &'a [api::Api],
    servers: &'a [Coordinator],
}

impl Cluster<'_> {
    /// CPU time all the servers have used so far, in seconds.
    fn cpu_secs(&self) -> Result<f64> {
        self.servers.iter().map(Coordinator::cpu_secs).sum()
    }
}

/// Every sender posts `batches` batches of `batch` events, one request at a time; sender `i`
/// posts to replica `i mod replicas`.
async fn measure(
    cluster: Cluster<'_>,
    sandboxes: &[Sandbox],
    next_seq: &mut [u64],
    batch: u64,
    batches: u64,
) -> Result<Round> {
    let at = Utc::now();
    let mut work = Vec::with_capacity(sandboxes.len());
    for (i, (sandbox, next)) in sandboxes.iter().zip(next_seq.iter_mut()).enumerate() {
        let api = &cluster.apis[i % cluster.apis.len()];
        let mut bodies = Vec::with_capacity(batches as usize);
        for _ in 0..batches {
            bodies.push(batch_body(sandbox, *next, batch, at)?);
            *next += batch;
        }
        let url = api.url(&format!("/sandboxes/{}/events", sandbox.sandbox_id));
        work.push((url, sandbox.bearer(), bodies, *next - 1));
    }
    let http = Arc::new(cluster.apis[0].http().clone());
    let server_before = cluster.cpu_secs()?;
    let bench_before = cpu_secs(std::process::id())?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (url, bearer, bodies, last_seq) in work {
        let http = http.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(bodies.len());
            let mut acked = 0;
            for body in bodies {
                let sent = Instant::now();
                acked = api::post_batch(&http, &url, &bearer, body)
                    .await
                    .map_err(|e| e.to_string())?;
                latencies.push(sent.elapsed().as_secs_f64() * 1e3);
            }
            if acked != last_seq {
                return Err(format!("{url}: acked {acked}, sent up to {last_seq}"));
            }
            Ok::<_, String>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let wall_secs = started.elapsed().as_secs_f64();
    let server_cpu_secs = cluster.cpu_secs()? - server_before;
    let bench_cpu_secs = cpu_secs(std::process::id())? - bench_before;
    let events = sandboxes.len() as u64 * batches * batch;
    latencies.sort_by(f64::total_cmp);
    let p99 = quantile(&latencies, 0.99);
    Ok(Round {
        events,
        wall_secs,
        events_per_sec: events as f64 / wall_secs,
        server_cpu_secs,
        bench_cpu_secs,
        request_p99_ms: p99,
    })
}
