//! Warm pools on two real `omoi serve` replicas (one PostgreSQL, a TCP proxy in front, the real
//! worker on the local provider, `--warm-pool 2` each, each its own data directory): many specs
//! launched at once through both, and their tasks, each get exactly one sandbox, no standby
//! serves two launches, all complete; then one replica is killed (SIGKILL) while it has idle standbys, and the other
//! ends them (its provider, over another data directory, cannot manage them: their workers are
//! refused at their next poll and exit) and keeps its own pool.
//! PostgreSQL only: nothing to do without `OMOI_TEST_POSTGRES_URL`.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use omoi_coordinator::store::{StandbyState, Store};
use pretty_assertions::assert_eq;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::common::docker::wait_for_status;
use super::common::proxy::TcpProxy;
use super::common::replicas::postgres_db;
use super::common::{Api, eventually};
use super::replica_loss::{Serve, free_addr, serve};
use super::worker_e2e::{all_completed, phase_summary};

const WAIT: Duration = Duration::from_secs(120);
/// Specs launched at once, half through each replica (four tasks each).
const SPECS: usize = 6;

/// The standbys of `replica` that wait (`idle`).
async fn idle_of(store: &Store, replica: &str) -> Vec<String> {
    store
        .live_standbys_of_replica(replica, "local")
        .await
        .unwrap()
        .into_iter()
        .filter(|s| s.state == StandbyState::Idle)
        .map(|s| s.id)
        .collect()
}

/// The pid the local provider recorded for sandbox `id` under `data`.
fn pid_of(data: &Path, id: &str) -> u32 {
    let record = std::fs::read(data.join("sandboxes").join(id).join("sandbox.json")).unwrap();
    let record: Value = serde_json::from_slice(&record).unwrap();
    u32::try_from(record["pid"].as_u64().unwrap()).unwrap()
}

/// Whether process `pid` still runs (a zombie has ended).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat
            .rfind(')')
            .and_then(|at| stat[at + 1..].split_whitespace().next().map(str::to_string));
        !matches!(state.as_deref(), Some("Z" | "X"))
    })
}

fn client(base: String, token: &str) -> Api {
    Api {
        // A fresh connection per request, so none outlives the replica it went to.
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap(),
        base,
        token: Some(token.to_string()),
    }
}

#[tokio::test]
async fn two_warm_replicas_launch_at_once_without_sharing_a_standby_and_end_a_lost_one_s_pool() {
    let Some(db) = postgres_db().await else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("key");
    std::fs::write(&key, "5e".repeat(32)).unwrap();
    let bare = omoi_tests::git::seed_bare_repo(
        &omoi_tests::fixtures::sample_repo(),
        &tmp.path().join("acme/greet.git"),
    );
    let extra: Vec<String> = [
        "--warm-pool",
        "2",
        "--replica-lost-secs",
        "3",
        "--max-running-tasks",
        "8",
        "--secret-key-file",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([key.display().to_string(), "--allow-local-repos".into()])
    .chain([tmp.path().join("acme").display().to_string()])
    .collect();
    let script = omoi_tests::fixtures::sample_script();
    let (addr_a, addr_b) = (free_addr(), free_addr());
    let proxy = TcpProxy::start(vec![addr_a, addr_b]).await;
    let replica = |name, addr| Serve {
        name,
        addr,
        database: &db.url,
        public_url: &proxy.url,
        dir: tmp.path(),
        script: &script,
        extra: &extra,
    };
    let mut a = serve(&replica("a", addr_a)).await;
    let _b = serve(&replica("b", addr_b)).await;

    let store = Store::open(&db.url).await.unwrap();
    let user = store.create_user("ada").await.unwrap();
    let token = store.create_user_token(&user.id).await.unwrap();
    let api = client(proxy.url.clone(), &token);
    let repo = format!("file://{}", bare.display());
    let (status, project) = api
        .post(
            "/projects",
            &json!({"name": "greet", "repo_url": repo, "validation_command": "sh tests/run.sh"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{project}");
    eventually(WAIT, "both pools to fill", || async {
        idle_of(&store, "a").await.len() == 2 && idle_of(&store, "b").await.len() == 2
    })
    .await;

    // Launched at once, half through each replica.
    let (via_a, via_b) = (
        client(format!("http://{addr_a}"), &token),
        client(format!("http://{addr_b}"), &token),
    );
    let (title, description) = omoi_tests::fixtures::sample_request();
    let launches = (0..SPECS).map(|i| {
        let via = if i % 2 == 0 { &via_a } else { &via_b };
        let body = json!({"project_id": project["id"], "title": format!("{title} {i}"),
                          "description": description});
        async move { via.post("/specs/launch", &body).await }
    });
    let mut specs = Vec::new();
    for (status, spec) in futures_util::future::join_all(launches).await {
        assert_eq!(status, StatusCode::CREATED, "{spec}");
        specs.push(spec["id"].as_str().unwrap().to_string());
    }
    let mut handles = BTreeSet::new();
    let mut warm = 0;
    for spec_id in &specs {
        let done = wait_for_status(&api, spec_id, "completed").await;
        assert_eq!(phase_summary(&done), all_completed(), "{spec_id}");
        let tasks = done["tasks"].as_array().unwrap();
        assert_eq!(tasks.len(), 4);
        assert!(
            tasks.iter().all(|t| t["status"] == "completed"),
            "{tasks:?}"
        );
        // One sandbox per launch: the spec's, and one per task.
        let sandboxes = done["sandboxes"].as_array().unwrap();
        assert_eq!(
            (sandboxes.len(), &done["recoveries"]),
            (1 + tasks.len(), &json!(0)),
            "{done}"
        );
        for sandbox in sandboxes {
            assert_eq!(sandbox["status"], "completed", "{sandbox}");
            let sandbox_id = sandbox["id"].as_str().unwrap();
            let handle = store
                .sandbox(sandbox_id)
                .await
                .unwrap()
                .unwrap()
                .handle
                .unwrap();
            if let Some(standby) = store.standby(&handle).await.unwrap() {
                assert_eq!(standby.state, StandbyState::Delivered);
                warm += 1;
            }
            assert!(handles.insert(handle.clone()), "{handle} ran two launches");
        }
    }
    // Each replica's spec launches took at least its own two idle standbys (the other
    // replica's live in another data directory, where its provider cannot put a repository).
    assert!(warm >= 4, "{warm} of {} launches were warm", handles.len());
    eprintln!("{warm} of {} launches were warm", handles.len());

    // A dies while it has idle standbys; B ends them (its provider cannot manage them).
    eventually(WAIT, "A's pool to refill", || async {
        idle_of(&store, "a").await.len() == 2
    })
    .await;
    let orphans = idle_of(&store, "a").await;
    let data_a = tmp.path().join("data-a");
    let pids: Vec<u32> = orphans.iter().map(|id| pid_of(&data_a, id)).collect();
    assert!(pids.iter().all(|pid| running(*pid)));
    a.start_kill().unwrap();
    a.wait().await.unwrap();
    eventually(WAIT, "B to end A's waiting standbys", || async {
        let mut ended = true;
        for id in &orphans {
            let standby = store.standby(id).await.unwrap().unwrap();
            ended &= standby.state == StandbyState::Dead && standby.replica_id == "a";
        }
        ended
    })
    .await;
    // Refused at their next poll (through the proxy, now B), their workers exit.
    eventually(WAIT, "the ended standbys' workers to exit", || async {
        !pids.iter().any(|pid| running(*pid))
    })
    .await;
    assert_eq!(idle_of(&store, "a").await, Vec::<String>::new());
    eventually(WAIT, "B's own pool to stay full", || async {
        idle_of(&store, "b").await.len() == 2
    })
    .await;
    // A launch after the loss still starts (warm, from B's pool).
    let (status, spec) = api
        .post(
            "/specs/launch",
            &json!({"project_id": project["id"], "title": title, "description": description}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{spec}");
    let done = wait_for_status(&api, spec["id"].as_str().unwrap(), "completed").await;
    assert_eq!(phase_summary(&done), all_completed());
    store.close().await;
}
