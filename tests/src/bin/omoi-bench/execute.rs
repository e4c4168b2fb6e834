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

/// How long the slow model of the second series takes for its first answer.
const SLOW_FIRST_ANSWER_MS: u64 = 1000;

/// `omoi-bench execute --worker PATH [--omoi PATH] [--runs 20] [--slow-runs 8]`.
///
/// Two series: the scripted model answering at once (the run reaches its end, and the worker's
/// sender flushes, within milliseconds), and the same script whose first answer takes a second,
/// as a real model's does: there `agent.started` waits in the worker's batch window.
pub fn run(args: &[String]) -> Result<()> {
    let omoi = omoi_binary(flag(args, "--omoi"))?;
    let worker = PathBuf::from(flag(args, "--worker").ok_or("--worker PATH is required")?);
    let runs: usize = flag(args, "--runs").unwrap_or("20").parse()?;
    let slow_runs: usize = flag(args, "--slow-runs").unwrap_or("8").parse()?;
    let scratch = tempfile::tempdir()?;
    let mut slow_script = omoi_tests::fixtures::sample_script_json();
    slow_script["explore"][0][0]["delay_ms"] = json!(SLOW_FIRST_ANSWER_MS);
    let slow_script = omoi_tests::fixtures::write_script(scratch.path(), "slow.json", &slow_script);
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
        let instant = api.create_project(&repo, json!({})).await?;
        let slow = api
            .create_project(
                &repo,
                json!({"OMOI_SCRIPT": slow_script.display().to_string()}),
            )
            .await?;
        // The first run warms the page cache (worker binary, fixtures); it is not counted.
        let fast = series(&api, &coordinator, &instant, runs).await?;
        let slow = series(&api, &coordinator, &slow, slow_runs).await?;
        coordinator.stop().await?;
        figure(
            "execute → agent.started on the SSE stream (local, instant model)",
            fast.delivered,
            "ms",
            25.0,
        );
        figure(
            "execute → agent.started stamped by the worker (instant model)",
            fast.stamped,
            "ms",
            f64::NAN,
        );
        figure(
            "POST /specs/{id}/execute round trip (claim, copy, spawn)",
            fast.request,
            "ms",
            f64::NAN,
        );
        figure(
            &format!(
                "execute → agent.started on the SSE stream (model answering in {SLOW_FIRST_ANSWER_MS} ms)"
            ),
            slow.delivered,
            "ms",
            25.0,
        );
        Ok(())
    })
}

/// The samples of one series, in milliseconds.
#[derive(Default)]
struct Series {
    request: Vec<f64>,
    stamped: Vec<f64>,
    delivered: Vec<f64>,
}

/// `runs` counted runs (after one uncounted) of specs in `project`.
async fn series(
    api: &Api,
    coordinator: &Coordinator,
    project: &str,
    runs: usize,
) -> Result<Series> {
    let (title, description) = omoi_tests::fixtures::sample_request();
    let mut series = Series::default();
    for n in 0..=runs {
        let spec_id = api.create_spec(project, &title, &description).await?;
        let run = one_run(api, &spec_id)
            .await
            .map_err(|e| format!("run {n}: {e}\nserver log:\n{}", coordinator.log_tail()))?;
        if n > 0 {
            series.request.push(run.request_ms);
            series.stamped.push(run.stamped_ms);
            series.delivered.push(run.delivered_ms);
        }
    }
    Ok(series)
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
