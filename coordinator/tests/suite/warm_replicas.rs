//! Warm pools over several replicas: an assignment stored on one replica wakes the poll waiting
//! on another through `LISTEN/NOTIFY` (not the slow re-check); replicas record that they are
//! alive, and the waiting standbys of one unseen past the limit are adopted by a replica whose
//! provider can manage them, else ended, each once whatever the number of replicas; the pools of
//! a lost replica are refilled by the others.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use omoi_coordinator::sandbox::{Provider, ProviderStatus};
use omoi_coordinator::store::{NewStandby, Presence, Reach, StandbyState, Store, now_ms};
use pretty_assertions::assert_eq;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::common::replicas::{postgres_db, replica};
use super::common::{FakeProvider, TestDb, each_backend, eventually, test_secret_key};

const WAIT: Duration = Duration::from_secs(60);

/// Records standby `id` of `pool` spawned by `replica` on the provider kind `local`, with
/// `handle`; registers it when `idle`. Answers its pool credential.
async fn standby(store: &Store, id: &str, replica: &str, pool: &str, idle: bool) -> String {
    let token = store
        .open_standby(NewStandby {
            id,
            pool,
            provider: "local",
            replica_id: replica,
        })
        .await
        .unwrap();
    store
        .set_standby_handle(id, &format!("fake-{id}"))
        .await
        .unwrap();
    if idle {
        assert!(store.register_standby(id).await.unwrap());
    }
    token
}

/// Records that `replica` (provider kind `local`, `scope`) was last seen `ago` ago.
async fn seen(store: &Store, replica: &str, scope: Option<&str>, ago: Duration) {
    let at = now_ms() - i64::try_from(ago.as_millis()).unwrap();
    store
        .replica_heartbeat(Presence {
            replica_id: replica,
            provider: "local",
            scope,
            started_ms: at,
            now_ms: at,
        })
        .await
        .unwrap();
}

async fn open(db: &TestDb) -> Store {
    Store::open(&db.url)
        .await
        .unwrap()
        .with_secret_key(test_secret_key())
}

#[tokio::test]
async fn a_lost_replica_s_standbys_are_adopted_or_ended_once_by_many_replicas_at_once() {
    each_backend(|db| async move {
        let store = open(&db).await;
        let minute = Duration::from_secs(60);
        seen(&store, "lost", Some("here"), minute).await;
        seen(&store, "lost-elsewhere", Some("there"), minute).await;
        seen(&store, "lost-unmanaged", None, minute).await;
        seen(&store, "alive", Some("here"), Duration::ZERO).await;
        let mut adoptable = BTreeSet::new();
        for i in 0..6 {
            let id = format!("lost-{i}");
            standby(&store, &id, "lost", "", i % 3 != 0).await;
            adoptable.insert(id);
        }
        // Past waiting: a delivered standby is an ordinary sandbox.
        store
            .claim_standby("local", "", 0, Reach::Any)
            .await
            .unwrap()
            .filter(|s| s.id == "lost-1")
            .unwrap();
        let mut env = std::collections::BTreeMap::new();
        env.insert("SANDBOX_ID".to_string(), "sb-1".to_string());
        assert!(store.assign_standby("lost-1", "sb-1", &env).await.unwrap());
        assert!(store.take_assignment("lost-1").await.unwrap().is_some());
        adoptable.remove("lost-1");
        let mut to_end = BTreeSet::new();
        for (i, replica) in ["lost-elsewhere", "lost-unmanaged", "lost-elsewhere"]
            .iter()
            .enumerate()
        {
            let id = format!("far-{i}");
            standby(&store, &id, replica, "img-x", true).await;
            to_end.insert(id);
        }
        standby(&store, "alive-0", "alive", "", true).await;

        // Four replicas of scope "here" take over at the same moment.
        let stores = [
            open(&db).await,
            open(&db).await,
            open(&db).await,
            open(&db).await,
        ];
        let limit = now_ms() - 30_000;
        let takeovers = stores.iter().enumerate().map(|(i, s)| {
            let s = s.clone();
            async move {
                let name = format!("r{i}");
                let presence = Presence {
                    replica_id: &name,
                    provider: "local",
                    scope: Some("here"),
                    started_ms: now_ms(),
                    now_ms: now_ms(),
                };
                s.replica_heartbeat(presence).await.unwrap();
                let adopted = s.adopt_standbys(presence, limit).await.unwrap();
                assert!(adopted.iter().all(|a| a.replica_id == name));
                let ended = s.end_standbys_of_lost_replicas(&name, limit).await.unwrap();
                assert!(ended.iter().all(|e| e.state == StandbyState::Dead));
                (
                    adopted.into_iter().map(|a| a.id).collect::<Vec<_>>(),
                    ended.into_iter().map(|e| e.id).collect::<Vec<_>>(),
                )
            }
        });
        let results = futures_util::future::join_all(takeovers).await;
        let adopted: Vec<String> = results.iter().flat_map(|r| r.0.clone()).collect();
        let ended: Vec<String> = results.iter().flat_map(|r| r.1.clone()).collect();
        assert_eq!(
            adopted.iter().cloned().collect::<BTreeSet<_>>(),
            adoptable,
            "every live standby of the lost replica of this scope is adopted"
        );
        assert_eq!(adopted.len(), adoptable.len(), "each once: {adopted:?}");
        assert_eq!(ended.iter().cloned().collect::<BTreeSet<_>>(), to_end);
        assert_eq!(ended.len(), to_end.len(), "each once: {ended:?}");
        for id in &to_end {
            let s = store.standby(id).await.unwrap().unwrap();
            assert_eq!(s.state, StandbyState::Dead);
        }
        // What was not the lost replicas' to give is untouched.
        let delivered = store.standby("lost-1").await.unwrap().unwrap();
        assert_eq!(
            (delivered.state, delivered.replica_id.as_str()),
            (StandbyState::Delivered, "lost")
        );
        let alive = store.standby("alive-0").await.unwrap().unwrap();
        assert_eq!(
            (alive.state, alive.replica_id.as_str()),
            (StandbyState::Idle, "alive")
        );
        // An adopted standby keeps its state: an idle one is claimed as any other.
        let adopted_idle = store.standby("lost-2").await.unwrap().unwrap();
        assert_eq!(adopted_idle.state, StandbyState::Idle);
        // The lost replicas, with nothing left waiting, are forgotten; the live ones stay.
        assert_eq!(store.forget_lost_replicas(limit).await.unwrap(), 3);
        let names: Vec<String> = store
            .replicas()
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(names, ["alive", "r0", "r1", "r2", "r3"]);
        // A restart under the same id is the same replica, seen again.
        seen(&store, "alive", Some("moved"), Duration::ZERO).await;
        let alive = store.replicas().await.unwrap().remove(0);
        assert_eq!(alive.provider_scope.as_deref(), Some("moved"));
        for s in stores {
            s.close().await;
        }
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn a_claim_that_puts_the_repository_in_takes_only_standbys_its_provider_reaches() {
    each_backend(|db| async move {
        let store = open(&db).await;
        for (replica, scope) in [("near", "here"), ("far", "there"), ("me", "here")] {
            seen(&store, replica, Some(scope), Duration::ZERO).await;
        }
        // Registered in this order: the claims take the one waiting longest they may take.
        for (id, replica) in [("far-0", "far"), ("near-0", "near"), ("me-0", "me")] {
            standby(&store, id, replica, "", true).await;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let claim = |reach| {
            let store = store.clone();
            async move {
                store
                    .claim_standby("local", "", 0, reach)
                    .await
                    .unwrap()
                    .map(|s| s.id)
            }
        };
        let scoped = Reach::Scope {
            replica_id: "me",
            scope: Some("here"),
        };
        assert_eq!(claim(scoped).await.as_deref(), Some("near-0"));
        assert_eq!(claim(scoped).await.as_deref(), Some("me-0"));
        assert_eq!(claim(scoped).await, None);
        // A provider with no scope reaches only its own replica's standbys.
        let unscoped = Reach::Scope {
            replica_id: "far",
            scope: None,
        };
        assert_eq!(claim(unscoped).await.as_deref(), Some("far-0"));
        standby(&store, "far-1", "far", "", true).await;
        let stranger = Reach::Scope {
            replica_id: "other",
            scope: None,
        };
        assert_eq!(claim(stranger).await, None);
        // A claim that puts nothing in takes any replica's.
        assert_eq!(claim(Reach::Any).await.as_deref(), Some("far-1"));
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn a_replica_adopts_a_lost_replica_s_standbys_on_its_provider_and_refills_the_others_pools() {
    each_backend(|db| async move {
        let provider = FakeProvider::new();
        let store = open(&db).await;
        let scope = provider.scope().unwrap();
        // Replica "a" ran on the same (fake) provider, "c" on another; both went silent.
        seen(&store, "a", Some(&scope), Duration::from_secs(60)).await;
        seen(&store, "c", Some("elsewhere"), Duration::from_secs(60)).await;
        standby(&store, "a-0", "a", "", true).await;
        standby(&store, "a-1", "a", "", false).await;
        standby(&store, "c-0", "c", "img-x", true).await;
        for handle in ["fake-a-0", "fake-a-1", "fake-c-0"] {
            provider.set_status(handle, ProviderStatus::Running);
        }
        let b = replica(&db, provider.clone(), "b", |s| {
            s.warm_pool = 1;
            s.replica_lost_after = Duration::from_secs(2);
        })
        .await;
        eventually(WAIT, "b to take over a's and c's standbys", || async {
            let a0 = store.standby("a-0").await.unwrap().unwrap();
            let c0 = store.standby("c-0").await.unwrap().unwrap();
            a0.replica_id == "b" && c0.state == StandbyState::Dead
        })
        .await;
        let a1 = store.standby("a-1").await.unwrap().unwrap();
        assert_eq!(
            (a1.replica_id.as_str(), a1.state),
            ("b", StandbyState::Starting)
        );
        assert!(
            provider.terminated().contains(&"fake-c-0".to_string()),
            "b's provider, of c's kind, stops what it ended: {:?}",
            provider.terminated()
        );
        // c's pool is b's now: b spawns a standby of its image.
        eventually(WAIT, "b to refill c's pool", || async {
            provider
                .spawned()
                .iter()
                .any(|r| r.image.as_deref() == Some("img-x") && r.env.contains_key("OMOI_STANDBY_ID"))
        })
        .await;
        // The adopted idle standby is claimed by b's launch (it waited longest).
        let (_, api) = b.user("ada").await;
        let repo = omoi_tests::fixtures::sample_repo().display().to_string();
        let (status, project) = api
            .post("/projects", &json!({"name": "sample", "repo_url": repo}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{project}");
        let (status, spec) = api
            .post(
                "/specs/launch",
                &json!({"project_id": project["id"], "title": "Shout", "description": "Add --shout."}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{spec}");
        eventually(WAIT, "the launch to take a-0", || async {
            store.standby("a-0").await.unwrap().unwrap().state == StandbyState::Assigned
        })
        .await;
        assert_eq!(provider.placed(), vec![("fake-a-0".to_string(), repo)]);
        b.stop().await;
        store.close().await;
    })
    .await;
}

/// Polls standby `id`'s assignment on `base` (waiting up to 20 s); answers the status, the
/// body and when the answer came.
async fn poll(base: String, id: String, token: String) -> (StatusCode, Value, Instant) {
    let response = reqwest::Client::new()
        .get(format!(
            "{base}/api/v1/standby/{id}/assignment?wait_secs=20"
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let at = Instant::now();
    let status = response.status();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body, at)
}

#[tokio::test]
async fn an_assignment_stored_on_one_replica_wakes_the_poll_waiting_on_another_at_once() {
    let Some(db) = postgres_db().await else {
        return;
    };
    let provider = FakeProvider::new();
    // No re-check within the polls' wait: only the notification can deliver before it ends.
    let tune = |s: &mut omoi_coordinator::Settings| s.standby_recheck = Duration::from_secs(120);
    let _a = replica(&db, provider.clone(), "a", tune).await;
    let b = replica(&db, provider.clone(), "b", tune).await;
    // Replica A's store: the claim and the assignment are stored there.
    let a_store = open(&db).await;
    let mut latencies = Vec::new();
    for i in 0..20 {
        let id = format!("standby-{i:02}");
        let token = standby(&a_store, &id, "a", "", true).await;
        let waiting = tokio::spawn(poll(b.url.clone(), id.clone(), token));
        // The poll is waiting once it has marked the standby seen.
        let registered = a_store.standby(&id).await.unwrap().unwrap().seen_ms;
        eventually(WAIT, "the poll to wait", || async {
            a_store.standby(&id).await.unwrap().unwrap().seen_ms > registered
        })
        .await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let claimed = a_store
            .claim_standby("local", "", now_ms() - 60_000, Reach::Any)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(claimed.id, id);
        let env = [("SANDBOX_ID".to_string(), format!("sb-{i}"))].into();
        assert!(
            a_store
                .assign_standby(&id, &format!("sb-{i}"), &env)
                .await
                .unwrap()
        );
        let stored = Instant::now();
        let (status, body, at) = waiting.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["env"]["SANDBOX_ID"], json!(format!("sb-{i}")));
        latencies.push(at.duration_since(stored));
    }
    latencies.sort();
    // Long before the poll's own end (20 s) and its re-check (120 s): the notification woke it.
    assert!(
        latencies[latencies.len() - 1] < Duration::from_secs(10),
        "{latencies:?}"
    );
    eprintln!(
        "cross-replica assignment delivery (stored on A → poll on B answers): p50 {:.1} ms, \
         max {:.1} ms over {} deliveries",
        latencies[latencies.len() / 2].as_secs_f64() * 1e3,
        latencies[latencies.len() - 1].as_secs_f64() * 1e3,
        latencies.len()
    );
    a_store.close().await;
}
