//! Warm pools: standby sandboxes that a launch claims instead of starting one. The standby
//! routes and what they refuse (with the fake provider), a spec and its tasks end to end
//! through warm sandboxes with the real worker on the local provider, a standby killed while
//! idle is replaced, a warm sandbox killed after its claim is lost and recovered as any other,
//! and claims that race (two stores, as two replicas) never take one standby twice; a spec and
//! its tasks through warm docker sandboxes (skipped, as every docker suite, without the image),
//! and through warm pods on the fake Kubernetes API.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use omoi_coordinator::sandbox::local::LocalProvider;
use omoi_coordinator::sandbox::{Provider, SandboxHandle};
use omoi_coordinator::store::{NewStandby, Reach, Store, now_ms};
use pretty_assertions::assert_eq;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::common::docker::{Sandboxes, launch_warm, script};
use super::common::replicas::postgres_db;
use super::common::tasks::quick;
use super::common::{
    Api, FakeProvider, TestDb, TestServer, each_backend, error, eventually, test_secret_key,
};
use super::worker_e2e::{script_with_design_command, tune, wait_for_design, worker_bin};

const WAIT: Duration = Duration::from_secs(120);

/// A counter or gauge of the server's `/metrics`.
async fn metric(server: &TestServer, name: &str) -> u64 {
    let (_, text) = server.api(None).get("/metrics").await;
    let text = text.as_str().unwrap().to_string();
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
        .parse()
        .unwrap()
}

/// The standby spawn requests the fake provider got so far: `(id, pool credential)`.
fn standbys(provider: &FakeProvider) -> Vec<(String, String)> {
    provider
        .spawned()
        .iter()
        .filter_map(|r| {
            Some((
                r.env.get("OMOI_STANDBY_ID")?.clone(),
                r.env.get("OMOI_STANDBY_TOKEN")?.clone(),
            ))
        })
        .collect()
}

fn registration() -> Value {
    json!({"worker_version": "0.1.0"})
}

async fn launch_sample(api: &Api, repo: &str) -> String {
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
    spec["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_launch_takes_a_registered_standby_and_its_assignment_is_delivered_once() {
    each_backend(|db| async move {
        let provider = FakeProvider::new();
        let server = TestServer::start(&db, provider.clone(), |s| s.warm_pool = 2).await;
        eventually(WAIT, "two standbys to be spawned", || async {
            standbys(&provider).len() == 2
        })
        .await;
        let pool = standbys(&provider);
        let (a, a_token) = pool[0].clone();
        let (b, b_token) = pool[1].clone();
        // A standby's environment holds where to call, who it is and its credential: no secret
        // of a project, no work.
        let names: Vec<String> = provider.env(0).keys().cloned().collect();
        assert_eq!(
            names,
            [
                "OMOIOS_API_URL",
                "OMOI_STANDBY_ID",
                "OMOI_STANDBY_IDLE_SECS",
                "OMOI_STANDBY_TOKEN"
            ]
        );
        assert!(a_token.starts_with("omoi_p_"));

        let as_a = server.api(Some(&a_token));
        let register = |id: &str| format!("/standby/{id}/register");
        let assignment =
            |id: &str, wait: &str| format!("/standby/{id}/assignment?wait_secs={wait}");

        // Bad input on the registration route.
        let unauthorized = |id: &str| {
            error(
                "unauthorized",
                &format!("not the pool credential of a standby sandbox {id}"),
            )
        };
        assert_eq!(
            server.api(None).post(&register(&a), &registration()).await,
            (
                StatusCode::UNAUTHORIZED,
                error("unauthorized", "missing Authorization: Bearer <token>")
            )
        );
        assert_eq!(
            server
                .api(Some("omoi_p_wrong"))
                .post(&register(&a), &registration())
                .await,
            (StatusCode::UNAUTHORIZED, unauthorized(&a))
        );
        // One standby's credential does not work for another.
        assert_eq!(
            as_a.post(&register(&b), &registration()).await,
            (StatusCode::UNAUTHORIZED, unauthorized(&b))
        );
        let (_, user_api) = server.user("ada").await;
        let user_token = user_api.token.clone().unwrap();
        assert_eq!(
            server
                .api(Some(&user_token))
                .post(&register(&a), &registration())
                .await,
            (StatusCode::UNAUTHORIZED, unauthorized(&a))
        );
        let (status, _) = as_a.post_raw(&register(&a), "{not json").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, _) = as_a
            .post(
                &register(&a),
                &json!({"worker_version": "1", "extra": true}),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            as_a.post(&register(&a), &json!({"worker_version": ""}))
                .await,
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                error("invalid", "worker_version must be 1 to 64 bytes")
            )
        );
        // Polling before registering is refused.
        assert_eq!(
            as_a.get(&assignment(&a, "0")).await,
            (
                StatusCode::CONFLICT,
                error(
                    "conflict",
                    &format!("the standby sandbox {a} has not registered")
                )
            )
        );
        assert_eq!(
            as_a.post(&register(&a), &registration()).await.0,
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            server
                .api(Some(&b_token))
                .post(&register(&b), &registration())
                .await
                .0,
            StatusCode::NO_CONTENT
        );
        // Bad input on the assignment route.
        for bad in ["31", "x", "-1"] {
            let (status, _) = as_a.get(&assignment(&a, bad)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "wait_secs={bad}");
        }
        let (status, _) = as_a.get(&format!("/standby/{a}/assignment?wait=1")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "an unknown parameter");
        assert_eq!(
            as_a.get(&assignment(&b, "0")).await,
            (StatusCode::UNAUTHORIZED, unauthorized(&b))
        );
        // Nothing yet.
        assert_eq!(
            as_a.get(&assignment(&a, "0")).await,
            (StatusCode::NO_CONTENT, Value::Null)
        );

        // A long poll that is waiting when the launch claims the standby gets the assignment.
        let waiting = {
            let as_a = as_a.clone();
            let path = assignment(&a, "10");
            tokio::spawn(async move { as_a.get(&path).await })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        let repo = omoi_tests::fixtures::sample_repo().display().to_string();
        let spec_id = launch_sample(&user_api, &repo).await;
        let (status, delivered) = waiting.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{delivered}");
        let (_, detail) = user_api.get(&format!("/specs/{spec_id}")).await;
        let sandbox_id = detail["sandboxes"][0]["id"].as_str().unwrap();
        let env = delivered["env"].as_object().unwrap();
        assert_eq!(env["SANDBOX_ID"], json!(sandbox_id));
        assert_eq!(env["SPEC_ID"], json!(spec_id));
        assert_eq!(env["SPEC_PHASE"], json!("explore"));
        assert!(
            env["SANDBOX_TOKEN"]
                .as_str()
                .unwrap()
                .starts_with("omoi_s_")
        );
        assert!(!env.keys().any(|k| k.starts_with("OMOI_STANDBY")));
        // The repository went into the running standby; the spec's sandbox is the standby's.
        assert_eq!(provider.placed(), vec![(format!("fake-{a}"), repo.clone())]);
        assert!(
            !provider
                .spawned()
                .iter()
                .any(|r| r.env.contains_key("SPEC_ID")),
            "no cold spawn"
        );
        let sandbox = server.store.sandbox(sandbox_id).await.unwrap().unwrap();
        assert_eq!(sandbox.handle, Some(format!("fake-{a}")));
        // The sandbox token it was given is the sandbox's: its routes take it.
        let sandbox_api = server.api(Some(env["SANDBOX_TOKEN"].as_str().unwrap()));
        assert_eq!(
            sandbox_api
                .get(&format!("/sandboxes/{sandbox_id}/messages"))
                .await
                .0,
            StatusCode::OK
        );

        // Delivered once: a second fetch, and a registration again, are refused.
        let delivered_already = error(
            "conflict",
            &format!("the assignment of {a} was delivered already"),
        );
        assert_eq!(
            as_a.get(&assignment(&a, "0")).await,
            (StatusCode::CONFLICT, delivered_already.clone())
        );
        assert_eq!(
            as_a.post(&register(&a), &registration()).await,
            (StatusCode::CONFLICT, delivered_already)
        );
        // The pool refills; b still waits.
        eventually(WAIT, "the pool to refill", || async {
            standbys(&provider).len() == 3
        })
        .await;
        assert_eq!(metric(&server, "omoi_pool_claims_total").await, 1);
        assert_eq!(metric(&server, "omoi_pool_misses_total").await, 0);
        assert_eq!(metric(&server, "omoi_pool_refill_seconds_count").await, 2);
        eventually(WAIT, "the idle gauge to count b", || async {
            metric(&server, "omoi_pool_idle").await == 1
        })
        .await;
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_launch_that_finds_no_registered_standby_starts_cold() {
    each_backend(|db| async move {
        let provider = FakeProvider::new();
        let server = TestServer::start(&db, provider.clone(), |s| s.warm_pool = 1).await;
        eventually(WAIT, "a standby to be spawned", || async {
            standbys(&provider).len() == 1
        })
        .await;
        // It never registers: it cannot be claimed.
        let (_, api) = server.user("ada").await;
        let repo = omoi_tests::fixtures::sample_repo().display().to_string();
        let spec_id = launch_sample(&api, &repo).await;
        let cold: Vec<_> = provider
            .spawned()
            .into_iter()
            .filter(|r| r.env.get("SPEC_ID") == Some(&spec_id))
            .collect();
        assert_eq!(cold.len(), 1);
        assert_eq!(cold[0].repo.as_deref(), Some(repo.as_str()));
        assert_eq!(provider.placed(), vec![]);
        assert_eq!(metric(&server, "omoi_pool_claims_total").await, 0);
        assert_eq!(metric(&server, "omoi_pool_misses_total").await, 1);
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_launch_whose_repository_cannot_be_read_fails_clearly_and_takes_no_standby() {
    let db = super::common::sqlite();
    let provider = FakeProvider::new();
    let server = TestServer::start(&db, provider.clone(), |s| s.warm_pool = 1).await;
    eventually(WAIT, "a standby to be spawned", || async {
        standbys(&provider).len() == 1
    })
    .await;
    let (id, token) = standbys(&provider)[0].clone();
    let (status, _) = server
        .api(Some(&token))
        .post(&format!("/standby/{id}/register"), &registration())
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(repo.join("README.md"), "hello\n").unwrap();
    let repo = repo.display().to_string();
    let (_, api) = server.user("ada").await;
    let (status, project) = api
        .post("/projects", &json!({"name": "gone", "repo_url": repo}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{project}");
    std::fs::remove_dir_all(&repo).unwrap();
    let launch = json!({"project_id": project["id"], "title": "Add a --shout option"});
    let (status, body) = api.post("/specs/launch", &launch).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "sandbox_unavailable", "{body}");
    // The failed sandbox keeps the provider's words.
    let (_, specs) = api.get("/specs").await;
    let spec_id = specs.as_array().unwrap()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, detail) = api.get(&format!("/specs/{spec_id}")).await;
    let sandbox = &detail["sandboxes"][0];
    assert_eq!(sandbox["status"], "failed", "{detail}");
    let reason = sandbox["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("git ls-remote {repo} failed")),
        "{reason}"
    );
    // The standby was not claimed: it waits for the next launch, which takes it.
    assert_eq!(metric(&server, "omoi_pool_claims_total").await, 0);
    assert_eq!(metric(&server, "omoi_pool_idle").await, 1);
    assert_eq!(provider.placed(), vec![]);
    std::fs::create_dir_all(&repo).unwrap();
    let (status, spec) = api.post("/specs/launch", &launch).await;
    assert_eq!(status, StatusCode::CREATED, "{spec}");
    assert_eq!(metric(&server, "omoi_pool_claims_total").await, 1);
    assert_eq!(provider.placed(), vec![(format!("fake-{id}"), repo)]);
    server.stop().await;
}

#[tokio::test]
async fn without_the_operator_s_key_there_is_no_pool_and_launches_start_cold() {
    each_backend(|db| async move {
        let provider = FakeProvider::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let store = Store::open(&db.url).await.unwrap();
        assert!(!store.has_secret_key());
        let mut settings = omoi_coordinator::Settings::new(url.clone());
        settings.warm_pool = 2;
        settings.allow_local_repos =
            vec![std::fs::canonicalize(omoi_tests::fixtures::sample_repo()).unwrap()];
        let state = omoi_coordinator::AppState::new(store.clone(), provider.clone(), settings);
        let shutdown = tokio_util::sync::CancellationToken::new();
        let server = tokio::spawn(omoi_coordinator::serve(listener, state, shutdown.clone()));
        let user = store.create_user("ada").await.unwrap();
        let token = store.create_user_token(&user.id).await.unwrap();
        let api = Api {
            http: reqwest::Client::new(),
            base: url,
            token: Some(token),
        };
        let repo = omoi_tests::fixtures::sample_repo().display().to_string();
        let spec_id = launch_sample(&api, &repo).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(standbys(&provider), vec![]);
        let spawned = provider.spawned();
        assert_eq!(spawned.len(), 1);
        assert_eq!(spawned[0].env["SPEC_ID"], spec_id);
        shutdown.cancel();
        server.await.unwrap().unwrap();
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn a_standby_that_dies_while_idle_is_removed_and_replaced() {
    each_backend(|db| async move {
        let tmp = tempfile::tempdir().unwrap();
        let provider = Arc::new(LocalProvider::new(worker_bin(), &tmp.path().join("data")));
        let server = TestServer::start(&db, provider.clone(), |s| s.warm_pool = 1).await;
        eventually(WAIT, "a standby to register", || async {
            metric(&server, "omoi_pool_idle").await == 1
        })
        .await;
        let first = server
            .store
            .live_standby_keys()
            .await
            .unwrap()
            .first()
            .cloned()
            .unwrap();
        let pid = provider.pid(&SandboxHandle(first.clone())).await.unwrap();
        let killed = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        eventually(WAIT, "the dead standby to be removed", || async {
            let standby = server.store.standby(&first).await.unwrap().unwrap();
            standby.state == omoi_coordinator::store::StandbyState::Dead
        })
        .await;
        eventually(WAIT, "a new standby to register", || async {
            let keys = server.store.live_standby_keys().await.unwrap();
            metric(&server, "omoi_pool_idle").await == 1 && !keys.contains(&first)
        })
        .await;
        server.stop().await;
    })
    .await;
}

/// The local provider with a pool of `size`, the scripted model, and the sample request
/// launched once the pool is full.
struct WarmRun {
    server: TestServer,
    provider: Arc<LocalProvider>,
    api: Api,
    spec_id: String,
}

async fn warm_launch(
    db: &TestDb,
    tmp: &Path,
    size: u32,
    script: &Path,
    repo: String,
    tasks: bool,
) -> WarmRun {
    let provider = Arc::new(LocalProvider::new(worker_bin(), &tmp.join("data")));
    let server = TestServer::start(db, provider.clone(), |s| {
        tune(s, script);
        quick(s);
        s.warm_pool = size;
        if !tasks {
            s.max_running_tasks = 0;
        }
    })
    .await;
    eventually(WAIT, "the pool to fill", || async {
        metric(&server, "omoi_pool_idle").await == u64::from(size)
    })
    .await;
    let (_, api) = server.user("ada").await;
    let (status, project) = api
        .post(
            "/projects",
            &json!({"name": "greet", "repo_url": repo, "validation_command": "sh tests/run.sh"}),
        )
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
    WarmRun {
        server,
        provider,
        api,
        spec_id: spec["id"].as_str().unwrap().to_string(),
    }
}

async fn wait_for(run: &WarmRun, status: &str) -> Value {
    eventually(WAIT, &format!("the spec to be {status}"), || async {
        let (_, d) = run.api.get(&format!("/specs/{}", run.spec_id)).await;
        assert!(
            d["status"] != "failed" && d["status"] != "cancelled",
            "the spec ended {}: {}\ntasks: {}",
            d["status"],
            d["error"],
            d["tasks"]
        );
        d["status"] == status
    })
    .await;
    run.api.get(&format!("/specs/{}", run.spec_id)).await.1
}

#[tokio::test]
async fn a_spec_and_its_tasks_run_end_to_end_through_warm_sandboxes() {
    each_backend(|db| async move {
        let tmp = tempfile::tempdir().unwrap();
        let bare = omoi_tests::git::seed_bare_repo(
            &omoi_tests::fixtures::sample_repo(),
            &tmp.path().join("acme/greet.git"),
        );
        let script = omoi_tests::fixtures::sample_script();
        let run = warm_launch(
            &db,
            tmp.path(),
            2,
            &script,
            format!("file://{}", bare.display()),
            true,
        )
        .await;
        let done = wait_for(&run, "completed").await;
        let sandboxes = done["sandboxes"].as_array().unwrap();
        assert!(
            sandboxes.iter().all(|s| s["status"] == "completed"),
            "{sandboxes:?}"
        );
        // Every sandbox came from the pool or, when it was empty, a cold start; the spec's own
        // came from the full pool.
        let claims = metric(&run.server, "omoi_pool_claims_total").await;
        let misses = metric(&run.server, "omoi_pool_misses_total").await;
        assert_eq!(claims + misses, sandboxes.len() as u64, "{sandboxes:?}");
        assert!(claims >= 2, "the spec and at least one task ran warm");
        let spec_sandbox = sandboxes.iter().find(|s| s["task_id"].is_null()).unwrap();
        let stored = run
            .server
            .store
            .sandbox(spec_sandbox["id"].as_str().unwrap())
            .await
            .unwrap()
            .unwrap();
        let standby = run
            .server
            .store
            .standby(stored.handle.as_deref().unwrap())
            .await
            .unwrap()
            .expect("the spec's sandbox is a standby's");
        assert_eq!(
            standby.state,
            omoi_coordinator::store::StandbyState::Delivered
        );
        // Four tasks landed, one commit each.
        assert_eq!(done["tasks"].as_array().unwrap().len(), 4);
        assert!(
            done["tasks"]
                .as_array()
                .unwrap()
                .iter()
                .all(|t| t["status"] == "completed")
        );
        run.server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_warm_sandbox_killed_after_its_claim_is_lost_and_recovered() {
    each_backend(|db| async move {
        let tmp = tempfile::tempdir().unwrap();
        let marker = tmp.path().join("design-started");
        let command = format!(
            "if [ ! -e '{0}' ]; then touch '{0}'; sleep 60; fi",
            marker.display()
        );
        let script = script_with_design_command(tmp.path(), &command);
        let repo = omoi_tests::fixtures::sample_repo().display().to_string();
        let run = warm_launch(&db, tmp.path(), 1, &script, repo, false).await;
        wait_for_design(&run.api, &run.spec_id).await;
        eventually(WAIT, "the design command to run", || async {
            marker.exists()
        })
        .await;
        let (_, d) = run.api.get(&format!("/specs/{}", run.spec_id)).await;
        let first = d["sandboxes"][0]["id"].as_str().unwrap().to_string();
        let handle = run
            .server
            .store
            .sandbox(&first)
            .await
            .unwrap()
            .unwrap()
            .handle
            .unwrap();
        // The sandbox runs in the standby it claimed.
        assert!(run.server.store.standby(&handle).await.unwrap().is_some());
        let pid = run.provider.pid(&SandboxHandle(handle)).await.unwrap();
        let killed = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap();
        assert!(killed.success());

        let done = wait_for(&run, "implementing").await;
        assert_eq!(done["recoveries"], 1);
        let sandboxes = done["sandboxes"].as_array().unwrap();
        assert_eq!(sandboxes.len(), 2);
        assert_eq!(
            (&sandboxes[0]["id"], &sandboxes[0]["status"]),
            (&json!(first), &json!("lost"))
        );
        assert_eq!(
            sandboxes[0]["reason"],
            "the worker exited without a terminal event"
        );
        assert_eq!(
            (&sandboxes[1]["status"], &sandboxes[1]["start_phase"]),
            (&json!("completed"), &json!("design"))
        );
        run.server.stop().await;
    })
    .await;
}

/// `n` registered standbys of the default pool on `store`.
async fn idle_standbys(store: &Store, n: usize) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for i in 0..n {
        let id = format!("standby-{i:03}");
        store
            .open_standby(NewStandby {
                id: &id,
                pool: "",
                provider: "local",
                replica_id: "omoi-0",
            })
            .await
            .unwrap();
        store.set_standby_handle(&id, &id).await.unwrap();
        assert!(store.register_standby(&id).await.unwrap());
        ids.insert(id);
    }
    ids
}

/// Two stores (as two replicas) claim from one pool at once until it is empty.
async fn race_two_claimers(db: &TestDb) {
    let open = || async {
        Store::open(&db.url)
            .await
            .unwrap()
            .with_secret_key(test_secret_key())
    };
    let (a, b) = (open().await, open().await);
    let ids = idle_standbys(&a, 24).await;
    let claim_all = |store: Store| async move {
        let mut claimed = Vec::new();
        while let Some(standby) = store
            .claim_standby("local", "", now_ms() - 60_000, Reach::Any)
            .await
            .unwrap()
        {
            claimed.push(standby.id);
        }
        claimed
    };
    let (from_a, from_b) = tokio::join!(
        tokio::spawn(claim_all(a.clone())),
        tokio::spawn(claim_all(b.clone()))
    );
    let (from_a, from_b) = (from_a.unwrap(), from_b.unwrap());
    let mut all: Vec<String> = from_a.iter().chain(&from_b).cloned().collect();
    all.sort();
    let unique: BTreeSet<String> = all.iter().cloned().collect();
    assert_eq!(all.len(), unique.len(), "a standby was claimed twice");
    assert_eq!(unique, ids);
    // Another pool or a stale standby is never taken.
    idle_standbys(&b, 0).await;
    assert_eq!(
        a.claim_standby("local", "other-image", 0, Reach::Any)
            .await
            .unwrap(),
        None
    );
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn two_claimers_on_one_database_never_take_one_standby_twice() {
    each_backend(|db| async move { race_two_claimers(&db).await }).await;
}

#[tokio::test]
async fn two_replicas_on_postgres_never_claim_one_standby_twice() {
    let Some(db) = postgres_db().await else {
        return;
    };
    race_two_claimers(&db).await;
}

#[tokio::test]
async fn a_spec_and_its_tasks_run_end_to_end_through_warm_docker_sandboxes() {
    let tmp = tempfile::tempdir().unwrap();
    let file = script(tmp.path(), |_| {});
    // The image's worker must have standby mode; OMOI_TEST_SANDBOX_IMAGE names another image
    // than omoi-sandbox:latest (one built from this tree beside an older latest).
    let Some(sandboxes) = Sandboxes::start(&tmp.path().join("data"), |c| {
        c.files = vec![file];
        if let Ok(image) = std::env::var("OMOI_TEST_SANDBOX_IMAGE") {
            c.image = image;
        }
    })
    .await
    else {
        return;
    };
    let db = super::common::sqlite();
    let launched = launch_warm(&db, &sandboxes, |s| super::common::docker::tune(s, 2), 2).await;
    let done =
        super::common::docker::wait_for_status(&launched.api, &launched.spec_id, "completed").await;
    // The spec's sandbox is a standby's container, into which the repository was uploaded after
    // the claim.
    let spec_sandbox = &super::common::docker::spec_sandboxes(&done)[0];
    let handle = spec_sandbox["handle"].as_str().unwrap();
    let standby_id = handle.strip_prefix("omoi-").unwrap();
    let standby = launched.server.store.standby(standby_id).await.unwrap();
    assert_eq!(
        standby.map(|s| s.state),
        Some(omoi_coordinator::store::StandbyState::Delivered)
    );
    assert_eq!(spec_sandbox["status"], "completed");
    let tasks: Vec<&Value> = done["tasks"].as_array().unwrap().iter().collect();
    assert_eq!(tasks.len(), 4);
    assert!(
        tasks.iter().all(|t| t["status"] == "completed"),
        "{tasks:?}"
    );
    let sandboxes_run = done["sandboxes"].as_array().unwrap().len() as u64;
    let claims = metric(&launched.server, "omoi_pool_claims_total").await;
    let misses = metric(&launched.server, "omoi_pool_misses_total").await;
    assert_eq!(claims + misses, sandboxes_run);
    assert!(claims >= 1);
    // The standbys still waiting end with the test.
    let waiting = launched.server.store.live_standby_keys().await.unwrap();
    launched.server.stop().await;
    for key in waiting.iter().filter(|k| k.starts_with("omoi-")) {
        sandboxes
            .provider
            .terminate(&SandboxHandle(key.clone()))
            .await
            .unwrap();
    }
    sandboxes.close_and_assert_clean().await;
}

#[tokio::test]
async fn a_spec_and_its_tasks_run_through_warm_pods_on_the_fake_kubernetes_api() {
    use super::common::kube::{NS, Remote, fake, provider};
    let tmp = tempfile::tempdir().unwrap();
    let fake = fake(tmp.path()).await;
    let kube = Arc::new(
        provider(&fake, &tmp.path().join("data"), |_| {})
            .await
            .unwrap(),
    );
    let remote = Remote::start(&tmp.path().join("git"));
    let db = super::common::sqlite();
    let script = omoi_tests::fixtures::sample_script().display().to_string();
    let server = TestServer::start(&db, kube.clone(), |s| {
        s.heartbeat_secs = 2;
        for (name, value) in [
            ("OMOI_LLM", "scripted"),
            ("OMOI_SCRIPT", script.as_str()),
            ("OMOI_RETRY_BASE_MS", "10"),
        ] {
            s.worker_env.insert(name.into(), value.into());
        }
        s.warm_pool = 2;
    })
    .await;
    eventually(WAIT, "the pool of pods to fill", || async {
        metric(&server, "omoi_pool_idle").await == 2
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
    let (_, spec) = api
        .post(
            "/specs/launch",
            &json!({"project_id": project["id"], "title": title, "description": description}),
        )
        .await;
    let spec_id = spec["id"].as_str().unwrap().to_string();
    let done = super::common::docker::wait_for_status(&api, &spec_id, "completed").await;
    // The spec's sandbox is a standby's pod: the worker cloned the repository itself after its
    // assignment (no upload), as the provider's workers always do.
    let spec_sandbox = &super::common::docker::spec_sandboxes(&done)[0];
    let handle = spec_sandbox["handle"].as_str().unwrap();
    let standby = server
        .store
        .standby(handle.strip_prefix("omoi-").unwrap())
        .await
        .unwrap();
    assert_eq!(
        standby.map(|s| s.state),
        Some(omoi_coordinator::store::StandbyState::Delivered)
    );
    let tasks: Vec<&Value> = done["tasks"].as_array().unwrap().iter().collect();
    assert!(
        tasks.iter().all(|t| t["status"] == "completed"),
        "{tasks:?}"
    );
    assert_eq!(tasks.len(), 4);
    let claims = metric(&server, "omoi_pool_claims_total").await;
    let misses = metric(&server, "omoi_pool_misses_total").await;
    assert_eq!(
        claims + misses,
        done["sandboxes"].as_array().unwrap().len() as u64
    );
    assert!(claims >= 1);
    // At shutdown the waiting standbys' pods are stopped.
    server.stop().await;
    eventually(WAIT, "the standbys' pods to be deleted", || async {
        fake.names(NS, "pods").is_empty()
    })
    .await;
}
