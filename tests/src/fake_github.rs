//! A fake of the GitHub REST API's pull requests on 127.0.0.1:0: `POST /repos/{owner}/{repo}/pulls`
//! and `GET /repos/{owner}/{repo}/pulls?head=&state=`, backed by real bare repositories.
//!
//! It checks requests as GitHub does — the bearer token (401), a user agent (403), the API
//! version (400), the media type (415), the JSON body (400/422), that both branches exist in the
//! backing repository and differ (422), one open pull request per head (422 "already exists") —
//! and answers with GitHub's response shapes. Every request is recorded for the test to inspect.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// The one API version the fake (like GitHub today) supports.
pub const API_VERSION: &str = "2022-11-28";

const DOCS: &str = "https://docs.github.com/rest/pulls/pulls#create-a-pull-request";

/// One request as the fake received it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    pub method: String,
    /// Path and query, e.g. `/repos/acme/greet/pulls?head=acme:x&state=open`.
    pub uri: String,
    /// Header names in lower case.
    pub headers: BTreeMap<String, String>,
    /// The JSON body, when there was one.
    pub body: Option<Value>,
    /// The status the fake answered.
    pub status: u16,
}

/// A pull request the fake holds.
#[derive(Debug, Clone, PartialEq)]
pub struct FakePull {
    pub number: u64,
    pub owner: String,
    pub repo: String,
    pub title: String,
    /// The head branch, without the `owner:` prefix.
    pub head: String,
    pub base: String,
    pub body: Option<String>,
    pub draft: bool,
    /// The head branch's commit when the pull request was opened.
    pub head_sha: String,
}

#[derive(Debug, Default)]
struct Inner {
    token: String,
    repos: HashMap<(String, String), PathBuf>,
    pulls: Vec<FakePull>,
    requests: Vec<RecordedRequest>,
    base_url: String,
    /// Answers the next requests with this status (an outage), counting down.
    outage: Option<(StatusCode, usize)>,
}

type Shared = Arc<Mutex<Inner>>;

/// The running fake; stopped on drop.
#[derive(Debug)]
pub struct FakeGitHub {
    addr: SocketAddr,
    inner: Shared,
    server: JoinHandle<()>,
}

impl FakeGitHub {
    /// Starts the fake on a free port; requests must carry `Authorization: Bearer <token>`.
    pub async fn start(token: &str) -> FakeGitHub {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake GitHub");
        let addr = listener.local_addr().expect("the fake GitHub's address");
        let inner = Arc::new(Mutex::new(Inner {
            token: token.to_string(),
            base_url: format!("http://{addr}"),
            ..Inner::default()
        }));
        let router = axum::Router::new()
            .route("/repos/{owner}/{repo}/pulls", get(list).post(create))
            .fallback(not_found)
            .with_state(inner.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        FakeGitHub {
            addr,
            inner,
            server,
        }
    }

    /// The API base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serves `owner/name` from the bare repository at `bare`.
    pub fn add_repo(&self, owner: &str, name: &str, bare: &Path) {
        self.lock()
            .repos
            .insert((owner.to_string(), name.to_string()), bare.to_path_buf());
    }

    /// Opens a pull request directly (as if someone had opened it before).
    pub fn add_pull(&self, owner: &str, repo: &str, head: &str, base: &str, title: &str) -> u64 {
        let mut inner = self.lock();
        let number = inner.pulls.len() as u64 + 1;
        inner.pulls.push(FakePull {
            number,
            owner: owner.to_string(),
            repo: repo.to_string(),
            title: title.to_string(),
            head: head.to_string(),
            base: base.to_string(),
            body: None,
            draft: false,
            head_sha: String::new(),
        });
        number
    }

    /// Answers the next `count` requests with `status` and GitHub's error body (an outage).
    pub fn fail_next(&self, status: u16, count: usize) {
        let status = StatusCode::from_u16(status).expect("an HTTP status");
        self.lock().outage = Some((status, count));
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    /// The pull requests it holds, in order of their numbers.
    pub fn pulls(&self) -> Vec<FakePull> {
        self.lock().pulls.clone()
    }

    /// The `html_url` the fake gives pull request `number` of `owner/repo`.
    pub fn html_url(&self, owner: &str, repo: &str, number: u64) -> String {
        format!("{}/{owner}/{repo}/pull/{number}", self.url())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for FakeGitHub {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn lock(inner: &Shared) -> std::sync::MutexGuard<'_, Inner> {
    inner.lock().unwrap_or_else(|p| p.into_inner())
}

/// A GitHub error body.
fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({
            "message": message,
            "documentation_url": DOCS,
            "status": status.as_u16().to_string(),
        })),
    )
        .into_response()
}

/// GitHub's 422 with one error item.
fn validation_failed(item: Value) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({
            "message": "Validation Failed",
            "errors": [item],
            "documentation_url": DOCS,
            "status": "422",
        })),
    )
        .into_response()
}

/// Records a request with the status of `response`.
fn record(
    inner: &Shared,
    method: &Method,
    uri: String,
    headers: &HeaderMap,
    body: Option<Value>,
    response: Response,
) -> Response {
    let headers = headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                value.to_str().unwrap_or("<binary>").to_string(),
            )
        })
        .collect();
    lock(inner).requests.push(RecordedRequest {
        method: method.to_string(),
        uri,
        headers,
        body,
        status: response.status().as_u16(),
    });
    response
}

/// The checks every API request passes first, in GitHub's order.
fn check_headers(inner: &Shared, headers: &HeaderMap) -> Option<Response> {
    {
        let mut state = lock(inner);
        if let Some((status, left)) = state.outage {
            state.outage = (left > 1).then_some((status, left - 1));
            return Some(error(status, "Server Error"));
        }
    }
    let token = lock(inner).token.clone();
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match auth {
        None => return Some(error(StatusCode::UNAUTHORIZED, "Requires authentication")),
        Some(value) => {
            let presented = value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("token "));
            if presented != Some(token.as_str()) {
                return Some(error(StatusCode::UNAUTHORIZED, "Bad credentials"));
            }
        }
    }
    if headers.get(header::USER_AGENT).is_none() {
        return Some(error(
            StatusCode::FORBIDDEN,
            "Request forbidden by administrative rules. Please make sure your request has a \
             User-Agent header (https://docs.github.com/en/rest/overview/resources-in-the-rest-api#user-agent-required). \
             Check https://developer.github.com for other possible causes.",
        ));
    }
    if let Some(version) = headers
        .get("x-github-api-version")
        .and_then(|v| v.to_str().ok())
    {
        if version != API_VERSION {
            return Some(error(
                StatusCode::BAD_REQUEST,
                &format!("API version {version} is not supported."),
            ));
        }
    }
    if let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) {
        let accepted = accept.split(',').map(str::trim).any(|media| {
            media.starts_with("application/vnd.github")
                || media.starts_with("application/json")
                || media.starts_with("*/*")
        });
        if !accepted {
            return Some(error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Unsupported 'Accept' header",
            ));
        }
    }
    None
}

async fn create(
    State(inner): State<Shared>,
    UrlPath((owner, repo)): UrlPath<(String, String)>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let uri = format!("/repos/{owner}/{repo}/pulls");
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let response = create_inner(&inner, &owner, &repo, &headers, &body).await;
    record(&inner, &method, uri, &headers, parsed, response)
}

async fn create_inner(
    inner: &Shared,
    owner: &str,
    repo: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    if let Some(refused) = check_headers(inner, headers) {
        return refused;
    }
    let Some(bare) = lock(inner)
        .repos
        .get(&(owner.to_string(), repo.to_string()))
        .cloned()
    else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return error(StatusCode::BAD_REQUEST, "Problems parsing JSON");
    };
    let Some(fields) = body.as_object() else {
        return error(StatusCode::BAD_REQUEST, "Problems parsing JSON");
    };
    for name in ["title", "head", "base"] {
        match fields.get(name) {
            None => {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &format!("Invalid request.\n\n\"{name}\" wasn't supplied."),
                );
            }
            Some(Value::String(_)) => {}
            Some(other) => {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &format!(
                        "Invalid request.\n\nFor 'properties/{name}', {other} is not a string."
                    ),
                );
            }
        }
    }
    if let Some(value) = fields
        .get("body")
        .filter(|v| !v.is_null() && !v.is_string())
    {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("Invalid request.\n\nFor 'properties/body', {value} is not a string or null."),
        );
    }
    if let Some(value) = fields.get("draft").filter(|v| !v.is_boolean()) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("Invalid request.\n\nFor 'properties/draft', {value} is not a boolean."),
        );
    }
    let text = |name: &str| fields.get(name).and_then(Value::as_str).unwrap_or_default();
    let title = text("title").to_string();
    let base = text("base").to_string();
    let head_spec = text("head").to_string();
    // `owner:branch` names a branch of a fork; the fake only knows the repository itself.
    let head = match head_spec.split_once(':') {
        Some((head_owner, branch)) if head_owner == owner => branch.to_string(),
        Some(_) => {
            return validation_failed(
                json!({"resource": "PullRequest", "field": "head", "code": "invalid"}),
            );
        }
        None => head_spec.clone(),
    };
    let (base_sha, head_sha, ahead) = {
        let (bare, base, head) = (bare.clone(), base.clone(), head.clone());
        tokio::task::spawn_blocking(move || {
            let base_sha = crate::git::branch_sha(&bare, &base);
            let head_sha = crate::git::branch_sha(&bare, &head);
            let ahead = match (&base_sha, &head_sha) {
                (Some(_), Some(_)) => crate::git::git(
                    &bare,
                    &[
                        "rev-list",
                        "--count",
                        &format!("refs/heads/{base}..refs/heads/{head}"),
                    ],
                )
                .parse::<u64>()
                .unwrap_or(0),
                _ => 0,
            };
            (base_sha, head_sha, ahead)
        })
        .await
        .expect("the git checks ran")
    };
    let Some(base_sha) = base_sha else {
        return validation_failed(
            json!({"resource": "PullRequest", "field": "base", "code": "invalid"}),
        );
    };
    let Some(head_sha) = head_sha else {
        return validation_failed(
            json!({"resource": "PullRequest", "field": "head", "code": "invalid"}),
        );
    };
    if ahead == 0 {
        return validation_failed(json!({
            "resource": "PullRequest",
            "code": "custom",
            "message": format!("No commits between {base} and {head}"),
        }));
    }
    let mut state = lock(inner);
    if state
        .pulls
        .iter()
        .any(|p| p.owner == owner && p.repo == repo && p.head == head && p.base == base)
    {
        return validation_failed(json!({
            "resource": "PullRequest",
            "code": "custom",
            "message": format!("A pull request already exists for {owner}:{head}."),
        }));
    }
    let pull = FakePull {
        number: state.pulls.len() as u64 + 1,
        owner: owner.to_string(),
        repo: repo.to_string(),
        title,
        head,
        base,
        body: fields
            .get("body")
            .and_then(Value::as_str)
            .map(str::to_string),
        draft: fields
            .get("draft")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        head_sha,
    };
    state.pulls.push(pull.clone());
    let json = pull_json(&state.base_url, &pull, &base_sha, ahead);
    let location = json["url"].as_str().unwrap_or_default().to_string();
    (
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(json),
    )
        .into_response()
}

async fn list(
    State(inner): State<Shared>,
    UrlPath((owner, repo)): UrlPath<(String, String)>,
    RawQuery(query): RawQuery,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let uri = match &query {
        Some(q) => format!("/repos/{owner}/{repo}/pulls?{q}"),
        None => format!("/repos/{owner}/{repo}/pulls"),
    };
    let response = list_inner(&inner, &owner, &repo, query.as_deref(), &headers);
    record(&inner, &method, uri, &headers, None, response)
}

fn list_inner(
    inner: &Shared,
    owner: &str,
    repo: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Response {
    if let Some(refused) = check_headers(inner, headers) {
        return refused;
    }
    let state = lock(inner);
    if !state
        .repos
        .contains_key(&(owner.to_string(), repo.to_string()))
    {
        return error(StatusCode::NOT_FOUND, "Not Found");
    }
    let params: HashMap<String, String> = query
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect();
    let wanted_state = params.get("state").map_or("open", String::as_str);
    let head = params.get("head").map(|h| match h.split_once(':') {
        Some((head_owner, branch)) => (head_owner.to_string(), branch.to_string()),
        None => (owner.to_string(), h.clone()),
    });
    // Every pull request the fake holds is open.
    let listed: Vec<Value> = state
        .pulls
        .iter()
        .filter(|p| p.owner == owner && p.repo == repo)
        .filter(|_| wanted_state == "open" || wanted_state == "all")
        .filter(|p| {
            head.as_ref()
                .is_none_or(|(o, branch)| o == owner && *branch == p.head)
        })
        .map(|p| pull_json(&state.base_url, p, "", 0))
        .collect();
    (StatusCode::OK, Json(Value::Array(listed))).into_response()
}

async fn not_found(
    State(inner): State<Shared>,
    method: Method,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    let response = error(StatusCode::NOT_FOUND, "Not Found");
    record(&inner, &method, uri.to_string(), &headers, None, response)
}

/// Percent-decoding of a query component (`+` is a space).
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(byte) => {
                        out.push(byte);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A pull request in GitHub's shape (the fields clients read, with their real names).
fn pull_json(base_url: &str, pull: &FakePull, base_sha: &str, commits: u64) -> Value {
    let repo_url = format!("{base_url}/repos/{}/{}", pull.owner, pull.repo);
    let user = json!({"login": pull.owner, "id": 1, "type": "Organization"});
    let repository = json!({
        "id": 100,
        "name": pull.repo,
        "full_name": format!("{}/{}", pull.owner, pull.repo),
        "owner": user,
        "private": true,
        "url": repo_url,
        "html_url": format!("{base_url}/{}/{}", pull.owner, pull.repo),
    });
    json!({
        "url": format!("{repo_url}/pulls/{}", pull.number),
        "id": 1_000_000 + pull.number,
        "node_id": format!("PR_kwDOfake{}", pull.number),
        "html_url": format!("{base_url}/{}/{}/pull/{}", pull.owner, pull.repo, pull.number),
        "diff_url": format!("{base_url}/{}/{}/pull/{}.diff", pull.owner, pull.repo, pull.number),
        "issue_url": format!("{repo_url}/issues/{}", pull.number),
        "commits_url": format!("{repo_url}/pulls/{}/commits", pull.number),
        "number": pull.number,
        "state": "open",
        "locked": false,
        "title": pull.title,
        "body": pull.body,
        "draft": pull.draft,
        "user": {"login": "omoi-bot", "id": 2, "type": "Bot"},
        "created_at": "2026-01-02T03:04:05Z",
        "updated_at": "2026-01-02T03:04:05Z",
        "closed_at": null,
        "merged_at": null,
        "merge_commit_sha": null,
        "head": {
            "label": format!("{}:{}", pull.owner, pull.head),
            "ref": pull.head,
            "sha": pull.head_sha,
            "user": user,
            "repo": repository,
        },
        "base": {
            "label": format!("{}:{}", pull.owner, pull.base),
            "ref": pull.base,
            "sha": base_sha,
            "user": user,
            "repo": repository,
        },
        "author_association": "NONE",
        "merged": false,
        "mergeable": null,
        "commits": commits,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_components_are_percent_decoded() {
        assert_eq!(decode("acme%3Aomoi%2Fx"), "acme:omoi/x");
        assert_eq!(decode("a+b%20c"), "a b c");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz"), "%zz");
    }
}
