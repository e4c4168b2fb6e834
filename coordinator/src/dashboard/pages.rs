//! The dashboard's HTML: every value from a user or an agent goes through [`escape`].

use std::collections::HashMap;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use omoi_protocol::artifact::PhaseOutput;
use omoi_protocol::event::Usage;
use omoi_protocol::phase::Phase;

use super::graph;
use super::tally::Tally;
use crate::model::{
    PhaseRecord, Project, Sandbox, Spec, SpecStatus, StreamEvent, TaskRecord, User,
};

/// The page's style, embedded.
const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0 auto;max-width:80rem;\
padding:1rem;color:#222}table{border-collapse:collapse;width:100%}td,th{text-align:left;\
padding:.3rem;border-bottom:1px solid #ddd;vertical-align:top}.pattern{font-size:.8em;color:#555}\
.error{color:#a00}.muted{color:#666;font-size:.85em}form.inline{display:inline}\
.graph{overflow-x:auto;border:1px solid #ddd}.graph svg{display:block}\
#event-list{font-family:ui-monospace,monospace;font-size:.8em;max-height:24rem;overflow-y:auto;\
padding-left:0;list-style:none}#event-list li{border-bottom:1px solid #eee;padding:.1rem 0;\
white-space:pre-wrap;word-break:break-all}header{display:flex;gap:1rem;align-items:center;\
justify-content:space-between}fieldset{border:1px solid #ddd;margin:.5rem 0}\
input,select,textarea,button{font:inherit;max-width:100%}details{margin:.2rem 0}\
.critical{font-weight:bold}@media (max-width:40rem){td,th{display:block}thead{display:none}}";

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

/// A page; `live` names the body's live mode and the URL the script re-reads.
fn layout(title: &str, body: &str, live: Option<(&str, &str)>) -> String {
    let (attrs, script) = match live {
        Some((mode, url)) => (
            format!(" data-live=\"{mode}\" data-page=\"{}\"", escape(url)),
            "<script src=\"/assets/live.js\" defer></script>",
        ),
        None => (String::new(), ""),
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · omoi</title><style>{STYLE}</style>{script}</head><body{attrs}>{body}</body></html>",
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
        None,
    )
}

/// An error page.
pub fn error(message: &str) -> String {
    layout(
        "Error",
        &format!(
            "<p class=\"error\" id=\"error\">{}</p><p><a href=\"/\">Back to the specs</a></p>",
            escape(message)
        ),
        None,
    )
}

fn header(user: &User, csrf: &str) -> String {
    format!(
        "<header><a href=\"/\"><b>omoi</b></a><span>{} <form class=\"inline\" method=\"post\" \
         action=\"/sign-out\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <button>Sign out</button></form></span></header>",
        escape(&user.name),
        escape(csrf)
    )
}

fn csrf_input(csrf: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        escape(csrf)
    )
}

/// How long ago, briefly.
pub fn age(since: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (now - since).num_seconds().max(0);
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs / 60),
        3600..86400 => format!("{} h", secs / 3600),
        _ => format!("{} d", secs / 86400),
    }
}

/// The first `n` characters of an id.
fn short(id: &str, n: usize) -> String {
    id.chars().take(n).collect()
}

fn dollars(cost: f64) -> String {
    format!("${cost:.4}")
}

/// What the list page shows.
#[derive(Debug)]
pub struct ListView<'a> {
    pub user: &'a User,
    pub csrf: &'a str,
    pub projects: &'a [Project],
    /// The specs that pass the filter, newest first.
    pub specs: &'a [Spec],
    /// (completed, all) tasks per spec id.
    pub progress: &'a HashMap<String, (u64, u64)>,
    /// Cost so far per spec id.
    pub costs: &'a HashMap<String, f64>,
    pub filter_project: &'a str,
    pub filter_status: Option<SpecStatus>,
    pub now: DateTime<Utc>,
}

fn progress_of(spec: &Spec, progress: &HashMap<String, (u64, u64)>) -> String {
    if let Some((done, all)) = progress.get(&spec.id) {
        return format!("tasks {done}/{all}");
    }
    if spec.status == SpecStatus::Completed {
        return "done".into();
    }
    match spec.current_phase {
        Some(phase) => {
            let at = Phase::ALL.iter().position(|p| *p == phase).unwrap_or(0);
            format!("phase {}/{}", at + 1, Phase::ALL.len())
        }
        None => "-".into(),
    }
}

/// The list of the user's specs, its filters and the launch form.
pub fn specs(view: &ListView<'_>) -> String {
    let names: HashMap<&str, &str> = view
        .projects
        .iter()
        .map(|p| (p.id.as_str(), p.name.as_str()))
        .collect();
    let mut rows = String::new();
    for s in view.specs {
        let _ = write!(
            rows,
            "<tr data-spec=\"{id}\" data-status=\"{status}\"><td><a href=\"/specs/{id}\">{title}</a>\
             </td><td>{project}</td><td class=\"status\">{status}</td><td>{phase}</td>\
             <td>{progress}</td><td>{cost}</td><td title=\"{created}\">{age}</td></tr>",
            id = escape(&s.id),
            title = escape(&s.title),
            project = escape(names.get(s.project_id.as_str()).copied().unwrap_or("?")),
            status = s.status,
            phase = s.current_phase.map_or("-", Phase::as_str),
            progress = progress_of(s, view.progress),
            cost = dollars(view.costs.get(&s.id).copied().unwrap_or(0.0)),
            created = s.created_at.format("%Y-%m-%d %H:%M UTC"),
            age = age(s.created_at, view.now),
        );
    }
    if view.specs.is_empty() {
        rows.push_str("<tr><td colspan=\"7\" class=\"muted\">No spec matches.</td></tr>");
    }
    let project_options = |selected: &str, any: &str| {
        let mut options = format!("<option value=\"\">{any}</option>");
        for p in view.projects {
            let _ = write!(
                options,
                "<option value=\"{id}\"{sel}>{name}</option>",
                id = escape(&p.id),
                sel = if p.id == selected { " selected" } else { "" },
                name = escape(&p.name)
            );
        }
        options
    };
    let mut status_options = String::from("<option value=\"\">any status</option>");
    for status in [
        SpecStatus::Pending,
        SpecStatus::Executing,
        SpecStatus::Implementing,
        SpecStatus::Completed,
        SpecStatus::Failed,
        SpecStatus::Cancelled,
    ] {
        let _ = write!(
            status_options,
            "<option{}>{status}</option>",
            if view.filter_status == Some(status) {
                " selected"
            } else {
                ""
            }
        );
    }
    let mut phase_options = String::from("<option value=\"\">run through</option>");
    for phase in [
        Phase::Explore,
        Phase::Requirements,
        Phase::Design,
        Phase::Tasks,
    ] {
        let _ = write!(
            phase_options,
            "<option value=\"{phase}\">stop after {phase}</option>"
        );
    }
    let launch = if view.projects.is_empty() {
        "<p class=\"muted\">No project yet: create one with <code>omoi project create</code>.</p>"
            .to_string()
    } else {
        format!(
            "<details><summary>Launch a spec</summary><form method=\"post\" action=\"/launch\" \
             id=\"launch\">{csrf}<fieldset><label>Project <select name=\"project_id\">{projects}\
             </select></label> <label>Title <input name=\"title\" required maxlength=\"200\">\
             </label><br><label>Description<br><textarea name=\"description\" rows=\"4\" \
             style=\"width:100%\"></textarea></label><br><select name=\"stop_after\">{phases}\
             </select> <button>Launch</button></fieldset></form></details>",
            csrf = csrf_input(view.csrf),
            projects =
                project_options("", "choose").replacen("<option value=\"\">choose</option>", "", 1),
            phases = phase_options,
        )
    };
    layout(
        "Specs",
        &format!(
            "{header}<h1>Specs</h1>{launch}<form method=\"get\" action=\"/\" id=\"filter\">\
             <select name=\"project\">{projects}</select> <select name=\"status\">{status_options}\
             </select> <button>Filter</button></form><div id=\"specs\" data-live-part>\
             <table><thead><tr><th>title</th><th>project</th><th>status</th><th>phase</th>\
             <th>progress</th><th>cost</th><th>age</th></tr></thead><tbody>{rows}</tbody></table>\
             </div>",
            header = header(view.user, view.csrf),
            projects = project_options(view.filter_project, "any project"),
        ),
        Some(("list", &list_url(view.filter_project, view.filter_status))),
    )
}

fn list_url(project: &str, status: Option<SpecStatus>) -> String {
    format!(
        "/?project={}&status={}",
        percent(project),
        status.map_or("", SpecStatus::as_str)
    )
}

/// A query value, percent-encoded.
fn percent(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// What the spec page shows.
#[derive(Debug)]
pub struct SpecView<'a> {
    pub csrf: &'a str,
    /// The phase the spec is stopped after, when it waits for approval.
    pub stopped: Option<Phase>,
    /// The evaluator's feedback on an edit it rejected, and the rejected document (shown in the
    /// form again, so that nothing typed is lost).
    pub feedback: Option<(&'a str, &'a str)>,
    pub spec: &'a Spec,
    pub phases: &'a [PhaseRecord],
    pub tasks: &'a [TaskRecord],
    pub sandboxes: &'a [Sandbox],
    pub tally: &'a Tally,
    /// The latest events that pass the filter, oldest first.
    pub events: &'a [StreamEvent],
    /// The spec's last cursor: the live stream starts after it.
    pub last_cursor: i64,
    pub filter_kind: &'a str,
    pub filter_sandbox: &'a str,
}

fn usage_cells(usage: Option<&Usage>) -> String {
    match usage {
        Some(u) => format!(
            "<td>{} in / {} out</td><td>{}</td>",
            u.input_tokens,
            u.output_tokens,
            dollars(u.cost_usd)
        ),
        None => "<td>-</td><td>-</td>".into(),
    }
}

/// One spec: status and actions, the phase timeline with its evaluations, requirements with
/// their EARS pattern, design components, the task graph and table, sandboxes, usage and the
/// event stream.
pub fn spec(view: &SpecView<'_>) -> String {
    let s = view.spec;
    let id = escape(&s.id);
    let mut body = format!(
        "<p><a href=\"/\">Specs</a></p><h1>{}</h1>",
        escape(&s.title)
    );
    body.push_str(&summary(view));
    if let Some((feedback, _)) = view.feedback {
        let _ = write!(
            body,
            "<h2>Edit rejected</h2><pre class=\"error\" id=\"feedback\">{}</pre>",
            escape(feedback)
        );
    }
    if let Some(stopped) = view.stopped {
        let current = match view.feedback {
            Some((_, draft)) => Some(draft.to_string()),
            None => view
                .phases
                .iter()
                .find(|p| p.phase == stopped)
                .and_then(|p| p.output.as_ref())
                .and_then(edit_document),
        };
        if let Some(document) = current {
            let _ = write!(
                body,
                "<details id=\"edit\"{open}><summary>Edit the {stopped} output</summary>\
                 <form method=\"post\" action=\"/specs/{id}/edit\">{csrf}<input type=\"hidden\" \
                 name=\"phase\" value=\"{stopped}\"><textarea name=\"output\" rows=\"16\" \
                 style=\"width:100%\">{document}</textarea><button>Save</button></form></details>",
                open = if view.feedback.is_some() { " open" } else { "" },
                csrf = csrf_input(view.csrf),
                document = escape(&document)
            );
        }
    }
    body.push_str(&timeline(view));
    body.push_str(&requirements_and_design(view.phases));
    // The containers are there before the spec has tasks, so that live updates fill them.
    let _ = write!(
        body,
        "<h2>Tasks</h2><p class=\"muted\">The critical path (the longest chain of \
         dependencies) is drawn in red; hover a task for its attempts and commit, click it \
         for its row.</p><div class=\"graph\" id=\"graph\" data-live-part>{}</div>",
        if view.tasks.is_empty() {
            "<p class=\"muted\">No tasks yet: they come with the written spec.</p>".to_string()
        } else {
            graph::svg(view.tasks)
        }
    );
    body.push_str(&task_table(view));
    body.push_str(&sandboxes(view));
    body.push_str(&events(view));
    layout(
        &s.title,
        &body,
        Some((
            "spec",
            &format!(
                "/specs/{}?kind={}&sandbox={}",
                s.id,
                percent(view.filter_kind),
                percent(view.filter_sandbox)
            ),
        )),
    )
}

/// Status, phase, error, branch or pull request, totals and the actions.
fn summary(view: &SpecView<'_>) -> String {
    let s = view.spec;
    let id = escape(&s.id);
    let mut out = format!(
        "<div id=\"summary\" data-live-part><p>status <b id=\"status\">{}</b>",
        s.status
    );
    if let Some(phase) = s.current_phase {
        let _ = write!(out, " · phase <b id=\"phase\">{phase}</b>");
    }
    let total = &view.tally.total;
    let _ = write!(
        out,
        " · {} tokens in, {} out · {} so far",
        total.input_tokens,
        total.output_tokens,
        dollars(total.cost_usd)
    );
    if let Some(error) = &s.error {
        let _ = write!(out, "<br><span class=\"error\">{}</span>", escape(error));
    }
    out.push_str("</p>");
    match (&s.pull_request, &s.branch) {
        (Some(pr), _) => {
            let _ = write!(
                out,
                "<p>Pull request <a href=\"{}\" rel=\"noreferrer\">#{}</a></p>",
                escape(&pr.url),
                pr.number
            );
        }
        (None, Some(branch)) => {
            let _ = write!(
                out,
                "<p>Branch <code id=\"branch\">{}</code></p>",
                escape(branch)
            );
        }
        (None, None) => {}
    }
    let csrf = csrf_input(view.csrf);
    out.push_str("<div id=\"actions\">");
    if let Some(stopped) = view.stopped {
        let _ = write!(
            out,
            "<form class=\"inline\" method=\"post\" action=\"/specs/{id}/approve\">{csrf}\
             Stopped after {stopped}. <button id=\"approve\">Approve</button></form> "
        );
    } else if matches!(
        s.status,
        SpecStatus::Failed | SpecStatus::Cancelled | SpecStatus::Pending
    ) {
        let _ = write!(
            out,
            "<form class=\"inline\" method=\"post\" action=\"/specs/{id}/resume\">{csrf}\
             <button id=\"resume\">{}</button></form> ",
            if view.phases.is_empty() {
                "Start"
            } else {
                "Resume"
            }
        );
    }
    if !s.status.is_final() {
        let _ = write!(
            out,
            "<form class=\"inline\" method=\"post\" action=\"/specs/{id}/cancel\">{csrf}\
             <button id=\"cancel\">Cancel</button></form>"
        );
    }
    out.push_str("</div></div>");
    out
}

/// The phases with their attempts, scores, usage and each evaluation's criteria and feedback.
fn timeline(view: &SpecView<'_>) -> String {
    let mut out = String::from(
        "<h2>Phases</h2><div id=\"timeline\" data-live-part><table><thead><tr><th>phase</th>\
         <th>status</th><th>attempts</th><th>score</th><th>time</th><th>tokens</th><th>cost</th>\
         </tr></thead><tbody>",
    );
    for p in view.phases {
        let score = p
            .score
            .map_or_else(|| "-".to_string(), |s| format!("{s:.2}"));
        let time = p.duration_ms.map_or_else(
            || "-".to_string(),
            |ms| format!("{:.1} s", ms as f64 / 1000.0),
        );
        let _ = write!(
            out,
            "<tr data-phase=\"{phase}\" data-status=\"{status}\"><td>{phase}</td><td>{status}</td>\
             <td>{attempts}</td><td>{score}</td><td>{time}</td>{usage}</tr>",
            phase = p.phase,
            status = p.status,
            attempts = p.attempts,
            usage = usage_cells(view.tally.per_phase.get(&p.phase)),
        );
        if let Some(results) = view.tally.evaluations.get(&p.phase) {
            out.push_str("<tr><td></td><td colspan=\"6\">");
            for r in results {
                let e = &r.evaluation;
                let _ = write!(
                    out,
                    "<details><summary>attempt {} · score {:.2} · {}</summary><ul>",
                    r.attempt,
                    e.score,
                    if e.passed { "passed" } else { "not passed" }
                );
                for c in &e.criteria {
                    let _ = write!(
                        out,
                        "<li>{} ({:.0} %): {:.2} <span class=\"muted\">{}</span></li>",
                        escape(&c.name),
                        c.weight * 100.0,
                        c.score,
                        escape(&c.detail)
                    );
                }
                out.push_str("</ul>");
                for issue in &e.issues {
                    let _ = write!(
                        out,
                        "<p class=\"{}\">{}{}{}</p>",
                        if issue.blocking { "error" } else { "muted" },
                        if issue.blocking { "blocking: " } else { "" },
                        issue
                            .subject
                            .as_deref()
                            .map(|s| format!("{}: ", escape(s)))
                            .unwrap_or_default(),
                        escape(&issue.message)
                    );
                }
                for w in &e.warnings {
                    let _ = write!(out, "<p class=\"muted\">warning: {}</p>", escape(w));
                }
                out.push_str("</details>");
            }
            out.push_str("</td></tr>");
        }
    }
    if view.phases.is_empty() {
        out.push_str("<tr><td colspan=\"7\" class=\"muted\">No phase has run yet.</td></tr>");
    }
    out.push_str("</tbody></table></div>");
    out
}

/// The requirements with their EARS pattern, and the design's components with the
/// requirements each serves.
fn requirements_and_design(phases: &[PhaseRecord]) -> String {
    let mut out = String::from("<div id=\"spec-text\" data-live-part>");
    for p in phases {
        match &p.output {
            Some(PhaseOutput::Requirements(r)) => {
                out.push_str("<h2>Requirements</h2><ul>");
                for req in &r.requirements {
                    let pattern = match omoi_worker::evaluate::ears::classify(&req.text) {
                        Ok(pattern) => pattern.to_string(),
                        Err(e) => format!("not EARS: {e}"),
                    };
                    let _ = write!(
                        out,
                        "<li id=\"req-{id}\"><b>{id}</b> {} <span class=\"pattern\">[{}]</span>\
                         <br>{}</li>",
                        escape(&req.title),
                        escape(&pattern),
                        escape(&req.text),
                        id = escape(&req.id),
                    );
                }
                out.push_str("</ul>");
            }
            Some(PhaseOutput::Design(d)) => {
                out.push_str(
                    "<h2>Design</h2><table id=\"components\"><thead><tr><th>component</th>\
                              <th>responsibility</th><th>serves</th></tr></thead><tbody>",
                );
                for c in &d.components {
                    let serves: Vec<String> = c
                        .requirements
                        .iter()
                        .map(|r| format!("<a href=\"#req-{0}\">{0}</a>", escape(r)))
                        .collect();
                    let _ = write!(
                        out,
                        "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                        escape(&c.name),
                        escape(&c.responsibility),
                        serves.join(", ")
                    );
                }
                out.push_str("</tbody></table>");
            }
            _ => {}
        }
    }
    out.push_str("</div>");
    out
}

fn task_table(view: &SpecView<'_>) -> String {
    let layout = graph::layout(view.tasks);
    let mut out = String::from(
        "<div id=\"tasks\" data-live-part><table><thead><tr><th>task</th><th>status</th>\
         <th>attempts</th><th>commit</th><th>sandbox</th><th>tokens</th><th>cost</th></tr>\
         </thead><tbody>",
    );
    for (i, t) in view.tasks.iter().enumerate() {
        let _ = write!(
            out,
            "<tr id=\"task-{id}\" data-status=\"{status}\"><td{class}><b>{sid}</b> {title}{error}\
             </td><td>{status}</td><td>{attempts}/{max}</td><td><code>{commit}</code></td>\
             <td>{sandbox}</td>{usage}</tr>",
            id = escape(&t.id),
            class = if layout.critical[i] {
                " class=\"critical\" title=\"critical path\""
            } else {
                ""
            },
            sid = escape(&t.spec_task_id),
            title = escape(&t.title),
            error = t
                .error
                .as_deref()
                .map(|e| format!("<br><span class=\"error\">{}</span>", escape(e)))
                .unwrap_or_default(),
            status = t.status,
            attempts = t.attempts,
            max = t.max_attempts,
            commit = escape(
                &t.commit_sha
                    .as_deref()
                    .map_or_else(|| "-".into(), |c| short(c, 12))
            ),
            sandbox = t
                .sandbox_id
                .as_deref()
                .map(|s| format!(
                    "<a href=\"/specs/{}?sandbox={}#events\">{}</a>",
                    escape(&view.spec.id),
                    percent(s),
                    escape(&short(s, 8))
                ))
                .unwrap_or_else(|| "-".into()),
            usage = usage_cells(view.tally.per_task.get(&t.id)),
        );
    }
    out.push_str("</tbody></table></div>");
    out
}

fn sandboxes(view: &SpecView<'_>) -> String {
    let task_of: HashMap<&str, &str> = view
        .tasks
        .iter()
        .map(|t| (t.id.as_str(), t.spec_task_id.as_str()))
        .collect();
    let mut out = String::from(
        "<h2>Sandboxes</h2><div id=\"sandboxes\" data-live-part><table><thead><tr>\
         <th>sandbox</th><th>runs</th><th>status</th><th>provider</th><th>events</th><th>ended</th>\
         </tr></thead><tbody>",
    );
    let mut live = Vec::new();
    for sb in view.sandboxes {
        if sb.status.is_live() {
            live.push(sb);
        }
        let runs = match (&sb.task_id, sb.start_phase) {
            (Some(task), _) => format!(
                "task {}",
                escape(task_of.get(task.as_str()).copied().unwrap_or(task))
            ),
            (None, Some(phase)) => format!("spec from {phase}"),
            (None, None) => "spec".into(),
        };
        let _ = write!(
            out,
            "<tr data-sandbox=\"{id}\"><td><code>{short}</code></td><td>{runs}</td>\
             <td>{status}{reason}</td><td>{provider}</td><td><a href=\"/specs/{spec}?sandbox={q}\
             #events\">{acked} events</a></td><td>{ended}</td></tr>",
            id = escape(&sb.id),
            short = escape(&short(&sb.id, 8)),
            status = sb.status,
            reason = sb
                .reason
                .as_deref()
                .map(|r| format!("<br><span class=\"error\">{}</span>", escape(r)))
                .unwrap_or_default(),
            provider = escape(&sb.provider),
            spec = escape(&view.spec.id),
            q = percent(&sb.id),
            acked = sb.acked_seq,
            ended = sb
                .ended_at
                .map_or_else(|| "-".into(), |t| t.format("%H:%M:%S").to_string()),
        );
    }
    if view.sandboxes.is_empty() {
        out.push_str("<tr><td colspan=\"6\" class=\"muted\">No sandbox yet.</td></tr>");
    }
    out.push_str("</tbody></table></div>");
    if !live.is_empty() {
        let mut options = String::new();
        for sb in live {
            let _ = write!(
                options,
                "<option value=\"{}\">{}</option>",
                escape(&sb.id),
                escape(&short(&sb.id, 8))
            );
        }
        let _ = write!(
            out,
            "<form method=\"post\" action=\"/specs/{}/message\" id=\"message\">{}<label>Tell \
             the agent in <select name=\"sandbox_id\">{options}</select> <input name=\"text\" \
             required maxlength=\"16000\" size=\"40\"></label> <button>Send</button></form>",
            escape(&view.spec.id),
            csrf_input(view.csrf)
        );
    }
    out
}

/// One event as a line of the stream (the script writes live ones the same way).
fn event_line(e: &StreamEvent) -> String {
    let data = e.event.data.to_string();
    let head: String = data.chars().take(200).collect();
    format!(
        "#{} {} {} {} {}",
        e.cursor,
        e.event.at.format("%H:%M:%S"),
        e.event.kind,
        short(&e.event.sandbox_id, 8),
        head
    )
}

fn events(view: &SpecView<'_>) -> String {
    let mut out = format!(
        "<h2 id=\"events\">Events</h2><form method=\"get\" action=\"/specs/{id}#events\" \
         id=\"event-filter\"><label>type starts with <input name=\"kind\" value=\"{kind}\" \
         placeholder=\"agent. or task.\" size=\"14\"></label> <label>sandbox <input \
         name=\"sandbox\" value=\"{sandbox}\" size=\"14\"></label> <button>Filter</button> \
         <a href=\"/specs/{id}#events\">all</a></form><ol id=\"event-list\" data-cursor=\"{cursor}\" \
         data-kind=\"{kind}\" data-sandbox=\"{sandbox}\">",
        id = escape(&view.spec.id),
        kind = escape(view.filter_kind),
        sandbox = escape(view.filter_sandbox),
        cursor = view.last_cursor,
    );
    for e in view.events {
        let _ = write!(
            out,
            "<li data-kind=\"{}\">{}</li>",
            escape(&e.event.kind),
            escape(&event_line(e))
        );
    }
    out.push_str("</ol>");
    out
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

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn escape_covers_markup_and_quotes() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"y\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;y&quot;"
        );
    }

    #[test]
    fn ages_read_briefly_and_never_negative() {
        let now = Utc::now();
        assert_eq!(age(now, now), "0 s");
        assert_eq!(age(now - chrono::Duration::seconds(125), now), "2 min");
        assert_eq!(age(now - chrono::Duration::hours(5), now), "5 h");
        assert_eq!(age(now - chrono::Duration::days(3), now), "3 d");
        assert_eq!(age(now + chrono::Duration::seconds(30), now), "0 s");
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(percent("a b&c=<d>"), "a%20b%26c%3D%3Cd%3E");
        assert_eq!(
            list_url("p 1", Some(SpecStatus::Failed)),
            "/?project=p%201&status=failed"
        );
    }
}
