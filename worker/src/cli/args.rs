//! The command-line arguments of `evaluate`, `convert` and `sync`, and how each command's result
//! is printed (JSON on stdout, one line on stderr for an error) and turned into an exit code.

use std::io::Write as _;
use std::path::PathBuf;
use std::str::FromStr;

use clap::Args;
use omoi_protocol::phase::Phase;
use serde::Serialize;

use super::{
    CliError, ConvertOptions, EvaluateOptions, SpecOptions, Traceability, convert_command,
    evaluate_command, evaluate_spec_command, sync_command,
};
use crate::error::Error;
use crate::formats::Format;

/// What `evaluate` gates: one phase's output file, or a whole spec folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvaluateTarget {
    Phase(Phase),
    Spec,
}

impl FromStr for EvaluateTarget {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "spec" {
            return Ok(EvaluateTarget::Spec);
        }
        s.parse::<Phase>().map(EvaluateTarget::Phase).map_err(|_| {
            format!(
                "unknown target {s:?}: expected explore, requirements, design, tasks, sync or spec"
            )
        })
    }
}

#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// explore, requirements, design, tasks or sync (a phase output file), or spec (a folder).
    pub target: EvaluateTarget,
    /// The phase output as JSON, or the spec folder (omoi JSON, Kiro or spec-kit).
    pub path: PathBuf,
    /// The repository the spec describes: explore's key files and tasks' files must exist there.
    #[arg(long, default_value = ".")]
    pub workspace: PathBuf,
    /// A phase context JSON with the earlier outputs, for a single phase's traceability and
    /// coverage (its schema: `omoi-worker schema context`).
    #[arg(long)]
    pub context: Option<PathBuf>,
    /// The format of a spec folder: omoi, kiro or spec-kit (detected when left out).
    #[arg(long)]
    pub format: Option<Format>,
    /// Gate a design, tasks or sync output without the earlier outputs it traces to.
    #[arg(long)]
    pub no_traceability: bool,
    /// The score needed to pass.
    #[arg(long, default_value_t = 0.7)]
    pub threshold: f64,
}

#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// The spec folder to read.
    pub dir: PathBuf,
    /// The format to write: omoi, kiro or spec-kit.
    #[arg(long)]
    pub to: Format,
    /// The folder to write into (created if needed), e.g. `.kiro/specs/<name>` or
    /// `specs/001-<name>`.
    #[arg(long)]
    pub out: PathBuf,
    /// The format of the input (detected when left out).
    #[arg(long)]
    pub from: Option<Format>,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// The spec folder (omoi JSON, Kiro or spec-kit).
    pub dir: PathBuf,
    /// The format of the folder (detected when left out).
    #[arg(long)]
    pub format: Option<Format>,
}

/// Runs `evaluate`; prints the result as JSON. Exit 0 on pass, 1 on fail.
pub fn evaluate(args: EvaluateArgs) -> u8 {
    match args.target {
        EvaluateTarget::Phase(phase) => {
            if args.format.is_some() {
                return fail(&CliError::Input(Error::config(
                    "--format",
                    "applies to `evaluate spec DIR`; a phase output file is omoi JSON",
                )));
            }
            let options = EvaluateOptions {
                workspace: &args.workspace,
                context: args.context.as_deref(),
                threshold: args.threshold,
                traceability: if args.no_traceability {
                    Traceability::Skipped
                } else {
                    Traceability::Required
                },
            };
            match evaluate_command(phase, &args.path, options) {
                Ok(evaluation) => print(&evaluation, evaluation.passed),
                Err(err) => fail(&err),
            }
        }
        EvaluateTarget::Spec => {
            if args.context.is_some() {
                return fail(&CliError::Input(Error::config(
                    "--context",
                    "a spec folder holds its own earlier outputs; --context applies to a single \
                     phase's output",
                )));
            }
            let options = SpecOptions {
                format: args.format,
                workspace: &args.workspace,
                threshold: args.threshold,
            };
            match evaluate_spec_command(&args.path, options) {
                Ok(result) => print(&result, result.passed),
                Err(err) => fail(&CliError::Input(err)),
            }
        }
    }
}

/// Runs `convert`; prints each file written, one a line, and what the reader noticed on stderr.
pub fn convert(args: ConvertArgs) -> u8 {
    let options = ConvertOptions {
        from: args.from,
        to: args.to,
        out: &args.out,
    };
    match convert_command(&args.dir, options) {
        Ok((written, spec)) => {
            for note in &spec.notes {
                crate::cli::say(format_args!(
                    "omoi-worker: {}: {}",
                    note.subject, note.message
                ));
            }
            let mut out = std::io::stdout().lock();
            for path in written {
                // A closed stdout (`| head`) is not an error of the conversion.
                let _ = writeln!(out, "{}", path.display());
            }
            0
        }
        Err(err) => fail(&CliError::Input(err)),
    }
}

/// Runs `sync`; prints the analysis as JSON. Exit 0 when ready for execution, else 1.
pub fn sync(args: SyncArgs) -> u8 {
    match sync_command(&args.dir, args.format) {
        Ok(analysis) => print(&analysis, analysis.ready_for_execution),
        Err(err) => fail(&CliError::Input(err)),
    }
}

fn print<T: Serialize>(value: &T, passed: bool) -> u8 {
    match serde_json::to_string_pretty(value) {
        Ok(json) => {
            // A closed stdout (`| head`) does not change the verdict.
            let _ = writeln!(std::io::stdout().lock(), "{json}");
            if passed { 0 } else { 1 }
        }
        Err(err) => fail(&CliError::Input(Error::json("encode the result", err))),
    }
}

fn fail(err: &CliError) -> u8 {
    crate::cli::say(format_args!("omoi-worker: {err}"));
    err.exit_code()
}
