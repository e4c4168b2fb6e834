//! Worker figures: exec → first event, and the worker's own time per phase (scripted model).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use omoi_protocol::event::{Envelope, Event};
use omoi_protocol::phase::Phase;

use crate::{Result, figure, flag};

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

/// `omoi-bench worker --worker PATH [--runs N]`.
pub fn run(args: &[String]) -> Result<()> {
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
