//! The client commands: `token create|revoke`, `project add|list|show|update`, `spec launch|list|show|events|cancel|
//! resume`, and how their results are printed.

use std::collections::BTreeMap;
use std::fmt::Write;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use omoi_protocol::phase::Phase;

use super::output;
use super::serve::parse_env_pairs;
use super::watch::watch;
use super::{CliError, CliResult, Client, ProjectCommand, ProjectUpdateArgs, SpecCommand};
use crate::api::types::{
    CreateProject, CreateSpec, EventPage, ExecuteSpec, OutputReview, UpdateProject,
};
use crate::model::{Project, Spec, SpecDetail};
use crate::pull_request::short_sha;
use crate::store::Store;
use crate::text::{Lines, escape, escape_json};

/// `omoi token create`: creates the user when missing and prints a new token.
pub async fn token_create(database: &str, user: &str) -> CliResult<u8> {
    let store = Store::open(database).await?;
    let account = match store.user_by_name(user).await? {
        Some(account) => account,
        None => store.create_user(user).await?,
    };
    let token = store.create_user_token(&account.id).await?;
    store.close().await;
    output::line(format_args!("{token}"))?;
    Ok(0)
}

/// `omoi token revoke`: every token of `user`, or (without one) the token on stdin's first line.
pub async fn token_revoke(database: &str, user: Option<&str>) -> CliResult<u8> {
    let token = match user {
        Some(_) => None,
        None => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .map_err(|source| CliError::Io {
                    context: "reading the token from stdin".into(),
                    source,
                })?;
            let token = line.trim().to_string();
            if token.is_empty() {
                return Err(CliError::Config("no token on stdin".into()));
            }
            Some(token)
        }
    };
    let store = Store::open(database).await?;
    let revoked = match (user, token) {
        (Some(name), _) => match store.user_by_name(name).await? {
            Some(account) => Ok(store.revoke_user_tokens(&account.id).await?),
            None => Err(CliError::Config(format!("no user {name:?}"))),
        },
        (None, Some(token)) => store
            .revoke_user_token(&token)
            .await?
            .ok_or_else(|| CliError::Config("that is no user token of this database".into())),
        (None, None) => Err(CliError::Config("name --user or --stdin".into())),
    };
    store.close().await;
    let revoked = revoked?;
    output::line(format_args!(
        "revoked {} token(s); ended {} dashboard session(s) and sign-in link(s)",
        revoked.tokens, revoked.sessions
    ))?;
    Ok(0)
}

/// `omoi project …`.
pub async fn project(client: &Client, command: ProjectCommand) -> CliResult<u8> {
    match command {
        ProjectCommand::Add(args) => {
            let secrets = parse_env_pairs(&args.secret_env, "--secret-env")?;
            let mut worker_env = parse_env_pairs(&args.env, "--env")?;
            let secret_env = secrets.keys().cloned().collect();
            worker_env.extend(secrets);
            let body = CreateProject {
                name: args.name,
                repo_url: args.repo,
                base_branch: Some(args.base_branch),
                validation_command: args.validation_command,
                provider: None,
                image: args.image,
                image_pull_secrets: args.image_pull_secrets,
                worker_env,
                secret_env,
                github_api_url: args.github_api_url,
                git_token: args.git_token,
            };
            let project: Project = client.post("/projects", &body).await?;
            output::line(&project.id)?;
        }
        ProjectCommand::List => {
            let projects: Vec<Project> = client.get("/projects").await?;
            for p in projects {
                let line = format!("{}  {:<20} {}", p.id, p.name, p.repo_url);
                output::line(escape(&line, Lines::One))?;
            }
        }
        ProjectCommand::Show { id } => {
            let project: Project = client.get(&format!("/projects/{id}")).await?;
            print_json(&project)?;
        }
        ProjectCommand::Update(args) => {
            let path = format!("/projects/{}", args.id);
            let body = project_update(*args)?;
            let project: Project = client.patch(&path, &body).await?;
            print_json(&project)?;
        }
    }
    Ok(0)
}

/// Prints `value` as indented JSON, control and bidi characters escaped ([`escape_json`]).
fn print_json(value: &impl serde::Serialize) -> CliResult<()> {
    let json = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::Config(format!("the answer cannot be printed: {e}")))?;
    output::line(escape_json(&json))
}

/// The body of `omoi project update`.
fn project_update(args: ProjectUpdateArgs) -> CliResult<UpdateProject> {
    let secrets = parse_env_pairs(&args.secret_env, "--secret-env")?;
    let mut worker_env: BTreeMap<String, Option<String>> = parse_env_pairs(&args.env, "--env")?
        .into_iter()
        .map(|(name, value)| (name, Some(value)))
        .collect();
    let secret_env = secrets.keys().cloned().collect();
    worker_env.extend(secrets.into_iter().map(|(name, value)| (name, Some(value))));
    for name in args.unset_env {
        if worker_env.insert(name.clone(), None).is_some() {
            return Err(CliError::Config(format!(
                "--unset-env {name}: the same command sets it"
            )));
        }
    }
    let clear_or = |clear: bool, value: Option<String>| {
        if clear { Some(None) } else { value.map(Some) }
    };
    Ok(UpdateProject {
        name: args.name,
        repo_url: args.repo,
        base_branch: args.base_branch,
        validation_command: clear_or(args.no_validation_command, args.validation_command),
        image: clear_or(args.default_image, args.image),
        image_pull_secrets: if args.default_image_pull_secrets {
            Some(Vec::new())
        } else {
            (!args.image_pull_secrets.is_empty()).then_some(args.image_pull_secrets)
        },
        worker_env,
        secret_env,
        github_api_url: clear_or(args.no_github_api_url, args.github_api_url),
        git_token: clear_or(args.no_git_token, args.git_token),
    })
}

/// `omoi spec …`.
pub async fn spec(client: &Client, command: SpecCommand) -> CliResult<u8> {
    match command {
        SpecCommand::Launch {
            request,
            project,
            stop_after,
            watch: follow,
        } => {
            let (title, description) = split_request(&request);
            let body = CreateSpec {
                project_id: project,
                title,
                description,
                stop_after,
            };
            let detail: SpecDetail = client.post("/specs/launch", &body).await?;
            output::line(&detail.spec.id)?;
            if follow {
                return finish_watch(client, &detail.spec.id).await;
            }
        }
        SpecCommand::List => {
            let specs: Vec<Spec> = client.get("/specs").await?;
            for s in specs {
                output::line(spec_line(&s))?;
            }
        }
        SpecCommand::Show { id } => {
            let detail: SpecDetail = client.get(&format!("/specs/{id}")).await?;
            output::text(render_detail(&detail))?;
        }
        SpecCommand::Events { id, after, follow } => {
            return events(client, &id, after, follow).await;
        }
        SpecCommand::Cancel { id } => {
            let detail: SpecDetail = client
                .post(&format!("/specs/{id}/cancel"), &serde_json::json!({}))
                .await?;
            output::line(spec_line(&detail.spec))?;
        }
        SpecCommand::Approve {
            id,
            stop_after,
            watch: follow,
        } => {
            let detail: SpecDetail = client
                .post(&format!("/specs/{id}/approve"), &ExecuteSpec { stop_after })
                .await?;
            output::line(spec_line(&detail.spec))?;
            if follow {
                return finish_watch(client, &id).await;
            }
        }
        SpecCommand::Edit { id, phase, file } => {
            let text = std::fs::read_to_string(&file).map_err(|source| CliError::Io {
                context: format!("reading {}", file.display()),
                source,
            })?;
            let document: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| CliError::Config(format!("{} is not JSON: {e}", file.display())))?;
            let review: OutputReview = client
                .put(&format!("/specs/{id}/phases/{phase}/output"), &document)
                .await?;
            output::text(escape(&review.feedback, Lines::Multi))?;
        }
        SpecCommand::Resume {
            id,
            stop_after,
            watch: follow,
        } => {
            let detail: SpecDetail = client
                .post(&format!("/specs/{id}/execute"), &ExecuteSpec { stop_after })
                .await?;
            output::line(spec_line(&detail.spec))?;
            if follow {
                return finish_watch(client, &id).await;
            }
        }
    }
    Ok(0)
}

async fn finish_watch(client: &Client, spec_id: &str) -> CliResult<u8> {
    let outcome = watch(client, spec_id).await?;
    let escaped = |text: &str| escape(text, Lines::Multi).into_owned();
    match (
        &outcome.error.as_deref().map(escaped),
        outcome.result().as_deref().map(escaped),
    ) {
        (Some(error), _) => {
            output::note(format_args!("spec {spec_id} {}: {error}", outcome.status))
        }
        (None, Some(result)) => {
            output::note(format_args!("spec {spec_id} {}: {result}", outcome.status))
        }
        (None, None) => output::note(format_args!("spec {spec_id} {}", outcome.status)),
    }
    Ok(outcome.exit_code())
}

/// Prints the history as JSON lines, then (with `follow`) the live stream; control and bidi
/// characters inside them escaped ([`escape_json`]).
async fn events(client: &Client, id: &str, mut after: i64, follow: bool) -> CliResult<u8> {
    if !follow {
        loop {
            let page: EventPage = client
                .get(&format!("/specs/{id}/events?after={after}&limit=1000"))
                .await?;
            for event in &page.events {
                let json = serde_json::to_string(event).unwrap_or_default();
                output::line(escape_json(&json))?;
            }
            after = page.next_cursor;
            if !page.has_more {
                return Ok(0);
            }
        }
    }
    let response = client.event_stream(id, after).await?;
    let mut stream = response.bytes_stream().eventsource();
    while let Some(Ok(message)) = stream.next().await {
        output::line(escape_json(&message.data))?;
    }
    Ok(0)
}

/// A request's first line is the title (shortened), the whole request the description.
pub fn split_request(request: &str) -> (String, String) {
    let request = request.trim();
    let first = request.lines().next().unwrap_or_default().trim();
    let title: String = if first.chars().count() > 80 {
        first.chars().take(77).chain("...".chars()).collect()
    } else {
        first.to_string()
    };
    let rest = request[request.find('\n').unwrap_or(request.len())..].trim();
    let description = if rest.is_empty() && title != first {
        request.to_string()
    } else {
        rest.to_string()
    };
    (title, description)
}

fn spec_line(s: &Spec) -> String {
    let phase = s.current_phase.map_or("-", Phase::as_str);
    let line = format!("{}  {:<12} {:<13} {}", s.id, s.status, phase, s.title);
    escape(&line, Lines::One).into_owned()
}

/// The text of `omoi spec show`, stored text escaped for the terminal.
pub fn render_detail(detail: &SpecDetail) -> String {
    escape(&render_raw(detail), Lines::Multi).into_owned()
}

fn render_raw(detail: &SpecDetail) -> String {
    let s = &detail.spec;
    let mut out = String::new();
    let _ = writeln!(out, "{}  {}", s.id, s.title);
    let _ = writeln!(out, "status: {}", s.status);
    if let Some(phase) = s.current_phase {
        let _ = writeln!(out, "phase:  {phase}");
    }
    if let Some(error) = &s.error {
        let _ = writeln!(out, "error:  {error}");
    }
    if let Some(branch) = &s.branch {
        let _ = writeln!(out, "branch: {branch}");
    }
    if let Some(pr) = &s.pull_request {
        let _ = writeln!(out, "pull request: {} (#{})", pr.url, pr.number);
    }
    if !detail.phases.is_empty() {
        let _ = writeln!(out, "phases:");
        for p in &detail.phases {
            let score = p
                .score
                .map_or_else(|| "-".to_string(), |s| format!("{s:.2}"));
            let _ = writeln!(
                out,
                "  {:<13} {:<10} score {score:<5} attempts {}",
                p.phase.as_str(),
                p.status.as_str(),
                p.attempts
            );
        }
    }
    if let Some(spec) = &detail.final_spec {
        let _ = writeln!(
            out,
            "requirements: {}",
            spec.requirements.requirements.len()
        );
        for r in &spec.requirements.requirements {
            let _ = writeln!(out, "  {}  {}", r.id, r.title);
        }
        let _ = writeln!(
            out,
            "tasks: {} ({:.1} h, critical path {:.1} h)",
            spec.tasks.tasks.len(),
            spec.sync.total_hours,
            spec.sync.critical_path_hours
        );
        for t in &spec.tasks.tasks {
            let deps = if t.depends_on.is_empty() {
                String::new()
            } else {
                format!("  (after {})", t.depends_on.join(", "))
            };
            let bridged = detail.tasks.iter().find(|b| b.spec_task_id == t.id);
            let state = bridged
                .map(|b| {
                    let commit = b.commit_sha.as_deref().map_or("-", short_sha);
                    format!(
                        "{:<9} {:<4} {commit:<12}  ",
                        b.status.as_str(),
                        format!("{}/{}", b.attempts, b.max_attempts)
                    )
                })
                .unwrap_or_default();
            let _ = writeln!(out, "  {}  {state}{}{deps}", t.id, t.title);
            if let Some(error) = bridged.and_then(|b| b.error.as_deref()) {
                let _ = writeln!(out, "           {error}");
            }
        }
        let _ = writeln!(
            out,
            "coverage: {:.0} %, ready for execution: {}",
            spec.sync.coverage_percent, spec.sync.ready_for_execution
        );
    }
    let _ = writeln!(out, "sandboxes:");
    for sb in &detail.sandboxes {
        let from = match (&sb.task_id, sb.start_phase) {
            (Some(task_id), _) => detail
                .tasks
                .iter()
                .find(|t| t.id == *task_id)
                .map_or("a task", |t| t.spec_task_id.as_str()),
            (None, phase) => phase.map_or("-", Phase::as_str),
        };
        let reason = sb
            .reason
            .as_deref()
            .map(|r| format!("  {r}"))
            .unwrap_or_default();
        let what = if sb.task_id.is_some() { "runs" } else { "from" };
        let _ = writeln!(out, "  {}  {:<10} {what} {from}{reason}", sb.id, sb.status);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn a_listed_spec_shows_control_and_bidi_characters_escaped() {
        let spec: Spec = serde_json::from_value(serde_json::json!({
            "id": "s1",
            "project_id": "p1",
            "title": "evil\u{1b}]0;pwned\u{7} \u{202e}gnp.exe",
            "recoveries": 0,
            "description": "",
            "status": "pending",
            "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z",
        }))
        .unwrap();
        assert_eq!(
            spec_line(&spec),
            "s1  pending      -             evil\\u{1b}]0;pwned\\u{7} \\u{202e}gnp.exe"
        );
    }

    #[test]
    fn a_request_splits_into_title_and_description() {
        assert_eq!(
            split_request("Add a --shout option\n\nPrint in upper case.\n"),
            ("Add a --shout option".into(), "Print in upper case.".into())
        );
        assert_eq!(
            split_request("Just a title"),
            ("Just a title".into(), String::new())
        );
        let long = "x".repeat(100);
        let (title, description) = split_request(&long);
        assert_eq!(title, format!("{}...", "x".repeat(77)));
        assert_eq!(description, long);
    }
}
