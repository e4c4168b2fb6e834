//! The task graph: a layered layout (a task's column is one more than its deepest dependency),
//! the critical path (the longest chain of dependencies) and the SVG of both. Linear in tasks
//! and dependencies: one topological pass (Kahn), whatever the input order.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::pages::escape;
use crate::model::{TaskRecord, TaskStatus};

/// The width and height of a task's box in the graph, and the gaps between boxes.
const BOX_W: usize = 160;
const BOX_H: usize = 36;
const GAP_X: usize = 40;
const GAP_Y: usize = 14;

/// Where each task goes and which tasks make the critical path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Each task's column.
    pub layer: Vec<usize>,
    /// Each task's row within its column.
    pub row: Vec<usize>,
    /// Whether each task is on the critical path.
    pub critical: Vec<bool>,
    /// For a task on the critical path, the task before it on the path.
    pub critical_from: Vec<Option<usize>>,
    /// The dependencies as (from, to) task indexes; unknown dependencies are left out.
    pub edges: Vec<(usize, usize)>,
}

/// Lays the tasks out. Unknown dependencies count as none; tasks on a cycle (which the gate
/// refuses) are put in the column after the last laid-out one.
pub fn layout(tasks: &[TaskRecord]) -> Layout {
    let n = tasks.len();
    let index: HashMap<&str, usize> = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id.as_str(), i))
        .collect();
    let mut edges = Vec::new();
    let mut waiting = vec![0usize; n];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (to, task) in tasks.iter().enumerate() {
        for dep in &task.depends_on {
            if let Some(&from) = index.get(dep.as_str()) {
                if from != to {
                    edges.push((from, to));
                    waiting[to] += 1;
                    dependents[from].push(to);
                }
            }
        }
    }
    let mut layer = vec![0usize; n];
    // The predecessor on the longest chain ending at each task.
    let mut via: Vec<Option<usize>> = vec![None; n];
    let mut queue: Vec<usize> = (0..n).filter(|&i| waiting[i] == 0).collect();
    let mut done = vec![false; n];
    let mut head = 0;
    while head < queue.len() {
        let from = queue[head];
        head += 1;
        done[from] = true;
        for &to in &dependents[from] {
            if layer[from] + 1 > layer[to] {
                layer[to] = layer[from] + 1;
                via[to] = Some(from);
            }
            waiting[to] -= 1;
            if waiting[to] == 0 {
                queue.push(to);
            }
        }
    }
    let deepest = layer.iter().copied().max().unwrap_or(0);
    for i in 0..n {
        if !done[i] {
            layer[i] = deepest + 1;
            via[i] = None;
        }
    }
    let mut critical = vec![false; n];
    let mut critical_from = vec![None; n];
    let end = (0..n)
        .filter(|&i| done[i])
        .max_by_key(|&i| (layer[i], std::cmp::Reverse(i)));
    let mut at = end;
    while let Some(i) = at {
        critical[i] = true;
        critical_from[i] = via[i];
        at = via[i];
    }
    let mut rows = vec![0usize; layer.iter().max().map_or(0, |m| m + 1)];
    let mut row = vec![0usize; n];
    for (i, l) in layer.iter().enumerate() {
        row[i] = rows[*l];
        rows[*l] += 1;
    }
    Layout {
        layer,
        row,
        critical,
        critical_from,
        edges,
    }
}

/// The fill of a task's box by its state.
fn fill(status: TaskStatus) -> &'static str {
    match status {
        TaskStatus::Completed => "#c8e6c9",
        TaskStatus::Running => "#bbdefb",
        TaskStatus::Failed => "#ffcdd2",
        TaskStatus::Ready => "#fff9c4",
        TaskStatus::Pending | TaskStatus::Blocked => "#eeeeee",
    }
}

/// The task graph as SVG: one column per layer, a box per task coloured by its state (a link to
/// its row in the task table), an edge per dependency; the critical path drawn thick and red.
pub fn svg(tasks: &[TaskRecord]) -> String {
    let layout = layout(tasks);
    let at = |i: usize| {
        (
            layout.layer[i] * (BOX_W + GAP_X),
            layout.row[i] * (BOX_H + GAP_Y),
        )
    };
    let columns = layout.layer.iter().max().map_or(1, |m| m + 1);
    let mut per_column = vec![0usize; columns];
    for l in &layout.layer {
        per_column[*l] += 1;
    }
    let width = columns * (BOX_W + GAP_X);
    let height = per_column.iter().max().copied().unwrap_or(1).max(1) * (BOX_H + GAP_Y);
    let mut svg = String::with_capacity(tasks.len() * 400 + 256);
    let _ = write!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {width} {height}\" \
         width=\"{width}\" height=\"{height}\" role=\"img\" aria-label=\"task graph\">"
    );
    for &(from, to) in &layout.edges {
        let (x1, y1) = at(from);
        let (x2, y2) = at(to);
        let critical = layout.critical_from[to] == Some(from);
        let _ = write!(
            svg,
            "<line x1=\"{}\" y1=\"{}\" x2=\"{x2}\" y2=\"{}\" {}/>",
            x1 + BOX_W,
            y1 + BOX_H / 2,
            y2 + BOX_H / 2,
            if critical {
                "class=\"critical\" stroke=\"#c62828\" stroke-width=\"3\""
            } else {
                "stroke=\"#888\""
            }
        );
    }
    for (i, task) in tasks.iter().enumerate() {
        let (x, y) = at(i);
        let commit = task.commit_sha.as_deref().unwrap_or("no commit");
        let critical = layout.critical[i];
        let _ = write!(
            svg,
            "<a href=\"#task-{id}\"><g class=\"task{class}\" data-task=\"{id}\" \
             data-status=\"{status}\"><title>{sid}: {title} ({status}, {attempts} attempt(s), \
             {commit}{on_path})</title><rect x=\"{x}\" y=\"{y}\" width=\"{BOX_W}\" \
             height=\"{BOX_H}\" rx=\"4\" fill=\"{fill}\" stroke=\"{stroke}\" \
             stroke-width=\"{stroke_width}\"/><text x=\"{tx}\" y=\"{ty}\" font-size=\"12\">{sid} \
             {short}</text></g></a>",
            id = escape(&task.id),
            class = if critical { " critical" } else { "" },
            sid = escape(&task.spec_task_id),
            title = escape(&task.title),
            status = task.status,
            attempts = task.attempts,
            commit = escape(commit),
            on_path = if critical { ", critical path" } else { "" },
            fill = fill(task.status),
            stroke = if critical { "#c62828" } else { "#555" },
            stroke_width = if critical { 3 } else { 1 },
            tx = x + 6,
            ty = y + BOX_H / 2 + 4,
            short = escape(&task.title.chars().take(14).collect::<String>()),
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    pub fn task(id: &str, deps: &[&str]) -> TaskRecord {
        TaskRecord {
            id: id.into(),
            spec_id: "s".into(),
            ticket_id: "t".into(),
            spec_task_id: format!("TSK-{id}"),
            title: format!("<b>{id}</b>"),
            status: TaskStatus::Pending,
            attempts: 0,
            max_attempts: 3,
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
            sandbox_id: None,
            commit_sha: None,
            error: None,
        }
    }

    #[test]
    fn layers_follow_the_longest_chain_and_the_critical_path_is_marked() {
        let tasks = [
            task("c", &["b", "a"]),
            task("a", &[]),
            task("b", &["a"]),
            task("d", &["nowhere"]),
        ];
        let layout = layout(&tasks);
        assert_eq!(layout.layer, vec![2, 0, 1, 0]);
        assert_eq!(layout.critical, vec![true, true, true, false]);
        assert_eq!(layout.row, vec![0, 0, 0, 1]);
        let svg = svg(&tasks);
        assert!(svg.contains("TSK-c: &lt;b&gt;c&lt;/b&gt;"), "{svg}");
        assert!(!svg.contains("<b>"), "{svg}");
        assert_eq!(svg.matches("class=\"critical\"").count(), 2, "{svg}");
        assert!(svg.contains("href=\"#task-c\""), "{svg}");
    }

    #[test]
    fn a_cycle_and_a_self_dependency_end_in_a_last_column_without_hanging() {
        let tasks = [task("a", &["b"]), task("b", &["a"]), task("c", &["c"])];
        let layout = layout(&tasks);
        assert_eq!(layout.layer, vec![1, 1, 0]);
        assert_eq!(layout.critical, vec![false, false, true]);
    }

    #[test]
    fn a_long_chain_in_reverse_order_is_laid_out_in_one_pass() {
        let n = 2000;
        let tasks: Vec<TaskRecord> = (0..n)
            .rev()
            .map(|i| {
                let dep = (i > 0).then(|| (i - 1).to_string());
                task(
                    &i.to_string(),
                    &dep.iter().map(String::as_str).collect::<Vec<_>>(),
                )
            })
            .collect();
        let layout = layout(&tasks);
        assert_eq!(layout.layer[0], n - 1);
        assert_eq!(layout.layer[n - 1], 0);
        assert!(layout.critical.iter().all(|c| *c));
    }
}
