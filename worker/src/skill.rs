//! The spec-skill mode: one free agent session with the spec-driven-development instructions in
//! its system prompt, which writes the spec documents itself into `.omoi/specs/`; the evaluators
//! then score what it wrote and report it as `spec.eval_result` events, without blocking.
//!
//! The documents are `explore.json`, `requirements.json`, `design.json` and `tasks.json`, each the
//! phase's output object (schemas from `omoi_protocol::schema::phase_output`). The session's
//! `submit` tool (`{"summary": string}`) only checks that all four exist and match their schemas.
//! After the session, each document is evaluated with the context of the documents before it, SYNC
//! is computed from requirements and tasks and written to `.omoi/specs/sync.json`, and a missing
//! or unreadable document is reported as a failed evaluation with one blocking issue.

use std::path::{Path, PathBuf};

use omoi_protocol::artifact::{
    DesignOutput, ExploreOutput, PhaseOutput, RequirementsOutput, SyncOutput, TasksOutput,
};
use omoi_protocol::context::PhaseContext;
use omoi_protocol::eval::{Evaluation, Issue};
use omoi_protocol::event::{Event, SpecEvalResult};
use omoi_protocol::phase::Phase;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::agent::{
    Agent, BoxFuture, EndReason, Limits, SUBMIT_TOOL, SessionOutcome, SessionSpec, SubmitHandler,
    SubmitTool, SubmitVerdict, ToolSet,
};
use crate::error::{Error, Result};
use crate::evaluate;
use crate::events::Emitter;

/// The session label of the spec-skill run (what a script names it by).
pub const SESSION_LABEL: &str = "spec-skill";
/// Where the documents go, relative to the workspace.
pub const SPECS_DIR: &str = ".omoi/specs";

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct SkillRequest {
    pub workspace: PathBuf,
    pub title: String,
    pub description: String,
    pub limits: Limits,
    /// The pass threshold of the evaluators.
    pub threshold: f64,
    /// Messages the user injects while the agent works.
    pub inbox: crate::inbox::Inbox,
}

/// What the run produced.
#[derive(Debug, Clone, PartialEq)]
pub struct SkillReport {
    /// How the agent's session ended.
    pub session: SessionOutcome,
    /// One entry per document, in phase order.
    pub documents: Vec<DocumentReport>,
    /// The SYNC analysis and its evaluation, when requirements and tasks could both be read.
    pub sync: Option<(SyncOutput, Evaluation)>,
}

/// One spec document and what became of it.
#[derive(Debug, Clone, PartialEq)]
pub struct DocumentReport {
    pub phase: Phase,
    /// Relative to the workspace, e.g. `.omoi/specs/design.json`.
    pub path: String,
    pub status: DocumentStatus,
}

/// The state of one document after the run.
#[derive(Debug, Clone, PartialEq)]
pub enum DocumentStatus {
    Missing,
    /// It exists but is not the phase's output (not JSON, or not the schema).
    Invalid {
        problem: String,
    },
    /// It was read and scored.
    Evaluated(Evaluation),
}

impl SkillReport {
    /// The summary the agent submitted, if it submitted.
    pub fn summary(&self) -> Option<&str> {
        match &self.session {
            SessionOutcome::Submitted { input } => input["summary"].as_str(),
            SessionOutcome::Ended { .. } => None,
        }
    }

    /// The phases whose document exists (readable or not).
    pub fn present(&self) -> Vec<Phase> {
        self.documents
            .iter()
            .filter(|d| d.status != DocumentStatus::Missing)
            .map(|d| d.phase)
            .collect()
    }

    /// The phases whose document passed its evaluator.
    pub fn passed(&self) -> Vec<Phase> {
        self.documents
            .iter()
            .filter(|d| matches!(&d.status, DocumentStatus::Evaluated(e) if e.passed))
            .map(|d| d.phase)
            .collect()
    }

    /// Every document passed and SYNC says the spec is ready for execution.
    pub fn all_passed(&self) -> bool {
        self.passed().len() == Phase::GENERATED.len()
            && self.sync.as_ref().is_some_and(|(_, e)| e.passed)
    }
}

/// Runs the spec-skill mode: one session, then the evaluation of what it wrote. Fails only when
/// the workspace cannot be used or the run is cancelled; everything else is in the report.
pub async fn run_spec_skill(
    agent: &dyn Agent,
    request: &SkillRequest,
    emitter: &Emitter,
    cancel: &CancellationToken,
) -> Result<SkillReport> {
    let root = request
        .workspace
        .canonicalize()
        .map_err(|e| Error::io(format!("workspace {}", request.workspace.display()), e))?;
    let specs_dir = root.join(SPECS_DIR);
    tokio::fs::create_dir_all(&specs_dir)
        .await
        .map_err(|e| Error::io(format!("creating {}", specs_dir.display()), e))?;
    let submit = DocumentsCheck {
        specs_dir: specs_dir.clone(),
    };
    let spec = SessionSpec {
        label: SESSION_LABEL.to_string(),
        attempt: 1,
        system: system_prompt(),
        prompt: first_message(&request.title, &request.description),
        submit: submit.tool(),
        limits: request.limits,
        workspace: root.clone(),
        tools: ToolSet::read_write(),
        inbox: request.inbox.clone(),
    };
    let session = agent.run_session(spec, &submit, emitter, cancel).await?;
    if let SessionOutcome::Ended {
        reason: EndReason::Cancelled,
        ..
    } = session
    {
        return Err(Error::Cancelled);
    }
    let mut context = PhaseContext {
        title: request.title.clone(),
        description: request.description.clone(),
        ..PhaseContext::default()
    };
    let mut documents = Vec::new();
    for (phase, document) in read_documents(&specs_dir) {
        let path = document_path(phase);
        let (status, evaluation) = match document {
            Ok(output) => {
                let evaluation = evaluate::evaluate(&output, &context, &root, request.threshold);
                context.set(output);
                (DocumentStatus::Evaluated(evaluation.clone()), evaluation)
            }
            Err(DocumentProblem::Missing) => {
                let message = "the document was not written".to_string();
                (DocumentStatus::Missing, unusable(phase, &path, message))
            }
            Err(DocumentProblem::Invalid(problem)) => {
                let evaluation = unusable(phase, &path, problem.clone());
                (DocumentStatus::Invalid { problem }, evaluation)
            }
        };
        report(emitter, evaluation);
        documents.push(DocumentReport {
            phase,
            path,
            status,
        });
    }
    let sync = match (&context.requirements, &context.tasks) {
        (Some(requirements), Some(tasks)) => {
            let analysis = evaluate::sync::analyze(requirements, tasks);
            let output = PhaseOutput::Sync(analysis.clone());
            let evaluation = evaluate::evaluate(&output, &context, &root, request.threshold);
            write_sync(&specs_dir, &analysis).await?;
            report(emitter, evaluation.clone());
            Some((analysis, evaluation))
        }
        _ => None,
    };
    Ok(SkillReport {
        session,
        documents,
        sync,
    })
}

fn report(emitter: &Emitter, evaluation: Evaluation) {
    emitter.emit(Event::SpecEvalResult(SpecEvalResult {
        attempt: 1,
        evaluation,
    }));
}

/// The evaluation of a document that could not be used: score 0, one blocking issue.
fn unusable(phase: Phase, path: &str, message: String) -> Evaluation {
    Evaluation {
        phase,
        score: 0.0,
        passed: false,
        criteria: Vec::new(),
        issues: vec![Issue {
            blocking: true,
            subject: Some(path.to_string()),
            message,
        }],
        warnings: Vec::new(),
        ears: Vec::new(),
    }
}

async fn write_sync(specs_dir: &Path, analysis: &SyncOutput) -> Result<()> {
    let path = specs_dir.join(file_name(Phase::Sync));
    let text = serde_json::to_string_pretty(analysis)
        .map_err(|e| Error::json(format!("writing {}", path.display()), e))?;
    tokio::fs::write(&path, text + "\n")
        .await
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

fn file_name(phase: Phase) -> String {
    format!("{}.json", phase.as_str())
}

fn document_path(phase: Phase) -> String {
    format!("{SPECS_DIR}/{}", file_name(phase))
}

/// Why a document cannot be used.
#[derive(Debug, Clone, PartialEq)]
enum DocumentProblem {
    Missing,
    Invalid(String),
}

/// Each generated phase's document in `specs_dir`, read and parsed, in phase order.
fn read_documents(
    specs_dir: &Path,
) -> Vec<(Phase, std::result::Result<PhaseOutput, DocumentProblem>)> {
    Phase::GENERATED
        .into_iter()
        .map(|phase| (phase, read_document(specs_dir, phase)))
        .collect()
}

fn read_document(
    specs_dir: &Path,
    phase: Phase,
) -> std::result::Result<PhaseOutput, DocumentProblem> {
    let path = specs_dir.join(file_name(phase));
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(DocumentProblem::Missing),
        Err(e) => return Err(DocumentProblem::Invalid(format!("cannot be read: {e}"))),
    };
    parse_document(phase, &text).map_err(DocumentProblem::Invalid)
}

/// A document's text as the output of `phase`.
fn parse_document(phase: Phase, text: &str) -> std::result::Result<PhaseOutput, String> {
    fn parse<T: serde::de::DeserializeOwned>(text: &str) -> std::result::Result<T, String> {
        serde_json::from_str(text).map_err(|e| format!("not the phase's output: {e}"))
    }
    match phase {
        Phase::Explore => parse::<ExploreOutput>(text).map(PhaseOutput::Explore),
        Phase::Requirements => parse::<RequirementsOutput>(text).map(PhaseOutput::Requirements),
        Phase::Design => parse::<DesignOutput>(text).map(PhaseOutput::Design),
        Phase::Tasks => parse::<TasksOutput>(text).map(PhaseOutput::Tasks),
        Phase::Sync => parse::<SyncOutput>(text).map(PhaseOutput::Sync),
        Phase::Complete => Err("COMPLETE has no document".to_string()),
    }
}

/// The `submit` tool of the session: accepts once all four documents exist and parse.
struct DocumentsCheck {
    specs_dir: PathBuf,
}

impl DocumentsCheck {
    /// The submit tool of the session: a summary of the specification.
    fn tool(&self) -> SubmitTool {
        SubmitTool {
            name: SUBMIT_TOOL.to_string(),
            description: format!(
                "Hand in the specification once all four documents are written to \
                 {SPECS_DIR}/. Checks that each exists and matches its schema, and says what to \
                 fix if not."
            ),
            schema: json!({
                "type": "object",
                "properties": {
                    "summary": {
                        "type": "string",
                        "description": "What the specification covers, in a few sentences."
                    }
                },
                "required": ["summary"],
                "additionalProperties": false
            }),
        }
    }
}

impl SubmitHandler for DocumentsCheck {
    fn check<'a>(&'a self, input: &'a serde_json::Value) -> BoxFuture<'a, SubmitVerdict> {
        Box::pin(std::future::ready(self.verdict(input)))
    }
}

impl DocumentsCheck {
    /// The verdict on one submission; no I/O beyond the workspace, so it runs inline.
    fn verdict(&self, input: &serde_json::Value) -> SubmitVerdict {
        let mut problems = Vec::new();
        if input["summary"]
            .as_str()
            .is_none_or(|s| s.trim().is_empty())
        {
            problems.push("summary: a non-empty string is required".to_string());
        }
        for (phase, document) in read_documents(&self.specs_dir) {
            match document {
                Ok(_) => {}
                Err(DocumentProblem::Missing) => {
                    problems.push(format!("{}: missing", document_path(phase)));
                }
                Err(DocumentProblem::Invalid(problem)) => {
                    problems.push(format!("{}: {problem}", document_path(phase)));
                }
            }
        }
        if problems.is_empty() {
            return SubmitVerdict::Accepted;
        }
        let list: Vec<String> = problems.iter().map(|p| format!("- {p}")).collect();
        SubmitVerdict::Rejected {
            feedback: format!(
                "The specification is not complete yet:\n{}\nFix these, then call `{SUBMIT_TOOL}` again.",
                list.join("\n")
            ),
        }
    }
}

/// The spec-driven-development instructions, with the schema of every document.
pub fn system_prompt() -> String {
    let mut text = format!(
        "You are a senior engineer writing the specification of a feature request for the \
repository you are working in, following spec-driven development: first understand the code, then \
state the requirements, then design, then plan the tasks. Use the tools read_file, list_files, \
search and run to study the repository, and write_file or edit_file to write the specification. \
Paths are relative to the repository root.

Write the specification as four JSON documents in `{SPECS_DIR}/`, in this order, each building \
on the ones before it:

1. `{SPECS_DIR}/explore.json` (EXPLORE): what the project is, its type and tech stack, the key \
files for this feature with their purpose (every path must exist: check it), the conventions you \
observed, the entry points, how tests are laid out and run, and the questions the request leaves \
open.
2. `{SPECS_DIR}/requirements.json` (REQUIREMENTS): the requirements in EARS form. Each has an id \
REQ-<AREA>-<NNN> (AREA 2-12 uppercase letters or digits, NNN three digits, ids unique), a title, \
one EARS sentence with exactly one SHALL (The <system> shall …; When <trigger>, the <system> shall \
…; While <state>, the <system> shall …; If <condition>, then the <system> shall …; Where \
<feature>, the <system> shall …; or a combination), a type, a priority and at least two testable \
acceptance criteria. Avoid vague words (fast, easy, user-friendly, appropriate …).
3. `{SPECS_DIR}/design.json` (DESIGN): an overview, the components (name, responsibility, \
interfaces, and the requirement ids each serves: every requirement must be served by a \
component), data models, APIs or commands added or changed, error handling, the testing strategy \
and security considerations.
4. `{SPECS_DIR}/tasks.json` (TASKS): tasks an engineer can finish and validate one at a time. \
Each has an id TSK-<NNN>, a title, a description, a type, a priority, an estimate in hours (above \
0, at most 40), the files it touches, acceptance criteria, the ids of the tasks it depends on (no \
cycles, no unknown ids) and the requirement ids it serves (every requirement must be served by a \
task).

Each file holds exactly one JSON object matching its JSON Schema below: no wrapper object, no \
comments. Write only these files: this run specifies the work, it does not implement it. Be \
concrete and specific to this repository; never invent files.

When all four documents are written, call `{SUBMIT_TOOL}` with a short summary. It checks that \
every document exists and matches its schema and tells you what to fix if not. A program then \
scores each document (EARS form, traceability from requirements to components and tasks, an \
acyclic task graph) and reports the result.
"
    );
    for phase in Phase::GENERATED {
        let schema = omoi_protocol::schema::phase_output(phase)
            .and_then(|schema| serde_json::to_string(&schema).ok())
            .unwrap_or_default();
        text.push_str(&format!(
            "\n## Schema of {}\n\n```json\n{schema}\n```\n",
            document_path(phase)
        ));
    }
    text
}

/// The first user message: the feature request.
fn first_message(title: &str, description: &str) -> String {
    format!(
        "# Feature request\n\n{}\n\n{}\n\nWrite its specification into `{SPECS_DIR}/` as \
         instructed, then call `{SUBMIT_TOOL}`.",
        title.trim(),
        description.trim()
    )
}

#[cfg(test)]
mod tests;
