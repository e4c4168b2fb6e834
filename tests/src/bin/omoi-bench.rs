//! `omoi-bench`: the measuring side of `scripts/bench.sh`. Each subcommand runs real processes
//! and prints one JSON figure per line: `{"figure","value","unit","target","spread"}`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use omoi_protocol::event::{Envelope, Event};
use omoi_protocol::phase::Phase;
use serde_json::json;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.first().map(String::as_str) {
        Some("worker") => worker(&args[1..]),
        Some("table") => table(&args[1..]),
        _ => Err("usage: omoi-bench worker --worker PATH [--runs N] | \
                  table FIGURES.jsonl RESULTS.json"
            .into()),
    };
    if let Err(err) = outcome {
        eprintln!("omoi-bench: {err}");
        std::process::exit(2);
    }
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

/// Median and the spread (p10..p90) of a sample.
fn stats(mut sample: Vec<f64>) -> (f64, f64, f64) {
    sample.sort_by(f64::total_cmp);
    let at = |q: f64| sample[((sample.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.1), at(0.9))
}

fn figure(name: &str, sample: Vec<f64>, unit: &str, target: f64) {
    if sample.is_empty() {
        return;
    }
    let runs = sample.len();
    let (median, p10, p90) = stats(sample);
    println!(
        "{}",
        json!({
            "figure": name, "value": median, "unit": unit, "target": target,
            "spread": format!("p10 {p10:.3} … p90 {p90:.3} ({runs} runs)"),
        })
    );
}

/// A scratch workspace holding a copy of the sample repository.
fn workspace(root: &Path, n: usize) -> Result<PathBuf> {
    let dir = root.join(format!("ws{n}"));
    omoi_tests::fixtures::copy_dir(&omoi_tests::fixtures::sample_repo(), &dir)?;
    Ok(dir)
}

fn spec_command(worker: &Path, workspace: &Path) -> Command {
    let (title, description) = omoi_tests::fixtures::sample_request();
    let mut command = Command::new(worker);
    command
        .env_clear()
        .env("SPEC_ID", "bench")
        .env("SPEC_PHASE", "all")
        .env("SPEC_TITLE", title)
        .env("SPEC_DESCRIPTION", description)
        .env("OMOI_LLM", "scripted")
        .env("OMOI_SCRIPT", omoi_tests::fixtures::sample_script())
        .env("OMOI_LOG", "error")
        .env("WORKSPACE", workspace)
        .stdin(Stdio::null())
        .stderr(Stdio::null());
    command
}

/// Worker figures: exec → first event, and the worker's own time per phase (scripted model).
fn worker(args: &[String]) -> Result<()> {
    let worker = PathBuf::from(flag(args, "--worker").ok_or("--worker PATH is required")?);
    let runs: usize = flag(args, "--runs").unwrap_or("30").parse()?;
    let root = tempfile::tempdir()?;
    let mut first_event = Vec::new();
    let mut per_phase: Vec<(Phase, Vec<f64>)> =
        Phase::ALL[..5].iter().map(|p| (*p, vec![])).collect();
    let mut whole = Vec::new();
    for n in 0..runs {
        let ws = workspace(root.path(), n)?;
        let started = Instant::now();
        let mut child = spec_command(&worker, &ws).stdout(Stdio::piped()).spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().ok_or("the worker wrote no event")??;
        first_event.push(started.elapsed().as_secs_f64() * 1e3);
        let mut events: Vec<Envelope> = vec![serde_json::from_str(&first)?];
        for line in lines {
            events.push(serde_json::from_str(&line?)?);
        }
        let status = child.wait()?;
        whole.push(started.elapsed().as_secs_f64() * 1e3);
        if !status.success() {
            return Err(format!("the worker failed: {status}").into());
        }
        for (phase, sample) in per_phase.iter_mut() {
            let start = events.iter().find_map(|e| match &e.event {
                Event::SpecPhaseStarted(s) if s.phase == *phase => Some(e.at),
                _ => None,
            });
            let end = events.iter().find_map(|e| match &e.event {
                Event::SpecPhaseCompleted(c) if c.phase == *phase => Some(e.at),
                _ => None,
            });
            if let (Some(start), Some(end)) = (start, end) {
                sample.push((end - start).num_microseconds().unwrap_or(0) as f64 / 1e3);
            }
        }
    }
    figure(
        "worker exec → first event (local run)",
        first_event,
        "ms",
        5.0,
    );
    for (phase, sample) in per_phase {
        figure(
            &format!("worker time in {phase} (scripted model)"),
            sample,
            "ms",
            2.0,
        );
    }
    figure(
        "worker whole spec, exec → exit (scripted model)",
        whole,
        "ms",
        f64::NAN,
    );
    Ok(())
}

/// Reads figure lines, prints the table, writes them as one JSON document.
fn table(args: &[String]) -> Result<()> {
    let [input, output] = args else {
        return Err("table takes FIGURES.jsonl RESULTS.json".into());
    };
    let text = std::fs::read_to_string(input)?;
    let mut figures = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        figures.push(serde_json::from_str::<serde_json::Value>(line)?);
    }
    let width = figures
        .iter()
        .filter_map(|f| f["figure"].as_str())
        .map(|s| s.chars().count())
        .max()
        .unwrap_or(6);
    println!(
        "{:<width$}  {:>12}  {:<6}  {:>8}  {:>7}  spread",
        "figure", "value", "unit", "target", "ratio"
    );
    for f in &mut figures {
        let value = f["value"].as_f64().unwrap_or(f64::NAN);
        let target = f["target"].as_f64();
        let ratio = target.map(|t| value / t);
        if let Some(ratio) = ratio {
            f["ratio"] = json!(ratio);
        }
        println!(
            "{:<width$}  {:>12.3}  {:<6}  {:>8}  {:>7}  {}",
            f["figure"].as_str().unwrap_or("?"),
            value,
            f["unit"].as_str().unwrap_or(""),
            target.map(|t| format!("{t}")).unwrap_or_else(|| "-".into()),
            ratio
                .map(|r| format!("{r:.2}"))
                .unwrap_or_else(|| "-".into()),
            f["spread"].as_str().unwrap_or(""),
        );
    }
    let document = json!({
        "machine": format!("{} cores", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)),
        "figures": figures,
    });
    std::fs::write(output, serde_json::to_string_pretty(&document)? + "\n")?;
    Ok(())
}
