//! The subcommands beside the env-driven run: `evaluate` (one phase output, or a whole spec
//! folder), `convert`, `sync` and `schema`. Each returns its result; `main` prints it and maps it
//! to an exit code: 0 pass, 1 fail, 2 bad input, 3 a gate that could not check traceability.

pub mod args;
mod spec;

use std::path::Path;

use omoi_protocol::artifact::{
    DesignOutput, ExploreOutput, PhaseOutput, RequirementsOutput, SyncOutput, TasksOutput,
};
use omoi_protocol::context::PhaseContext;
use omoi_protocol::eval::{Evaluation, Issue};
use omoi_protocol::phase::Phase;

use crate::error::{Error, Result};
use crate::evaluate;
use crate::formats::{Note, omoi};

pub use spec::{
    ConvertOptions, SpecEvaluation, SpecOptions, convert_command, evaluate_spec_command,
    sync_command,
};

/// Writes one line on stderr. A stderr that is closed or whose reader went away loses the line
/// and nothing else (`eprintln!` would panic on a broken pipe).
pub fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut err = std::io::stderr().lock();
    let _ = err.write_fmt(line).and_then(|()| err.write_all(b"\n"));
}

/// Exit code of a design or tasks gate run without the earlier outputs it traces to.
pub const EXIT_UNTRACEABLE: u8 = 3;

/// What a subcommand can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad input: a file that cannot be read or parsed, a bad flag (exit 2).
    #[error(transparent)]
    Input(#[from] Error),
    /// A design or tasks gate without what it traces to: passing it would be a silent weak gate
    /// (exit 3).
    #[error(
        "the {phase} gate needs {missing} to check traceability and coverage: pass --context FILE \
         (its schema: omoi-worker schema context), gate the whole spec folder with \
         `omoi-worker evaluate spec DIR`, or pass --no-traceability to gate without them"
    )]
    Untraceable { phase: Phase, missing: String },
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Input(e) => u8::try_from(e.exit_code()).unwrap_or(2),
            CliError::Untraceable { .. } => EXIT_UNTRACEABLE,
        }
    }
}

/// Whether the design and tasks gates must check traceability against earlier outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Traceability {
    /// Refuse to gate without the earlier outputs (the default).
    Required,
    /// Gate without them (`--no-traceability`); a warning says what was not checked.
    Skipped,
}

/// How to evaluate one phase output file.
#[derive(Debug, Clone, Copy)]
pub struct EvaluateOptions<'a> {
    /// The repository the output describes (explore's key files, tasks' files).
    pub workspace: &'a Path,
    /// A phase context file with the earlier outputs.
    pub context: Option<&'a Path>,
    pub threshold: f64,
    pub traceability: Traceability,
}

/// Reads `file` as the output of `phase` (the bare output object, e.g. a `RequirementsOutput`;
/// for `sync` a `SyncOutput`), reads the optional context file as a `PhaseContext`, and runs the
/// phase's evaluator. Unknown fields in either file are blocking issues naming them. Bad input is
/// a config error (exit 2) that names the file and the problem; a design or tasks gate without
/// the earlier outputs is refused unless traceability is skipped; a failing evaluation is not an
/// error.
pub fn evaluate_command(
    phase: Phase,
    file: &Path,
    options: EvaluateOptions<'_>,
) -> std::result::Result<Evaluation, CliError> {
    check_threshold(options.threshold)?;
    check_workspace(options.workspace)?;
    let text = read(file)?;
    let mut notes = Vec::new();
    let output = match phase {
        Phase::Explore => {
            omoi::parse::<ExploreOutput>(&text, file, "an explore output", &mut notes)
                .map(PhaseOutput::Explore)
        }
        Phase::Requirements => {
            omoi::parse::<RequirementsOutput>(&text, file, "a requirements output", &mut notes)
                .map(PhaseOutput::Requirements)
        }
        Phase::Design => omoi::parse::<DesignOutput>(&text, file, "a design output", &mut notes)
            .map(PhaseOutput::Design),
        Phase::Tasks => omoi::parse::<TasksOutput>(&text, file, "a tasks output", &mut notes)
            .map(PhaseOutput::Tasks),
        Phase::Sync => omoi::parse::<SyncOutput>(&text, file, "a sync output", &mut notes)
            .map(PhaseOutput::Sync),
        Phase::Complete => Err(no_output(phase)),
    }?;
    let ctx = match options.context {
        Some(path) => {
            let text = read(path)?;
            omoi::parse::<PhaseContext>(&text, path, "a phase context", &mut notes)?
        }
        None => PhaseContext::default(),
    };
    let missing = match phase {
        Phase::Design if ctx.requirements.is_none() => Some("the requirements"),
        Phase::Tasks if ctx.requirements.is_none() => Some("the requirements (and the design)"),
        Phase::Sync if ctx.requirements.is_none() || ctx.tasks.is_none() => {
            Some("the requirements and the tasks")
        }
        _ => None,
    };
    if let (Some(missing), Traceability::Required) = (missing, options.traceability) {
        return Err(CliError::Untraceable {
            phase,
            missing: missing.to_string(),
        });
    }
    let mut evaluation = evaluate::evaluate(&output, &ctx, options.workspace, options.threshold);
    add_notes(&mut evaluation, &notes);
    Ok(evaluation)
}

/// Adds what a reader noticed to an evaluation: blocking notes fail it.
pub(crate) fn add_notes<'a>(
    evaluation: &mut Evaluation,
    notes: impl IntoIterator<Item = &'a Note>,
) {
    for note in notes {
        evaluation.issues.push(Issue {
            blocking: note.blocking,
            subject: Some(note.subject.clone()),
            message: note.message.clone(),
        });
        if note.blocking {
            evaluation.passed = false;
        }
    }
}

/// What `schema` can print: a phase's output, or the phase context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaTarget {
    Phase(Phase),
    Context,
}

impl std::str::FromStr for SchemaTarget {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        if s == "context" {
            return Ok(SchemaTarget::Context);
        }
        s.parse::<Phase>().map(SchemaTarget::Phase).map_err(|_| {
            format!(
                "unknown schema {s:?}: expected explore, requirements, design, tasks, sync or \
                 context"
            )
        })
    }
}

/// The pretty-printed JSON Schema of a phase's output, or of the phase context.
pub fn schema_command(target: SchemaTarget) -> Result<String> {
    let schema = match target {
        SchemaTarget::Phase(phase) => {
            omoi_protocol::schema::phase_output(phase).ok_or_else(|| no_output(phase))?
        }
        SchemaTarget::Context => schemars::schema_for!(PhaseContext),
    };
    serde_json::to_string_pretty(&schema).map_err(|e| Error::json("encode the schema", e))
}

fn no_output(phase: Phase) -> Error {
    Error::config(
        "PHASE",
        format!(
            "{phase} has no output; expected one of explore, requirements, design, tasks, sync"
        ),
    )
}

fn check_threshold(threshold: f64) -> Result<()> {
    if (0.0..=1.0).contains(&threshold) {
        Ok(())
    } else {
        Err(Error::config(
            "--threshold",
            format!("{threshold} is not a score between 0 and 1"),
        ))
    }
}

fn check_workspace(workspace: &Path) -> Result<()> {
    if workspace.is_dir() {
        Ok(())
    } else {
        Err(Error::config(
            "--workspace",
            format!("{} is not a directory", workspace.display()),
        ))
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| Error::config(path.display().to_string(), format!("cannot read: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn options<'a>(
        workspace: &'a Path,
        context: Option<&'a Path>,
        threshold: f64,
    ) -> EvaluateOptions<'a> {
        EvaluateOptions {
            workspace,
            context,
            threshold,
            traceability: Traceability::Required,
        }
    }

    fn config_message(result: std::result::Result<Evaluation, CliError>) -> String {
        match result {
            Err(CliError::Input(e @ Error::Config { .. })) => e.to_string(),
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn evaluates_a_file_with_its_context() {
        let dir = tempfile::tempdir().unwrap();
        let design = write(
            dir.path(),
            "design.json",
            r#"{"overview": "o", "components": [{"name": "c", "responsibility": "does the work",
                "requirements": ["REQ-CORE-001"]}], "error_handling": "e", "testing_strategy": "t",
                "security": "s"}"#,
        );
        let context = write(
            dir.path(),
            "context.json",
            r#"{"title": "t", "requirements": {"requirements": [{"id": "REQ-CORE-002",
                "title": "x", "text": "The CLI shall print.", "type": "functional",
                "priority": "low", "acceptance_criteria": []}]}}"#,
        );
        let evaluation = evaluate_command(
            Phase::Design,
            &design,
            options(dir.path(), Some(&context), 0.7),
        )
        .unwrap();
        let blocking: Vec<_> = evaluation
            .issues
            .iter()
            .filter(|i| i.blocking)
            .map(|i| i.subject.clone())
            .collect();
        assert_eq!(blocking, vec![Some("REQ-CORE-002".to_string())]);
        assert!(!evaluation.passed);
    }

    #[test]
    fn bad_input_is_a_config_error_naming_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let tasks_error = |file: &Path| {
            config_message(evaluate_command(Phase::Tasks, file, options(d, None, 0.7)))
        };
        let missing = d.join("missing.json");
        assert!(
            tasks_error(&missing).starts_with(&format!("{}: cannot read: ", missing.display()))
        );

        let broken = write(d, "broken.json", "{\"tasks\": [");
        assert_eq!(
            tasks_error(&broken),
            format!(
                "{}: is not valid JSON: EOF while parsing a list at line 1 column 11",
                broken.display()
            )
        );

        let wrong = write(d, "wrong.json", "{\n  \"requirements\": []\n}");
        assert_eq!(
            tasks_error(&wrong),
            format!(
                "{}: is not a tasks output: missing field `tasks` at line 3 column 1",
                wrong.display()
            )
        );

        let context = write(d, "context.json", "{\"description\": \"x\"}");
        let tasks = write(d, "tasks.json", "{\"tasks\": []}");
        assert_eq!(
            config_message(evaluate_command(
                Phase::Tasks,
                &tasks,
                options(d, Some(&context), 0.7)
            )),
            format!(
                "{}: is not a phase context: missing field `title` at line 1 column 20",
                context.display()
            )
        );

        assert_eq!(
            config_message(evaluate_command(
                Phase::Complete,
                &tasks,
                options(d, None, 0.7)
            )),
            "PHASE: complete has no output; expected one of explore, requirements, design, tasks, sync"
        );
        assert_eq!(
            config_message(evaluate_command(
                Phase::Tasks,
                &tasks,
                options(d, None, 1.5)
            )),
            "--threshold: 1.5 is not a score between 0 and 1"
        );
        assert_eq!(
            config_message(evaluate_command(
                Phase::Tasks,
                &tasks,
                options(&missing, None, 0.7)
            )),
            format!("--workspace: {} is not a directory", missing.display())
        );
    }

    #[test]
    fn schema_of_each_phase_with_output_and_none_for_complete() {
        for phase in Phase::ALL {
            match (phase, schema_command(SchemaTarget::Phase(phase))) {
                (Phase::Complete, Err(e)) => assert_eq!(e.exit_code(), 2),
                (_, Ok(text)) => {
                    let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
                    assert_eq!(schema["type"], "object", "{phase}");
                    assert!(text.contains('\n'), "pretty: {phase}");
                }
                (phase, result) => panic!("{phase}: unexpected {result:?}"),
            }
        }
        let requirements: serde_json::Value = serde_json::from_str(
            &schema_command(SchemaTarget::Phase(Phase::Requirements)).unwrap(),
        )
        .unwrap();
        assert_eq!(
            requirements["required"],
            serde_json::json!(["requirements"])
        );
    }
}
