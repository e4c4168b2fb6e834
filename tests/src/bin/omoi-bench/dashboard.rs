//! The dashboard on a spec of 1,000 tasks, through an `omoi serve` process: the time to render
//! the spec page (request to last byte on loopback, signed in with a session cookie), and the
//! delay from ingest to the page's update as the page's script does it (the event reaches the
//! dashboard's SSE stream, then the page is read again; the browser's own DOM swap is not in it).
//!
//! The spec's sandbox is a stand-in on whose behalf this process reports a final spec of 1,000
//! tasks (20 columns of 50, each needing two of the column before; the coordinator starts none
//! of them), and then, for the delay, `agent.message` events, one at a time.

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::Utc;
use reqwest::header::{CONTENT_TYPE, COOKIE, SET_COOKIE};
use serde_json::{Value, json};

use crate::api::{SseReader, post_batch};
use crate::scheduler::final_spec_of_a_worker_run;
use crate::server::{Coordinator, omoi_binary};
use crate::stand_in;
use crate::{Result, figure, flag};

const WIDTH: usize = 50;

/// `omoi-bench dashboard --worker PATH [--omoi PATH] [--tasks 1000] [--runs 30]`.
pub fn run(args: &[String]) -> Result<()> {
    let omoi = omoi_binary(flag(args, "--omoi"))?;
    let worker = flag(args, "--worker").ok_or("--worker PATH is required")?;
    let tasks: usize = flag(args, "--tasks").unwrap_or("1000").parse()?;
    let runs: usize = flag(args, "--runs").unwrap_or("30").parse()?;
    if tasks < WIDTH * 2 || runs == 0 {
        return Err(format!(
            "--tasks must be at least {} and --runs at least 1",
            WIDTH * 2
        )
        .into());
    }
    let template = final_spec_of_a_worker_run(Path::new(worker))?;
    let final_spec = layered(&template, tasks)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(measure(&omoi, &final_spec, tasks, runs))
}

async fn measure(omoi: &Path, final_spec: &Value, tasks: usize, runs: usize) -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let mut options = stand_in::serve_options(scratch.path(), omoi.to_path_buf(), None)?;
    options.serve_args = vec!["--max-running-tasks".into(), "0".into()];
    let coordinator = Coordinator::start(&options).await?;
    let outcome = measure_on(&coordinator, scratch.path(), final_spec, tasks, runs).await;
    let outcome = outcome.map_err(|e| format!("{e}\nserver log:\n{}", coordinator.log_tail()));
    coordinator.stop().await?;
    Ok(outcome?)
}

async fn measure_on(
    coordinator: &Coordinator,
    scratch: &Path,
    final_spec: &Value,
    tasks: usize,
    runs: usize,
) -> Result<()> {
    let api = coordinator.api()?;
    let spec = stand_in::open(&api, &coordinator.data_dir, &scratch.join("repo"), 1)
        .await?
        .pop()
        .ok_or("no spec sandbox")?;
    let events_url = api.url(&format!("/sandboxes/{}/events", spec.sandbox_id));
    let envelope = |seq: u64, kind: &str, data: Value| {
        json!({"v": 1, "sandbox_id": spec.sandbox_id, "seq": seq, "at": Utc::now(),
               "spec_id": spec.spec_id, "type": kind, "data": data})
    };
    // The final spec, without the terminal event: the sandbox stays to report more.
    let body = json!({"events": [
        envelope(1, "agent.started", json!({"version": "bench", "mode": "spec", "start_phase": "explore"})),
        envelope(2, "spec.execution_completed", final_spec.clone()),
    ]});
    let acked = post_batch(
        api.http(),
        &events_url,
        &spec.bearer(),
        serde_json::to_vec(&body)?,
    )
    .await?;
    if acked != 2 {
        return Err(format!("the final spec was acknowledged up to seq {acked}, not 2").into());
    }
    let bridged = api.get(&format!("/specs/{}/tasks", spec.spec_id)).await?;
    let count = bridged.as_array().map_or(0, Vec::len);
    if count != tasks {
        return Err(format!("{count} tasks bridged, not {tasks}").into());
    }

    // A browser's session.
    let web = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let signed = web
        .post(format!("{}/sign-in", coordinator.url))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!("token={}", coordinator.token))
        .send()
        .await?;
    let cookie = signed
        .headers()
        .get(SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .ok_or("signing in set no cookie")?
        .to_string();
    let page_url = format!("{}/specs/{}", coordinator.url, spec.spec_id);
    let read_page = || async {
        let started = Instant::now();
        let answer = web.get(&page_url).header(COOKIE, &cookie).send().await?;
        if !answer.status().is_success() {
            return Err(format!("GET {page_url}: {}", answer.status()).into());
        }
        let body = answer.text().await?;
        Ok::<_, Box<dyn std::error::Error>>((started.elapsed().as_secs_f64() * 1e3, body))
    };

    // Render time.
    let (_, first) = read_page().await?;
    if first.matches("<g class=\"task").count() != tasks {
        return Err("the page does not draw every task".into());
    }
    let mut renders = Vec::with_capacity(runs);
    for _ in 0..runs {
        renders.push(read_page().await?.0);
    }

    // Ingest → the stream → the page read again, one event at a time.
    let live = web
        .get(format!("{page_url}/live?after=2"))
        .header(COOKIE, &cookie)
        .timeout(Duration::from_secs(3600))
        .send()
        .await?;
    if !live.status().is_success() {
        return Err(format!("the live stream answered {}", live.status()).into());
    }
    let mut live = SseReader::from_response(live);
    let (mut to_stream, mut to_page) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
    for n in 0..runs {
        let seq = 3 + n as u64;
        let marker = format!("bench message {n}");
        let body = json!({"events": [envelope(seq, "agent.message", json!({"text": marker}))]});
        let body = serde_json::to_vec(&body)?;
        let started = Instant::now();
        post_batch(api.http(), &events_url, &spec.bearer(), body).await?;
        loop {
            let message = tokio::time::timeout(Duration::from_secs(10), live.next())
                .await
                .map_err(|_| "the live stream fell silent")??
                .ok_or("the live stream ended")?;
            if message.event == "agent.message" && message.data.contains(&marker) {
                break;
            }
        }
        to_stream.push(started.elapsed().as_secs_f64() * 1e3);
        let (_, page) = read_page().await?;
        if !page.contains(&marker) {
            return Err(format!("the page read again lacks {marker:?}").into());
        }
        to_page.push(started.elapsed().as_secs_f64() * 1e3);
    }
    let kib = first.len() / 1024;
    figure(
        &format!("dashboard: spec page of {tasks} tasks, request to last byte ({kib} KiB)"),
        renders,
        "ms",
        50.0,
    );
    figure(
        "dashboard: ingest → event on the page's SSE stream",
        to_stream,
        "ms",
        f64::NAN,
    );
    figure(
        &format!("dashboard: ingest → page updated (stream + page read again, {tasks} tasks)"),
        to_page,
        "ms",
        100.0,
    );
    Ok(())
}

/// The template's final spec with `n` tasks in columns of 50, each task after the first
/// column needing two tasks of the column before.
fn layered(template: &Value, n: usize) -> Result<Value> {
    let first = template["tasks"]["tasks"]
        .get(0)
        .cloned()
        .ok_or("the final spec has no task")?;
    let id = |i: usize| format!("TSK-{:03}", i + 1);
    let tasks: Vec<Value> = (0..n)
        .map(|i| {
            let mut task = first.clone();
            task["id"] = json!(id(i));
            task["title"] = json!(format!("Bench task {i}"));
            let column = i / WIDTH;
            task["depends_on"] = if column == 0 {
                json!([])
            } else {
                let before = (column - 1) * WIDTH;
                let a = before + i % WIDTH;
                let b = before + (i * 7 + 3) % WIDTH;
                if a == b {
                    json!([id(a)])
                } else {
                    json!([id(a), id(b)])
                }
            };
            task
        })
        .collect();
    let mut spec = template.clone();
    spec["tasks"]["tasks"] = json!(tasks);
    Ok(spec)
}
