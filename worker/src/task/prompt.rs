//! The prompts of a task session: how to implement a task in this repository, and the task
//! itself with the requirements it serves, the design components and the spec it belongs to.

use std::fmt::Write;

use omoi_protocol::task::TaskContext;

/// The system prompt of a task session.
pub fn system(validation_command: Option<&str>) -> String {
    let validation = match validation_command {
        Some(command) => format!(
            "When you submit, the worker runs the validation command `{command}` in the \
repository; the submission counts only when it passes. Run it yourself with `run` before you \
submit."
        ),
        None => "The project names no validation command: run the tests you find with `run` \
before you submit."
            .to_string(),
    };
    format!(
        "You are a senior engineer implementing one task of a specification in the repository \
you are in. Tools: read_file, list_files and search to read; write_file and edit_file to change \
files; run for shell commands (builds, tests) in the repository root.

How to work:
- Read the code around the change first and follow the repository's conventions: layout, \
naming, style, error handling, how tests are written.
- Keep the change focused on this task: no unrelated refactoring, renaming or reformatting, no \
changes to files the task does not need.
- Add or update tests for the behaviour you change, and make sure the existing tests still pass.
- Do not commit, push, switch branches or rewrite git history: the worker commits your changes \
on the spec branch and pushes them.
- {validation}

When the task is done and its acceptance criteria are met, call `submit` with a short summary of \
what you changed and why. If the answer says the submission failed, fix the problem and submit \
again."
    )
}

/// The first user message of a task session; `feedback` is what the previous attempt left.
pub fn first_message(context: &TaskContext, feedback: Option<&str>) -> String {
    let task = &context.task;
    let mut text = String::new();
    let _ = writeln!(text, "# Task {}: {}\n", task.id, task.title.trim());
    let _ = writeln!(text, "{}\n", task.description.trim());
    let _ = writeln!(
        text,
        "Type: {}. Priority: {}. Estimate: {} h.",
        json_name(&task.kind),
        json_name(&task.priority),
        task.estimate_hours
    );
    if !task.files.is_empty() {
        let _ = writeln!(text, "\n## Files it is expected to touch\n");
        for file in &task.files {
            let _ = writeln!(text, "- {file}");
        }
    }
    let _ = writeln!(text, "\n## Acceptance criteria\n");
    for criterion in &task.acceptance_criteria {
        let _ = writeln!(text, "- {criterion}");
    }
    if !context.requirements.is_empty() {
        let _ = writeln!(text, "\n# Requirements this task serves\n");
        for requirement in &context.requirements {
            let _ = writeln!(
                text,
                "## {}: {}\n\n{}\n\nAcceptance criteria:",
                requirement.id,
                requirement.title.trim(),
                requirement.text.trim()
            );
            for criterion in &requirement.acceptance_criteria {
                let _ = writeln!(text, "- {criterion}");
            }
            let _ = writeln!(text);
        }
    }
    if !context.components.is_empty() {
        let _ = writeln!(text, "\n# Design components that serve them\n");
        for component in &context.components {
            let _ = writeln!(
                text,
                "## {}\n\n{}",
                component.name,
                component.responsibility.trim()
            );
            if !component.interfaces.is_empty() {
                let _ = writeln!(text, "\nInterfaces:");
                for interface in &component.interfaces {
                    let _ = writeln!(text, "- {interface}");
                }
            }
            let _ = writeln!(text, "\nServes: {}\n", component.requirements.join(", "));
        }
    }
    let _ = writeln!(text, "\n# The spec\n\n{}\n", context.spec_title.trim());
    if !context.spec_description.trim().is_empty() {
        let _ = writeln!(text, "{}\n", context.spec_description.trim());
    }
    let _ = writeln!(
        text,
        "# Your job\n\nImplement task {} on branch {} and call `submit` with a summary.",
        task.id, context.branch
    );
    if let Some(command) = &context.validation_command {
        let _ = writeln!(text, "The validation command `{command}` must pass.");
    }
    if let Some(feedback) = feedback {
        let _ = writeln!(
            text,
            "\n# What happened in the previous attempt\n\n{}",
            feedback.trim()
        );
    }
    text
}

/// The wire name of an enum value (`implementation`, `high`).
fn json_name(value: &impl serde::Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|value| value.as_str().map(str::to_string))
        .unwrap_or_default()
}
