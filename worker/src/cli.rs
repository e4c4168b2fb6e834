//! The `evaluate` and `schema` subcommands: score a phase output written to a file, and print the
//! JSON Schema a phase's output follows.

use std::path::Path;

use omoi_protocol::artifact::{
    DesignOutput, ExploreOutput, PhaseOutput, RequirementsOutput, SyncOutput, TasksOutput,
};
use omoi_protocol::context::PhaseContext;
use omoi_protocol::eval::Evaluation;
use omoi_protocol::phase::Phase;
use serde::de::DeserializeOwned;
use serde_json::error::Category;

use crate::error::{Error, Result};
use crate::evaluate;

/// Reads `file` as the output of `phase` (the bare output object, e.g. a `RequirementsOutput`;
/// for `sync` a `SyncOutput`), reads the optional `context` file as a `PhaseContext`, and runs the
/// phase's evaluator. Bad input is a config error (exit code 2) that names the file and the
/// problem; a failing evaluation is not an error.
pub fn evaluate_command(
    phase: Phase,
    file: &Path,
    workspace: &Path,
    context: Option<&Path>,
    threshold: f64,
) -> Result<Evaluation> {
    if !(0.0..=1.0).contains(&threshold) {
        return Err(Error::config(
            "--threshold",
            format!("{threshold} is not a score between 0 and 1"),
        ));
    }
    if !workspace.is_dir() {
        return Err(Error::config(
            "--workspace",
            format!("{} is not a directory", workspace.display()),
        ));
    }
    let text = read(file)?;
    let output = match phase {
        Phase::Explore => parse::<ExploreOutput>(phase, file, &text).map(PhaseOutput::Explore),
        Phase::Requirements => {
            parse::<RequirementsOutput>(phase, file, &text).map(PhaseOutput::Requirements)
        }
        Phase::Design => parse::<DesignOutput>(phase, file, &text).map(PhaseOutput::Design),
        Phase::Tasks => parse::<TasksOutput>(phase, file, &text).map(PhaseOutput::Tasks),
        Phase::Sync => parse::<SyncOutput>(phase, file, &text).map(PhaseOutput::Sync),
        Phase::Complete => Err(no_output(phase)),
    }?;
    let ctx = match context {
        Some(path) => {
            let text = read(path)?;
            serde_json::from_str::<PhaseContext>(&text).map_err(|e| {
                Error::config(
                    path.display().to_string(),
                    json_problem("a phase context", &e),
                )
            })?
        }
        None => PhaseContext::default(),
    };
    Ok(evaluate::evaluate(&output, &ctx, workspace, threshold))
}

/// The pretty-printed JSON Schema of `phase`'s output.
pub fn schema_command(phase: Phase) -> Result<String> {
    let schema = omoi_protocol::schema::phase_output(phase).ok_or_else(|| no_output(phase))?;
    serde_json::to_string_pretty(&schema).map_err(|e| Error::json(format!("schema of {phase}"), e))
}

fn no_output(phase: Phase) -> Error {
    Error::config(
        "PHASE",
        format!(
            "{phase} has no output; expected one of explore, requirements, design, tasks, sync"
        ),
    )
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| Error::config(path.display().to_string(), format!("cannot read: {e}")))
}

fn parse<T: DeserializeOwned>(phase: Phase, file: &Path, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| {
        Error::config(
            file.display().to_string(),
            json_problem(&format!("a {phase} output"), &e),
        )
    })
}

/// "is not valid JSON: …" or "is not <what>: …", with serde's message and position.
fn json_problem(what: &str, error: &serde_json::Error) -> String {
    match error.classify() {
        Category::Syntax | Category::Eof | Category::Io => format!("is not valid JSON: {error}"),
        Category::Data => format!("is not {what}: {error}"),
    }
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

    fn config_message(result: Result<Evaluation>) -> String {
        match result {
            Err(e @ Error::Config { .. }) => e.to_string(),
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
        let evaluation =
            evaluate_command(Phase::Design, &design, dir.path(), Some(&context), 0.7).unwrap();
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
        let missing = d.join("missing.json");
        assert!(
            config_message(evaluate_command(Phase::Tasks, &missing, d, None, 0.7))
                .starts_with(&format!("{}: cannot read: ", missing.display()))
        );

        let broken = write(d, "broken.json", "{\"tasks\": [");
        assert_eq!(
            config_message(evaluate_command(Phase::Tasks, &broken, d, None, 0.7)),
            format!(
                "{}: is not valid JSON: EOF while parsing a list at line 1 column 11",
                broken.display()
            )
        );

        let wrong = write(d, "wrong.json", "{\n  \"requirements\": []\n}");
        assert_eq!(
            config_message(evaluate_command(Phase::Tasks, &wrong, d, None, 0.7)),
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
                d,
                Some(&context),
                0.7
            )),
            format!(
                "{}: is not a phase context: missing field `title` at line 1 column 20",
                context.display()
            )
        );

        assert_eq!(
            config_message(evaluate_command(Phase::Complete, &tasks, d, None, 0.7)),
            "PHASE: complete has no output; expected one of explore, requirements, design, tasks, sync"
        );
        assert_eq!(
            config_message(evaluate_command(Phase::Tasks, &tasks, d, None, 1.5)),
            "--threshold: 1.5 is not a score between 0 and 1"
        );
        assert_eq!(
            config_message(evaluate_command(Phase::Tasks, &tasks, &missing, None, 0.7)),
            format!("--workspace: {} is not a directory", missing.display())
        );
    }

    #[test]
    fn schema_of_each_phase_with_output_and_none_for_complete() {
        for phase in Phase::ALL {
            match (phase, schema_command(phase)) {
                (Phase::Complete, Err(e)) => assert_eq!(e.exit_code(), 2),
                (_, Ok(text)) => {
                    let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
                    assert_eq!(schema["type"], "object", "{phase}");
                    assert!(text.contains('\n'), "pretty: {phase}");
                }
                (phase, result) => panic!("{phase}: unexpected {result:?}"),
            }
        }
        let requirements: serde_json::Value =
            serde_json::from_str(&schema_command(Phase::Requirements).unwrap()).unwrap();
        assert_eq!(
            requirements["required"],
            serde_json::json!(["requirements"])
        );
    }
}
