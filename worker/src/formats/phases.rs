//! spec-kit's phase order as dependencies, and back. spec-kit's `tasks.md` lists tasks under
//! phase headings (Setup, Tests, Core, Integration, Polish, or one phase per user story) and marks
//! with `[P]` the tasks that may run in parallel; `/implement` runs the phases in order, the tasks
//! of a phase in order, and consecutive `[P]` tasks together.
//!
//! Read: the tasks form *steps* in document order — a run of consecutive `[P]` tasks under one
//! heading is one step, any other task a step of its own — and each task depends on every task of
//! the step before it (so a later phase waits for the whole earlier phase). A task with its own
//! `Depends on:` line keeps what it says. When a step of many tasks follows another (more than
//! [`MAX_JOIN`] edges between them), its tasks are put in sequence instead, the first after the
//! step before, so the dependencies stay linear in the tasks; a note says so.
//!
//! Written: phase n holds the tasks of wave n of the dependency graph (each depends only on
//! earlier phases), in the spec's order, `[P]` on a task that shares its phase with others and no
//! file with them; tasks the graph cannot order (a cycle) come last.

use std::collections::{HashMap, HashSet};

use omoi_protocol::artifact::SpecTask;

use crate::evaluate::graph::TaskGraph;

/// The most dependency edges written between two consecutive steps.
pub(crate) const MAX_JOIN: usize = 4096;

/// Where a task stands in a spec-kit `tasks.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Placed {
    /// The heading it is under (headings counted from the top).
    pub(crate) section: usize,
    /// Marked `[P]`.
    pub(crate) parallel: bool,
    /// It has its own `Depends on:` line.
    pub(crate) explicit: bool,
}

/// The dependencies phase order gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Inferred {
    /// For each task, the tasks (by position) it depends on; `None` for a task with its own
    /// `Depends on:` line.
    pub(crate) deps: Vec<Option<Vec<usize>>>,
    /// Steps put in sequence because they were too wide to join: (first task, number of tasks).
    pub(crate) sequenced: Vec<(usize, usize)>,
}

/// The dependencies of the tasks `placed` (in document order) by phase order.
pub(crate) fn infer(placed: &[Placed]) -> Inferred {
    let mut deps: Vec<Option<Vec<usize>>> = placed
        .iter()
        .map(|p| (!p.explicit).then(Vec::new))
        .collect();
    let mut sequenced = Vec::new();
    let mut before: Vec<usize> = Vec::new();
    let mut start = 0;
    while start < placed.len() {
        let mut end = start + 1;
        if placed[start].parallel {
            while end < placed.len()
                && placed[end].parallel
                && placed[end].section == placed[start].section
            {
                end += 1;
            }
        }
        let inferred: Vec<usize> = (start..end).filter(|&t| !placed[t].explicit).collect();
        if before.len().saturating_mul(inferred.len()) <= MAX_JOIN {
            for &t in &inferred {
                deps[t] = Some(before.clone());
            }
            before = (start..end).collect();
        } else {
            let mut previous: Option<usize> = None;
            for &t in &inferred {
                deps[t] = Some(match previous {
                    None => before.clone(),
                    Some(p) => vec![p],
                });
                previous = Some(t);
            }
            sequenced.push((start, end - start));
            before = (start..end)
                .filter(|&t| placed[t].explicit || Some(t) == previous)
                .collect();
        }
        start = end;
    }
    Inferred { deps, sequenced }
}

/// The phases to write tasks in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Phases {
    /// Positions into the tasks, wave by wave, then (when there are any) the tasks no wave holds.
    pub(crate) phases: Vec<Vec<usize>>,
    /// How many of the phases are waves.
    pub(crate) ordered: usize,
    /// For each task, whether it is marked `[P]`.
    pub(crate) parallel: Vec<bool>,
}

/// The phases to write `tasks` in.
pub(crate) fn phases(tasks: &[SpecTask]) -> Phases {
    let ordering = TaskGraph::new(tasks).ordering();
    let mut wave_of: HashMap<&str, usize> = HashMap::new();
    for (n, wave) in ordering.waves.iter().enumerate() {
        for id in wave {
            wave_of.insert(id.as_str(), n);
        }
    }
    let mut phases: Vec<Vec<usize>> = vec![Vec::new(); ordering.waves.len() + 1];
    for (t, task) in tasks.iter().enumerate() {
        // The first task with an id is the graph's; a repeated id goes last.
        let phase = wave_of
            .remove(task.id.as_str())
            .unwrap_or(ordering.waves.len());
        phases[phase].push(t);
    }
    phases.retain(|p| !p.is_empty());
    let mut parallel = vec![false; tasks.len()];
    for phase in &phases {
        if phase.len() < 2 {
            continue;
        }
        let mut seen: HashSet<&str> = HashSet::new();
        let mut shared: HashSet<&str> = HashSet::new();
        for &t in phase {
            for file in &tasks[t].files {
                let file = file.as_str();
                if !seen.insert(file) {
                    shared.insert(file);
                }
            }
        }
        for &t in phase {
            parallel[t] = tasks[t].files.iter().all(|f| !shared.contains(f.as_str()));
        }
    }
    Phases {
        phases,
        ordered: ordering.waves.len(),
        parallel,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::graph::tests::task;
    use pretty_assertions::assert_eq;

    fn placed(section: usize, parallel: bool) -> Placed {
        Placed {
            section,
            parallel,
            explicit: false,
        }
    }

    #[test]
    fn phases_follow_each_other_and_parallel_runs_go_together() {
        // Setup: T1, T2 [P], T3 [P]; Tests: T4 [P], T5 [P]; Core: T6, T7 [P].
        let tasks = [
            placed(0, false),
            placed(0, true),
            placed(0, true),
            placed(1, true),
            placed(1, true),
            placed(2, false),
            placed(2, true),
        ];
        assert_eq!(
            infer(&tasks),
            Inferred {
                deps: vec![
                    Some(vec![]),
                    Some(vec![0]),
                    Some(vec![0]),
                    Some(vec![1, 2]),
                    Some(vec![1, 2]),
                    Some(vec![3, 4]),
                    Some(vec![5]),
                ],
                sequenced: vec![],
            }
        );
    }

    #[test]
    fn sequential_tasks_follow_the_one_before_and_explicit_ones_keep_their_own() {
        let mut tasks = vec![placed(0, false), placed(0, false), placed(0, true)];
        tasks[1].explicit = true;
        tasks.push(placed(0, false));
        assert_eq!(
            infer(&tasks).deps,
            vec![Some(vec![]), None, Some(vec![1]), Some(vec![2])]
        );
    }

    #[test]
    fn a_wide_join_is_put_in_sequence_and_stays_linear() {
        let n = 20_000;
        let mut tasks: Vec<Placed> = (0..n).map(|_| placed(0, true)).collect();
        tasks.extend((0..n).map(|_| placed(1, true)));
        let inferred = infer(&tasks);
        assert_eq!(inferred.sequenced, vec![(n, n)]);
        let edges: usize = inferred.deps.iter().flatten().map(Vec::len).sum();
        assert_eq!(edges, n + (n - 1));
        assert_eq!(inferred.deps[n].as_ref().map(Vec::len), Some(n));
        assert_eq!(inferred.deps[n + 1], Some(vec![n]));
        // A third wide step waits for the end of the sequence only.
        tasks.extend((0..n).map(|_| placed(2, true)));
        let inferred = infer(&tasks);
        assert_eq!(inferred.deps[2 * n], Some(vec![2 * n - 1]));
        let edges: usize = inferred.deps.iter().flatten().map(Vec::len).sum();
        assert!(edges <= 3 * n, "{edges}");
    }

    #[test]
    fn waves_become_phases_and_parallel_marks_avoid_shared_files() {
        let mut tasks = vec![
            task("TSK-001", 1.0, &[]),
            task("TSK-002", 1.0, &["TSK-001"]),
            task("TSK-003", 1.0, &["TSK-001"]),
            task("TSK-004", 1.0, &["TSK-001"]),
            task("TSK-005", 1.0, &["TSK-006"]),
            task("TSK-006", 1.0, &["TSK-005"]),
            task("TSK-002", 1.0, &[]),
        ];
        tasks[2].files = vec!["src/a.rs".into()];
        tasks[3].files = vec!["src/a.rs".into(), "src/b.rs".into()];
        assert_eq!(
            phases(&tasks),
            Phases {
                phases: vec![vec![0], vec![1, 2, 3], vec![4, 5, 6]],
                ordered: 2,
                parallel: vec![false, true, false, false, true, true, true],
            }
        );
    }
}
