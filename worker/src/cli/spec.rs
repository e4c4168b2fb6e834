//! Whole spec folders: `evaluate spec DIR` runs every gate on a spec (omoi JSON, Kiro or spec-kit)
//! with traceability, coverage and SYNC; `sync DIR` prints the SYNC analysis; `convert` writes a
//! spec in another format.

use std::path::{Path, PathBuf};

use omoi_protocol::artifact::{PhaseOutput, SyncOutput};
use omoi_protocol::eval::Evaluation;
use omoi_protocol::phase::Phase;
use serde::Serialize;

use super::{add_notes, check_threshold, check_workspace};
use crate::error::{Error, Result};
use crate::evaluate;
use crate::formats::{self, Format, Note, Spec};

/// How to gate a spec folder.
#[derive(Debug, Clone, Copy)]
pub struct SpecOptions<'a> {
    /// The format, or `None` to detect it from the files.
    pub format: Option<Format>,
    /// The repository the spec describes (explore's key files, tasks' files).
    pub workspace: &'a Path,
    pub threshold: f64,
}

/// The verdict on a whole spec: one evaluation per phase present, and the SYNC analysis.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpecEvaluation {
    /// The format read: `omoi`, `kiro` or `spec-kit`.
    pub format: String,
    /// Every gate passed and nothing is missing.
    pub passed: bool,
    /// The phases the spec lacks (a spec needs requirements, a design and tasks).
    pub missing: Vec<Phase>,
    pub evaluations: Vec<Evaluation>,
    /// The SYNC analysis, when the spec has requirements and tasks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncOutput>,
}

/// Reads the spec folder `dir` and runs every gate on it: explore (when present), requirements,
/// design (traced to the requirements), tasks (covering the requirements, files checked in the
/// workspace) and SYNC computed from them. What the reader noticed (unknown fields, lines it could
/// not read) becomes issues of the phase whose file it is about.
pub fn evaluate_spec_command(dir: &Path, options: SpecOptions<'_>) -> Result<SpecEvaluation> {
    check_threshold(options.threshold)?;
    check_workspace(options.workspace)?;
    let (format, spec) = formats::read(dir, options.format)?;
    let ctx = spec.context();
    let mut evaluations = Vec::new();
    let mut missing = Vec::new();
    let mut outputs: Vec<PhaseOutput> = Vec::new();
    if let Some(o) = &spec.explore {
        outputs.push(PhaseOutput::Explore(o.clone()));
    }
    match &spec.requirements {
        Some(o) => outputs.push(PhaseOutput::Requirements(o.clone())),
        None => missing.push(Phase::Requirements),
    }
    match &spec.design {
        Some(o) => outputs.push(PhaseOutput::Design(o.clone())),
        None => missing.push(Phase::Design),
    }
    match &spec.tasks {
        Some(o) => outputs.push(PhaseOutput::Tasks(o.clone())),
        None => missing.push(Phase::Tasks),
    }
    let sync = match (&spec.requirements, &spec.tasks) {
        (Some(r), Some(t)) => Some(evaluate::sync::analyze(r, t)),
        _ => None,
    };
    if let Some(s) = &sync {
        outputs.push(PhaseOutput::Sync(s.clone()));
    }
    for output in &outputs {
        let mut evaluation = evaluate::evaluate(output, &ctx, options.workspace, options.threshold);
        let phase = output.phase();
        add_notes(
            &mut evaluation,
            spec.notes.iter().filter(|n| note_phase(n) == Some(phase)),
        );
        evaluations.push(evaluation);
    }
    if let Some(first) = evaluations.first_mut() {
        add_notes(first, spec.notes.iter().filter(|n| note_phase(n).is_none()));
    }
    Ok(SpecEvaluation {
        format: format.to_string(),
        passed: missing.is_empty() && evaluations.iter().all(|e| e.passed),
        missing,
        evaluations,
        sync,
    })
}

/// The phase whose file a note is about, from the file name it starts with.
fn note_phase(note: &Note) -> Option<Phase> {
    let file = note.subject.split(':').next().unwrap_or_default();
    match file {
        "explore.json" => Some(Phase::Explore),
        "requirements.json" | "requirements.md" | "spec.md" => Some(Phase::Requirements),
        "design.json" | "design.md" | "plan.md" => Some(Phase::Design),
        "tasks.json" | "tasks.md" => Some(Phase::Tasks),
        _ => None,
    }
}

/// The SYNC analysis of the spec folder `dir`: coverage, order, waves, critical path.
pub fn sync_command(dir: &Path, format: Option<Format>) -> Result<SyncOutput> {
    let (_, spec) = formats::read(dir, format)?;
    let (Some(requirements), Some(tasks)) = (&spec.requirements, &spec.tasks) else {
        return Err(Error::config(
            dir.display().to_string(),
            "SYNC needs the spec's requirements and tasks; one of them is missing",
        ));
    };
    Ok(evaluate::sync::analyze(requirements, tasks))
}

/// What to convert, and where to.
#[derive(Debug, Clone, Copy)]
pub struct ConvertOptions<'a> {
    /// The format of the input, or `None` to detect it.
    pub from: Option<Format>,
    pub to: Format,
    /// The folder to write (created if needed).
    pub out: &'a Path,
}

/// Reads the spec folder `dir` and writes it in another format; returns the files written. What
/// the reader noticed is returned too, so the caller can show it.
pub fn convert_command(dir: &Path, options: ConvertOptions<'_>) -> Result<(Vec<PathBuf>, Spec)> {
    let (_, spec) = formats::read(dir, options.from)?;
    if options.out.exists() && !options.out.is_dir() {
        return Err(Error::config(
            "--out",
            format!("{} exists and is not a directory", options.out.display()),
        ));
    }
    let written = formats::write(&spec, options.to, options.out)?;
    Ok((written, spec))
}
