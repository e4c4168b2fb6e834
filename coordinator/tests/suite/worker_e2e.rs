//! End to end with the real `omoi-worker` on the local provider and the scripted model: a whole
//! spec, a worker killed mid-DESIGN, and a coordinator restarted mid-phase. These follow the spec
//! until it is written (`implementing`) on a coordinator that runs no task; its tasks are the
//! subject of `tasks_e2e`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use omoi_coordinator::sandbox::SandboxHandle;
use omoi_coordinator::sandbox::local::LocalProvider;
use omoi_coordinator::store::Store;
use pretty_assertions::assert_eq;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::common::{Api, TestDb, TestServer, each_backend, eventually};

const WAIT: Duration = Duration::from_secs(90);

/// The worker binary: `OMOI_WORKER_BIN`, else `omoi-worker` in this build's target directory
/// (built there first when missing).
pub fn worker_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("OMOI_WORKER_BIN") {
        return PathBuf::from(path);
    }
    // This test runs from <target>/debug/deps/.
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join("omoi-worker");
    static BUILD: std::sync::Once = std::sync::Once::new();
    BUILD.call_once(|| {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", "omoi-worker", "--manifest-path"])
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml"))
            .status()
            .unwrap();
        assert!(status.success(), "cargo build -p omoi-worker failed");
    });
    assert!(path.is_file(), "no worker at {}", path.display());
    path
}

/// The sample script with a shell command run at the start of DESIGN.
pub(super) fn script_with_design_command(dir: &Path, command: &str) -> PathBuf {
    let mut script = omoi_tests::fixtures::sample_script_json();
    let turns = script["design"][0].as_array_mut().unwrap();
    turns.insert(
        0,
        json!({
            "text": "Let me check the test runner before designing.",
            "tool_calls": [{"name": "run", "input": {"command": command, "timeout_secs": 120}}]
        }),
    );
    omoi_tests::fixtures::write_script(dir, "script.json", &script)
}

struct Setup {
    server: TestServer,
    provider: Arc<LocalProvider>,
    api: Api,
    spec_id: String,
    data: PathBuf,
}

async fn launch(db: &TestDb, tmp: &Path, script: &Path) -> Setup {
    let (title, description) = omoi_tests::fixtures::sample_request();
    launch_request(db, tmp, script, &title, &description).await
}

async fn launch_request(
    db: &TestDb,
    tmp: &Path,
    script: &Path,
    title: &str,
    description: &str,
) -> Setup {
    let data = tmp.join("data");
    let provider = Arc::new(LocalProvider::new(worker_bin(), &data));
    let server = TestServer::start(db, provider.clone(), |s| spec_only(s, script)).await;
    let (_, api) = server.user("ada").await;
    let (status, project) = api
        .post(
            "/projects",
            &json!({
                "name": "sample",
                "repo_url": omoi_tests::fixtures::sample_repo().display().to_string(),
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{project}");
    let (status, spec) = api
        .post(
            "/specs/launch",
            &json!({"project_id": project["id"], "title": title, "description": description}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{spec}");
    Setup {
        server,
        provider,
        api,
        spec_id: spec["id"].as_str().unwrap().to_string(),
        data,
    }
}

/// [`tune`] on a coordinator that starts no task: specs stop at `implementing`.
fn spec_only(settings: &mut omoi_coordinator::Settings, script: &Path) {
    tune(settings, script);
    settings.max_running_tasks = 0;
}

pub fn tune(settings: &mut omoi_coordinator::Settings, script: &Path) {
    settings.heartbeat_secs = 1;
    for (name, value) in [
        ("OMOI_LLM", "scripted".to_string()),
        ("OMOI_SCRIPT", script.display().to_string()),
        ("OMOI_RETRY_BASE_MS", "10".to_string()),
    ] {
        settings.worker_env.insert(name.into(), value);
    }
}

pub(super) async fn detail(api: &Api, spec_id: &str) -> Value {
    api.get(&format!("/specs/{spec_id}")).await.1
}

pub(super) async fn wait_for_status(api: &Api, spec_id: &str, status: &str) -> Value {
    eventually(WAIT, &format!("the spec to be {status}"), || async {
        let d = detail(api, spec_id).await;
        assert!(
            d["status"] == status || d["status"] == "executing",
            "the spec ended {}: {}",
            d["status"],
            d["error"]
        );
        d["status"] == status
    })
    .await;
    detail(api, spec_id).await
}

pub(super) async fn wait_for_design(api: &Api, spec_id: &str) {
    eventually(WAIT, "DESIGN to start", || async {
        let d = detail(api, spec_id).await;
        d["phases"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["phase"] == "design"))
    })
    .await;
}

pub(super) fn phase_summary(detail: &Value) -> Vec<(String, String)> {
    detail["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["phase"].as_str().unwrap().to_string(),
                p["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

pub(super) fn all_completed() -> Vec<(String, String)> {
    ["explore", "requirements", "design", "tasks", "sync"]
        .iter()
        .map(|p| (p.to_string(), "completed".to_string()))
        .collect()
}

/// The stored seqs of a sandbox are exactly 1..=acked, each once.
pub(super) async fn assert_contiguous(store: &Store, sandbox_id: &str) -> u64 {
    let seqs: Vec<u64> = store
        .sandbox_events(sandbox_id)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    let n = seqs.len() as u64;
    assert_eq!(seqs, (1..=n).collect::<Vec<_>>());
    let sandbox = store.sandbox(sandbox_id).await.unwrap().unwrap();
    assert_eq!(sandbox.acked_seq, n);
    n
}

/// The seqs of a spec's stream, in cursor order (the first 1000).
pub(super) async fn stream_seqs(api: &Api, spec_id: &str) -> Vec<u64> {
    let (_, page) = api
        .get(&format!("/specs/{spec_id}/events?limit=1000"))
        .await;
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"]["seq"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn a_spec_runs_end_to_end_with_the_real_worker() {
    each_backend(|db| async move {
        let tmp = tempfile::tempdir().unwrap();
        let setup = launch(&db, tmp.path(), &omoi_tests::fixtures::sample_script()).await;
        let done = wait_for_status(&setup.api, &setup.spec_id, "implementing").await;
        assert_eq!(phase_summary(&done), all_completed());
        assert_eq!(
            done["final_spec"]["tasks"]["tasks"]
                .as_array()
                .unwrap()
                .len(),
            4
        );
        assert_eq!(done["final_spec"]["sync"]["ready_for_execution"], true);
        let sandbox = done["sandboxes"][0]["id"].as_str().unwrap();
        assert_eq!(done["sandboxes"][0]["status"], "completed");
        assert_eq!(done["sandboxes"][0]["terminal"], "agent.completed");
        let n = assert_contiguous(&setup.server.store, sandbox).await;
        let (_, page) = setup
            .api
            .get(&format!("/specs/{}/events?limit=1000", setup.spec_id))
            .await;
        assert_eq!(page["events"].as_array().unwrap().len() as u64, n);
        setup.server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_worker_killed_in_design_is_replaced_at_design_and_the_spec_completes() {
    each_backend(|db| async move {
        let tmp = tempfile::tempdir().unwrap();
        let marker = tmp.path().join("design-started");
        // The first worker blocks in DESIGN; its replacement finds the marker and goes on.
        let command = format!(
            "if [ ! -e '{0}' ]; then touch '{0}'; sleep 60; fi",
            marker.display()
        );
        let script = script_with_design_command(tmp.path(), &command);
        let setup = launch(&db, tmp.path(), &script).await;
        wait_for_design(&setup.api, &setup.spec_id).await;
        eventually(WAIT, "the design command to run", || async {
            marker.exists()
        })
        .await;

        let first = detail(&setup.api, &setup.spec_id).await["sandboxes"][0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let pid = setup
            .provider
            .pid(&SandboxHandle(first.clone()))
            .await
            .unwrap();
        let killed = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap();
        assert!(killed.success());

        let done = wait_for_status(&setup.api, &setup.spec_id, "implementing").await;
        assert_eq!(phase_summary(&done), all_completed());
        assert_eq!(done["recoveries"], 1);
        let sandboxes = done["sandboxes"].as_array().unwrap();
        assert_eq!(sandboxes.len(), 2);
        assert_eq!(
            (
                &sandboxes[0]["id"],
                &sandboxes[0]["status"],
                &sandboxes[0]["start_phase"]
            ),
            (&json!(first), &json!("lost"), &json!("explore"))
        );
        assert_eq!(
            sandboxes[0]["reason"],
            "the worker exited without a terminal event"
        );
        assert_eq!(
            (&sandboxes[1]["status"], &sandboxes[1]["start_phase"]),
            (&json!("completed"), &json!("design"))
        );
        assert_contiguous(&setup.server.store, sandboxes[1]["id"].as_str().unwrap()).await;
        setup.server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_coordinator_restarted_mid_phase_loses_and_repeats_no_event() {
    each_backend(|db| async move {
        let tmp = tempfile::tempdir().unwrap();
        let script = script_with_design_command(tmp.path(), "sleep 3");
        let setup = launch(&db, tmp.path(), &script).await;
        let addr = setup.server.url.trim_start_matches("http://").to_string();
        wait_for_design(&setup.api, &setup.spec_id).await;
        let token = setup.api.token.clone();
        setup.server.stop().await;

        // Down while the worker goes on: its events wait in its spool.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let listener = TcpListener::bind(&addr).await.unwrap();
        let provider = Arc::new(LocalProvider::new(worker_bin(), &setup.data));
        let server = TestServer::start_on(listener, &db, provider, |s| spec_only(s, &script)).await;
        let api = server.api(token.as_deref());

        let done = wait_for_status(&api, &setup.spec_id, "implementing").await;
        assert_eq!(phase_summary(&done), all_completed());
        let sandboxes = done["sandboxes"].as_array().unwrap();
        assert_eq!(sandboxes.len(), 1, "{sandboxes:?}");
        assert_eq!(sandboxes[0]["status"], "completed");
        let n = assert_contiguous(&server.store, sandboxes[0]["id"].as_str().unwrap()).await;
        assert_eq!(
            stream_seqs(&api, &setup.spec_id).await,
            (1..=n).collect::<Vec<_>>()
        );
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_message_posted_during_a_phase_reaches_the_worker() {
    each_backend(|db| async move {
        let tmp = tempfile::tempdir().unwrap();
        let script = script_with_design_command(tmp.path(), "sleep 4");
        let setup = launch(&db, tmp.path(), &script).await;
        wait_for_design(&setup.api, &setup.spec_id).await;
        let sandbox = detail(&setup.api, &setup.spec_id).await["sandboxes"][0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let (status, _) = setup
            .api
            .post(
                &format!("/sandboxes/{sandbox}/messages"),
                &json!({"text": "keep the old output byte for byte"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        wait_for_status(&setup.api, &setup.spec_id, "implementing").await;
        let (_, page) = setup
            .api
            .get(&format!("/specs/{}/events?limit=1000", setup.spec_id))
            .await;
        let injected: Vec<&Value> = page["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["event"]["type"] == "agent.message_injected")
            .map(|e| &e["event"]["data"])
            .collect();
        assert_eq!(
            injected,
            vec![&json!({"text": "keep the old output byte for byte"})]
        );
        setup.server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_context_too_large_for_the_environment_is_fetched_by_url() {
    each_backend(|db| async move {
        let tmp = tempfile::tempdir().unwrap();
        let (title, description) = omoi_tests::fixtures::sample_request();
        // Past the 128 KiB of one environment variable once base64-encoded.
        let description = format!("{description}\n\n{}", "Background. ".repeat(12_000));
        let setup = launch_request(
            &db,
            tmp.path(),
            &omoi_tests::fixtures::sample_script(),
            &title,
            &description,
        )
        .await;
        let done = wait_for_status(&setup.api, &setup.spec_id, "implementing").await;
        assert_eq!(phase_summary(&done), all_completed());
        // (`assert!`, not `assert_eq!`: a failure should not print 140 kB.)
        assert!(
            done["final_spec"]["description"] == json!(description.trim()),
            "the final spec does not carry the whole description"
        );
        setup.server.stop().await;
    })
    .await;
}
