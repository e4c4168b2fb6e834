//! Liveness and recovery with a fake provider: exits without a terminal event, silence, the
//! recovery limit, reconcile on start, and no spec left executing without a sandbox.

use std::collections::BTreeMap;
use std::time::Duration;

use omoi_coordinator::sandbox::{ListedSandbox, ProviderStatus, SandboxHandle};
use omoi_coordinator::store::ExecutionClaim;
use omoi_protocol::phase::Phase;
use pretty_assertions::assert_eq;
use reqwest::StatusCode;
use serde_json::json;

use super::common::{
    FakeProvider, Scenario, TestServer, each_backend, event, eventually, new_project,
    phase_completed,
};

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test]
async fn a_worker_that_exits_without_a_terminal_event_is_replaced_after_the_last_checkpoint() {
    each_backend(|db| async move {
        let Scenario {
            server,
            provider,
            api,
            spec: spec_id,
            sandbox,
            token,
            ..
        } = Scenario::launched(&db).await;
        let (status, _) = server
            .api(Some(&token))
            .ingest(
                &sandbox,
                &[event(
                    &sandbox,
                    &spec_id,
                    1,
                    "spec.phase_completed",
                    phase_completed("explore", 0.9, 1),
                )],
            )
            .await;
        assert_eq!(status, StatusCode::OK);

        provider.set_status(
            &format!("fake-{sandbox}"),
            ProviderStatus::Exited { code: Some(137) },
        );
        eventually(WAIT, "a replacement sandbox", || async {
            provider.spawned().len() == 2
        })
        .await;
        assert_eq!(provider.env(1)["SPEC_PHASE"], "requirements");
        let (_, detail) = api.get(&format!("/specs/{spec_id}")).await;
        assert_eq!(detail["status"], "executing");
        assert_eq!(detail["recoveries"], 1);
        assert_eq!(detail["sandboxes"][0]["status"], "lost");
        assert_eq!(
            detail["sandboxes"][0]["reason"],
            "the worker exited with code 137 without a terminal event"
        );
        assert_eq!(detail["sandboxes"][1]["status"], "starting");
        assert_eq!(detail["sandboxes"][1]["start_phase"], "requirements");
        assert!(provider.terminated().contains(&format!("fake-{sandbox}")));
        // The lost sandbox's token is revoked.
        assert_eq!(
            server.api(Some(&token)).ingest(&sandbox, &[]).await.0,
            StatusCode::UNAUTHORIZED
        );
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_silent_sandbox_is_lost_and_the_recovery_limit_fails_the_spec() {
    each_backend(|db| async move {
        let provider = FakeProvider::new();
        let server = TestServer::start(&db, provider.clone(), |s| {
            s.heartbeat_secs = 1;
            s.max_recoveries = 1;
        })
        .await;
        let (_, api) = server.user("ada").await;
        let (_, project) = api
            .post(
                "/projects",
                &json!({"name": "p", "repo_url": "https://git.example/r.git"}),
            )
            .await;
        let (_, spec) = api
            .post(
                "/specs/launch",
                &json!({"project_id": project["id"], "title": "t"}),
            )
            .await;
        let spec_id = spec["id"].as_str().unwrap().to_string();
        // Nobody sends anything: after 3 s the first sandbox is lost and replaced, after 3 s
        // more the replacement too, and the limit of one recovery fails the spec.
        eventually(WAIT, "the spec to fail", || async {
            api.get(&format!("/specs/{spec_id}")).await.1["status"] == "failed"
        })
        .await;
        let (_, detail) = api.get(&format!("/specs/{spec_id}")).await;
        assert_eq!(
            detail["error"],
            "the sandbox was lost 2 times; last: no event or heartbeat for 3 s"
        );
        assert_eq!(provider.spawned().len(), 2);
        let statuses: Vec<_> = detail["sandboxes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["status"].clone())
            .collect();
        assert_eq!(statuses, vec![json!("lost"), json!("lost")]);
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn reconcile_stops_sandboxes_nothing_waits_for() {
    each_backend(|db| async move {
        let provider = FakeProvider::new();
        let labels = |owner: &str| BTreeMap::from([("omoi.owner".to_string(), owner.to_string())]);
        provider.add_unknown(ListedSandbox {
            handle: SandboxHandle("leftover".into()),
            labels: labels("omoi"),
            status: ProviderStatus::Running,
        });
        provider.add_unknown(ListedSandbox {
            handle: SandboxHandle("someone-elses".into()),
            labels: labels("another"),
            status: ProviderStatus::Running,
        });
        let server = TestServer::start(&db, provider.clone(), |_| {}).await;
        eventually(WAIT, "the leftover to be stopped", || async {
            provider.terminated() == vec!["leftover".to_string()]
        })
        .await;
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn an_executing_spec_without_a_sandbox_gets_one() {
    each_backend(|db| async move {
        let provider = FakeProvider::new();
        let server = TestServer::start(&db, provider.clone(), |s| s.heartbeat_secs = 1).await;
        let store = &server.store;
        let user = store.create_user("ada").await.unwrap();
        let project = store
            .create_project(&user.id, new_project("p"))
            .await
            .unwrap();
        let spec = store
            .create_spec(&user.id, &project.id, "t", "")
            .await
            .unwrap();
        // As if the coordinator died between claiming the spec and spawning its sandbox.
        assert!(
            store
                .claim_execution(&spec.id, Phase::Explore, None, ExecutionClaim::Start)
                .await
                .unwrap()
        );
        eventually(WAIT, "a sandbox for the spec", || async {
            provider.spawned().len() == 1
        })
        .await;
        assert_eq!(provider.env(0)["SPEC_ID"], spec.id);
        let sandboxes = store.sandboxes_of_spec(&spec.id).await.unwrap();
        assert_eq!(sandboxes.len(), 1);
        assert!(sandboxes[0].status.is_live());
        server.stop().await;
    })
    .await;
}
