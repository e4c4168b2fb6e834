//! SYNC: the analysis computed from requirements and tasks (coverage, order, waves, critical
//! path), and its evaluator, which passes only a spec that is ready for execution.

use std::collections::{BTreeSet, HashMap, HashSet};

use omoi_protocol::artifact::{CoverageEntry, RequirementsOutput, SyncOutput, TasksOutput};
use omoi_protocol::context::PhaseContext;
use omoi_protocol::eval::Evaluation;
use omoi_protocol::phase::Phase;

use super::graph::{TaskGraph, hours};
use super::score::{Scorecard, list};

/// The issue when there is nothing to cover.
const NO_REQUIREMENTS: &str = "there are no requirements to cover";

/// Coverage, order, waves and critical path of `tasks` against `requirements`. Ready for execution
/// when every requirement is covered and the dependency graph is a valid DAG (no unknown, self or
/// cyclic dependencies, no duplicate ids); `issues` says what blocks otherwise. With a cycle, the
/// order and waves hold the tasks that could be ordered.
pub fn analyze(requirements: &RequirementsOutput, tasks: &TasksOutput) -> SyncOutput {
    let mut issues = Vec::new();

    // For each requirement id, the tasks serving it, each once, in the order of the tasks.
    let mut serving_by_requirement: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut counted: HashSet<(&str, &str)> = HashSet::new();
    for t in &tasks.tasks {
        for r in &t.requirements {
            if counted.insert((r.as_str(), t.id.as_str())) {
                serving_by_requirement
                    .entry(r.as_str())
                    .or_default()
                    .push(t.id.as_str());
            }
        }
    }
    let mut seen = BTreeSet::new();
    let mut coverage = Vec::new();
    let mut uncovered = Vec::new();
    for r in &requirements.requirements {
        if !seen.insert(r.id.as_str()) {
            continue;
        }
        let serving: Vec<String> = serving_by_requirement
            .get(r.id.as_str())
            .map(|ids| ids.iter().map(|id| id.to_string()).collect())
            .unwrap_or_default();
        if serving.is_empty() {
            uncovered.push(r.id.clone());
        }
        coverage.push(CoverageEntry {
            requirement: r.id.clone(),
            tasks: serving,
        });
    }
    let total = coverage.len();
    let coverage_percent = if total == 0 {
        issues.push(NO_REQUIREMENTS.to_string());
        0.0
    } else {
        (((total - uncovered.len()) as f64 / total as f64) * 10_000.0).round() / 100.0
    };
    if !uncovered.is_empty() {
        issues.push(uncovered_message(&uncovered));
    }

    if tasks.tasks.is_empty() {
        issues.push("there are no tasks".to_string());
    }
    let graph = TaskGraph::new(&tasks.tasks);
    let ordering = graph.ordering();
    if !graph.duplicates.is_empty() {
        issues.push(format!(
            "task ids used more than once: {}",
            list(&graph.duplicates)
        ));
    }
    for id in &graph.self_dependent {
        issues.push(format!("{id} depends on itself"));
    }
    for (task, dep) in &graph.unknown {
        issues.push(format!("{task} depends on {dep}, which is not a task"));
    }
    for (cycle, members) in ordering.cycles.iter().zip(&ordering.cycle_members) {
        issues.push(format!(
            "dependency cycle among {}: {}",
            list(members),
            cycle.join(" → ")
        ));
    }
    let in_cycles: BTreeSet<&String> = ordering.cycle_members.iter().flatten().collect();
    let waiting: Vec<&String> = ordering
        .unordered
        .iter()
        .filter(|id| !in_cycles.contains(id))
        .collect();
    if !waiting.is_empty() {
        issues.push(format!("tasks waiting on a cycle: {}", list(&waiting)));
    }

    let critical = graph.critical_path(&ordering);
    SyncOutput {
        coverage,
        coverage_percent,
        uncovered,
        topological_order: ordering.order,
        parallel_groups: ordering.waves,
        critical_path: critical.tasks,
        critical_path_hours: critical.hours,
        total_hours: tasks.tasks.iter().map(hours).sum(),
        ready_for_execution: issues.is_empty(),
        issues,
    }
}

fn uncovered_message(uncovered: &[String]) -> String {
    format!("requirements covered by no task: {}", list(uncovered))
}

/// Passes only a spec ready for execution: complete coverage, a valid DAG, and fields that agree
/// with each other. When the context holds the requirements and tasks, the output must also equal
/// their analysis.
pub fn evaluate(output: &SyncOutput, ctx: &PhaseContext, threshold: f64) -> Evaluation {
    let mut card = Scorecard::new(Phase::Sync);
    let coverage_issues = [
        NO_REQUIREMENTS.to_string(),
        uncovered_message(&output.uncovered),
    ];
    let graph_issues: Vec<&String> = output
        .issues
        .iter()
        .filter(|i| !coverage_issues.contains(i))
        .collect();

    card.criterion(
        "coverage",
        0.5,
        output.coverage_percent / 100.0,
        if output.uncovered.is_empty() {
            format!("{}% of requirements covered", output.coverage_percent)
        } else {
            format!(
                "{}% of requirements covered; uncovered: {}",
                output.coverage_percent,
                list(&output.uncovered)
            )
        },
    );
    card.criterion(
        "dependency_graph",
        0.5,
        if graph_issues.is_empty() { 1.0 } else { 0.0 },
        if graph_issues.is_empty() {
            format!("a valid DAG of {} tasks", output.topological_order.len())
        } else {
            format!("{} problem(s) in the task graph", graph_issues.len())
        },
    );

    for issue in &output.issues {
        card.blocking(None, issue.clone());
    }
    let uncovered = uncovered_message(&output.uncovered);
    if !output.uncovered.is_empty() && !output.issues.contains(&uncovered) {
        card.blocking(None, uncovered);
    }
    if output.ready_for_execution && !(output.issues.is_empty() && output.uncovered.is_empty()) {
        card.blocking(
            Some("ready_for_execution"),
            "is true although requirements are uncovered or issues remain",
        );
    }
    if !output.ready_for_execution && output.issues.is_empty() && output.uncovered.is_empty() {
        card.blocking(
            Some("ready_for_execution"),
            "is false but no issue says why",
        );
    }
    if let (Some(requirements), Some(tasks)) = (&ctx.requirements, &ctx.tasks) {
        let expected = analyze(requirements, tasks);
        let differing = differences(output, &expected);
        if !differing.is_empty() {
            card.blocking(
                None,
                format!(
                    "does not match the analysis of the context's requirements and tasks; differs \
                     in: {}",
                    list(&differing)
                ),
            );
        }
    }
    card.finish(threshold)
}

/// The names of the fields in which two analyses differ.
fn differences(actual: &SyncOutput, expected: &SyncOutput) -> Vec<&'static str> {
    let checks = [
        ("coverage", actual.coverage == expected.coverage),
        (
            "coverage_percent",
            actual.coverage_percent == expected.coverage_percent,
        ),
        ("uncovered", actual.uncovered == expected.uncovered),
        (
            "topological_order",
            actual.topological_order == expected.topological_order,
        ),
        (
            "parallel_groups",
            actual.parallel_groups == expected.parallel_groups,
        ),
        (
            "critical_path",
            actual.critical_path == expected.critical_path,
        ),
        (
            "critical_path_hours",
            actual.critical_path_hours == expected.critical_path_hours,
        ),
        ("total_hours", actual.total_hours == expected.total_hours),
        (
            "ready_for_execution",
            actual.ready_for_execution == expected.ready_for_execution,
        ),
        ("issues", actual.issues == expected.issues),
    ];
    checks
        .into_iter()
        .filter(|(_, same)| !same)
        .map(|(name, _)| name)
        .collect()
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

    fn ids(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    fn requirements(ids: &[&str]) -> RequirementsOutput {
        RequirementsOutput {
            requirements: ids.iter().map(|id| requirement(id)).collect(),
        }
    }

    fn entry(requirement: &str, tasks: &[&str]) -> CoverageEntry {
        CoverageEntry {
            requirement: requirement.into(),
            tasks: ids(tasks),
        }
    }

    /// A diamond: 1 ← {2, 3} ← 4, with 2 the heavier branch.
    fn diamond() -> TasksOutput {
        TasksOutput {
            tasks: vec![
                serving(task("TSK-001", 2.0, &[]), &["REQ-CORE-001"]),
                serving(task("TSK-002", 5.0, &["TSK-001"]), &["REQ-CORE-002"]),
                serving(task("TSK-003", 1.5, &["TSK-001"]), &["REQ-CORE-002"]),
                serving(
                    task("TSK-004", 1.0, &["TSK-002", "TSK-003"]),
                    &["REQ-CORE-001"],
                ),
            ],
        }
    }

    #[test]
    fn a_diamond_is_ready_with_waves_and_critical_path() {
        let reqs = requirements(&["REQ-CORE-001", "REQ-CORE-002"]);
        assert_eq!(
            analyze(&reqs, &diamond()),
            SyncOutput {
                coverage: vec![
                    entry("REQ-CORE-001", &["TSK-001", "TSK-004"]),
                    entry("REQ-CORE-002", &["TSK-002", "TSK-003"]),
                ],
                coverage_percent: 100.0,
                uncovered: vec![],
                topological_order: ids(&["TSK-001", "TSK-002", "TSK-003", "TSK-004"]),
                parallel_groups: vec![
                    ids(&["TSK-001"]),
                    ids(&["TSK-002", "TSK-003"]),
                    ids(&["TSK-004"])
                ],
                critical_path: ids(&["TSK-001", "TSK-002", "TSK-004"]),
                critical_path_hours: 8.0,
                total_hours: 9.5,
                ready_for_execution: true,
                issues: vec![],
            }
        );
    }

    #[test]
    fn a_cycle_and_an_uncovered_requirement_keep_it_from_execution() {
        let reqs = requirements(&["REQ-CORE-001", "REQ-CORE-002", "REQ-CORE-003"]);
        let tasks = TasksOutput {
            tasks: vec![
                serving(task("TSK-001", 1.0, &[]), &["REQ-CORE-001"]),
                serving(
                    task("TSK-002", 2.0, &["TSK-001", "TSK-003"]),
                    &["REQ-CORE-002"],
                ),
                serving(task("TSK-003", 3.0, &["TSK-002"]), &[]),
                serving(task("TSK-004", 4.0, &["TSK-003"]), &[]),
            ],
        };
        assert_eq!(
            analyze(&reqs, &tasks),
            SyncOutput {
                coverage: vec![
                    entry("REQ-CORE-001", &["TSK-001"]),
                    entry("REQ-CORE-002", &["TSK-002"]),
                    entry("REQ-CORE-003", &[]),
                ],
                coverage_percent: 66.67,
                uncovered: ids(&["REQ-CORE-003"]),
                topological_order: ids(&["TSK-001"]),
                parallel_groups: vec![ids(&["TSK-001"])],
                critical_path: ids(&["TSK-001"]),
                critical_path_hours: 1.0,
                total_hours: 10.0,
                ready_for_execution: false,
                issues: vec![
                    "requirements covered by no task: REQ-CORE-003".into(),
                    "dependency cycle among TSK-002, TSK-003: TSK-002 → TSK-003 → TSK-002".into(),
                    "tasks waiting on a cycle: TSK-004".into(),
                ],
            }
        );
    }

    #[test]
    fn self_loops_unknown_dependencies_and_emptiness_are_issues() {
        let reqs = requirements(&["REQ-CORE-001"]);
        let tasks = TasksOutput {
            tasks: vec![serving(
                task("TSK-001", 1.0, &["TSK-001", "TSK-404"]),
                &["REQ-CORE-001"],
            )],
        };
        let sync = analyze(&reqs, &tasks);
        assert_eq!(
            sync.issues,
            ids(&[
                "TSK-001 depends on itself",
                "TSK-001 depends on TSK-404, which is not a task"
            ])
        );
        assert!(!sync.ready_for_execution);

        let empty = analyze(&requirements(&[]), &TasksOutput { tasks: vec![] });
        assert_eq!(empty.issues, ids(&[NO_REQUIREMENTS, "there are no tasks"]));
        assert_eq!(
            (empty.coverage_percent, empty.ready_for_execution),
            (0.0, false)
        );
    }

    #[test]
    fn a_ready_analysis_passes_with_full_marks() {
        let reqs = requirements(&["REQ-CORE-001", "REQ-CORE-002"]);
        let sync = analyze(&reqs, &diamond());
        let ctx = PhaseContext {
            requirements: Some(reqs),
            tasks: Some(diamond()),
            ..PhaseContext::default()
        };
        assert_eq!(
            evaluate(&sync, &ctx, 0.7),
            Evaluation {
                phase: Phase::Sync,
                score: 1.0,
                passed: true,
                criteria: vec![
                    Criterion {
                        name: "coverage".into(),
                        weight: 0.5,
                        score: 1.0,
                        detail: "100% of requirements covered".into(),
                    },
                    Criterion {
                        name: "dependency_graph".into(),
                        weight: 0.5,
                        score: 1.0,
                        detail: "a valid DAG of 4 tasks".into(),
                    },
                ],
                issues: vec![],
                warnings: vec![],
                ears: vec![],
            }
        );
    }

    #[test]
    fn an_analysis_with_problems_fails_with_each_as_a_blocking_issue() {
        let reqs = requirements(&["REQ-CORE-001", "REQ-CORE-002", "REQ-CORE-003"]);
        let tasks = TasksOutput {
            tasks: vec![
                serving(
                    task("TSK-001", 1.0, &["TSK-002"]),
                    &["REQ-CORE-001", "REQ-CORE-002"],
                ),
                serving(task("TSK-002", 1.0, &["TSK-001"]), &[]),
            ],
        };
        let evaluation = evaluate(&analyze(&reqs, &tasks), &PhaseContext::default(), 0.0);
        let blocking = |m: &str| Issue {
            blocking: true,
            subject: None,
            message: m.into(),
        };
        assert_eq!(
            evaluation.issues,
            vec![
                blocking("requirements covered by no task: REQ-CORE-003"),
                blocking("dependency cycle among TSK-001, TSK-002: TSK-001 → TSK-002 → TSK-001"),
            ]
        );
        assert_eq!(evaluation.criteria[1].score, 0.0);
        assert_eq!((evaluation.score, evaluation.passed), (0.3334, false));
    }

    #[test]
    fn an_output_that_disagrees_with_itself_or_the_context_fails() {
        let reqs = requirements(&["REQ-CORE-001", "REQ-CORE-002"]);
        let mut sync = analyze(&reqs, &diamond());
        sync.uncovered = ids(&["REQ-CORE-002"]);
        sync.total_hours = 1.0;
        let ctx = PhaseContext {
            requirements: Some(reqs),
            tasks: Some(diamond()),
            ..PhaseContext::default()
        };
        let evaluation = evaluate(&sync, &ctx, 0.7);
        assert_eq!(
            evaluation.issues,
            vec![
                Issue {
                    blocking: true,
                    subject: None,
                    message: "requirements covered by no task: REQ-CORE-002".into(),
                },
                Issue {
                    blocking: true,
                    subject: Some("ready_for_execution".into()),
                    message: "is true although requirements are uncovered or issues remain".into(),
                },
                Issue {
                    blocking: true,
                    subject: None,
                    message: "does not match the analysis of the context's requirements and \
                              tasks; differs in: uncovered, total_hours"
                        .into(),
                },
            ]
        );
        assert!(!evaluation.passed);

        let mut silent = analyze(&requirements(&["REQ-CORE-001"]), &diamond());
        silent.ready_for_execution = false;
        let evaluation = evaluate(&silent, &PhaseContext::default(), 0.7);
        assert_eq!(
            evaluation.issues,
            vec![Issue {
                blocking: true,
                subject: Some("ready_for_execution".into()),
                message: "is false but no issue says why".into(),
            }]
        );
    }
}
