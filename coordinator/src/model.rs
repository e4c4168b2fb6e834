//! The coordinator's records: users, projects, specs, phases, sandboxes, tasks and stored events.
//!
//! The store reads and writes them; the API serves them as JSON; the CLI reads them back.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use omoi_protocol::artifact::{Component, FinalSpec, PhaseOutput, Requirement, SpecTask};
use omoi_protocol::event::RawEvent;
use omoi_protocol::phase::Phase;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The error of parsing a stored status name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?}")]
pub struct UnknownName {
    pub what: &'static str,
    pub value: String,
}

macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($variant),+
        }

        impl $name {
            /// The stored and wire name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownName { what: $what, value: s.to_string() }),
                }
            }
        }
    };
}

named_enum!(
    /// Where a spec is in its life.
    SpecStatus, "spec status" {
        Pending => "pending",
        Executing => "executing",
        Implementing => "implementing",
        Completed => "completed",
        Failed => "failed",
        Cancelled => "cancelled",
    }
);

impl SpecStatus {
    /// Completed, failed or cancelled: nothing runs for it any more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            SpecStatus::Completed | SpecStatus::Failed | SpecStatus::Cancelled
        )
    }

    /// Executing (the spec's phases) or implementing (its tasks): work is under way.
    pub fn is_active(self) -> bool {
        matches!(self, SpecStatus::Executing | SpecStatus::Implementing)
    }
}

named_enum!(
    /// Where one phase of a spec is.
    PhaseStatus, "phase status" {
        Running => "running",
        Completed => "completed",
        Failed => "failed",
    }
);

named_enum!(
    /// Where a sandbox is in its life.
    SandboxStatus, "sandbox status" {
        Starting => "starting",
        Running => "running",
        Completed => "completed",
        Failed => "failed",
        Lost => "lost",
        Terminated => "terminated",
    }
);

impl SandboxStatus {
    /// Starting or running: the coordinator watches it.
    pub fn is_live(self) -> bool {
        matches!(self, SandboxStatus::Starting | SandboxStatus::Running)
    }
}

named_enum!(
    /// Where a bridged task is.
    TaskStatus, "task status" {
        Pending => "pending",
        Ready => "ready",
        Running => "running",
        Completed => "completed",
        Failed => "failed",
        Blocked => "blocked",
    }
);

/// A person who calls the API with a bearer token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct User {
    pub id: String,
    pub name: String,
}

/// A repository that specs are written for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Project {
    pub id: String,
    pub name: String,
    /// Git URL or local path (a git repository or a plain directory).
    pub repo_url: String,
    pub base_branch: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_command: Option<String>,
    /// The sandbox provider that runs this project's workers, e.g. `local`.
    pub provider: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Secrets of the sandboxes' namespace the image is pulled with (kubernetes); empty: the
    /// server's `--image-pull-secret`s.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<String>,
    /// Extra worker environment (e.g. `OMOI_LLM`, `MODEL`); wins over the server's. Secret
    /// values are not here: see `secret_env`.
    #[serde(default)]
    pub worker_env: BTreeMap<String, String>,
    /// The names of the worker variables whose values are secret (stored sealed, never served).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_env: Vec<String>,
    /// The secret worker variables themselves; never serialized.
    #[serde(skip)]
    pub worker_secrets: BTreeMap<String, SecretValue>,
    /// The GitHub REST API of the repository when its URL does not say it (GitHub Enterprise,
    /// a test server); `https://github.com/…` repositories use `https://api.github.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub github_api_url: Option<String>,
    /// Whether the project has a git token (the token itself is never served).
    #[serde(default)]
    pub has_git_token: bool,
    /// The token task sandboxes push with and pull requests are opened with; never serialized.
    #[serde(skip)]
    pub git_token: Option<GitToken>,
    pub created_at: DateTime<Utc>,
}

/// A git host token: `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct GitToken(String);

impl GitToken {
    pub fn new(token: impl Into<String>) -> GitToken {
        GitToken(token.into())
    }

    /// The token itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for GitToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GitToken(<redacted>)")
    }
}

/// A secret value of a project's worker environment: `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    pub fn new(value: impl Into<String>) -> SecretValue {
        SecretValue(value.into())
    }

    /// The value itself, for the worker's environment and for sealing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

/// A spec as listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Spec {
    pub id: String,
    pub project_id: String,
    pub title: String,
    pub description: String,
    pub status: SpecStatus,
    /// The phase running now, or the next one to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_phase: Option<Phase>,
    /// Why the spec failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The phase after which the worker stops for approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_after: Option<Phase>,
    /// How many times a lost sandbox was replaced in the current execution.
    pub recoveries: u32,
    /// The branch every task of the spec commits to, `omoi/<spec id>`, once it is bridged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// The pull request opened from the branch, once every task completed (GitHub remotes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<PullRequestRef>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A pull request as the coordinator keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PullRequestRef {
    pub url: String,
    pub number: u64,
}

/// One phase of a spec: its attempts, its score and, once passed, its output (the checkpoint).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PhaseRecord {
    pub phase: Phase,
    pub status: PhaseStatus,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<PhaseOutput>,
}

/// A sandbox the coordinator spawned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Sandbox {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    pub provider: String,
    /// The provider's name for it (a process id, a container id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle: Option<String>,
    pub status: SandboxStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_phase: Option<Phase>,
    /// The highest seq such that every event from 1 to it is stored.
    pub acked_seq: u64,
    /// The terminal event type received, if any (`agent.completed`, `agent.failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminal: Option<String>,
    /// Why it ended, when it did not end well.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
}

/// A task bridged from a finished spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskRecord {
    pub id: String,
    pub spec_id: String,
    pub ticket_id: String,
    /// The spec's id of the task, `TSK-NNN`.
    pub spec_task_id: String,
    pub title: String,
    pub status: TaskStatus,
    pub attempts: u32,
    pub max_attempts: u32,
    /// Coordinator ids of the tasks this one waits for.
    pub depends_on: Vec<String>,
    /// The sandbox of the latest attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_sha: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A spec with everything known about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SpecDetail {
    #[serde(flatten)]
    pub spec: Spec,
    pub phases: Vec<PhaseRecord>,
    pub sandboxes: Vec<Sandbox>,
    pub tasks: Vec<TaskRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_spec: Option<FinalSpec>,
}

/// A stored event with its position in the spec's stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StreamEvent {
    /// Position in the stream; `after=` and `Last-Event-ID` take it.
    pub cursor: i64,
    pub event: RawEvent,
}

/// The part of the final spec one task works from: the requirements it serves, in full, and the
/// design components that serve them. The bridge cuts it once per task and stores it with the
/// task, so starting a task does not read and parse the whole final spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SpecSlice {
    pub requirements: Vec<Requirement>,
    pub components: Vec<Component>,
}

impl SpecSlice {
    /// Cuts `task`'s part out of `final_spec`.
    pub fn of(final_spec: &FinalSpec, task: &SpecTask) -> Self {
        let serves = |requirement: &String| task.requirements.contains(requirement);
        SpecSlice {
            requirements: final_spec
                .requirements
                .requirements
                .iter()
                .filter(|r| serves(&r.id))
                .cloned()
                .collect(),
            components: final_spec
                .design
                .components
                .iter()
                .filter(|c| c.requirements.iter().any(serves))
                .cloned()
                .collect(),
        }
    }
}

/// The branch every task of a spec commits to, created from the project's base branch by the
/// first task that pushes.
pub fn spec_branch(spec_id: &str) -> String {
    format!("omoi/{spec_id}")
}

/// Where a spec is recorded in its repository: the Kiro spec folder `.kiro/specs/<name>`, the name
/// the title in lowercase ASCII words joined by `-` (at most 60 characters), or the spec id when the
/// title has no such word.
pub fn spec_folder(title: &str, spec_id: &str) -> String {
    const MAX: usize = 60;
    let mut name = String::new();
    for word in title
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let extra = usize::from(!name.is_empty()) + word.len();
        if name.len() + extra > MAX {
            if name.is_empty() {
                name.push_str(&word[..MAX].to_ascii_lowercase());
            }
            break;
        }
        if !name.is_empty() {
            name.push('-');
        }
        name.push_str(&word.to_ascii_lowercase());
    }
    if name.is_empty() {
        name = spec_id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
    }
    if name.is_empty() {
        name.push_str("spec");
    }
    format!(".kiro/specs/{name}")
}

/// Milliseconds since the Unix epoch as a UTC time (out-of-range values clamp to the epoch).
pub fn time_from_ms(ms: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_folder_is_named_after_the_title() {
        assert_eq!(
            spec_folder("Add a --shout flag to greet", "s1"),
            ".kiro/specs/add-a-shout-flag-to-greet"
        );
        assert_eq!(
            spec_folder("  API Rate-Limiting (v2)! ", "s1"),
            ".kiro/specs/api-rate-limiting-v2"
        );
        // Nothing of the title can leave the folder or hide in it.
        assert_eq!(
            spec_folder("../../etc/passwd", "s1"),
            ".kiro/specs/etc-passwd"
        );
        assert_eq!(spec_folder("日本語 / ..", "0a1b-2c"), ".kiro/specs/0a1b-2c");
        assert_eq!(spec_folder("", "../x"), ".kiro/specs/x");
        assert_eq!(spec_folder("", "/"), ".kiro/specs/spec");
        let long = spec_folder(&"word ".repeat(40), "s1");
        assert_eq!(long.len(), ".kiro/specs/".len() + 59);
        assert!(long.ends_with("-word"), "{long}");
        let one = spec_folder(&"a".repeat(100), "s1");
        assert_eq!(one, format!(".kiro/specs/{}", "a".repeat(60)));
    }

    #[test]
    fn status_names_round_trip_and_unknown_is_an_error() {
        for s in [
            SpecStatus::Pending,
            SpecStatus::Executing,
            SpecStatus::Implementing,
            SpecStatus::Completed,
            SpecStatus::Failed,
            SpecStatus::Cancelled,
        ] {
            assert_eq!(s.as_str().parse::<SpecStatus>(), Ok(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        assert_eq!(
            "running".parse::<SpecStatus>(),
            Err(UnknownName {
                what: "spec status",
                value: "running".into()
            })
        );
    }
}
