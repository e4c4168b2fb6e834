//! Scheduler throughput: a spec whose final spec holds 1,000 no-op tasks in a wide graph (one
//! root, 998 tasks that need only the root, one task that needs all of those) runs through an
//! `omoi serve` process and the local provider.
//!
//! The spec's sandbox is a stand-in on whose behalf this process reports the final spec (taken
//! from a real scripted worker run, its task list replaced). The coordinator bridges it, and the
//! scheduler claims each ready task and starts a real process for it (the stand-in in task
//! mode), which announces itself; this process then reports that task started and completed
//! (a no-op), which makes the next tasks ready. Senders are tasks of this one process.
//!
//! With `--warm-pool N` the server keeps N standby sandboxes (the stand-in in standby mode:
//! it registers and long-polls as the worker does) and the run starts once the pool is full:
//! each launch claims a standby, puts the repository into it and hands it its assignment, or
//! starts cold when the pool is empty.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{Value, json};

use crate::api::{Api, post_batch};
use crate::server::{Coordinator, omoi_binary};
use crate::stand_in::{self, Sandbox};
use crate::{Result, figure, flag};

/// `omoi-bench scheduler --worker PATH [--omoi PATH] [--tasks 1000] [--running 100] [--runs 3]
/// [--warm-pool N] [--wrap "COMMAND ARGS"]`; `--running` is the server's limit of running tasks
/// (total and per project); `--warm-pool` the server's pool size; `--wrap` runs the server under
/// another program (a profiler).
pub fn run(args: &[String]) -> Result<()> {
    let omoi = omoi_binary(flag(args, "--omoi"))?;
    let worker = flag(args, "--worker").ok_or("--worker PATH is required")?;
    let tasks: usize = flag(args, "--tasks").unwrap_or("1000").parse()?;
    let running: u32 = flag(args, "--running").unwrap_or("100").parse()?;
    let runs: usize = flag(args, "--runs").unwrap_or("3").parse()?;
    let warm: u32 = flag(args, "--warm-pool").unwrap_or("0").parse()?;
    let wrap = crate::server::wrap_flag(args);
    if tasks < 3 {
        return Err("--tasks must be at least 3 (a root, the middle, a sink)".into());
    }
    let template = final_spec_of_a_worker_run(Path::new(worker))?;
    let final_spec = wide_graph(&template, tasks)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let (mut rates, mut cpu, mut bridge) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs {
            let run = one_run(&omoi, &final_spec, tasks, running, warm, &wrap).await?;
            eprintln!(
                "bench: scheduler: {tasks} tasks dispatched in {:.2} s ({:.0}/s), bridge {:.0} ms, \
                 coordinator CPU {:.2} ms per task, {} warm",
                run.dispatch_secs,
                tasks as f64 / run.dispatch_secs,
                run.bridge_ms,
                run.cpu_ms_per_task,
                run.warm
            );
            rates.push(tasks as f64 / run.dispatch_secs);
            cpu.push(run.cpu_ms_per_task);
            bridge.push(run.bridge_ms);
        }
        let pool = if warm > 0 {
            format!(", warm pool of {warm}")
        } else {
            String::new()
        };
        let shape = format!("{tasks} no-op tasks, wide graph, ≤ {running} running{pool}");
        figure(
            &format!("scheduler: tasks dispatched ({shape})"),
            rates,
            "tasks/s",
            500.0,
        );
        figure(
            &format!("scheduler: coordinator CPU per task (claim, spawn, its 4 events{pool})"),
            cpu,
            "ms",
            2.0,
        );
        figure(
            &format!("bridging a final spec of {tasks} tasks (one ingest)"),
            bridge,
            "ms",
            f64::NAN,
        );
        Ok(())
    })
}

struct Run {
    dispatch_secs: f64,
    cpu_ms_per_task: f64,
    bridge_ms: f64,
    /// Sandboxes that were a claimed standby (the server's `omoi_pool_claims_total`).
    warm: u64,
}

async fn one_run(
    omoi: &Path,
    final_spec: &Value,
    tasks: usize,
    running: u32,
    warm: u32,
    wrap: &[String],
) -> Result<Run> {
    let scratch = tempfile::tempdir()?;
    let announcements = scratch.path().join("tasks");
    std::fs::write(&announcements, "")?;
    let mut options = stand_in::serve_options(scratch.path(), omoi.to_path_buf(), None)?;
    options.worker_env.push((
        "OMOI_BENCH_TASKS".into(),
        announcements.display().to_string(),
    ));
    options.wrap = wrap.to_vec();
    options.serve_args = vec![
        "--max-running-tasks".into(),
        running.to_string(),
        "--max-running-tasks-per-project".into(),
        running.to_string(),
        "--warm-pool".into(),
        warm.to_string(),
    ];
    let coordinator = Coordinator::start(&options).await?;
    let api = coordinator.api()?;
    if warm > 0 {
        wait_for_pool(&api, f64::from(warm)).await?;
    }
    let spec = stand_in::open(&api, &coordinator.data_dir, &scratch.path().join("repo"), 1)
        .await?
        .pop()
        .ok_or("no spec sandbox")?;

    let cpu_before = coordinator.cpu_secs()?;
    let bridging = Instant::now();
    report_final_spec(&api, &spec, final_spec).await?;
    let bridge_ms = bridging.elapsed().as_secs_f64() * 1e3;
    let dispatch_secs = complete_tasks(&api, &announcements, tasks)
        .await
        .map_err(|e| format!("{e}\nserver log:\n{}", coordinator.log_tail()))?;
    let cpu_ms_per_task = (coordinator.cpu_secs()? - cpu_before) * 1e3 / tasks as f64;

    let records = api.get(&format!("/specs/{}/tasks", spec.spec_id)).await?;
    let completed = records.as_array().map_or(0, |r| {
        r.iter().filter(|t| t["status"] == "completed").count()
    });
    if completed != tasks {
        return Err(format!("{completed} of {tasks} tasks completed").into());
    }
    let claims = pool_metric(&api, "omoi_pool_claims_total").await?;
    coordinator.stop().await?;
    Ok(Run {
        dispatch_secs,
        cpu_ms_per_task,
        bridge_ms,
        warm: claims as u64,
    })
}

/// A value of the server's `/metrics` (0 when absent).
async fn pool_metric(api: &Api, name: &str) -> Result<f64> {
    let url = api.url("").replace("/api/v1", "/metrics");
    let text = api.http().get(url).send().await?.text().await?;
    Ok(crate::sandbox::metric(&text, name).unwrap_or(0.0))
}

/// Waits until `size` standbys are idle.
async fn wait_for_pool(api: &Api, size: f64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while pool_metric(api, "omoi_pool_idle").await? < size {
        if Instant::now() > deadline {
            return Err(format!("the warm pool did not fill to {size} within 60 s").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Posts the spec sandbox's run: started, the final spec, completed.
async fn report_final_spec(api: &Api, spec: &Sandbox, final_spec: &Value) -> Result<()> {
    let at = Utc::now();
    let envelope = |seq: u64, kind: &str, data: Value| {
        json!({"v": 1, "sandbox_id": spec.sandbox_id, "seq": seq, "at": at,
               "spec_id": spec.spec_id, "type": kind, "data": data})
    };
    let body = json!({"events": [
        envelope(1, "agent.started", json!({"version": "bench", "mode": "spec", "start_phase": "explore"})),
        envelope(2, "spec.execution_completed", final_spec.clone()),
        envelope(3, "agent.completed", json!({"success": true, "counters": counters()})),
    ]});
    let url = api.url(&format!("/sandboxes/{}/events", spec.sandbox_id));
    let acked = post_batch(api.http(), &url, &spec.bearer(), serde_json::to_vec(&body)?).await?;
    if acked != 3 {
        return Err(format!("the final spec was acknowledged up to seq {acked}, not 3").into());
    }
    Ok(())
}

fn counters() -> Value {
    json!({"turns": 0, "tool_calls": 0, "usage": {"input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0}})
}

/// Watches the task sandboxes announce themselves and reports each task as done; answers the
/// seconds from the start until the last task sandbox announced itself.
async fn complete_tasks(api: &Api, announcements: &Path, tasks: usize) -> Result<f64> {
    let started = Instant::now();
    let mut file = std::fs::File::open(announcements)?;
    let mut pending = String::new();
    let mut seen = HashSet::new();
    let mut last_dispatch = 0.0;
    let mut reports = tokio::task::JoinSet::new();
    let deadline = started + Duration::from_secs(300);
    while seen.len() < tasks {
        if Instant::now() > deadline {
            return Err(format!("only {} of {tasks} tasks were dispatched", seen.len()).into());
        }
        let mut chunk = String::new();
        file.read_to_string(&mut chunk)?;
        if chunk.is_empty() {
            // Reap finished reports (and surface their errors) while waiting.
            while let Some(done) = reports.try_join_next() {
                done.map_err(|e| e.to_string())??;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        }
        pending.push_str(&chunk);
        while let Some(end) = pending.find('\n') {
            let line: String = pending.drain(..=end).collect();
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [sandbox_id, token, task_id] = fields.as_slice() else {
                return Err(format!("unexpected announcement {line:?}").into());
            };
            if !seen.insert(sandbox_id.to_string()) {
                continue;
            }
            last_dispatch = started.elapsed().as_secs_f64();
            let url = api.url(&format!("/sandboxes/{sandbox_id}/events"));
            let bearer = format!("Bearer {token}");
            let body = task_run(sandbox_id, task_id)?;
            let http = api.http().clone();
            reports.spawn(async move {
                let acked = post_batch(&http, &url, &bearer, body)
                    .await
                    .map_err(|e| e.to_string())?;
                if acked == 4 {
                    Ok(())
                } else {
                    Err(format!("{url}: acknowledged up to seq {acked}, not 4"))
                }
            });
        }
    }
    while let Some(done) = reports.join_next().await {
        done.map_err(|e| e.to_string())??;
    }
    Ok(last_dispatch)
}

/// The events of a no-op task run: started, task started, task completed, completed.
fn task_run(sandbox_id: &str, task_id: &str) -> Result<Vec<u8>> {
    let at = Utc::now();
    let envelope = |seq: u64, kind: &str, data: Value| json!({"v": 1, "sandbox_id": sandbox_id, "seq": seq, "at": at, "type": kind, "data": data});
    let body = json!({"events": [
        envelope(1, "agent.started", json!({"version": "bench", "mode": "task"})),
        envelope(2, "task.started", json!({"task_id": task_id, "title": "no-op", "branch": "omoi/bench"})),
        envelope(3, "task.completed", json!({"task_id": task_id, "sha": "0123456789abcdef0123456789abcdef01234567", "summary": "nothing to do"})),
        envelope(4, "agent.completed", json!({"success": true, "counters": counters()})),
    ]});
    Ok(serde_json::to_vec(&body)?)
}

/// Runs the worker locally on the sample repository (scripted model) and answers the data of
/// its `spec.execution_completed` event.
pub(crate) fn final_spec_of_a_worker_run(worker: &Path) -> Result<Value> {
    let scratch = tempfile::tempdir()?;
    let workspace = scratch.path().join("ws");
    omoi_tests::fixtures::copy_dir(&omoi_tests::fixtures::sample_repo(), &workspace)?;
    let (title, description) = omoi_tests::fixtures::sample_request();
    let mut child = Command::new(worker)
        .env_clear()
        .env("SPEC_ID", "bench")
        .env("SPEC_PHASE", "all")
        .env("SPEC_TITLE", title)
        .env("SPEC_DESCRIPTION", description)
        .env("OMOI_LLM", "scripted")
        .env("OMOI_SCRIPT", omoi_tests::fixtures::sample_script())
        .env("OMOI_LOG", "error")
        .env("WORKSPACE", &workspace)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut found = None;
    for line in BufReader::new(stdout).lines() {
        let event: Value = serde_json::from_str(&line?)?;
        if event["type"] == "spec.execution_completed" {
            found = Some(event["data"].clone());
        }
    }
    child.wait()?;
    found.ok_or_else(|| "the worker emitted no spec.execution_completed".into())
}

/// The final spec with its tasks replaced by `n` copies of its first task: TSK-001 first, then
/// n − 2 tasks that depend on it only, then one that depends on all of those.
fn wide_graph(template: &Value, n: usize) -> Result<Value> {
    let first = template["tasks"]["tasks"]
        .get(0)
        .cloned()
        .ok_or("the final spec has no task")?;
    let id = |i: usize| format!("TSK-{i:03}");
    let middle: Vec<String> = (2..n).map(id).collect();
    let tasks: Vec<Value> = (1..=n)
        .map(|i| {
            let mut task = first.clone();
            task["id"] = json!(id(i));
            task["title"] = json!(format!("No-op task {i}"));
            task["depends_on"] = match i {
                1 => json!([]),
                i if i == n => json!(middle),
                _ => json!([id(1)]),
            };
            task
        })
        .collect();
    let mut spec = template.clone();
    spec["tasks"]["tasks"] = json!(tasks);
    Ok(spec)
}
