//! Git for task mode: the checkout of the spec branch, the task's commit, and pushing it.
//!
//! Invariant: the git token reaches git only through its credential helper, the worker binary,
//! which asks the worker over a socket served for that one git command ([`credential`]); it is
//! never in a process's environment or arguments, a remote URL, a config file or a message
//! (every message is scrubbed of it anyway).

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::credential::CredentialSocket;
use crate::config::Secret;
use crate::error::{Error, Result};
use crate::process;

/// Author and committer of every commit the worker makes.
pub const IDENTITY_NAME: &str = "omoi";
pub const IDENTITY_EMAIL: &str = "omoi@localhost";

/// How long one git command may run (a clone of a large repository included).
pub const GIT_TIMEOUT: Duration = Duration::from_secs(600);

/// Characters of git's stderr kept in an error message.
const STDERR_TAIL_CHARS: usize = 1200;

/// Variables that would point git at another repository or identity, removed even when the
/// operator passes them on (`OMOI_PASS_ENV`); [`process::command`] starts git from the children's
/// environment, which holds none of the worker's own variables.
const REMOVED_VARIABLES: [&str; 10] = [
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ASKPASS",
    "SSH_ASKPASS",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
    "GIT_CONFIG",
    "LANGUAGE",
];

/// Config for every git command: no credential helper of the machine, no hooks (they would
/// run with the token in their environment), no signing, no prompts.
const FIXED_CONFIG: [&str; 7] = [
    "credential.helper=",
    "core.hooksPath=/dev/null",
    "commit.gpgSign=false",
    "core.askPass=",
    "advice.detachedHead=false",
    "init.defaultBranch=main",
    "rebase.autoStash=false",
];

/// Git commands in one checkout.
#[derive(Debug, Clone)]
pub struct Git {
    dir: PathBuf,
    token: Option<Secret>,
    /// The credential helper's program: the worker binary.
    helper: Option<PathBuf>,
    cancel: CancellationToken,
}

/// What one git command printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitOutput {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// How a push ended when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    Pushed,
    /// The remote branch moved on (non-fast-forward): fetch, rebase and push again.
    Rejected,
}

/// How a rebase ended when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rebase {
    Done,
    /// The rebase stopped on conflicts and was aborted; the files in conflict, sorted.
    Conflicts(Vec<String>),
}

impl Git {
    /// Git in `dir`; `token`, when set and not empty, is offered to remotes that ask, through
    /// this very binary as the credential helper.
    pub fn new(dir: &Path, token: Option<Secret>, cancel: CancellationToken) -> Self {
        Git {
            dir: dir.to_path_buf(),
            token: token.filter(|t| !t.expose().is_empty()),
            helper: std::env::current_exe().ok(),
            cancel,
        }
    }

    /// The same, with `program` (an `omoi-worker` binary) as the credential helper.
    pub fn with_helper(mut self, program: &Path) -> Self {
        self.helper = Some(program.to_path_buf());
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `text` without the token.
    pub fn scrub(&self, text: &str) -> String {
        match &self.token {
            Some(token) => text.replace(token.expose(), "***"),
            None => text.to_string(),
        }
    }

    /// The git command with the fixed config and a clean environment, and `helper` as its
    /// credential helper when given.
    pub fn command(&self, args: &[&str], helper: Option<&str>) -> tokio::process::Command {
        let mut command = process::command("git", &self.dir);
        for setting in FIXED_CONFIG {
            command.arg("-c").arg(setting);
        }
        for variable in REMOVED_VARIABLES {
            command.env_remove(variable);
        }
        if let Some(helper) = helper {
            command.arg("-c").arg(format!("credential.helper={helper}"));
        }
        command
            .args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_EDITOR", "true")
            .env("GIT_AUTHOR_NAME", IDENTITY_NAME)
            .env("GIT_AUTHOR_EMAIL", IDENTITY_EMAIL)
            .env("GIT_COMMITTER_NAME", IDENTITY_NAME)
            .env("GIT_COMMITTER_EMAIL", IDENTITY_EMAIL)
            .env("LC_ALL", "C");
        command
    }

    /// Runs git and returns what it printed, whatever its exit code. A `network` command of a
    /// git with a token gets the credential helper, and the token is served to it (and to
    /// nothing else) while the command runs.
    pub async fn output(&self, args: &[&str], network: bool) -> Result<GitOutput> {
        let command_line = self.scrub(&args.join(" "));
        let served = match (network, &self.token) {
            (true, Some(token)) => {
                let program = self.helper.as_deref().ok_or_else(|| {
                    Error::Workspace("cannot find the worker binary to hand git its token".into())
                })?;
                let socket = CredentialSocket::bind()?;
                let helper = socket.helper(program);
                Some((socket, helper, token))
            }
            _ => None,
        };
        let mut command = self.command(args, served.as_ref().map(|(_, h, _)| h.as_str()));
        let child = command
            .spawn()
            .map_err(|err| Error::Workspace(format!("cannot run git {command_line}: {err}")))?;
        let git = child.id();
        let serve = async {
            match (&served, git) {
                (Some((socket, _, token)), Some(git)) => socket.serve(git, token).await,
                _ => std::future::pending().await,
            }
        };
        let output = tokio::select! {
            _ = self.cancel.cancelled() => return Err(Error::Cancelled),
            () = serve => {
                return Err(Error::Workspace(format!(
                    "git {command_line}: the credential socket stopped"
                )));
            }
            output = tokio::time::timeout(GIT_TIMEOUT, child.wait_with_output()) => match output {
                Err(_) => {
                    return Err(Error::Workspace(format!(
                        "git {command_line} did not finish within {} s",
                        GIT_TIMEOUT.as_secs()
                    )));
                }
                Ok(Err(err)) => {
                    return Err(Error::Workspace(format!("cannot run git {command_line}: {err}")));
                }
                Ok(Ok(output)) => output,
            },
        };
        Ok(GitOutput {
            success: output.status.success(),
            stdout: self.scrub(&String::from_utf8_lossy(&output.stdout)),
            stderr: self.scrub(&String::from_utf8_lossy(&output.stderr)),
        })
    }

    /// Runs git; a failure is an error with git's stderr. Returns stdout, trimmed.
    pub async fn run(&self, args: &[&str]) -> Result<String> {
        self.checked(args, false).await
    }

    /// Runs a git command that talks to the remote.
    pub async fn run_network(&self, args: &[&str]) -> Result<String> {
        self.checked(args, true).await
    }

    async fn checked(&self, args: &[&str], network: bool) -> Result<String> {
        let output = self.output(args, network).await?;
        if output.success {
            return Ok(output.stdout.trim().to_string());
        }
        Err(self.failure(args, &output))
    }

    fn failure(&self, args: &[&str], output: &GitOutput) -> Error {
        let stderr = tail(output.stderr.trim(), STDERR_TAIL_CHARS);
        let stderr = if stderr.is_empty() {
            tail(output.stdout.trim(), STDERR_TAIL_CHARS)
        } else {
            stderr
        };
        Error::Workspace(format!(
            "git {} failed: {}",
            self.scrub(&args.join(" ")),
            stderr
        ))
    }

    /// The commit `reference` names, or `None` when it does not exist.
    pub async fn resolve(&self, reference: &str) -> Result<Option<String>> {
        let spec = format!("{reference}^{{commit}}");
        let output = self
            .output(&["rev-parse", "--verify", "--quiet", &spec], false)
            .await?;
        Ok(output.success.then(|| output.stdout.trim().to_string()))
    }

    /// The commit `HEAD` points to.
    pub async fn head(&self) -> Result<String> {
        self.run(&["rev-parse", "HEAD"]).await
    }

    /// `git status --porcelain`: one line per changed or untracked path (gitignored ones not
    /// included); empty when the working tree is clean.
    pub async fn status(&self) -> Result<String> {
        self.run(&["status", "--porcelain", "--untracked-files=all"])
            .await
    }

    /// Whether the working tree or `HEAD` differs from the tree of `start`.
    pub async fn changed_since(&self, start: &str) -> Result<bool> {
        if !self.status().await?.is_empty() {
            return Ok(true);
        }
        let head_tree = self.run(&["rev-parse", "HEAD^{tree}"]).await?;
        let start_tree = self
            .run(&["rev-parse", &format!("{start}^{{tree}}")])
            .await?;
        Ok(head_tree != start_tree)
    }

    /// Commits every change since `start` as one commit (commits the agent made itself are
    /// folded in), never `.omoi/`. Returns the new commit.
    pub async fn commit_all(&self, start: &str, subject: &str, body: &str) -> Result<String> {
        if self.head().await? != start {
            self.run(&["reset", "--quiet", "--soft", start]).await?;
        }
        self.run(&["add", "--all", "--", ".", ":(exclude).omoi"])
            .await?;
        let mut args = vec!["commit", "--quiet", "--no-verify", "-m", subject];
        if !body.trim().is_empty() {
            args.extend(["-m", body.trim()]);
        }
        self.run(&args).await?;
        self.head().await
    }

    /// Pushes `HEAD` to `branch` of origin.
    pub async fn push(&self, branch: &str) -> Result<Push> {
        let refspec = format!("HEAD:refs/heads/{branch}");
        let args = [
            "push",
            "--porcelain",
            "--no-verify",
            "origin",
            refspec.as_str(),
        ];
        let output = self.output(&args, true).await?;
        if output.success {
            return Ok(Push::Pushed);
        }
        let rejected = output.stdout.lines().any(lost_the_race);
        if rejected {
            return Ok(Push::Rejected);
        }
        Err(self.failure(&args, &output))
    }

    /// Fetches every branch of origin.
    pub async fn fetch(&self) -> Result<()> {
        self.run_network(&["fetch", "--quiet", "--prune", "origin"])
            .await
            .map(|_| ())
    }

    /// Rebases the current branch onto `upstream`; on conflicts the rebase is aborted and the
    /// files in conflict are returned.
    pub async fn rebase(&self, upstream: &str) -> Result<Rebase> {
        let args = ["rebase", "--quiet", upstream];
        let output = self.output(&args, false).await?;
        if output.success {
            return Ok(Rebase::Done);
        }
        let unmerged = self
            .run(&["diff", "--name-only", "--diff-filter=U"])
            .await
            .unwrap_or_default();
        let mut conflicts: Vec<String> = unmerged.lines().map(str::to_string).collect();
        conflicts.sort();
        conflicts.dedup();
        let aborted = self.output(&["rebase", "--abort"], false).await;
        if conflicts.is_empty() {
            return Err(self.failure(&args, &output));
        }
        aborted?;
        Ok(Rebase::Conflicts(conflicts))
    }
}

/// The last `max_chars` characters of `text`, with `…` in front when cut.
pub fn tail(text: &str, max_chars: usize) -> String {
    let count = text.chars().count();
    if count <= max_chars {
        return text.to_string();
    }
    let skip = count - max_chars;
    let start = text
        .char_indices()
        .nth(skip)
        .map(|(index, _)| index)
        .unwrap_or(0);
    format!("…{}", &text[start..])
}

/// A branch name git accepts and that cannot be read as an option.
pub fn check_branch_name(name: &str) -> std::result::Result<(), String> {
    let valid = !name.is_empty()
        && !name.starts_with('-')
        && !name.starts_with('/')
        && !name.ends_with('/')
        && !name.ends_with('.')
        && !name.ends_with(".lock")
        && !name.contains("..")
        && !name.contains("//")
        && !name.contains("@{")
        && !name.split('/').any(|part| part.starts_with('.'))
        && name != "@"
        && !name
            .chars()
            .any(|c| c.is_control() || " ~^:?*[\\".contains(c));
    if valid {
        Ok(())
    } else {
        Err(format!("{name:?} is not a valid branch name"))
    }
}

/// Whether a `git push --porcelain` line says another push landed first, so that fetch, rebase
/// and push again can succeed: `[rejected] (fetch first)` / `(non-fast-forward)`, or a remote
/// that lost a race for the ref (`[remote rejected] (cannot lock ref …)`, `(failed to update
/// ref)`, `(reference already exists)`, `… but expected …`).
fn lost_the_race(line: &str) -> bool {
    if !line.starts_with('!') {
        return false;
    }
    if line.contains("[rejected]") {
        return true;
    }
    line.contains("[remote rejected]")
        && [
            "cannot lock ref",
            "failed to update ref",
            "already exists",
            "but expected",
        ]
        .iter()
        .any(|reason| line.contains(reason))
}

#[cfg(test)]
mod tests {
    #[test]
    fn push_lines_that_mean_another_push_landed_first() {
        for line in [
            "!\tHEAD:refs/heads/omoi/s\t[rejected] (fetch first)",
            "!\tHEAD:refs/heads/omoi/s\t[rejected] (non-fast-forward)",
            "!\tHEAD:refs/heads/omoi/s\t[remote rejected] (cannot lock ref 'refs/heads/omoi/s': reference already exists)",
            "!\tHEAD:refs/heads/omoi/s\t[remote rejected] (failed to update ref)",
        ] {
            assert!(super::lost_the_race(line), "{line}");
        }
        for line in [
            "=\tHEAD:refs/heads/omoi/s\t[up to date]",
            "!\tHEAD:refs/heads/omoi/s\t[remote rejected] (pre-receive hook declined)",
            "!\tHEAD:refs/heads/omoi/s\t[remote rejected] (permission denied)",
        ] {
            assert!(!super::lost_the_race(line), "{line}");
        }
    }
}
