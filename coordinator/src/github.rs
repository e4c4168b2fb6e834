//! A small client of the GitHub REST API (version `2022-11-28`): which repository a remote is,
//! and opening a pull request — reusing the open one of the same head when GitHub answers 422
//! because it exists already.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, USER_AGENT};
use serde::{Deserialize, Serialize};

/// The API of github.com.
pub const GITHUB_API: &str = "https://api.github.com";
/// The REST API version every request names.
pub const API_VERSION: &str = "2022-11-28";
/// The media type every request accepts.
pub const MEDIA_TYPE: &str = "application/vnd.github+json";

/// How long one API call may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// A repository on a GitHub API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitHubRepo {
    /// The API base URL, without a trailing slash.
    pub api: String,
    pub owner: String,
    pub name: String,
}

/// The GitHub repository of a remote, when it is one: `https://github.com/OWNER/REPO(.git)`,
/// `ssh://git@github.com/OWNER/REPO`, `git@github.com:OWNER/REPO.git`; or, with `api` set (GitHub
/// Enterprise, a test server), any remote whose last two path segments are `OWNER/REPO`.
pub fn github_repo(repo_url: &str, api: Option<&str>) -> Option<GitHubRepo> {
    let url = repo_url.trim();
    let (host, path) = if let Some((_, rest)) = url.split_once("://") {
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let host = authority.rsplit('@').next().unwrap_or(authority);
        (host.split(':').next().unwrap_or(host), path)
    } else if let Some((authority, path)) = url.split_once(':').filter(|(a, _)| !a.contains('/')) {
        // scp-like `user@host:path`.
        (authority.rsplit('@').next().unwrap_or(authority), path)
    } else {
        ("", url)
    };
    let api = match api {
        Some(api) => api.trim().trim_end_matches('/').to_string(),
        None if host.eq_ignore_ascii_case("github.com") => GITHUB_API.to_string(),
        None => return None,
    };
    let mut segments = path
        .trim_end_matches('/')
        .rsplit('/')
        .filter(|s| !s.is_empty());
    let name = segments.next()?;
    let owner = segments.next()?;
    let name = name.strip_suffix(".git").unwrap_or(name);
    if name.is_empty() {
        return None;
    }
    Some(GitHubRepo {
        api,
        owner: owner.to_string(),
        name: name.to_string(),
    })
}

/// The body of `POST /repos/{owner}/{repo}/pulls`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewPullRequest {
    pub title: String,
    /// The branch with the changes (in the same repository).
    pub head: String,
    /// The branch to merge into.
    pub base: String,
    pub body: String,
    pub draft: bool,
}

/// A pull request as GitHub answers it (the fields the coordinator keeps).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PullRequest {
    pub number: u64,
    pub html_url: String,
}

/// What a GitHub call failed at.
#[derive(Debug, thiserror::Error)]
pub enum GitHubError {
    /// GitHub answered an error. Retryable for 429 and 5xx, and for 403 rate limits.
    #[error("GitHub answered {status}: {message}")]
    Status { status: u16, message: String },
    /// GitHub could not be reached, or its answer could not be read. Retryable.
    #[error("calling GitHub: {0}")]
    Http(#[from] reqwest::Error),
}

impl GitHubError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            GitHubError::Status { status, message } => {
                *status == 429
                    || *status >= 500
                    || (*status == 403 && message.to_ascii_lowercase().contains("rate limit"))
            }
            GitHubError::Http(_) => true,
        }
    }
}

/// GitHub's error body: `{"message", "errors": [{"resource", "code", "field"?, "message"?}]}`.
#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    message: String,
    #[serde(default)]
    errors: Vec<ErrorItem>,
}

#[derive(Debug, Default, Deserialize)]
struct ErrorItem {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    field: Option<String>,
}

impl ErrorBody {
    /// The message and every item, in one line.
    fn describe(&self) -> String {
        let items: Vec<String> = self
            .errors
            .iter()
            .map(|e| match (&e.message, &e.field, &e.code) {
                (Some(message), _, _) => message.clone(),
                (None, Some(field), Some(code)) => format!("{field} {code}"),
                (None, None, Some(code)) => code.clone(),
                (None, Some(field), None) => field.clone(),
                (None, None, None) => String::new(),
            })
            .filter(|s| !s.is_empty())
            .collect();
        if items.is_empty() {
            self.message.clone()
        } else {
            format!("{}: {}", self.message, items.join("; "))
        }
    }

    fn already_exists(&self) -> bool {
        self.errors.iter().any(|e| {
            e.message
                .as_deref()
                .is_some_and(|m| m.contains("already exists"))
        })
    }
}

/// Calls one GitHub API with one token.
#[derive(Debug, Clone)]
pub struct GitHub {
    http: reqwest::Client,
    token: String,
}

impl GitHub {
    /// A client that authenticates with `token` (`Authorization: Bearer`).
    pub fn new(token: &str) -> Result<GitHub, GitHubError> {
        let http = reqwest::Client::builder().timeout(TIMEOUT).build()?;
        Ok(GitHub {
            http,
            token: token.to_string(),
        })
    }

    fn request(&self, method: reqwest::Method, url: String) -> reqwest::RequestBuilder {
        self.http
            .request(method, url)
            .header(AUTHORIZATION, format!("Bearer {}", self.token))
            .header(ACCEPT, MEDIA_TYPE)
            .header("X-GitHub-Api-Version", API_VERSION)
            // GitHub refuses requests without a user agent.
            .header(USER_AGENT, concat!("omoi/", env!("CARGO_PKG_VERSION")))
    }

    /// Opens a pull request; when one is already open for the same head (422), returns that one.
    /// The flag says whether this call created it.
    pub async fn open_pull_request(
        &self,
        repo: &GitHubRepo,
        new: &NewPullRequest,
    ) -> Result<(PullRequest, bool), GitHubError> {
        let url = format!("{}/repos/{}/{}/pulls", repo.api, repo.owner, repo.name);
        let response = self
            .request(reqwest::Method::POST, url)
            .json(new)
            .send()
            .await?;
        let status = response.status();
        if status == StatusCode::CREATED {
            return Ok((response.json().await?, true));
        }
        let text = response.text().await?;
        let body: ErrorBody = serde_json::from_str(&text).unwrap_or_default();
        if status == StatusCode::UNPROCESSABLE_ENTITY && body.already_exists() {
            let head = format!("{}:{}", repo.owner, new.head);
            if let Some(existing) = self.open_pull_request_of(repo, &head).await? {
                return Ok((existing, false));
            }
        }
        Err(status_error(status, &body, &text))
    }

    /// The open pull request whose head is `head` (`owner:branch`), if any.
    pub async fn open_pull_request_of(
        &self,
        repo: &GitHubRepo,
        head: &str,
    ) -> Result<Option<PullRequest>, GitHubError> {
        let url = format!(
            "{}/repos/{}/{}/pulls?head={}&state=open",
            repo.api,
            repo.owner,
            repo.name,
            query_value(head)
        );
        let response = self.request(reqwest::Method::GET, url).send().await?;
        let status = response.status();
        if status != StatusCode::OK {
            let text = response.text().await?;
            let body: ErrorBody = serde_json::from_str(&text).unwrap_or_default();
            return Err(status_error(status, &body, &text));
        }
        let open: Vec<PullRequest> = response.json().await?;
        Ok(open.into_iter().next())
    }
}

/// `value` for a query string: unreserved characters, `:` and `/` as they are, the rest
/// percent-encoded.
fn query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~:/".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn status_error(status: StatusCode, body: &ErrorBody, text: &str) -> GitHubError {
    let message = body.describe();
    let message = if message.is_empty() {
        text.chars().take(300).collect()
    } else {
        message
    };
    GitHubError::Status {
        status: status.as_u16(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn repo(api: &str, owner: &str, name: &str) -> Option<GitHubRepo> {
        Some(GitHubRepo {
            api: api.into(),
            owner: owner.into(),
            name: name.into(),
        })
    }

    #[test]
    fn github_remotes_are_recognised_and_plain_ones_are_not() {
        let api = GITHUB_API;
        assert_eq!(
            github_repo("https://github.com/acme/greet.git", None),
            repo(api, "acme", "greet")
        );
        assert_eq!(
            github_repo("https://github.com/acme/greet", None),
            repo(api, "acme", "greet")
        );
        assert_eq!(
            github_repo("https://x-access-token@github.com/acme/greet/", None),
            repo(api, "acme", "greet")
        );
        assert_eq!(
            github_repo("git@github.com:acme/greet.git", None),
            repo(api, "acme", "greet")
        );
        assert_eq!(
            github_repo("ssh://git@github.com:22/acme/greet", None),
            repo(api, "acme", "greet")
        );
        assert_eq!(github_repo("https://gitlab.com/acme/greet.git", None), None);
        assert_eq!(github_repo("file:///srv/git/greet.git", None), None);
        assert_eq!(github_repo("git://127.0.0.1:9418/greet.git", None), None);
        assert_eq!(github_repo("/srv/git/greet", None), None);
        assert_eq!(github_repo("https://github.com/acme", None), None);
        // A configured API names the repository by the last two segments of any remote.
        assert_eq!(
            github_repo(
                "file:///tmp/x/acme/greet.git",
                Some("http://127.0.0.1:3000/")
            ),
            repo("http://127.0.0.1:3000", "acme", "greet")
        );
        assert_eq!(
            github_repo(
                "https://ghe.example.com/acme/greet.git",
                Some("https://ghe.example.com/api/v3")
            ),
            repo("https://ghe.example.com/api/v3", "acme", "greet")
        );
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(query_value("acme:omoi/abc-1"), "acme:omoi/abc-1");
        assert_eq!(query_value("a b&c=ü"), "a%20b%26c%3D%C3%BC");
    }

    #[test]
    fn errors_say_what_github_said_and_which_are_worth_a_retry() {
        let body: ErrorBody = serde_json::from_str(
            r#"{"message":"Validation Failed","errors":[{"resource":"PullRequest","code":"custom",
               "message":"No commits between main and omoi/x"}],
               "documentation_url":"https://docs.github.com/rest/pulls/pulls#create-a-pull-request"}"#,
        )
        .unwrap();
        assert!(!body.already_exists());
        let error = status_error(StatusCode::UNPROCESSABLE_ENTITY, &body, "");
        assert_eq!(
            error.to_string(),
            "GitHub answered 422: Validation Failed: No commits between main and omoi/x"
        );
        assert!(!error.is_retryable());
        let field: ErrorBody = serde_json::from_str(
            r#"{"message":"Validation Failed","errors":[{"resource":"PullRequest","field":"head","code":"invalid"}]}"#,
        )
        .unwrap();
        assert_eq!(field.describe(), "Validation Failed: head invalid");
        for (status, message, retryable) in [
            (502, "Bad gateway", true),
            (429, "slow down", true),
            (403, "API rate limit exceeded for installation", true),
            (403, "Resource not accessible by integration", false),
            (401, "Bad credentials", false),
        ] {
            let error = GitHubError::Status {
                status,
                message: message.into(),
            };
            assert_eq!(error.is_retryable(), retryable, "{status} {message}");
        }
    }
}
