//! Support of the daytona suite: the fake Daytona (`omoi_tests::fake_daytona`) whose snapshot
//! holds the real `omoi-worker`, a provider connected to it, and a coordinator with a launched
//! spec (the sandboxes clone from and push to a git daemon).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use omoi_coordinator::Settings;
use omoi_coordinator::sandbox::SandboxError;
use omoi_coordinator::sandbox::daytona::{DaytonaConfig, DaytonaProvider};
use omoi_tests::fake_daytona::{FakeDaytona, FakeDaytonaConfig, FakeSnapshot};
use reqwest::StatusCode;
use serde_json::json;

use super::kube::Remote;
use super::{Api, TestDb, TestServer};

/// The key the fake takes.
pub const KEY: &str = "dtn_fake_key_0123456789abcdef";
/// The key's organisation.
pub const ORG: &str = "org-omoi-tests";
/// The snapshot with the worker.
pub const SNAPSHOT: &str = "omoi-worker";

/// A fake whose snapshot `omoi-worker` holds this build's worker, and `omoi-pending` is not
/// active yet.
pub async fn fake(dir: &Path) -> FakeDaytona {
    FakeDaytona::start(FakeDaytonaConfig {
        key: KEY.to_string(),
        organization: ORG.to_string(),
        snapshots: BTreeMap::from([
            (
                SNAPSHOT.to_string(),
                FakeSnapshot {
                    state: "active".into(),
                    worker: Some(crate::suite::worker_e2e::worker_bin()),
                },
            ),
            (
                "omoi-pending".to_string(),
                FakeSnapshot {
                    state: "pending".into(),
                    worker: None,
                },
            ),
        ]),
        work_dir: dir.join("daytona"),
        start_delay: Duration::from_millis(20),
    })
    .await
}

/// The provider's settings for the fake: a fast poll and retries.
pub fn config(fake: &FakeDaytona, data: &Path) -> DaytonaConfig {
    let mut config = DaytonaConfig::new(
        fake.api_url().parse().unwrap(),
        KEY.to_string(),
        SNAPSHOT.to_string(),
        data.to_path_buf(),
    );
    config.connection.organization_id = Some(ORG.to_string());
    config.connection.retry_base = Duration::from_millis(20);
    config.poll_interval = Duration::from_millis(200);
    config.spawn_deadline = Duration::from_secs(30);
    config
}

/// The provider on the fake with `tune` applied to its settings.
pub async fn provider(
    fake: &FakeDaytona,
    data: &Path,
    tune: impl FnOnce(&mut DaytonaConfig),
) -> Result<DaytonaProvider, SandboxError> {
    let mut config = config(fake, data);
    tune(&mut config);
    DaytonaProvider::start(config).await
}

/// A coordinator on `provider`, its user's client and a launched spec of the sample request.
pub struct Launched {
    pub server: TestServer,
    pub api: Api,
    pub spec_id: String,
}

pub async fn launch(
    db: &TestDb,
    provider: Arc<DaytonaProvider>,
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
