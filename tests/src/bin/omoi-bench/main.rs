//! `omoi-bench`: the measuring side of `scripts/bench.sh`. Each subcommand runs real processes
//! and prints one JSON figure per line: `{"figure","value","unit","target","spread"}`;
//! `table` turns those lines into the report. One module per subject; the coordinator subjects
//! start `omoi serve` (next to this binary, or `--omoi PATH`) as a process of its own.

mod api;
mod dashboard;
mod execute;
mod fake_kube;
mod ingest;
mod memory;
mod sandbox;
mod scheduler;
mod server;
mod stand_in;
mod standby;
mod stream;
mod worker;

use serde_json::json;

pub(crate) type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.first().map(String::as_str) {
        Some("worker") => worker::run(&args[1..]),
        Some("ingest") => ingest::run(&args[1..]),
        Some("stream") => stream::run(&args[1..]),
        Some("execute") => execute::run(&args[1..]),
        Some("memory") => memory::run(&args[1..]),
        Some("scheduler") => scheduler::run(&args[1..]),
        Some("sandbox-start") => sandbox::run(&args[1..]),
        Some("dashboard") => dashboard::run(&args[1..]),
        Some("fake-kube") => fake_kube::run(&args[1..]),
        Some("standby-stand-in") => standby::run(),
        Some("table") => table(&args[1..]),
        _ => Err("usage: omoi-bench worker --worker PATH [--runs N] | \
                  ingest [--database URL] [--replicas 1|2] [--label NAME] [--senders N] \
                  [--batch N] [--batches N] [--runs N] [--target N] | \
                  stream [--database URL] [--replicas 1|2] [--subscribers N] [--events N] \
                  [--batch N] [--interval-ms N] [--runs N] | \
                  execute --worker PATH [--runs N] | memory [--specs N] [--runs N] | \
                  scheduler --worker PATH [--tasks N] [--running N] [--runs N] \
                  [--warm-pool N] | \
                  dashboard --worker PATH [--tasks N] [--runs N] | \
                  fake-kube --dir DIR [--image NAME=BINARY]… | \
                  table FIGURES.jsonl RESULTS.json"
            .into()),
    };
    if let Err(err) = outcome {
        eprintln!("omoi-bench: {err}");
        std::process::exit(2);
    }
}

pub(crate) fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
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

/// The `q` quantile (0..=1) of a sorted sample; NaN when it is empty.
pub(crate) fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

pub(crate) fn figure(name: &str, sample: Vec<f64>, unit: &str, target: f64) {
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
