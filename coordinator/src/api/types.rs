//! Request and response bodies of the user API, shared by the server and the CLI.
//!
//! The worker's bodies (event batches, acks, messages, errors) live in `omoi_protocol::api`.

use std::collections::BTreeMap;

use omoi_protocol::api::ErrorDetail;
use omoi_protocol::eval::Evaluation;
use omoi_protocol::phase::Phase;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::StreamEvent;

/// `POST /api/v1/projects`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProject {
    pub name: String,
    /// Git URL or local path of the repository.
    pub repo_url: String,
    /// Default `main`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_branch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_command: Option<String>,
    /// Default: the server's provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Secrets of the sandboxes' namespace the image is pulled with (kubernetes; at most 16,
    /// each a DNS subdomain); empty: the server's `--image-pull-secret`s.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<String>,
    /// Extra worker environment, e.g. `OMOI_LLM`, `OMOI_SCRIPT`, `MODEL`, `MAX_ATTEMPTS`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub worker_env: BTreeMap<String, String>,
    /// The names of `worker_env` entries whose values are secret: stored sealed, given to
    /// workers, never served back. Names that look like a key, a token or a password
    /// (`ANTHROPIC_API_KEY`, `GITHUB_TOKEN`) are secret without being listed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_env: Vec<String>,
    /// The GitHub REST API base URL of the repository's host, when the repository URL does not
    /// say it (`https://github.com/…` uses `https://api.github.com`): GitHub Enterprise
    /// (`https://HOST/api/v3`) or another server that speaks the same API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub github_api_url: Option<String>,
    /// The token task sandboxes push with (through a credential helper) and pull requests are
    /// opened with. Stored, never served back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_token: Option<String>,
}

/// `PATCH /api/v1/projects/{id}`: the fields to change. A field left out keeps its value;
/// `null` clears an optional one. The result is checked as a new project is; sandboxes already
/// running keep what they started with. No `Debug`: it carries secret values.
#[derive(Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProject {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Git URL or local path of the repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_branch: Option<String>,
    /// `null`: no validation command.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    pub validation_command: Option<Option<String>>,
    /// `null`: the server's image.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    pub image: Option<Option<String>>,
    /// Replaces the list; `[]`: the server's `--image-pull-secret`s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secrets: Option<Vec<String>>,
    /// Worker variables to set (a value) or remove (`null`); the others stay. A variable that
    /// is secret stays secret when set again.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub worker_env: BTreeMap<String, Option<String>>,
    /// The names of `worker_env` entries set here whose values are secret (names that look like
    /// a key, a token or a password are secret without being listed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_env: Vec<String>,
    /// `null`: derived from the repository URL.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    pub github_api_url: Option<Option<String>>,
    /// A new token, or `null` for none. Stored, never served back.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    pub git_token: Option<Option<String>>,
}

/// A field that tells "left out" (`None`, by `#[serde(default)]`) from `null` (`Some(None)`).
fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// `POST /api/v1/specs` and, with `stop_after`, `POST /api/v1/specs/launch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSpec {
    pub project_id: String,
    pub title: String,
    #[serde(default)]
    pub description: String,
    /// Launch only: stop after this phase for approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_after: Option<Phase>,
}

/// The optional body of `POST /api/v1/specs/{id}/execute`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecuteSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_after: Option<Phase>,
}

/// Query of `GET /api/v1/specs/{id}/events`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EventsQuery {
    /// The cursor after which to start (exclusive); default the beginning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<i64>,
    /// Page size, 1..=1000; default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// One page of a spec's event history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EventPage {
    pub events: Vec<StreamEvent>,
    /// Pass as `after` for the next page (the last cursor returned, or the one given).
    pub next_cursor: i64,
    /// Whether the page was full (more may follow right away).
    pub has_more: bool,
}

/// Query of `GET /api/v1/sandboxes/{id}/messages`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MessagesQuery {
    /// The last message id seen; default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
}

/// `POST /api/v1/sandboxes/{id}/messages`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostMessage {
    pub text: String,
}

/// `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Health {
    pub status: String,
    /// `sqlite` or `postgres`.
    pub database: String,
    pub provider: String,
    /// This coordinator's replica id.
    pub replica: String,
}

/// The answer to `PUT /api/v1/specs/{id}/phases/{phase}/output` that was accepted: the
/// evaluator's result and the feedback text built from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OutputReview {
    pub evaluation: Evaluation,
    pub feedback: String,
}

/// The 422 answer to a replaced output the evaluator did not pass: the usual error (code
/// `rejected`, the feedback as its message) and the evaluator's whole result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OutputRejected {
    pub error: ErrorDetail,
    pub evaluation: Evaluation,
}
