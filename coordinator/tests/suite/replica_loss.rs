//! A replica lost mid-run: two `omoi serve` processes on one PostgreSQL behind a plain TCP
//! proxy, the real worker on the local provider. The replica serving a running spec is killed
//! (SIGKILL); the worker's retries reach the other, the spec is written with no gap and no
//! duplicate, and the killed replica, started again, rejoins without acting twice.
//! PostgreSQL only: nothing to do without `OMOI_TEST_POSTGRES_URL`.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use omoi_coordinator::store::Store;
use pretty_assertions::assert_eq;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use super::common::proxy::TcpProxy;
use super::common::replicas::postgres_db;
use super::common::{Api, eventually};
use super::worker_e2e::{
    all_completed, assert_contiguous, detail, phase_summary, script_with_design_command,
    stream_seqs, wait_for_design, wait_for_status, worker_bin,
};

/// A free local address (bound, then released for the process to take).
pub(super) fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// What an `omoi serve` process of the test is started with.
pub(super) struct Serve<'a> {
    pub name: &'a str,
    pub addr: SocketAddr,
    pub database: &'a str,
    pub public_url: &'a str,
    pub dir: &'a Path,
    pub script: &'a Path,
    /// More flags of `omoi serve`.
    pub extra: &'a [String],
}

/// Starts `omoi serve` as a child process (killed when dropped); waits until it answers.
pub(super) async fn serve(how: &Serve<'_>) -> Child {
    let log = std::fs::File::create(how.dir.join(format!("{}.log", how.name))).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_omoi"))
        .arg("serve")
        .args(["--listen", &how.addr.to_string()])
        .args(["--database", how.database])
        .args(["--provider", "local"])
        .arg("--worker-bin")
        .arg(worker_bin())
        .args(["--public-url", how.public_url])
        .arg("--data-dir")
        .arg(how.dir.join(format!("data-{}", how.name)))
        .args(["--heartbeat-secs", "1"])
        .args(["--replica-id", how.name])
        // The sample repository is the one local repository the replicas accept.
        .arg("--allow-local-repos")
        .arg(omoi_tests::fixtures::sample_repo())
        .args(["--worker-env", "OMOI_LLM=scripted"])
        .arg("--worker-env")
        .arg(format!("OMOI_SCRIPT={}", how.script.display()))
        .args(["--worker-env", "OMOI_RETRY_BASE_MS=10"])
        .args(how.extra)
        .args(
            // No task runs unless the test says how many may.
            (!how.extra.iter().any(|a| a == "--max-running-tasks"))
                .then_some(["--max-running-tasks", "0"])
                .into_iter()
                .flatten(),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let health = format!("http://{}/healthz", how.addr);
    eventually(Duration::from_secs(30), "the replica to answer", || async {
        reqwest::get(&health)
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK)
    })
    .await;
    child
}

#[tokio::test]
async fn a_replica_killed_mid_spec_costs_nothing_and_rejoins_without_acting_twice() {
    let Some(db) = postgres_db().await else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let script = script_with_design_command(tmp.path(), "sleep 3");
    let (addr_a, addr_b) = (free_addr(), free_addr());
    let proxy = TcpProxy::start(vec![addr_a, addr_b]).await;
    let replica = |name, addr| Serve {
        name,
        addr,
        database: &db.url,
        public_url: &proxy.url,
        dir: tmp.path(),
        script: &script,
        extra: &[],
    };
    let mut a = serve(&replica("a", addr_a)).await;
    let _b = serve(&replica("b", addr_b)).await;

    let store = Store::open(&db.url).await.unwrap();
    let user = store.create_user("ada").await.unwrap();
    let api = Api {
        // A fresh connection per request, so none outlives the replica it went to.
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap(),
        base: proxy.url.clone(),
        token: Some(store.create_user_token(&user.id).await.unwrap()),
    };
    let repo = omoi_tests::fixtures::sample_repo().display().to_string();
    let (status, project) = api
        .post("/projects", &json!({"name": "sample", "repo_url": repo}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{project}");
    let (title, description) = omoi_tests::fixtures::sample_request();
    let (status, spec) = api
        .post(
            "/specs/launch",
            &json!({"project_id": project["id"], "title": title, "description": description}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{spec}");
    let spec_id = spec["id"].as_str().unwrap().to_string();

    // A (the proxy's first choice) serves the spec and runs its worker; it dies mid-DESIGN.
    wait_for_design(&api, &spec_id).await;
    a.start_kill().unwrap();
    a.wait().await.unwrap();

    let done = wait_for_status(&api, &spec_id, "implementing").await;
    assert_eq!(phase_summary(&done), all_completed());
    let summary = |d: &Value| {
        (
            d["recoveries"].clone(),
            d["sandboxes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["status"].clone())
                .collect::<Vec<_>>(),
        )
    };
    assert_eq!(summary(&done), (json!(0), vec![json!("completed")]));
    let sandbox = done["sandboxes"][0]["id"].as_str().unwrap().to_string();
    let n = assert_contiguous(&store, &sandbox).await;
    assert_eq!(
        stream_seqs(&api, &spec_id).await,
        (1..=n).collect::<Vec<_>>()
    );

    // A comes back under its name: it reconciles and watches, and decides nothing again.
    let _a = serve(&replica("a", addr_a)).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let after = detail(&api, &spec_id).await;
    assert_eq!(
        (after["status"].clone(), summary(&after)),
        (json!("implementing"), summary(&done))
    );
    assert_eq!(store.count_events().await.unwrap(), n);
    store.close().await;
}
