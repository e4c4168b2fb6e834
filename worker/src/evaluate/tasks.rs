//! The TASKS evaluator: well-formed unique ids, a dependency graph without unknown ids, self
//! dependencies or cycles, every requirement covered, estimates within bounds, acceptance criteria.
//!
//! SYNC runs no agent, so whatever would make it fail is blocking here, where the agent can still
//! fix it: no tasks, duplicate ids, unknown or self dependencies, cycles, and requirements no task
//! covers. Malformed ids, unknown requirement ids, estimates out of bounds and missing acceptance
//! criteria cost score.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use omoi_protocol::artifact::{RequirementsOutput, TasksOutput};
use omoi_protocol::eval::Evaluation;
use omoi_protocol::phase::Phase;

use super::graph::TaskGraph;
pub use super::ids::is_task_id;
use super::score::{Scorecard, list, non_blank, share};

/// The largest estimate of one task, in hours; a larger task should be split.
pub const MAX_ESTIMATE_HOURS: f64 = 40.0;

/// A path in a task's `files` written `new:path` or `path (new)` is a file the task creates.
const NEW_PREFIX: &str = "new:";
const NEW_SUFFIX: &str = "(new)";

const MALFORMED_ID: &str = "malformed id: use TSK- and the task's number, zero-padded to three \
                            digits (TSK-007, TSK-1000; at most six digits)";

/// Scores a tasks output. With the requirements, coverage is checked; with a workspace, every file
/// a task names must exist there unless it is marked as new.
pub fn evaluate(
    output: &TasksOutput,
    requirements: Option<&RequirementsOutput>,
    workspace: Option<&Path>,
    threshold: f64,
) -> Evaluation {
    let mut card = Scorecard::new(Phase::Tasks);
    let tasks = &output.tasks;
    let total = tasks.len();
    if total == 0 {
        card.blocking(Some("tasks"), "no tasks: break the design into tasks");
    }

    let graph = TaskGraph::new(tasks);
    let ordering = graph.ordering();
    let mut uses: HashMap<&str, usize> = HashMap::new();
    for task in tasks {
        *uses.entry(task.id.as_str()).or_default() += 1;
    }
    for id in &graph.duplicates {
        let count = uses.get(id.as_str()).copied().unwrap_or(0);
        card.blocking(
            Some(id),
            format!("id used by {count} tasks: give each its own"),
        );
    }
    let mut ids_ok = 0;
    for task in tasks {
        let unique = uses.get(task.id.as_str()) == Some(&1);
        if !is_task_id(&task.id) {
            card.issue(Some(&task.id), MALFORMED_ID);
        } else if unique {
            ids_ok += 1;
        }
    }
    card.criterion(
        "ids",
        0.05,
        share(ids_ok, total, 0.0),
        format!("{ids_ok} of {total} ids well formed and unique"),
    );

    // Dependencies.
    let mut troubled: BTreeSet<&str> = BTreeSet::new();
    for id in &graph.self_dependent {
        troubled.insert(id);
        card.blocking(
            Some(id),
            "depends on itself: remove it from its own depends_on",
        );
    }
    for (task, dep) in &graph.unknown {
        troubled.insert(task);
        card.blocking(
            Some(task),
            format!("depends on {dep}, which is not a task: use an existing task id"),
        );
    }
    for (cycle, members) in ordering.cycles.iter().zip(&ordering.cycle_members) {
        card.blocking(
            cycle.first().map(String::as_str),
            format!(
                "dependency cycle among {}: {} (each depends on the next); break it by removing \
                 a dependency",
                list(members),
                cycle.join(" → ")
            ),
        );
    }
    troubled.extend(ordering.unordered.iter().map(String::as_str));
    let distinct = tasks
        .iter()
        .map(|t| t.id.as_str())
        .collect::<BTreeSet<_>>()
        .len();
    let sound = distinct.saturating_sub(troubled.len());
    card.criterion(
        "dependencies",
        0.25,
        share(sound, distinct, 0.0),
        if ordering.unordered.is_empty() {
            format!("{sound} of {distinct} tasks have sound dependencies")
        } else {
            format!(
                "{sound} of {distinct} tasks have sound dependencies; blocked by a cycle: {}",
                list(&ordering.unordered)
            )
        },
    );

    coverage(&mut card, output, requirements);

    // Estimates, acceptance criteria, descriptions.
    let mut estimated = 0;
    let mut accepted = 0;
    let mut described = 0;
    for task in tasks {
        let id = Some(task.id.as_str());
        let hours = task.estimate_hours;
        if hours.is_nan() || hours <= 0.0 {
            card.issue(
                id,
                format!("estimate {hours}h is not above 0: estimate the work in hours"),
            );
        } else if hours > MAX_ESTIMATE_HOURS {
            card.issue(
                id,
                format!("estimate {hours}h is above {MAX_ESTIMATE_HOURS}h: split the task"),
            );
        } else {
            estimated += 1;
        }
        if non_blank(&task.acceptance_criteria) == 0 {
            card.issue(
                id,
                "no acceptance criteria: say how to tell the task is done",
            );
        } else {
            accepted += 1;
        }
        if task.title.trim().is_empty() || task.description.trim().is_empty() {
            card.issue(id, "title or description is empty");
        } else {
            described += 1;
        }
    }
    card.criterion(
        "estimates",
        0.15,
        share(estimated, total, 0.0),
        format!("{estimated} of {total} estimates above 0 and at most {MAX_ESTIMATE_HOURS}h"),
    );
    card.criterion(
        "acceptance_criteria",
        0.15,
        share(accepted, total, 0.0),
        format!("{accepted} of {total} tasks have acceptance criteria"),
    );
    card.criterion(
        "descriptions",
        0.05,
        share(described, total, 0.0),
        format!("{described} of {total} tasks have a title and a description"),
    );
    files(&mut card, output, workspace);
    card.finish(threshold)
}

/// Every file a task names exists in the workspace, unless marked as new (`new:path`,
/// `path (new)`); a missing one costs score and is named.
fn files(card: &mut Scorecard, output: &TasksOutput, workspace: Option<&Path>) {
    let Some(workspace) = workspace else {
        card.criterion("files", 0.1, 1.0, "not checked: no workspace");
        return;
    };
    let mut named = 0;
    let mut found = 0;
    for task in &output.tasks {
        let mut missing: Vec<&str> = Vec::new();
        for file in &task.files {
            let file = file.trim();
            if file.starts_with(NEW_PREFIX) || file.ends_with(NEW_SUFFIX) {
                continue;
            }
            named += 1;
            let relative = Path::new(file);
            let inside = relative.is_relative()
                && !relative
                    .components()
                    .any(|c| matches!(c, std::path::Component::ParentDir));
            if inside && workspace.join(relative).exists() {
                found += 1;
            } else {
                missing.push(file);
            }
        }
        if !missing.is_empty() {
            card.issue(
                Some(&task.id),
                format!(
                    "names files that are not in the workspace: {}; fix the paths, or mark a \
                     file the task creates as new (\"{NEW_PREFIX}path\" or \"path {NEW_SUFFIX}\")",
                    list(&missing)
                ),
            );
        }
    }
    card.criterion(
        "files",
        0.1,
        share(found, named, 1.0),
        format!("{found} of {named} existing files found in the workspace"),
    );
}

fn coverage(card: &mut Scorecard, output: &TasksOutput, requirements: Option<&RequirementsOutput>) {
    let Some(requirements) = requirements else {
        card.warn("no requirements in the context: coverage was not checked");
        card.criterion(
            "coverage",
            0.25,
            1.0,
            "not checked: no requirements in the context",
        );
        return;
    };
    let known: BTreeSet<&str> = requirements
        .requirements
        .iter()
        .map(|r| r.id.as_str())
        .collect();
    let covered: BTreeSet<&str> = output
        .tasks
        .iter()
        .flat_map(|t| t.requirements.iter().map(String::as_str))
        .collect();
    let mut seen = BTreeSet::new();
    let mut uncovered = Vec::new();
    for r in &requirements.requirements {
        if seen.insert(r.id.as_str()) && !covered.contains(r.id.as_str()) {
            uncovered.push(r.id.as_str());
            card.blocking(
                Some(&r.id),
                "covered by no task: add it to the tasks that implement it",
            );
        }
    }
    for task in &output.tasks {
        let unknown: Vec<&str> = task
            .requirements
            .iter()
            .map(String::as_str)
            .filter(|id| !known.contains(id))
            .collect();
        if !unknown.is_empty() {
            card.issue(
                Some(&task.id),
                format!(
                    "serves unknown requirements {}: use the ids of the requirements",
                    list(&unknown)
                ),
            );
        }
        if task.requirements.is_empty() {
            card.warn(format!("{}: serves no requirement", task.id));
        }
    }
    let total = seen.len();
    let covered_count = total - uncovered.len();
    let detail = if uncovered.is_empty() {
        format!("{covered_count} of {total} requirements covered by a task")
    } else {
        format!(
            "{covered_count} of {total} requirements covered by a task; uncovered: {}",
            list(&uncovered)
        )
    };
    card.criterion("coverage", 0.25, share(covered_count, total, 1.0), detail);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::graph::tests::task;
    use crate::evaluate::requirements::tests::requirement;
    use omoi_protocol::artifact::SpecTask;
    use omoi_protocol::eval::{Criterion, Issue};
    use pretty_assertions::assert_eq;

    fn serving(mut t: SpecTask, reqs: &[&str]) -> SpecTask {
        t.requirements = reqs.iter().map(|s| s.to_string()).collect();
        t
    }

    fn requirements() -> RequirementsOutput {
        RequirementsOutput {
            requirements: vec![requirement("REQ-BUILD-001"), requirement("REQ-BUILD-002")],
        }
    }

    fn criterion(name: &str, weight: f64, score: f64, detail: &str) -> Criterion {
        Criterion {
            name: name.into(),
            weight,
            score,
            detail: detail.into(),
        }
    }

    fn blocking(subject: &str, message: &str) -> Issue {
        Issue {
            blocking: true,
            subject: Some(subject.into()),
            message: message.into(),
        }
    }

    fn issue(subject: &str, message: &str) -> Issue {
        Issue {
            blocking: false,
            subject: Some(subject.into()),
            message: message.into(),
        }
    }

    #[test]
    fn ids_over_999_are_well_formed_and_bad_ones_cost_score() {
        let output = TasksOutput {
            tasks: vec![
                serving(task("TSK-999", 1.0, &[]), &["REQ-BUILD-001"]),
                serving(task("TSK-1000", 1.0, &["TSK-999"]), &["REQ-BUILD-002"]),
                serving(task("TSK-0007", 1.0, &["TSK-1000"]), &[]),
                serving(task("TSK-1000000", 1.0, &[]), &[]),
            ],
        };
        let evaluation = evaluate(&output, Some(&requirements()), None, 0.0);
        assert_eq!(
            evaluation.issues,
            vec![
                issue("TSK-0007", MALFORMED_ID),
                issue("TSK-1000000", MALFORMED_ID)
            ]
        );
        assert_eq!(
            evaluation.criteria[0],
            criterion("ids", 0.05, 0.5, "2 of 4 ids well formed and unique")
        );
    }

    #[test]
    fn a_sound_plan_passes_with_full_marks() {
        let output = TasksOutput {
            tasks: vec![
                serving(task("TSK-001", 4.0, &[]), &["REQ-BUILD-001"]),
                serving(task("TSK-002", 2.0, &["TSK-001"]), &["REQ-BUILD-002"]),
            ],
        };
        assert_eq!(
            evaluate(&output, Some(&requirements()), None, 0.7),
            Evaluation {
                phase: Phase::Tasks,
                score: 1.0,
                passed: true,
                criteria: vec![
                    criterion("ids", 0.05, 1.0, "2 of 2 ids well formed and unique"),
                    criterion(
                        "dependencies",
                        0.25,
                        1.0,
                        "2 of 2 tasks have sound dependencies"
                    ),
                    criterion(
                        "coverage",
                        0.25,
                        1.0,
                        "2 of 2 requirements covered by a task"
                    ),
                    criterion(
                        "estimates",
                        0.15,
                        1.0,
                        "2 of 2 estimates above 0 and at most 40h"
                    ),
                    criterion(
                        "acceptance_criteria",
                        0.15,
                        1.0,
                        "2 of 2 tasks have acceptance criteria"
                    ),
                    criterion(
                        "descriptions",
                        0.05,
                        1.0,
                        "2 of 2 tasks have a title and a description"
                    ),
                    criterion("files", 0.1, 1.0, "not checked: no workspace"),
                ],
                issues: vec![],
                warnings: vec![],
                ears: vec![],
            }
        );
    }

    #[test]
    fn a_cycle_blocks_and_names_its_tasks() {
        let output = TasksOutput {
            tasks: vec![
                serving(task("TSK-001", 1.0, &["TSK-003"]), &["REQ-BUILD-001"]),
                serving(task("TSK-002", 1.0, &["TSK-001"]), &["REQ-BUILD-002"]),
                serving(task("TSK-003", 1.0, &["TSK-002"]), &[]),
            ],
        };
        let evaluation = evaluate(&output, Some(&requirements()), None, 0.7);
        assert_eq!(
            evaluation.issues,
            vec![blocking(
                "TSK-001",
                "dependency cycle among TSK-001, TSK-002, TSK-003: TSK-001 → TSK-003 → TSK-002 → \
                 TSK-001 (each depends on the next); break it by removing a dependency"
            )]
        );
        assert_eq!(
            evaluation.criteria[1],
            criterion(
                "dependencies",
                0.25,
                0.0,
                "0 of 3 tasks have sound dependencies; blocked by a cycle: TSK-001, TSK-002, TSK-003"
            )
        );
        assert_eq!(
            evaluation.warnings,
            vec!["TSK-003: serves no requirement".to_string()]
        );
        assert_eq!((evaluation.score, evaluation.passed), (0.75, false));
    }

    #[test]
    fn self_unknown_duplicate_uncovered_and_bounds_are_each_reported() {
        let mut no_criteria = serving(task("TSK-003", 0.0, &[]), &["REQ-BUILD-001", "REQ-X-001"]);
        no_criteria.acceptance_criteria = vec![" ".into()];
        let output = TasksOutput {
            tasks: vec![
                serving(task("TSK-001", 41.0, &["TSK-001"]), &["REQ-BUILD-001"]),
                serving(task("TSK-002", 1.0, &["TSK-009"]), &["REQ-BUILD-001"]),
                no_criteria,
                serving(task("TSK-002", 1.0, &[]), &[]),
                serving(task("T-4", 1.0, &[]), &["REQ-BUILD-001"]),
            ],
        };
        let evaluation = evaluate(&output, Some(&requirements()), None, 0.0);
        assert_eq!(
            evaluation.issues,
            vec![
                blocking("TSK-002", "id used by 2 tasks: give each its own"),
                issue("T-4", MALFORMED_ID),
                blocking(
                    "TSK-001",
                    "depends on itself: remove it from its own depends_on"
                ),
                blocking(
                    "TSK-002",
                    "depends on TSK-009, which is not a task: use an existing task id"
                ),
                blocking(
                    "REQ-BUILD-002",
                    "covered by no task: add it to the tasks that implement it"
                ),
                issue(
                    "TSK-003",
                    "serves unknown requirements REQ-X-001: use the ids of the requirements"
                ),
                issue("TSK-001", "estimate 41h is above 40h: split the task"),
                issue(
                    "TSK-003",
                    "estimate 0h is not above 0: estimate the work in hours"
                ),
                issue(
                    "TSK-003",
                    "no acceptance criteria: say how to tell the task is done"
                ),
            ]
        );
        assert_eq!(evaluation.criteria[1].score, 0.5);
        assert!(!evaluation.passed);
    }

    #[test]
    fn no_tasks_blocks() {
        let evaluation = evaluate(&TasksOutput { tasks: vec![] }, None, None, 0.0);
        assert_eq!(
            evaluation.issues,
            vec![blocking("tasks", "no tasks: break the design into tasks")]
        );
        assert_eq!(
            evaluation.warnings,
            vec!["no requirements in the context: coverage was not checked".to_string()]
        );
        assert!(!evaluation.passed);
    }

    #[test]
    fn files_must_exist_in_the_workspace_unless_marked_new() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("src")).unwrap();
        std::fs::write(dir.path().join("src/lib.rs"), "").unwrap();
        let mut first = serving(task("TSK-001", 4.0, &[]), &["REQ-BUILD-001"]);
        first.files = [
            "src/lib.rs",
            "src/limit.rs (new)",
            "new:src/store.rs",
            "src/gone.rs",
        ]
        .map(String::from)
        .to_vec();
        let mut second = serving(task("TSK-002", 2.0, &["TSK-001"]), &["REQ-BUILD-002"]);
        second.files = vec!["../outside.rs".into(), "/etc/passwd".into()];
        let output = TasksOutput {
            tasks: vec![first, second],
        };
        let evaluation = evaluate(&output, Some(&requirements()), Some(dir.path()), 0.7);
        assert_eq!(
            evaluation.issues,
            vec![
                Issue {
                    blocking: false,
                    subject: Some("TSK-001".into()),
                    message: "names files that are not in the workspace: src/gone.rs; fix the \
                              paths, or mark a file the task creates as new (\"new:path\" or \
                              \"path (new)\")"
                        .into(),
                },
                Issue {
                    blocking: false,
                    subject: Some("TSK-002".into()),
                    message: "names files that are not in the workspace: ../outside.rs, \
                              /etc/passwd; fix the paths, or mark a file the task creates as new \
                              (\"new:path\" or \"path (new)\")"
                        .into(),
                },
            ]
        );
        assert_eq!(
            evaluation.criteria.last(),
            Some(&criterion(
                "files",
                0.1,
                0.25,
                "1 of 4 existing files found in the workspace"
            ))
        );
    }
}
