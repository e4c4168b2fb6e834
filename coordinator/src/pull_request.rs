//! The end of a spec (DESIGN §5.4): once every task completed, one pull request from the spec
//! branch into the base branch for a GitHub remote — the spec's summary, a checklist of the tasks
//! with their commits and of the requirements — or, for a plain git remote, the branch itself.

use std::fmt::Write;

use omoi_protocol::artifact::FinalSpec;

use crate::github::{GitHub, GitHubError, NewPullRequest, github_repo};
use crate::model::{Project, PullRequestRef, Spec, TaskRecord, TaskStatus, spec_branch};
use crate::task_context::spec_record;

/// What a finished spec produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// A pull request on GitHub (opened now, or the one already open for the branch).
    PullRequest(PullRequestRef),
    /// The branch is the result: a plain git remote, or a GitHub one without a token.
    Branch,
}

/// Opens the pull request of `spec` when its remote is on GitHub and the project has a token;
/// otherwise the branch is the result.
pub async fn publish(
    spec: &Spec,
    project: &Project,
    final_spec: &FinalSpec,
    tasks: &[TaskRecord],
) -> Result<Published, GitHubError> {
    let Some(repo) = github_repo(&project.repo_url, project.github_api_url.as_deref()) else {
        return Ok(Published::Branch);
    };
    let Some(token) = &project.git_token else {
        tracing::warn!(
            spec = %spec.id, repo = %project.repo_url,
            "a GitHub remote without a git token: reporting the branch instead of a pull request"
        );
        return Ok(Published::Branch);
    };
    let github = GitHub::new(token.expose())?;
    let new = NewPullRequest {
        title: spec.title.clone(),
        head: branch_of(spec),
        base: project.base_branch.clone(),
        body: pull_request_body(spec, final_spec, tasks),
        draft: false,
    };
    let (pr, created) = github.open_pull_request(&repo, &new).await?;
    tracing::info!(
        spec = %spec.id, url = %pr.html_url, created,
        "pull request for the spec"
    );
    Ok(Published::PullRequest(PullRequestRef {
        url: pr.html_url,
        number: pr.number,
    }))
}

/// The spec's branch.
pub fn branch_of(spec: &Spec) -> String {
    spec.branch.clone().unwrap_or_else(|| spec_branch(&spec.id))
}

/// The pull request's description: the request and the design overview, the tasks with their
/// commits, the requirements with the tasks that serve them.
pub fn pull_request_body(spec: &Spec, final_spec: &FinalSpec, tasks: &[TaskRecord]) -> String {
    let mut out = String::new();
    if !spec.description.trim().is_empty() {
        let _ = writeln!(out, "{}\n", spec.description.trim());
    }
    if !final_spec.design.overview.trim().is_empty() {
        let _ = writeln!(out, "{}\n", final_spec.design.overview.trim());
    }
    let _ = writeln!(out, "## Tasks\n");
    for task in &final_spec.tasks.tasks {
        let record = tasks.iter().find(|t| t.spec_task_id == task.id);
        let done = record.is_some_and(|t| t.status == TaskStatus::Completed);
        let commit = record
            .and_then(|t| t.commit_sha.as_deref())
            .map(|sha| format!(" — `{}`", short_sha(sha)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "- [{}] **{}** {}{commit}",
            if done { "x" } else { " " },
            task.id,
            task.title.trim()
        );
    }
    let _ = writeln!(out, "\n## Requirements\n");
    for requirement in &final_spec.requirements.requirements {
        let serving: Vec<&str> = final_spec
            .tasks
            .tasks
            .iter()
            .filter(|t| t.requirements.contains(&requirement.id))
            .map(|t| t.id.as_str())
            .collect();
        let done = !serving.is_empty()
            && serving.iter().all(|id| {
                tasks
                    .iter()
                    .any(|t| t.spec_task_id == *id && t.status == TaskStatus::Completed)
            });
        let _ = writeln!(
            out,
            "- [{}] **{}** {} ({})",
            if done { "x" } else { " " },
            requirement.id,
            requirement.title.trim(),
            serving.join(", ")
        );
    }
    let _ = write!(
        out,
        "\nSpec `{}` on branch `{}`.\n",
        spec.id,
        branch_of(spec)
    );
    if let Some(record) = spec_record(spec, final_spec) {
        let _ = writeln!(
            out,
            "The spec itself is in `{}/` (Kiro's requirements.md, design.md and tasks.md).",
            record.dir
        );
    }
    out
}

/// The first 12 characters of a commit id.
pub fn short_sha(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}
