//! The kubernetes provider under load, against the fake API server in a process of its own
//! (`omoi-bench fake-kube`, whose kubelet runs `/bin/true` for each pod): N sandboxes spawned one
//! after the other, each watched to its end, its log kept and its pod deleted. Prints
//! `omoi-bench` figure lines: the provider's time from spawn to the create requests answered
//! (pod and Secret), this process's CPU per sandbox (user + system, `/proc/self/stat`), and the
//! API requests per sandbox the fake counted.
//!
//! With `--api sandbox` each sandbox is an `agents.x-k8s.io` Sandbox (the fake's controller makes
//! its pod), and what is created and deleted is the Sandbox and its Secret.
//!
//! `cargo run --release -p omoi-coordinator --example kubernetes_load -- --bench
//! target/release/omoi-bench [--sandboxes 1000] [--container /bin/true] [--api pod|sandbox]`

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use omoi_coordinator::sandbox::kubernetes::{KubernetesApi, KubernetesConfig, KubernetesProvider};
use omoi_coordinator::sandbox::{Limits, Provider, ProviderStatus, SpawnRequest};
use serde_json::json;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

/// This process's CPU time so far (user + system), in seconds.
fn cpu_secs() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the command name (which ends with ')'): utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').ok_or("unreadable /proc/self/stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11).ok_or("no utime")?.parse::<f64>()?
        + fields.get(12).ok_or("no stime")?.parse::<f64>()?;
    let hz = Command::new("getconf").arg("CLK_TCK").output()?;
    let hz: f64 = String::from_utf8_lossy(&hz.stdout).trim().parse()?;
    Ok(ticks / hz)
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bench = flag(&args, "--bench").ok_or("--bench PATH (omoi-bench) is required")?;
    let n: usize = flag(&args, "--sandboxes").unwrap_or("1000").parse()?;
    let container = flag(&args, "--container").unwrap_or("/bin/true");
    if n == 0 {
        return Err("--sandboxes must be at least 1".into());
    }
    let (api, object, objects) = match flag(&args, "--api").unwrap_or("pod") {
        "pod" => (KubernetesApi::Pod, "pod", "pods"),
        "sandbox" => (KubernetesApi::Sandbox, "Sandbox", "Sandboxes"),
        other => return Err(format!("--api {other:?}: pod or sandbox").into()),
    };
    let deleted_key = match api {
        KubernetesApi::Pod => "delete pods",
        KubernetesApi::Sandbox => "delete sandboxes",
    };
    let dir = tempfile::tempdir()?;
    let mut fake = Command::new(bench)
        .args(["fake-kube", "--dir"])
        .arg(dir.path())
        .args(["--image", &format!("omoi-sandbox:latest={container}")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut ready = String::new();
    BufReader::new(fake.stdout.take().ok_or("no stdout of the fake")?).read_line(&mut ready)?;
    let url = ready
        .strip_prefix("ready ")
        .ok_or("the fake did not start")?
        .trim()
        .to_string();
    let kubeconfig_path = dir.path().join("kubeconfig");
    let text = std::fs::read_to_string(&kubeconfig_path)?;
    let token = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("token: "))
        .ok_or("no token in the kubeconfig")?
        .to_string();
    let kubeconfig = kube::config::Kubeconfig::read_from(&kubeconfig_path)?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    let client = kube::Client::try_from(config)?;
    let mut settings = KubernetesConfig::new("omoi".into(), dir.path().join("data"));
    settings.api = api;
    let provider = KubernetesProvider::start(client, settings).await?;
    let http = reqwest::Client::new();
    let counts = || async {
        http.get(format!("{url}/fake/requests"))
            .bearer_auth(&token)
            .send()
            .await?
            .json::<BTreeMap<String, u64>>()
            .await
    };
    let before = counts().await?;

    let cpu_start = cpu_secs()?;
    let started = Instant::now();
    let mut spawn_ms = Vec::with_capacity(n);
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let id = format!("00000000-0000-4000-8000-{i:012}");
        let request = SpawnRequest {
            sandbox_id: id.clone(),
            image: None,
            image_pull_secrets: Vec::new(),
            env: BTreeMap::from([
                ("SPEC_ID".to_string(), "bench".to_string()),
                ("SANDBOX_TOKEN".to_string(), format!("omoi_sbx_{i:032}")),
            ]),
            labels: omoi_coordinator::launch::labels(&id, "bench", None),
            limits: Limits::default(),
            repo: None,
        };
        let at = Instant::now();
        handles.push(provider.spawn(request).await?);
        spawn_ms.push(at.elapsed().as_secs_f64() * 1000.0);
    }
    // Every sandbox ended (as the watch told) and its pod deleted.
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let mut ended = 0;
        for handle in &handles {
            if provider.status(handle).await? != ProviderStatus::Running {
                ended += 1;
            }
        }
        let deleted = counts().await?.get(deleted_key).copied().unwrap_or(0);
        if ended == n && deleted >= n as u64 {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("after 600 s: {ended} of {n} ended, {deleted} deleted").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_secs()? - cpu_start;
    let after = counts().await?;
    provider.close();
    drop(fake.stdin.take());
    let _ = fake.wait();

    let per_sandbox: BTreeMap<&String, f64> = after
        .iter()
        .map(|(k, v)| {
            (
                k,
                (v - before.get(k).copied().unwrap_or(0)) as f64 / n as f64,
            )
        })
        .collect();
    let requests: f64 = per_sandbox
        .iter()
        .filter(|(k, _)| !k.starts_with("watch ") && !k.starts_with("list "))
        .map(|(_, v)| v)
        .sum();
    let exited = {
        let mut codes = 0;
        for handle in &handles {
            if provider.status(handle).await? == (ProviderStatus::Exited { code: Some(0) }) {
                codes += 1;
            }
        }
        codes
    };
    spawn_ms.sort_by(f64::total_cmp);
    println!(
        "{}",
        json!({"figure": format!("kubernetes provider: spawn → {object} and Secret created (fake API server, loopback)"),
            "value": quantile(&spawn_ms, 0.5), "unit": "ms", "target": null,
            "spread": format!("p10 {:.3} … p90 {:.3}, p99 {:.3} ({n} sandboxes)",
                quantile(&spawn_ms, 0.1), quantile(&spawn_ms, 0.9), quantile(&spawn_ms, 0.99))})
    );
    println!(
        "{}",
        json!({"figure": format!("kubernetes provider: CPU per sandbox ({n} {objects} created, watched to the end, logs kept, deleted)"),
            "value": cpu * 1000.0 / n as f64, "unit": "ms", "target": 2.0,
            "spread": format!("{cpu:.2} s CPU in {wall:.1} s; {exited} of {n} exited 0")})
    );
    println!(
        "{}",
        json!({"figure": format!("kubernetes provider ({objects}): API requests per sandbox (besides the shared list and watch)"),
            "value": requests, "unit": "req", "target": 4.0,
            "spread": format!("{per_sandbox:?}")})
    );
    Ok(())
}
