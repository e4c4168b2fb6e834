//! Real git for tests: bare repositories seeded from a directory, a `git daemon` serving them on
//! 127.0.0.1, and readers of what a remote branch holds.
//!
//! Every command runs with a fixed identity and without the user's or the system's git config,
//! so a test sees the same git on every machine.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The branch a seeded repository starts with.
pub const BASE_BRANCH: &str = "main";

/// A `git` command in `dir` with a fixed identity and no global or system config.
pub fn command(dir: &Path) -> Command {
    let mut command = Command::new("git");
    command
        .current_dir(dir)
        .stdin(Stdio::null())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@localhost")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@localhost")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C");
    command
}

/// Runs git in `dir`; panics with its stderr when it fails. Returns stdout, trimmed.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let output = command(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run git {args:?}: {e}"));
    assert!(
        output.status.success(),
        "git {args:?} in {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("git output is UTF-8")
        .trim()
        .to_string()
}

/// Creates the bare repository `bare` whose `main` holds the files of `source` in one commit
/// `initial`. Returns `bare`.
pub fn seed_bare_repo(source: &Path, bare: &Path) -> PathBuf {
    std::fs::create_dir_all(bare).expect("create the bare repository directory");
    git(
        bare,
        &["init", "--quiet", "--bare", "--initial-branch", BASE_BRANCH],
    );
    let work = tempfile::tempdir().expect("a temporary directory");
    crate::fixtures::copy_dir(source, work.path()).expect("copy the source tree");
    let work = work.path();
    git(work, &["init", "--quiet", "--initial-branch", BASE_BRANCH]);
    git(work, &["add", "-A"]);
    git(work, &["commit", "--quiet", "-m", "initial"]);
    let url = bare.to_str().expect("a UTF-8 path");
    git(work, &["push", "--quiet", url, BASE_BRANCH]);
    bare.to_path_buf()
}

/// The commit a branch of a repository points to, or `None` when the branch does not exist.
pub fn branch_sha(repo: &Path, branch: &str) -> Option<String> {
    let output = command(repo)
        .args(["rev-parse", "--verify", "--quiet"])
        .arg(format!("refs/heads/{branch}^{{commit}}"))
        .output()
        .expect("run git rev-parse");
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// One commit of a log: its sha, subject and body (trimmed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedCommit {
    pub sha: String,
    pub subject: String,
    pub body: String,
    pub author: String,
}

/// The commits of `branch`, newest first (first parents only).
pub fn log(repo: &Path, branch: &str) -> Vec<LoggedCommit> {
    let text = git(
        repo,
        &[
            "log",
            "--first-parent",
            "--format=%H%x1f%s%x1f%b%x1f%an <%ae>%x1e",
            &format!("refs/heads/{branch}"),
        ],
    );
    text.split('\u{1e}')
        .map(str::trim)
        .filter(|record| !record.is_empty())
        .map(|record| {
            let fields: Vec<&str> = record.split('\u{1f}').collect();
            assert_eq!(fields.len(), 4, "a log record has four fields: {record:?}");
            LoggedCommit {
                sha: fields[0].to_string(),
                subject: fields[1].to_string(),
                body: fields[2].trim().to_string(),
                author: fields[3].to_string(),
            }
        })
        .collect()
}

/// The subjects of the commits of `branch`, newest first.
pub fn subjects(repo: &Path, branch: &str) -> Vec<String> {
    log(repo, branch).into_iter().map(|c| c.subject).collect()
}

/// The content of `path` at the tip of `branch`.
pub fn file_at(repo: &Path, branch: &str, path: &str) -> String {
    git(repo, &["show", &format!("refs/heads/{branch}:{path}")])
}

/// The paths a commit changed, sorted.
pub fn changed_files(repo: &Path, sha: &str) -> Vec<String> {
    let text = git(
        repo,
        &["diff-tree", "--no-commit-id", "--name-only", "-r", sha],
    );
    let mut files: Vec<String> = text.lines().map(str::to_string).collect();
    files.sort();
    files
}

/// Every file under `dir` (`.git` included) whose bytes contain `needle`: where a secret must
/// never be written.
pub fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).expect("read a directory") {
                stack.push(entry.expect("a directory entry").path());
            }
        } else if let Ok(bytes) = std::fs::read(&path) {
            if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// A `git daemon` that serves every repository under a base path, with pushes enabled, on a
/// free port of 127.0.0.1. Killed on drop.
#[derive(Debug)]
pub struct GitDaemon {
    child: Child,
    addr: SocketAddr,
}

impl GitDaemon {
    /// Starts the daemon and waits until it accepts connections.
    pub fn start(base_path: &Path) -> GitDaemon {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("find a free port")
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let child = command(base_path)
            .args([
                "daemon",
                "--export-all",
                "--enable=receive-pack",
                "--reuseaddr",
                "--listen=127.0.0.1",
            ])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base_path.display()))
            .arg(base_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // `git daemon` runs `git-daemon` as its child: a group of their own lets drop end both.
            .process_group(0)
            .spawn()
            .expect("start git daemon");
        let mut daemon = GitDaemon { child, addr };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!("git daemon exited at start: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "git daemon did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        daemon
    }

    /// The `git://` URL of a repository under the base path, e.g. `remote.git`.
    pub fn url(&self, repository: &str) -> String {
        format!("git://{}/{repository}", self.addr)
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        if let Some(group) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A git smart-HTTP server (`git http-backend` behind a small HTTP front) that demands HTTP
/// basic auth, as hosted git services do. Pushes are enabled for authenticated requests.
/// Stopped on drop.
#[derive(Debug)]
pub struct GitHttpServer {
    addr: SocketAddr,
    seen: Arc<Mutex<AuthLog>>,
    runtime: Option<tokio::runtime::Runtime>,
}

/// The `Authorization` headers the server saw: accepted ones and refused ones (`None` when the
/// request had none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthLog {
    pub accepted: usize,
    pub refused: Vec<Option<String>>,
}

#[derive(Clone)]
struct HttpState {
    project_root: PathBuf,
    authorization: String,
    seen: Arc<Mutex<AuthLog>>,
}

impl GitHttpServer {
    /// Serves the repositories under `project_root` to requests whose `Authorization` header
    /// is exactly `authorization` (e.g. `Basic eC1hY2Nlc3MtdG9rZW46c2VjcmV0`); every other
    /// request gets 401 with a basic-auth challenge.
    pub fn start(project_root: &Path, authorization: &str) -> GitHttpServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the git HTTP server");
        let seen = Arc::new(Mutex::new(AuthLog::default()));
        let state = HttpState {
            project_root: project_root.to_path_buf(),
            authorization: authorization.to_string(),
            seen: seen.clone(),
        };
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind the git HTTP server");
        let addr = listener.local_addr().expect("the server's address");
        let router = axum::Router::new().fallback(serve_git).with_state(state);
        runtime.spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        GitHttpServer {
            addr,
            seen,
            runtime: Some(runtime),
        }
    }

    /// The `http://` URL of a repository under the project root, e.g. `remote.git`.
    pub fn url(&self, repository: &str) -> String {
        format!("http://{}/{repository}", self.addr)
    }

    /// The authorization headers seen so far.
    pub fn auth_log(&self) -> AuthLog {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for GitHttpServer {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// One request: check the credentials, then run it through `git http-backend` (CGI).
async fn serve_git(
    axum::extract::State(state): axum::extract::State<HttpState>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;

    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    {
        let mut seen = state.seen.lock().unwrap_or_else(|p| p.into_inner());
        if given.as_deref() == Some(state.authorization.as_str()) {
            seen.accepted += 1;
        } else {
            seen.refused.push(given);
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Basic realm=\"git\"")],
                "authentication required\n",
            )
                .into_response();
        }
    }
    let header_value = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let mut backend = tokio::process::Command::new("git");
    backend
        .arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_PROJECT_ROOT", &state.project_root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REMOTE_USER", "x-access-token")
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("REQUEST_METHOD", method.as_str())
        .env("PATH_INFO", uri.path())
        .env("QUERY_STRING", uri.query().unwrap_or_default())
        .env("CONTENT_TYPE", header_value(header::CONTENT_TYPE))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env(
            "HTTP_CONTENT_ENCODING",
            header_value(header::CONTENT_ENCODING),
        )
        .env(
            "GIT_PROTOCOL",
            header_value(header::HeaderName::from_static("git-protocol")),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = backend.spawn().expect("start git http-backend");
    let mut stdin = child.stdin.take().expect("the backend's stdin");
    let writer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let _ = stdin.write_all(&body).await;
    });
    let output = child
        .wait_with_output()
        .await
        .expect("git http-backend ran");
    let _ = writer.await;
    cgi_response(&output.stdout)
}

/// Turns a CGI answer (headers, a blank line, the body) into an HTTP response.
fn cgi_response(raw: &[u8]) -> axum::response::Response {
    use axum::http::{HeaderName, HeaderValue, StatusCode};
    use axum::response::IntoResponse;

    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4))
        .or_else(|| {
            raw.windows(2)
                .position(|w| w == b"\n\n")
                .map(|i| (i, i + 2))
        });
    let Some((head_end, body_start)) = split else {
        return (
            StatusCode::BAD_GATEWAY,
            "git http-backend answered no headers",
        )
            .into_response();
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let mut response = raw[body_start..].to_vec().into_response();
    for line in head.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().unwrap_or("500");
            *response.status_mut() = code
                .parse::<u16>()
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok())
                .unwrap_or(StatusCode::BAD_GATEWAY);
        } else if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seeded_repository_serves_its_files_over_git_daemon() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("source");
        std::fs::create_dir_all(&source).unwrap();
        std::fs::write(source.join("a.txt"), "alpha\n").unwrap();
        let bare = seed_bare_repo(&source, &dir.path().join("remote.git"));
        assert_eq!(subjects(&bare, BASE_BRANCH), ["initial"]);
        assert_eq!(file_at(&bare, BASE_BRANCH, "a.txt"), "alpha");
        assert_eq!(branch_sha(&bare, "nope"), None);

        let daemon = GitDaemon::start(dir.path());
        let clone = dir.path().join("clone");
        git(
            dir.path(),
            &[
                "clone",
                "--quiet",
                &daemon.url("remote.git"),
                clone.to_str().unwrap(),
            ],
        );
        assert_eq!(
            std::fs::read_to_string(clone.join("a.txt")).unwrap(),
            "alpha\n"
        );
        assert_eq!(
            git(&clone, &["rev-parse", "HEAD"]),
            branch_sha(&bare, BASE_BRANCH).unwrap()
        );
    }

    #[test]
    fn the_http_server_demands_basic_auth_and_then_serves_clone_and_push() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("source");
        std::fs::create_dir_all(&source).unwrap();
        std::fs::write(source.join("a.txt"), "alpha\n").unwrap();
        let bare = seed_bare_repo(&source, &dir.path().join("remote.git"));
        // base64 of `x-access-token:secret`.
        let server = GitHttpServer::start(dir.path(), "Basic eC1hY2Nlc3MtdG9rZW46c2VjcmV0");
        let url = server.url("remote.git");

        let refused = command(dir.path())
            .args(["clone", "--quiet", &url, "refused"])
            .output()
            .unwrap();
        assert!(!refused.status.success());
        assert!(
            String::from_utf8_lossy(&refused.stderr).contains("terminal prompts disabled"),
            "{}",
            String::from_utf8_lossy(&refused.stderr)
        );

        let with_credentials = url.replace("http://", "http://x-access-token:secret@");
        git(
            dir.path(),
            &["clone", "--quiet", &with_credentials, "clone"],
        );
        let clone = dir.path().join("clone");
        std::fs::write(clone.join("b.txt"), "beta\n").unwrap();
        git(&clone, &["add", "b.txt"]);
        git(&clone, &["commit", "--quiet", "-m", "second"]);
        git(
            &clone,
            &["push", "--quiet", "origin", "HEAD:refs/heads/topic"],
        );
        assert_eq!(subjects(&bare, "topic"), ["second", "initial"]);
        let log = server.auth_log();
        assert!(log.accepted >= 2, "{log:?}");
        assert!(log.refused.iter().all(Option::is_none), "{log:?}");
    }
}
