//! Support of the suites whose sandboxes share no disk with the coordinator (kubernetes,
//! daytona): a git daemon the workers clone from and push to, a coordinator on any provider with
//! a spec of the sample request launched from that remote, and the reasons its sandboxes ended.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use omoi_coordinator::Settings;
use omoi_coordinator::sandbox::Provider;
use omoi_tests::git::GitDaemon;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{Api, TestDb, TestServer};

/// A git daemon serving a bare copy of the sample repository as `remote.git`.
pub struct Remote {
    pub daemon: GitDaemon,
    pub bare: PathBuf,
}

impl Remote {
    pub fn start(dir: &Path) -> Remote {
        let bare = omoi_tests::git::seed_bare_repo(
            &omoi_tests::fixtures::sample_repo(),
            &dir.join("remote.git"),
        );
        Remote {
            daemon: GitDaemon::start(dir),
            bare,
        }
    }

    pub fn url(&self) -> String {
        self.daemon.url("remote.git")
    }
}

/// A coordinator on `provider`, its user's client and a launched spec of the sample request,
/// whose workers replay `script` (read from this machine: the fakes run the workers here).
pub struct Launched {
    pub server: TestServer,
    pub api: Api,
    pub spec_id: String,
}

pub async fn launch(
    db: &TestDb,
    provider: Arc<dyn Provider>,
    remote: &Remote,
    script: &Path,
    stop_after: Option<&str>,
) -> Launched {
    let script = script.display().to_string();
    let server = TestServer::start(db, provider, |s: &mut Settings| {
        s.heartbeat_secs = 2;
        for (name, value) in [
            ("OMOI_LLM", "scripted"),
            ("OMOI_SCRIPT", script.as_str()),
            ("OMOI_RETRY_BASE_MS", "10"),
        ] {
            s.worker_env.insert(name.into(), value.into());
        }
    })
    .await;
    let (_, api) = server.user("ada").await;
    let (status, project) = api
        .post(
            "/projects",
            &json!({"name": "sample", "repo_url": remote.url()}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{project}");
    let (title, description) = omoi_tests::fixtures::sample_request();
    let mut body = json!({"project_id": project["id"], "title": title, "description": description});
    if let Some(phase) = stop_after {
        body["stop_after"] = json!(phase);
    }
    let (status, spec) = api.post("/specs/launch", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{spec}");
    Launched {
        server,
        api,
        spec_id: spec["id"].as_str().unwrap().to_string(),
    }
}

/// The reasons of the spec's own sandboxes, oldest first.
pub fn reasons(detail: &Value) -> Vec<(String, String)> {
    super::docker::spec_sandboxes(detail)
        .iter()
        .map(|s| {
            (
                s["status"].as_str().unwrap_or_default().to_string(),
                s["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}
