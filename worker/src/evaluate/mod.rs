//! Deterministic evaluators: the quality gate after each phase, and the feedback text built from
//! their results.
//!
//! Each evaluator is a weighted sum of named criteria plus issues and warnings. An issue is
//! *blocking* when the output cannot be used downstream as it is — a dependency cycle, a duplicate
//! id, a key file that does not exist, a requirement no component or task serves — and fails the
//! gate whatever the score. Quality defects that leave the output usable (wording that is not EARS,
//! thin acceptance criteria, estimates out of bounds) are plain issues that cost score.

pub mod design;
pub mod ears;
pub mod explore;
pub(crate) mod graph;
pub mod ids;
pub mod requirements;
#[cfg(test)]
mod robustness;
mod score;
pub mod sync;
pub mod tasks;

use std::fmt::Write as _;
use std::path::Path;

use omoi_protocol::artifact::PhaseOutput;
use omoi_protocol::context::PhaseContext;
use omoi_protocol::eval::{Evaluation, Issue};

/// Scores one phase output. `ctx` holds the outputs of earlier phases (requirements for the design's
/// traceability; requirements and design for tasks); `workspace` is where explore's key files must
/// exist. Passed means a score of at least `threshold` and no blocking issue.
pub fn evaluate(
    output: &PhaseOutput,
    ctx: &PhaseContext,
    workspace: &Path,
    threshold: f64,
) -> Evaluation {
    match output {
        PhaseOutput::Explore(o) => explore::evaluate(o, workspace, threshold),
        PhaseOutput::Requirements(o) => requirements::evaluate(o, threshold),
        PhaseOutput::Design(o) => design::evaluate(o, ctx.requirements.as_ref(), threshold),
        PhaseOutput::Tasks(o) => {
            tasks::evaluate(o, ctx.requirements.as_ref(), Some(workspace), threshold)
        }
        PhaseOutput::Sync(o) => sync::evaluate(o, ctx, threshold),
    }
}

/// How many issues of one kind the feedback lists before it summarises the rest.
const FEEDBACK_LIST_LIMIT: usize = 25;

/// The feedback text for the model: the verdict, blocking issues first, then other issues, the
/// criteria that lost the most score with their detail, then warnings.
pub fn feedback(evaluation: &Evaluation) -> String {
    let phase = evaluation.phase;
    let blocking: Vec<&Issue> = evaluation.issues.iter().filter(|i| i.blocking).collect();
    let other: Vec<&Issue> = evaluation.issues.iter().filter(|i| !i.blocking).collect();
    let mut text = String::new();
    let verdict = if evaluation.passed {
        format!(
            "The {phase} output passed with score {:.2}.",
            evaluation.score
        )
    } else if blocking.is_empty() {
        format!(
            "The {phase} output did not pass: score {:.2} is below the pass threshold. Raise the \
             criteria below.",
            evaluation.score
        )
    } else {
        format!(
            "The {phase} output did not pass: {} blocking issue(s) must be fixed whatever the score \
             (score {:.2}).",
            blocking.len(),
            evaluation.score
        )
    };
    text.push_str(&verdict);
    text.push('\n');

    section(&mut text, "Blocking issues (fix these first):", &blocking);
    section(&mut text, "Other issues:", &other);

    let mut low: Vec<_> = evaluation
        .criteria
        .iter()
        .filter(|c| c.score < 1.0)
        .collect();
    low.sort_by(|a, b| {
        let lost_a = a.weight * (1.0 - a.score);
        let lost_b = b.weight * (1.0 - b.score);
        lost_b.total_cmp(&lost_a).then_with(|| a.name.cmp(&b.name))
    });
    if !low.is_empty() {
        text.push_str("\nCriteria below full marks (largest loss first):\n");
        for c in low {
            let _ = writeln!(
                text,
                "- {} {:.2} (weight {:.2}): {}",
                c.name, c.score, c.weight, c.detail
            );
        }
    }

    if !evaluation.warnings.is_empty() {
        text.push_str("\nWarnings:\n");
        for (n, w) in evaluation.warnings.iter().enumerate() {
            if n == FEEDBACK_LIST_LIMIT {
                let _ = writeln!(text, "- … and {} more", evaluation.warnings.len() - n);
                break;
            }
            let _ = writeln!(text, "- {w}");
        }
    }
    text
}

fn section(text: &mut String, title: &str, issues: &[&Issue]) {
    if issues.is_empty() {
        return;
    }
    text.push('\n');
    text.push_str(title);
    text.push('\n');
    for (n, issue) in issues.iter().enumerate() {
        if n == FEEDBACK_LIST_LIMIT {
            let _ = writeln!(text, "- … and {} more", issues.len() - n);
            break;
        }
        match &issue.subject {
            Some(subject) => {
                let _ = writeln!(text, "- {subject}: {}", issue.message);
            }
            None => {
                let _ = writeln!(text, "- {}", issue.message);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use omoi_protocol::eval::Criterion;
    use omoi_protocol::phase::Phase;
    use pretty_assertions::assert_eq;

    fn criterion(name: &str, weight: f64, score: f64, detail: &str) -> Criterion {
        Criterion {
            name: name.into(),
            weight,
            score,
            detail: detail.into(),
        }
    }

    fn issue(blocking: bool, subject: Option<&str>, message: &str) -> Issue {
        Issue {
            blocking,
            subject: subject.map(str::to_string),
            message: message.into(),
        }
    }

    #[test]
    fn feedback_lists_blocking_first_then_issues_low_criteria_and_warnings() {
        let evaluation = Evaluation {
            phase: Phase::Tasks,
            score: 0.8,
            passed: false,
            criteria: vec![
                criterion("ids", 0.1, 1.0, "all well formed"),
                criterion("estimates", 0.15, 0.5, "1 of 2 estimates out of bounds"),
                criterion("dependencies", 0.25, 0.5, "1 of 2 tasks in a cycle"),
            ],
            issues: vec![
                issue(
                    false,
                    Some("TSK-002"),
                    "estimate 60h is above 40h: split the task",
                ),
                issue(
                    true,
                    Some("TSK-001"),
                    "dependency cycle: TSK-001 → TSK-002 → TSK-001",
                ),
            ],
            warnings: vec!["TSK-002 serves no requirement".into()],
            ears: vec![],
        };
        assert_eq!(
            feedback(&evaluation),
            "The tasks output did not pass: 1 blocking issue(s) must be fixed whatever the score \
             (score 0.80).\n\
             \n\
             Blocking issues (fix these first):\n\
             - TSK-001: dependency cycle: TSK-001 → TSK-002 → TSK-001\n\
             \n\
             Other issues:\n\
             - TSK-002: estimate 60h is above 40h: split the task\n\
             \n\
             Criteria below full marks (largest loss first):\n\
             - dependencies 0.50 (weight 0.25): 1 of 2 tasks in a cycle\n\
             - estimates 0.50 (weight 0.15): 1 of 2 estimates out of bounds\n\
             \n\
             Warnings:\n\
             - TSK-002 serves no requirement\n"
        );
    }

    #[test]
    fn feedback_for_a_low_score_and_for_a_pass() {
        let low = Evaluation {
            phase: Phase::Explore,
            score: 0.5,
            passed: false,
            criteria: vec![criterion("summary", 1.0, 0.5, "6 words; 15 expected")],
            issues: vec![],
            warnings: vec![],
            ears: vec![],
        };
        assert_eq!(
            feedback(&low),
            "The explore output did not pass: score 0.50 is below the pass threshold. Raise the \
             criteria below.\n\
             \n\
             Criteria below full marks (largest loss first):\n\
             - summary 0.50 (weight 1.00): 6 words; 15 expected\n"
        );
        let pass = Evaluation {
            phase: Phase::Explore,
            score: 1.0,
            passed: true,
            criteria: vec![criterion("summary", 1.0, 1.0, "ok")],
            issues: vec![],
            warnings: vec![],
            ears: vec![],
        };
        assert_eq!(
            feedback(&pass),
            "The explore output passed with score 1.00.\n"
        );
    }

    #[test]
    fn feedback_caps_long_lists() {
        let evaluation = Evaluation {
            phase: Phase::Requirements,
            score: 0.0,
            passed: false,
            criteria: vec![],
            issues: (0..30)
                .map(|n| issue(true, None, &format!("problem {n}")))
                .collect(),
            warnings: vec![],
            ears: vec![],
        };
        let text = feedback(&evaluation);
        assert!(text.contains("- problem 24\n- … and 5 more\n"), "{text}");
        assert!(!text.contains("problem 25"), "{text}");
    }
}
