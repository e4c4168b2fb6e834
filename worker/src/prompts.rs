//! The prompts of each spec phase: a system prompt that says what the phase is for and how it
//! is judged, and a first user message with the feature request and the earlier outputs.

use omoi_protocol::context::PhaseContext;
use omoi_protocol::phase::Phase;

/// The system prompt of a generated phase.
pub fn system(phase: Phase) -> String {
    let common = "You are a senior engineer writing a specification for a feature request, one \
phase at a time, inside the repository it concerns. You can read the repository with the tools \
read_file, list_files, search and run (for read-only commands such as listing tests). You do not \
change any file in this phase. When your output is ready, call the `submit` tool with it; its \
input schema is the exact shape required. A program checks every submission and answers with a \
score and the problems it found: fix them and submit again. Be concrete and specific to this \
repository; never invent files.";
    let task = match phase {
        Phase::Explore => {
            "Phase EXPLORE: learn the codebase before anything is specified. Report what the \
project is, its type and tech stack, the key files for this feature (each path must exist: \
check it), the conventions you observed, the entry points, how tests are laid out and run, and \
the questions the request leaves open."
        }
        Phase::Requirements => {
            "Phase REQUIREMENTS: write the requirements of the feature in EARS form. Each has an \
id REQ-<AREA>-<NNN> (AREA 2-12 uppercase letters or digits, NNN three digits, ids unique), a \
title, one EARS sentence with exactly one SHALL (The <system> shall …; When <trigger>, the \
<system> shall …; While <state>, the <system> shall …; If <condition>, then the <system> shall …; \
Where <feature>, the <system> shall …; or a combination), a type, a priority and at least two \
testable acceptance criteria. Avoid vague words (fast, easy, user-friendly, appropriate …): say \
what can be measured."
        }
        Phase::Design => {
            "Phase DESIGN: design how the requirements will be met in this codebase: an overview, \
the components (name, responsibility, interfaces, and the requirement ids each serves: every \
requirement must be served by at least one component), data models, APIs or commands added or \
changed, error handling, the testing strategy and security considerations."
        }
        Phase::Tasks => {
            "Phase TASKS: break the design into tasks an engineer can finish and validate one at a \
time. Each has an id TSK-<NNN>, a title, a description, a type, a priority, an estimate in hours \
(above 0, at most 40), the files it touches, acceptance criteria, the ids of the tasks it \
depends on (no cycles, no unknown ids) and the requirement ids it serves (every requirement must \
be served by a task). Order the work so that independent tasks can run in parallel."
        }
        Phase::Sync | Phase::Complete => "This phase is computed by the worker and needs no model.",
    };
    format!("{common}\n\n{task}")
}

/// The first user message of an attempt: the request, the earlier outputs, and the feedback
/// of the previous attempt when this is a retry.
pub fn first_message(phase: Phase, context: &PhaseContext, feedback: Option<&str>) -> String {
    let mut text = format!(
        "# Feature request\n\n{}\n\n{}\n",
        context.title.trim(),
        context.description.trim()
    );
    for earlier in phase.before() {
        let output = match earlier {
            Phase::Explore => context.explore.as_ref().map(serde_json::to_string_pretty),
            Phase::Requirements => context
                .requirements
                .as_ref()
                .map(serde_json::to_string_pretty),
            Phase::Design => context.design.as_ref().map(serde_json::to_string_pretty),
            Phase::Tasks => context.tasks.as_ref().map(serde_json::to_string_pretty),
            Phase::Sync | Phase::Complete => None,
        };
        if let Some(Ok(json)) = output {
            text.push_str(&format!(
                "\n# Output of {}\n\n```json\n{json}\n```\n",
                earlier.as_str().to_uppercase()
            ));
        }
    }
    text.push_str(&format!(
        "\n# Your job\n\nWrite the {} output and call `submit` with it.\n",
        phase.as_str().to_uppercase()
    ));
    if let Some(feedback) = feedback {
        text.push_str(&format!(
            "\n# Feedback on the previous attempt\n\nThe previous attempt was not accepted. \
             Address every point:\n\n{feedback}\n"
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_message_carries_request_earlier_outputs_and_feedback() {
        let context = PhaseContext {
            title: "Add a flag".into(),
            description: "A --shout flag".into(),
            ..PhaseContext::default()
        };
        let text = first_message(Phase::Requirements, &context, Some("REQ-1 is malformed"));
        assert!(text.starts_with("# Feature request\n\nAdd a flag\n\nA --shout flag\n"));
        assert!(text.contains("Write the REQUIREMENTS output"));
        assert!(text.ends_with("Address every point:\n\nREQ-1 is malformed\n"));
        assert!(!first_message(Phase::Explore, &context, None).contains("Feedback"));
    }

    #[test]
    fn every_generated_phase_has_its_own_system_prompt() {
        let prompts: Vec<String> = Phase::GENERATED.iter().map(|p| system(*p)).collect();
        for (i, a) in prompts.iter().enumerate() {
            for b in &prompts[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert!(system(Phase::Tasks).contains("TSK-<NNN>"));
    }
}
