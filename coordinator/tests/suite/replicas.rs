//! Several coordinators on one PostgreSQL database: a live stream on one replica carries what
//! another ingested; every decision (replace a lost sandbox, recover a spec, retry a task, open
//! the pull request) is taken once whatever the number of replicas; migrations run once when
//! replicas start together, and a newer replica's migrations do not stop an older one.
//! PostgreSQL only: these tests do nothing without `OMOI_TEST_POSTGRES_URL`.

use std::sync::Arc;
use std::time::Duration;

use omoi_coordinator::Settings;
use omoi_coordinator::sandbox::ProviderStatus;
use omoi_coordinator::store::{ExecutionClaim, Store};
use omoi_protocol::event::RawEvent;
use omoi_protocol::phase::Phase;
use omoi_tests::fake_github::FakeGitHub;
use pretty_assertions::assert_eq;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::{Connection, Row};

use super::common::replicas::{postgres_db, replica};
use super::common::sse::{connect, next};
use super::common::tasks::{
    TaskSandbox, failed, landed, quick, send, states, task_sandboxes, task_states, wait_for_spec,
    wait_for_task_sandboxes, written, written_batch,
};
use super::common::{
    Api, FakeProvider, TestDb, TestServer, event, eventually, phase_completed, sandbox_of,
};
use super::pull_requests::{push_notes, seeded};
use super::stream::message;

const WAIT: Duration = Duration::from_secs(20);
/// Long enough for every replica's monitor and scheduler to run many passes.
const SETTLE: Duration = Duration::from_millis(1500);

/// Replicas `a`, `b` and `c` over `db`, sharing `provider` (one Docker Engine, one cluster).
async fn three(
    db: &TestDb,
    provider: &Arc<FakeProvider>,
    tune: impl Fn(&mut Settings) + Copy,
) -> [TestServer; 3] {
    [
        replica(db, provider.clone(), "a", tune).await,
        replica(db, provider.clone(), "b", tune).await,
        replica(db, provider.clone(), "c", tune).await,
    ]
}

fn data(event: &RawEvent) -> Value {
    serde_json::to_value(event).unwrap()
}

/// `ada`'s project on `server`; answers her client, her id and the project id.
async fn project(server: &TestServer) -> (Api, String, String) {
    let (user, api) = server.user("ada").await;
    let (status, project) = api
        .post(
            "/projects",
            &json!({"name": "p", "repo_url": "https://git.example/r.git"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{project}");
    (api, user.id, project["id"].as_str().unwrap().to_string())
}

/// Launches a spec through `api`; answers its id.
async fn launch(api: &Api, project_id: &str) -> String {
    let (status, spec) = api
        .post(
            "/specs/launch",
            &json!({"project_id": project_id, "title": "t"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{spec}");
    spec["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_stream_on_one_replica_carries_what_another_ingested_and_resumes_there() {
    let Some(db) = postgres_db().await else {
        return;
    };
    // Each replica has a provider of its own (local processes): B's does not know A's sandbox,
    // and must not judge it lost for that.
    let provider_a = FakeProvider::new();
    let a = replica(&db, provider_a.clone(), "a", |_| {}).await;
    let b = replica(&db, FakeProvider::new(), "b", |_| {}).await;
    let (api_a, _, project_id) = project(&a).await;
    let spec = launch(&api_a, &project_id).await;
    let (sandbox, token) = sandbox_of(&provider_a, 0);
    let (to_a, to_b) = (a.api(Some(&token)), b.api(Some(&token)));
    let api_b = b.api(api_a.token.as_deref());

    let mut stream = connect(&api_b, &spec, None).await;
    let (kind, _, status) = next(&mut stream).await;
    assert_eq!(
        (kind.as_str(), &status["status"]),
        ("status", &json!("executing"))
    );
    // Posted to A, B, A: B's stream carries them live, in seq order.
    let events: Vec<RawEvent> = (1..=4).map(|s| message(&sandbox, &spec, s)).collect();
    assert_eq!(to_a.ingest(&sandbox, &events[..2]).await.0, StatusCode::OK);
    let mut got = vec![next(&mut stream).await, next(&mut stream).await];
    assert_eq!(to_b.ingest(&sandbox, &events[2..3]).await.0, StatusCode::OK);
    got.push(next(&mut stream).await);
    assert_eq!(to_a.ingest(&sandbox, &events[3..]).await.0, StatusCode::OK);
    got.push(next(&mut stream).await);
    assert_eq!(
        got.iter().map(|m| m.2.clone()).collect::<Vec<_>>(),
        events.iter().map(data).collect::<Vec<_>>()
    );
    let cursors: Vec<i64> = got.iter().map(|m| m.1.parse().unwrap()).collect();
    assert!(cursors.windows(2).all(|w| w[0] < w[1]), "{cursors:?}");
    drop(stream);

    // Missed while away, posted to A; the stream resumes on B after the last id it got.
    let more: Vec<RawEvent> = (5..=6).map(|s| message(&sandbox, &spec, s)).collect();
    assert_eq!(to_a.ingest(&sandbox, &more).await.0, StatusCode::OK);
    let mut stream = connect(&api_b, &spec, Some(&got[3].1)).await;
    assert_eq!(next(&mut stream).await.0, "status");
    let resumed = vec![next(&mut stream).await.2, next(&mut stream).await.2];
    assert_eq!(resumed, more.iter().map(data).collect::<Vec<_>>());

    // A status change decided on A reaches B's stream.
    assert_eq!(
        api_a
            .post(&format!("/specs/{spec}/cancel"), &json!({}))
            .await
            .0,
        StatusCode::OK
    );
    let (kind, _, status) = next(&mut stream).await;
    assert_eq!(
        (kind.as_str(), &status["status"]),
        ("status", &json!("cancelled"))
    );
    // B never judged A's sandbox: the cancel ended it, not a loss.
    let (_, detail) = api_b.get(&format!("/specs/{spec}")).await;
    assert_eq!(detail["sandboxes"][0]["status"], "terminated");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn three_replicas_replace_a_lost_sandbox_once() {
    let Some(db) = postgres_db().await else {
        return;
    };
    // One provider seen by all (one Docker Engine, one cluster).
    let provider = FakeProvider::new();
    let [a, b, c] = three(&db, &provider, |_| {}).await;
    let (api, _, project_id) = project(&a).await;
    let spec = launch(&api, &project_id).await;
    let (sandbox, token) = sandbox_of(&provider, 0);
    let done = event(
        &sandbox,
        &spec,
        1,
        "spec.phase_completed",
        phase_completed("explore", 0.9, 1),
    );
    assert_eq!(
        b.api(Some(&token)).ingest(&sandbox, &[done]).await.0,
        StatusCode::OK
    );

    provider.set_status(
        &format!("fake-{sandbox}"),
        ProviderStatus::Exited { code: Some(137) },
    );
    eventually(WAIT, "a replacement sandbox", || async {
        provider.spawned().len() == 2
    })
    .await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(provider.spawned().len(), 2);
    assert_eq!(provider.env(1)["SPEC_PHASE"], "requirements");
    assert_eq!(provider.terminated(), vec![format!("fake-{sandbox}")]);
    let (_, detail) = api.get(&format!("/specs/{spec}")).await;
    assert_eq!(
        (&detail["status"], &detail["recoveries"]),
        (&json!("executing"), &json!(1))
    );
    for server in [a, b, c] {
        server.stop().await;
    }
}

#[tokio::test]
async fn three_replicas_give_an_executing_spec_without_a_sandbox_one() {
    let Some(db) = postgres_db().await else {
        return;
    };
    let provider = FakeProvider::new();
    let fast = |s: &mut Settings| s.heartbeat_secs = 1;
    let [a, b, c] = three(&db, &provider, fast).await;
    let (api, user, project_id) = project(&a).await;
    let spec = a
        .store
        .create_spec(&user, &project_id, "t", "")
        .await
        .unwrap();
    // As if a replica died between claiming the spec and spawning its sandbox: after the
    // silence, every replica sees it, one recovers it.
    assert!(
        a.store
            .claim_execution(&spec.id, Phase::Explore, None, ExecutionClaim::Start)
            .await
            .unwrap()
    );
    eventually(WAIT, "a sandbox for the spec", || async {
        provider.spawned().len() == 1
    })
    .await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(provider.spawned().len(), 1);
    let (_, detail) = api.get(&format!("/specs/{}", spec.id)).await;
    assert_eq!(
        (&detail["status"], &detail["recoveries"]),
        (&json!("executing"), &json!(1))
    );
    for server in [a, b, c] {
        server.stop().await;
    }
}

#[tokio::test]
async fn three_replicas_retry_a_failed_task_once_and_open_one_pull_request() {
    let Some(db) = postgres_db().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let bare = seeded(dir.path(), None);
    const TOKEN: &str = "ghs_0123456789abcdef";
    let fake = FakeGitHub::start(TOKEN).await;
    fake.add_repo("acme", "greet", &bare);
    let project = json!({
        "name": "greet",
        "repo_url": format!("file://{}", bare.display()),
        "github_api_url": fake.url(),
        "git_token": TOKEN,
    });
    // A writes the spec (its bridge runs in that ingest); B and C watch the same tasks.
    let w = written(&db, project, None, |s| s.replica_id = "a".into()).await;
    let b = replica(&db, w.provider.clone(), "b", quick).await;
    let c = replica(&db, w.provider.clone(), "c", quick).await;
    push_notes(dir.path(), &bare, &format!("omoi/{}", w.spec_id));

    // TSK-001 and TSK-002 need nothing, so both start at once (in either order). The first
    // attempt of TSK-001 fails (posted to B); it is retried once.
    let of = |started: &[TaskSandbox], task: &str, nth: usize| {
        started
            .iter()
            .filter(|s| s.task == task)
            .nth(nth)
            .unwrap_or_else(|| panic!("attempt {nth} of {task} among {started:?}"))
            .clone()
    };
    let started = wait_for_task_sandboxes(&w.provider, 2).await;
    let first = of(&started, "TSK-001", 0);
    send(&b, &first, &failed(&first, "tests failed")).await;
    let second = of(&started, "TSK-002", 0);
    send(&w.server, &second, &landed(&second, "2222222222222222")).await;
    let retry = of(&wait_for_task_sandboxes(&w.provider, 3).await, "TSK-001", 1);
    send(&b, &retry, &landed(&retry, "1111111111111111")).await;
    let third = of(&wait_for_task_sandboxes(&w.provider, 4).await, "TSK-003", 0);
    send(&c, &third, &landed(&third, "3333333333333333")).await;
    let fourth = of(&wait_for_task_sandboxes(&w.provider, 5).await, "TSK-004", 0);
    send(&c, &fourth, &landed(&fourth, "4444444444444444")).await;

    let done = wait_for_spec(&w.api, &w.spec_id, "completed").await;
    tokio::time::sleep(SETTLE).await;
    let mut per_task: Vec<String> = task_sandboxes(&w.provider)
        .into_iter()
        .map(|s| s.task)
        .collect();
    per_task.sort();
    assert_eq!(
        per_task,
        ["TSK-001", "TSK-001", "TSK-002", "TSK-003", "TSK-004"]
    );
    assert_eq!(
        task_states(&w.api, &w.spec_id).await,
        states(&[
            ("TSK-001", "completed", 2),
            ("TSK-002", "completed", 1),
            ("TSK-003", "completed", 1),
            ("TSK-004", "completed", 1),
        ])
    );
    assert_eq!(
        done["pull_request"],
        json!({"url": fake.html_url("acme", "greet", 1), "number": 1})
    );
    let posts = fake
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .count();
    assert_eq!((fake.pulls().len(), posts), (1, 1));
    for server in [w.server, b, c] {
        server.stop().await;
    }
}

#[tokio::test]
async fn a_final_spec_posted_to_three_replicas_at_once_is_bridged_once() {
    let Some(db) = postgres_db().await else {
        return;
    };
    let provider = FakeProvider::new();
    // No task starts: the test counts what the bridge made.
    let idle = |s: &mut Settings| s.max_running_tasks = 0;
    let [a, b, c] = three(&db, &provider, idle).await;
    let (api, _, project_id) = project(&a).await;
    let spec = launch(&api, &project_id).await;
    let (sandbox, token) = sandbox_of(&provider, 0);
    let batch = written_batch(&sandbox, &spec, None);
    // A worker's retry of a batch whose answer it lost, through a balancer: three at once.
    let (to_a, to_b, to_c) = (
        a.api(Some(&token)),
        b.api(Some(&token)),
        c.api(Some(&token)),
    );
    let acks = tokio::join!(
        to_a.ingest(&sandbox, &batch),
        to_b.ingest(&sandbox, &batch),
        to_c.ingest(&sandbox, &batch)
    );
    let ok = (StatusCode::OK, json!({"acked_seq": 2}));
    assert_eq!(acks, (ok.clone(), ok.clone(), ok));
    assert_eq!(
        task_states(&api, &spec).await,
        states(&[
            ("TSK-001", "ready", 0),
            ("TSK-002", "ready", 0),
            ("TSK-003", "pending", 0),
            ("TSK-004", "pending", 0),
        ])
    );
    let (_, page) = api.get(&format!("/specs/{spec}/events")).await;
    assert_eq!(page["events"].as_array().unwrap().len(), 2);
    for server in [a, b, c] {
        server.stop().await;
    }
}

#[tokio::test]
async fn replicas_starting_together_migrate_once_and_tolerate_a_newer_schema() {
    let Some(db) = postgres_db().await else {
        return;
    };
    let (a, b, c) = tokio::join!(
        Store::open(&db.url),
        Store::open(&db.url),
        Store::open(&db.url)
    );
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    let versions = || async {
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        let rows = sqlx::query("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut conn)
            .await
            .unwrap();
        rows.iter()
            .map(|r| r.get::<i64, _>("version"))
            .collect::<Vec<_>>()
    };
    assert_eq!(versions().await, vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    for store in [a, b, c] {
        store.close().await;
    }

    // A later release applied a migration this one does not know; this one still starts (rolling upgrade).
    {
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::query(
            "INSERT INTO _sqlx_migrations
                 (version, description, success, checksum, execution_time)
             VALUES (99, 'from a later release', TRUE, '\\x00'::bytea, 0)",
        )
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let store = Store::open(&db.url).await.unwrap();
    store.ping().await.unwrap();
    store.close().await;
    assert_eq!(versions().await, vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 99]);
}

#[tokio::test]
async fn healthz_names_the_replica_and_says_when_the_database_is_gone() {
    let Some(db) = postgres_db().await else {
        return;
    };
    let server = replica(&db, FakeProvider::new(), "omoi-0", |_| {}).await;
    let health = || async { server.api(None).get("/healthz").await };
    assert_eq!(
        health().await,
        (
            StatusCode::OK,
            json!({"status": "ok", "database": "postgres", "provider": "local", "replica": "omoi-0"})
        )
    );
    let text = reqwest::get(format!("{}/metrics", server.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.lines()
            .any(|l| l == "omoi_replica_info{replica=\"omoi-0\"} 1"),
        "{text}"
    );

    // The database disappears under the replica.
    let admin = std::env::var("OMOI_TEST_POSTGRES_URL").unwrap();
    let name = db.url.rsplit('/').next().unwrap().to_string();
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    sqlx::query(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        health().await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "unavailable", "database": "postgres", "provider": "local", "replica": "omoi-0"})
        )
    );
    drop(server);
}
