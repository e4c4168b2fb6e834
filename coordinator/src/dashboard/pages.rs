//! The dashboard's HTML: every value from a user or an agent goes through [`escape`].

use std::collections::HashMap;
use std::fmt::Write as _;

use omoi_protocol::artifact::PhaseOutput;
use omoi_protocol::phase::Phase;

use crate::model::{PhaseRecord, Spec, TaskRecord, TaskStatus, User};

/// The page's style, embedded.
const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0 auto;max-width:72rem;\
padding:1rem;color:#222}table{border-collapse:collapse;width:100%}td,th{text-align:left;\
padding:.3rem;border-bottom:1px solid #ddd}.pattern{font-size:.8em;color:#555}\
.error{color:#a00}svg{max-width:100%;height:auto;border:1px solid #ddd}\
@media (max-width:40rem){td,th{display:block}}";

/// Text made safe for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · omoi</title><style>{STYLE}</style></head><body>{body}</body></html>",
        escape(title)
    )
}

/// The sign-in page, with an optional message.
pub fn sign_in(message: Option<&str>) -> String {
    let message = message
        .map(|m| format!("<p class=\"error\">{}</p>", escape(m)))
        .unwrap_or_default();
    layout(
        "Sign in",
        &format!(
            "<h1>omoi</h1>{message}<form method=\"post\" action=\"/sign-in\">\
             <label>User token <input name=\"token\" type=\"password\" autocomplete=\"off\" \
             required></label> <button>Sign in</button></form>"
        ),
    )
}

/// An error page.
pub fn error(message: &str) -> String {
    layout(
        "Error",
        &format!(
            "<p class=\"error\">{}</p><p><a href=\"/\">Back to the specs</a></p>",
            escape(message)
        ),
    )
}

fn header(user: &User, csrf: &str) -> String {
    format!(
        "<header><a href=\"/\">omoi</a> · {} <form method=\"post\" action=\"/sign-out\" \
         style=\"display:inline\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <button>Sign out</button></form></header>",
        escape(&user.name),
        escape(csrf)
    )
}

/// The list of the user's specs.
pub fn specs(user: &User, csrf: &str, specs: &[Spec]) -> String {
    let mut rows = String::new();
    for s in specs {
        let _ = write!(
            rows,
            "<tr><td><a href=\"/specs/{id}\">{title}</a></td><td>{status}</td><td>{phase}</td>\
             <td>{age}</td></tr>",
            id = escape(&s.id),
            title = escape(&s.title),
            status = s.status,
            phase = s.current_phase.map_or("-", Phase::as_str),
            age = s.created_at.format("%Y-%m-%d %H:%M UTC"),
        );
    }
    layout(
        "Specs",
        &format!(
            "{}<h1>Specs</h1><table><thead><tr><th>title</th><th>status</th><th>phase</th>\
             <th>created</th></tr></thead><tbody>{rows}</tbody></table>",
            header(user, csrf)
        ),
    )
}

/// What the spec page shows.
#[derive(Debug)]
pub struct SpecView<'a> {
    pub csrf: &'a str,
    /// The phase the spec is stopped after, when it waits for approval.
    pub stopped: Option<Phase>,
    /// The evaluator's feedback on an edit it rejected.
    pub feedback: Option<&'a str>,
    pub spec: &'a Spec,
    pub phases: &'a [PhaseRecord],
    pub tasks: &'a [TaskRecord],
}

/// One spec: status, phase timeline, requirements with their EARS pattern, the task graph.
pub fn spec(view: &SpecView<'_>) -> String {
    let s = view.spec;
    let mut body = format!(
        "<p><a href=\"/\">Specs</a></p><h1>{}</h1><p>status <b id=\"status\">{}</b>",
        escape(&s.title),
        s.status
    );
    if let Some(phase) = s.current_phase {
        let _ = write!(body, " · phase {phase}");
    }
    if let Some(error) = &s.error {
        let _ = write!(body, " · <span class=\"error\">{}</span>", escape(error));
    }
    body.push_str("</p>");
    if let Some(stopped) = view.stopped {
        let _ = write!(
            body,
            "<form method=\"post\" action=\"/specs/{}/approve\"><input type=\"hidden\" \
             name=\"csrf\" value=\"{}\">Stopped after {stopped}. <button>Approve</button></form>",
            escape(&s.id),
            escape(view.csrf)
        );
    }
    if let Some(feedback) = view.feedback {
        let _ = write!(
            body,
            "<h2>Edit rejected</h2><pre class=\"error\" id=\"feedback\">{}</pre>",
            escape(feedback)
        );
    }
    if let Some(stopped) = view.stopped {
        let current = view
            .phases
            .iter()
            .find(|p| p.phase == stopped)
            .and_then(|p| p.output.as_ref())
            .and_then(edit_document);
        if let Some(document) = current {
            let _ = write!(
                body,
                "<h2>Edit the {stopped} output</h2><form method=\"post\" \
                 action=\"/specs/{}/edit\"><input type=\"hidden\" name=\"csrf\" \
                 value=\"{}\"><input type=\"hidden\" name=\"phase\" value=\"{stopped}\">\
                 <textarea name=\"output\" rows=\"16\" style=\"width:100%\">{}</textarea>\
                 <button>Save</button></form>",
                escape(&s.id),
                escape(view.csrf),
                escape(&document)
            );
        }
    }
    body.push_str("<h2>Phases</h2><table><tr><th>phase</th><th>status</th><th>attempts</th><th>score</th></tr>");
    for p in view.phases {
        let score = p
            .score
            .map_or_else(|| "-".to_string(), |s| format!("{s:.2}"));
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{score}</td></tr>",
            p.phase, p.status, p.attempts
        );
    }
    body.push_str("</table>");
    for p in view.phases {
        if let Some(PhaseOutput::Requirements(r)) = &p.output {
            body.push_str("<h2>Requirements</h2><ul>");
            for req in &r.requirements {
                let pattern = match omoi_worker::evaluate::ears::classify(&req.text) {
                    Ok(pattern) => pattern.to_string(),
                    Err(e) => format!("not EARS: {e}"),
                };
                let _ = write!(
                    body,
                    "<li><b>{}</b> {} <span class=\"pattern\">[{}]</span><br>{}</li>",
                    escape(&req.id),
                    escape(&req.title),
                    escape(&pattern),
                    escape(&req.text)
                );
            }
            body.push_str("</ul>");
        }
    }
    if !view.tasks.is_empty() {
        body.push_str("<h2>Tasks</h2>");
        body.push_str(&graph_svg(view.tasks));
    }
    layout(&s.title, &body)
}

/// The editable document of a phase output (what `PUT …/phases/{phase}/output` takes), pretty.
fn edit_document(output: &PhaseOutput) -> Option<String> {
    let inner = match output {
        PhaseOutput::Requirements(o) => serde_json::to_string_pretty(o),
        PhaseOutput::Design(o) => serde_json::to_string_pretty(o),
        PhaseOutput::Tasks(o) => serde_json::to_string_pretty(o),
        PhaseOutput::Explore(_) | PhaseOutput::Sync(_) => return None,
    };
    inner.ok()
}

/// The width and height of a task's box in the graph, and the gaps between boxes.
const BOX_W: usize = 160;
const BOX_H: usize = 36;
const GAP_X: usize = 40;
const GAP_Y: usize = 14;

/// Each task's layer: 0 for a task without dependencies, else one more than its deepest
/// dependency (unknown dependencies count as none; a cycle, which the gate refuses, stops at
/// the number of tasks).
pub fn layers(tasks: &[TaskRecord]) -> Vec<usize> {
    let index: HashMap<&str, usize> = tasks
        .iter()
        .enumerate()
        .map(|(n, t)| (t.id.as_str(), n))
        .collect();
    let mut layer = vec![0usize; tasks.len()];
    // Relax in rounds; a DAG settles within `tasks.len()` rounds.
    for _ in 0..tasks.len() {
        let mut changed = false;
        for (n, task) in tasks.iter().enumerate() {
            for dep in &task.depends_on {
                if let Some(&d) = index.get(dep.as_str()) {
                    if layer[d] + 1 > layer[n] && layer[d] < tasks.len() {
                        layer[n] = layer[d] + 1;
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
    layer
}

/// The task graph as SVG: one column per layer, a box per task coloured by its state, an edge
/// per dependency.
pub fn graph_svg(tasks: &[TaskRecord]) -> String {
    let layer = layers(tasks);
    let mut row_of = vec![0usize; tasks.len()];
    let mut rows = vec![0usize; layer.iter().max().map_or(0, |m| m + 1)];
    for (n, l) in layer.iter().enumerate() {
        row_of[n] = rows[*l];
        rows[*l] += 1;
    }
    let at = |n: usize| (layer[n] * (BOX_W + GAP_X), row_of[n] * (BOX_H + GAP_Y));
    let width = rows.len().max(1) * (BOX_W + GAP_X);
    let height = rows.iter().max().copied().unwrap_or(1).max(1) * (BOX_H + GAP_Y);
    let index: HashMap<&str, usize> = tasks
        .iter()
        .enumerate()
        .map(|(n, t)| (t.id.as_str(), n))
        .collect();
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {width} {height}\" \
         width=\"{width}\" height=\"{height}\" role=\"img\" aria-label=\"task graph\">"
    );
    for (n, task) in tasks.iter().enumerate() {
        for dep in &task.depends_on {
            if let Some(&d) = index.get(dep.as_str()) {
                let (x1, y1) = at(d);
                let (x2, y2) = at(n);
                let _ = write!(
                    svg,
                    "<line x1=\"{}\" y1=\"{}\" x2=\"{x2}\" y2=\"{}\" stroke=\"#888\"/>",
                    x1 + BOX_W,
                    y1 + BOX_H / 2,
                    y2 + BOX_H / 2
                );
            }
        }
    }
    for (n, task) in tasks.iter().enumerate() {
        let (x, y) = at(n);
        let fill = match task.status {
            TaskStatus::Completed => "#c8e6c9",
            TaskStatus::Running => "#bbdefb",
            TaskStatus::Failed => "#ffcdd2",
            TaskStatus::Ready => "#fff9c4",
            TaskStatus::Pending | TaskStatus::Blocked => "#eeeeee",
        };
        let commit = task.commit_sha.as_deref().unwrap_or("no commit");
        let _ = write!(
            svg,
            "<g class=\"task\" data-task=\"{id}\" data-status=\"{status}\"><title>{sid}: {title} \
             ({status}, {attempts} attempt(s), {commit})</title><rect x=\"{x}\" y=\"{y}\" \
             width=\"{BOX_W}\" height=\"{BOX_H}\" rx=\"4\" fill=\"{fill}\" stroke=\"#555\"/>\
             <text x=\"{tx}\" y=\"{ty}\" font-size=\"12\">{sid} {short}</text></g>",
            id = escape(&task.id),
            sid = escape(&task.spec_task_id),
            title = escape(&task.title),
            status = task.status,
            attempts = task.attempts,
            commit = escape(commit),
            tx = x + 6,
            ty = y + BOX_H / 2 + 4,
            short = escape(&task.title.chars().take(14).collect::<String>()),
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn task(id: &str, deps: &[&str]) -> TaskRecord {
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
    fn escape_covers_markup_and_quotes() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"y\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;y&quot;"
        );
    }

    #[test]
    fn layers_follow_the_longest_dependency_chain_and_titles_are_escaped() {
        let tasks = [
            task("c", &["b", "a"]),
            task("a", &[]),
            task("b", &["a"]),
            task("d", &["nowhere"]),
        ];
        assert_eq!(layers(&tasks), vec![2, 0, 1, 0]);
        let svg = graph_svg(&tasks);
        assert!(svg.contains("TSK-c: &lt;b&gt;c&lt;/b&gt;"), "{svg}");
        assert!(!svg.contains("<b>"), "{svg}");
    }
}
