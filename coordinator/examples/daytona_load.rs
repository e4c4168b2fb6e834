//! The daytona provider under load, against the fake Daytona (`omoi_tests::fake_daytona`, on a
//! runtime and threads of its own; its sandboxes' worker is `/bin/true`): N sandboxes spawned one
//! after the other, each polled to its end, its log kept and the sandbox deleted. Prints
//! `omoi-bench` figure lines: the provider's time from spawn to the create answered and to the
//! worker started, the provider's CPU per sandbox (the thread that runs it alone, from
//! `/proc/thread-self/stat`: the fake and its processes are elsewhere), and the API and toolbox
//! requests per sandbox the fake counted.
//!
//! `cargo run --release -p omoi-coordinator --example daytona_load -- [--sandboxes 1000]
//! [--poll-ms 1000] [--worker /bin/true]`

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use omoi_coordinator::sandbox::daytona::{DaytonaConfig, DaytonaProvider};
use omoi_coordinator::sandbox::{Limits, Provider, ProviderStatus, SpawnRequest};
use omoi_tests::fake_daytona::{FakeDaytona, FakeDaytonaConfig, FakeSnapshot};
use serde_json::json;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const KEY: &str = "dtn_bench_key_0123456789";

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

/// This thread's CPU time so far (user + system), in seconds.
fn thread_cpu_secs() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat")?;
    let rest = stat.rsplit_once(')').ok_or("unreadable stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11).ok_or("no utime")?.parse::<f64>()?
        + fields.get(12).ok_or("no stime")?.parse::<f64>()?;
    let hz = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()?;
    let hz: f64 = String::from_utf8_lossy(&hz.stdout).trim().parse()?;
    Ok(ticks / hz)
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Starts the fake on a runtime of its own; answers it once listening.
fn start_fake(dir: PathBuf, worker: PathBuf) -> Result<FakeDaytona> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => {
                let _ = tx.send(Err(format!("a runtime for the fake: {e}")));
                return;
            }
        };
        runtime.block_on(async move {
            let fake = FakeDaytona::start(FakeDaytonaConfig {
                key: KEY.to_string(),
                organization: "org-bench".to_string(),
                snapshots: BTreeMap::from([(
                    "omoi-worker".to_string(),
                    FakeSnapshot {
                        state: "active".into(),
                        worker: Some(worker),
                    },
                )]),
                work_dir: dir,
                start_delay: Duration::ZERO,
            })
            .await;
            let _ = tx.send(Ok(fake));
            std::future::pending::<()>().await;
        });
    });
    Ok(rx.recv()??)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = flag(&args, "--sandboxes").unwrap_or("1000").parse()?;
    let poll_ms: u64 = flag(&args, "--poll-ms").unwrap_or("1000").parse()?;
    let worker = PathBuf::from(flag(&args, "--worker").unwrap_or("/bin/true"));
    if n == 0 || poll_ms == 0 {
        return Err("--sandboxes and --poll-ms must be at least 1".into());
    }
    let dir = tempfile::tempdir()?;
    let fake = start_fake(dir.path().join("daytona"), worker)?;
    // The provider runs on this thread alone: its CPU is this thread's.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        let mut config = DaytonaConfig::new(
            fake.api_url().parse()?,
            KEY.to_string(),
            "omoi-worker".to_string(),
            dir.path().join("data"),
        );
        config.poll_interval = Duration::from_millis(poll_ms);
        let provider = DaytonaProvider::start(config).await?;
        let before = fake.requests();
        let cpu_start = thread_cpu_secs()?;
        let started = Instant::now();
        let mut spawn_ms = Vec::with_capacity(n);
        let mut handles = Vec::with_capacity(n);
        for i in 0..n {
            let id = format!("00000000-0000-4000-8000-{i:012}");
            let request = SpawnRequest {
                sandbox_id: id.clone(),
                image: None,
                env: BTreeMap::from([
                    ("SPEC_ID".to_string(), "bench".to_string()),
                    ("SANDBOX_TOKEN".to_string(), format!("omoi_sbx_{i:032}")),
                ]),
                labels: omoi_coordinator::launch::labels(&id, "bench", None),
                limits: Limits::default(),
                repo: None,
                image_pull_secrets: Vec::new(),
            };
            let at = Instant::now();
            handles.push(provider.spawn(request).await?);
            spawn_ms.push(at.elapsed().as_secs_f64() * 1000.0);
        }
        let deadline = Instant::now() + Duration::from_secs(900);
        loop {
            let mut ended = 0;
            for handle in &handles {
                if provider.status(handle).await? != ProviderStatus::Running {
                    ended += 1;
                }
            }
            let deleted = fake.requests().get("delete").copied().unwrap_or(0);
            if ended == n && deleted >= n as u64 {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("after 900 s: {ended} of {n} ended, {deleted} deleted").into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let wall = started.elapsed().as_secs_f64();
        let cpu = thread_cpu_secs()? - cpu_start;
        let after = fake.requests();
        let mut exited = 0;
        for handle in &handles {
            if provider.status(handle).await? == (ProviderStatus::Exited { code: Some(0) }) {
                exited += 1;
            }
        }
        provider.close();
        let per_sandbox: BTreeMap<&String, f64> = after
            .iter()
            .map(|(k, v)| {
                (
                    k,
                    (v - before.get(k).copied().unwrap_or(0)) as f64 / n as f64,
                )
            })
            .collect();
        let requests: f64 = per_sandbox.values().sum();
        spawn_ms.sort_by(f64::total_cmp);
        println!(
            "{}",
            json!({"figure": "daytona provider: spawn → create answered and worker started (fake Daytona, loopback)",
                "value": quantile(&spawn_ms, 0.5), "unit": "ms", "target": null,
                "spread": format!("p10 {:.3} … p90 {:.3}, p99 {:.3} ({n} sandboxes; the fake's toolbox runs a shell per call)",
                    quantile(&spawn_ms, 0.1), quantile(&spawn_ms, 0.9), quantile(&spawn_ms, 0.99))})
        );
        println!(
            "{}",
            json!({"figure": format!("daytona provider: CPU per sandbox ({n} sandboxes created, polled to the end, logs kept, deleted)"),
                "value": cpu * 1000.0 / n as f64, "unit": "ms", "target": null,
                "spread": format!("{cpu:.2} s CPU of the provider's thread in {wall:.1} s; {exited} of {n} exited 0")})
        );
        println!(
            "{}",
            json!({"figure": format!("daytona provider: API and toolbox requests per sandbox (poll every {poll_ms} ms)"),
                "value": requests, "unit": "req", "target": null,
                "spread": format!("{per_sandbox:?}")})
        );
        Ok(())
    });
    drop(fake);
    result
}
