//! Execute → first event: from `POST /specs/{id}/execute` to the sandbox's `agent.started`, with the
//! local provider running the real static worker on the scripted model, against an `omoi serve`
//! process. The event is watched the way a user sees it: on the spec's live SSE stream.
//!
//! Three figures split the path: the execute request itself (claim, workspace copy, process
//! spawn), the moment the worker stamped `agent.started` (its `at`), and the moment the stream
//! delivered it (after the worker's sender posted it and the coordinator stored it).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{Value, json};

use crate::api::{Api, SseReader};
use crate::server::{Coordinator, ServeOptions, omoi_binary};
use crate::{Result, figure, flag};

/// `omoi-bench execute --worker PATH [--omoi PATH] [--runs 20]`.
pub fn run(args: &[String]) -> Result<()> {
    let omoi = omoi_binary(flag(args, "--omoi"))?;
    let worker = PathBuf::from(flag(args, "--worker").ok_or("--worker PATH is required")?);
    let runs: usize = flag(args, "--runs").unwrap_or("20").parse()?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let options = ServeOptions {
            omoi,
            database: None,
            worker_bin: worker,
            worker_env: vec![
                ("OMOI_LLM".into(), "scripted".into()),
                (
                    "OMOI_SCRIPT".into(),
                    omoi_tests::fixtures::sample_script().display().to_string(),
                ),
                ("OMOI_LOG".into(), "error".into()),
            ],
            serve_args: Vec::new(),
            wrap: Vec::new(),
        };
        let coordinator = Coordinator::start(&options).await?;
        let api = coordinator.api()?;
        let repo = omoi_tests::fixtures::sample_repo().display().to_string();
        let project = api.create_project(&repo, json!({})).await?;
        let (title, description) = omoi_tests::fixtures::sample_request();
        let (mut request, mut stamped, mut delivered) = (Vec::new(), Vec::new(), Vec::new());
        // The first run warms the page cache (worker binary, fixtures); it is not counted.
        for n in 0..=runs {
            let spec_id = api.create_spec(&project, &title, &description).await?;
            let run = one_run(&api, &spec_id)
                .await
                .map_err(|e| format!("run {n}: {e}\nserver log:\n{}", coordinator.log_tail()))?;
            if n > 0 {
                request.push(run.request_ms);
                stamped.push(run.stamped_ms);
                delivered.push(run.delivered_ms);
            }
        }
        coordinator.stop().await?;
        figure(
            "execute → agent.started on the SSE stream (local provider)",
            delivered,
            "ms",
            25.0,
        );
        figure(
            "execute → agent.started stamped by the worker",
            stamped,
            "ms",
            f64::NAN,
        );
        figure(
            "POST /specs/{id}/execute round trip (claim, copy, spawn)",
            request,
            "ms",
            f64::NAN,
        );
        Ok(())
    })
}

struct Run {
    request_ms: f64,
    stamped_ms: f64,
    delivered_ms: f64,
}

/// Subscribes, executes, waits for `agent.started`, then for the spec to stop after explore.
async fn one_run(api: &Api, spec_id: &str) -> Result<Run> {
    let mut stream = api.subscribe(spec_id).await?;
    match stream.next().await? {
        Some(message) if message.event == "status" => {}
        other => return Err(format!("expected a status message first, got {other:?}").into()),
    }
    let started_at = Utc::now();
    let started = Instant::now();
    // Stopping after the first phase keeps each run short and leaves no tasks to schedule.
    api.execute(spec_id, Some("explore")).await?;
    let request_ms = started.elapsed().as_secs_f64() * 1e3;
    let envelope = wait_for(&mut stream, |event, _| event == "agent.started").await?;
    let delivered_ms = started.elapsed().as_secs_f64() * 1e3;
    let at: chrono::DateTime<Utc> = envelope["at"]
        .as_str()
        .and_then(|at| at.parse().ok())
        .ok_or_else(|| format!("no `at` in {envelope}"))?;
    let stamped_ms = (at - started_at).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e3;
    let ended = wait_for(&mut stream, |event, data| {
        event == "status"
            && matches!(
                data["status"].as_str(),
                Some("completed" | "failed" | "cancelled" | "pending")
            )
    })
    .await?;
    if ended["status"] != "pending" {
        return Err(format!("the spec did not stop after explore: {ended}").into());
    }
    Ok(Run {
        request_ms,
        stamped_ms,
        delivered_ms,
    })
}

/// Reads the stream until a message matches (by SSE event name and JSON data).
async fn wait_for(stream: &mut SseReader, wanted: impl Fn(&str, &Value) -> bool) -> Result<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let message = tokio::time::timeout_at(deadline, stream.next())
            .await
            .map_err(|_| "timed out waiting on the stream")??
            .ok_or("the stream ended")?;
        let data: Value = serde_json::from_str(&message.data).unwrap_or(Value::Null);
        if wanted(&message.event, &data) {
            return Ok(data);
        }
    }
}
