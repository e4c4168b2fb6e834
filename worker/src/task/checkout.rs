//! The task's checkout: the repository fetched into the workspace and the spec branch checked
//! out, from the remote when it exists there, else created from the base branch.

use std::path::Path;

use crate::error::{Error, Result};

use super::git::{Git, check_branch_name};

/// Where the repository comes from and which branches to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutSpec<'a> {
    /// A URL (`file://`, `git://`, `http(s)://`, `ssh://`), an scp-like `host:path`, or a
    /// local path.
    pub repo_url: &'a str,
    pub base_branch: &'a str,
    pub branch: &'a str,
}

/// A prepared checkout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    /// The remote of `origin` as git was given it.
    pub remote: String,
    /// The commit the task starts from.
    pub start: String,
    /// Whether the spec branch already existed on the remote.
    pub branch_existed: bool,
    /// Whether the workspace already held a checkout of the repository.
    pub reused: bool,
}

/// Prepares the checkout in `git.dir()`: an empty workspace (`.omoi/` aside) gets the
/// repository; a workspace that holds a checkout of it is fetched. Either way the spec branch
/// is checked out at the remote's state, and nothing of an earlier run is left in the tree.
pub async fn prepare(git: &Git, spec: &CheckoutSpec<'_>) -> Result<Checkout> {
    for (what, name) in [("base_branch", spec.base_branch), ("branch", spec.branch)] {
        check_branch_name(name)
            .map_err(|problem| Error::Workspace(format!("the task's {what}: {problem}")))?;
    }
    let remote = remote_address(spec.repo_url)?;
    let reused = match workspace_state(git.dir())? {
        WorkspaceState::Empty => {
            git.run(&["init", "--quiet"]).await?;
            git.run(&["remote", "add", "origin", &remote]).await?;
            false
        }
        WorkspaceState::Checkout => {
            let current = git
                .output(&["config", "--get", "remote.origin.url"], false)
                .await?;
            let current = current.stdout.trim();
            if current != remote {
                return Err(Error::Workspace(format!(
                    "WORKSPACE {} holds a checkout of {}, not of {}",
                    git.dir().display(),
                    if current.is_empty() {
                        "a repository without an origin remote"
                    } else {
                        current
                    },
                    git.scrub(&remote)
                )));
            }
            true
        }
    };
    git.fetch().await.map_err(|err| {
        Error::Workspace(format!(
            "cannot fetch the repository {}: {err}",
            git.scrub(&remote)
        ))
    })?;
    let remote_branch = format!("refs/remotes/origin/{}", spec.branch);
    let remote_base = format!("refs/remotes/origin/{}", spec.base_branch);
    let (from, branch_existed) = match git.resolve(&remote_branch).await? {
        Some(_) => (remote_branch, true),
        None => match git.resolve(&remote_base).await? {
            Some(_) => (remote_base, false),
            None => {
                return Err(Error::Workspace(format!(
                    "the repository {} has neither the branch {} nor the base branch {}",
                    git.scrub(&remote),
                    spec.branch,
                    spec.base_branch
                )));
            }
        },
    };
    git.run(&["checkout", "--quiet", "--force", "-B", spec.branch, &from])
        .await?;
    git.run(&["clean", "--quiet", "-d", "--force"]).await?;
    let start = git.head().await?;
    Ok(Checkout {
        remote,
        start,
        branch_existed,
        reused,
    })
}

enum WorkspaceState {
    Empty,
    Checkout,
}

fn workspace_state(dir: &Path) -> Result<WorkspaceState> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Error::io(format!("read the workspace {}", dir.display()), e))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("read {}", dir.display()), e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != ".omoi" {
            names.push(name);
        }
    }
    if names.is_empty() {
        return Ok(WorkspaceState::Empty);
    }
    if dir.join(".git").is_dir() {
        return Ok(WorkspaceState::Checkout);
    }
    names.sort();
    Err(Error::Workspace(format!(
        "WORKSPACE {} is neither empty nor a git checkout (it holds {})",
        dir.display(),
        names.into_iter().take(5).collect::<Vec<_>>().join(", ")
    )))
}

/// The address git gets for `origin`: URLs and scp-like addresses as they are, a local path
/// made absolute (relative to the worker's current directory).
pub fn remote_address(repo_url: &str) -> Result<String> {
    let repo_url = repo_url.trim();
    if repo_url.is_empty() {
        return Err(Error::Workspace("the task's repo_url is empty".into()));
    }
    if repo_url.starts_with('-') {
        return Err(Error::Workspace(format!(
            "the task's repo_url {repo_url:?} is not a repository address"
        )));
    }
    if repo_url.contains("://") {
        return Ok(repo_url.to_string());
    }
    // git reads `host:path` as scp-like when no slash comes before the first colon.
    if let Some(colon) = repo_url.find(':') {
        if !repo_url[..colon].contains('/') {
            return Ok(repo_url.to_string());
        }
    }
    let path = std::path::absolute(repo_url).map_err(|e| {
        Error::Workspace(format!(
            "the task's repo_url {repo_url:?} is not a usable path: {e}"
        ))
    })?;
    path.to_str().map(str::to_string).ok_or_else(|| {
        Error::Workspace(format!(
            "the task's repo_url {repo_url:?} is not a UTF-8 path"
        ))
    })
}
