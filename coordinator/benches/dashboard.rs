//! The dashboard's task graph on 1,000 tasks, printed as bench figure lines (`scripts/bench.sh`):
//! the layout alone (layers, rows, critical path) and the whole SVG, on a layered graph of 20
//! columns of 50 tasks, each needing two tasks of the column before, in reverse order (so no
//! pass over the input order could settle it early).

// A benchmark harness: a failed setup must stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Instant;

use omoi_coordinator::dashboard::{graph_svg, layout};
use omoi_coordinator::model::{TaskRecord, TaskStatus};
use serde_json::json;

const TASKS: usize = 1000;
const WIDTH: usize = 50;
const RUNS: usize = 50;

fn tasks() -> Vec<TaskRecord> {
    let mut tasks: Vec<TaskRecord> = (0..TASKS)
        .map(|i| {
            let column = i / WIDTH;
            let depends_on = if column == 0 {
                Vec::new()
            } else {
                let before = (column - 1) * WIDTH;
                vec![
                    format!("t{}", before + i % WIDTH),
                    format!("t{}", before + (i * 7 + 3) % WIDTH),
                ]
            };
            TaskRecord {
                id: format!("t{i}"),
                spec_id: "s".into(),
                ticket_id: "k".into(),
                spec_task_id: format!("TSK-{i:04}"),
                title: format!("Task number {i} of the bench graph"),
                status: if i % 3 == 0 {
                    TaskStatus::Completed
                } else {
                    TaskStatus::Pending
                },
                attempts: 1,
                max_attempts: 3,
                depends_on,
                sandbox_id: None,
                commit_sha: Some("0123456789abcdef0123456789abcdef01234567".into()),
                error: None,
            }
        })
        .collect();
    tasks.reverse();
    tasks
}

fn figure(name: &str, mut sample: Vec<f64>, target: f64) {
    sample.sort_by(f64::total_cmp);
    let at = |q: f64| sample[((sample.len() - 1) as f64 * q).round() as usize];
    println!(
        "{}",
        json!({"figure": name, "value": at(0.5), "unit": "ms", "target": target,
               "spread": format!("p10 {:.3} … p90 {:.3} ({} runs)", at(0.1), at(0.9), sample.len())})
    );
}

fn main() {
    let tasks = tasks();
    let (mut layouts, mut svgs) = (Vec::new(), Vec::new());
    let mut bytes = 0;
    for _ in 0..RUNS {
        let started = Instant::now();
        let laid = layout(&tasks);
        layouts.push(started.elapsed().as_secs_f64() * 1e3);
        assert_eq!(laid.layer.iter().max(), Some(&(TASKS / WIDTH - 1)));
        let started = Instant::now();
        let svg = graph_svg(&tasks);
        svgs.push(started.elapsed().as_secs_f64() * 1e3);
        bytes = svg.len();
    }
    figure(
        "dashboard: task graph layout, 1,000 tasks (layers, rows, critical path)",
        layouts,
        50.0,
    );
    figure(
        &format!(
            "dashboard: task graph SVG, 1,000 tasks ({} KiB)",
            bytes / 1024
        ),
        svgs,
        50.0,
    );
}
