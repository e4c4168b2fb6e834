//! Specs: create, list, show, launch, execute (resume after the last checkpoint), cancel, tasks.

use base64::Engine;
use omoi_protocol::context::PhaseContext;
use pretty_assertions::assert_eq;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::common::{
    Api, FakeProvider, TestServer, each_backend, error, event, phase_completed, phase_output,
    sandbox_of,
};

async fn project(api: &Api) -> String {
    let (status, project) = api
        .post(
            "/projects",
            &json!({"name": "p", "repo_url": "https://git.example/repo.git"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    project["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_spec_is_created_pending_listed_and_shown_to_its_owner_only() {
    each_backend(|db| async move {
        let server = TestServer::start(&db, FakeProvider::new(), |_| {}).await;
        let (_, ada) = server.user("ada").await;
        let (_, bob) = server.user("bob").await;
        let project_id = project(&ada).await;
        let (status, spec) = ada
            .post(
                "/specs",
                &json!({"project_id": project_id, "title": "Add --shout", "description": "loud"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(
            spec,
            json!({
                "id": spec["id"],
                "project_id": project_id,
                "title": "Add --shout",
                "description": "loud",
                "status": "pending",
                "current_phase": "explore",
                "recoveries": 0,
                "created_at": spec["created_at"],
                "updated_at": spec["updated_at"],
            })
        );
        let id = spec["id"].as_str().unwrap();
        assert_eq!(ada.get("/specs").await, (StatusCode::OK, json!([spec])));
        let mut detail = spec.clone();
        detail["phases"] = json!([]);
        detail["sandboxes"] = json!([]);
        detail["tasks"] = json!([]);
        assert_eq!(
            ada.get(&format!("/specs/{id}")).await,
            (StatusCode::OK, detail)
        );

        assert_eq!(bob.get("/specs").await, (StatusCode::OK, json!([])));
        let not_found = (
            StatusCode::NOT_FOUND,
            error("not_found", &format!("no spec {id}")),
        );
        assert_eq!(bob.get(&format!("/specs/{id}")).await, not_found);
        assert_eq!(
            bob.post(&format!("/specs/{id}/execute"), &json!({})).await,
            not_found
        );
        assert_eq!(
            bob.post(&format!("/specs/{id}/cancel"), &json!({})).await,
            not_found
        );
        assert_eq!(bob.get(&format!("/specs/{id}/events")).await, not_found);
        assert_eq!(bob.get(&format!("/specs/{id}/tasks")).await, not_found);
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn spec_creation_refuses_foreign_projects_and_bad_bodies() {
    each_backend(|db| async move {
        let server = TestServer::start(&db, FakeProvider::new(), |_| {}).await;
        let (_, ada) = server.user("ada").await;
        let (_, bob) = server.user("bob").await;
        let project_id = project(&ada).await;
        assert_eq!(
            bob.post("/specs", &json!({"project_id": project_id, "title": "t"}))
                .await,
            (
                StatusCode::NOT_FOUND,
                error("not_found", &format!("no project {project_id}"))
            )
        );
        assert_eq!(
            bob.post(
                "/specs/launch",
                &json!({"project_id": project_id, "title": "t"})
            )
            .await
            .0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            ada.post("/specs", &json!({"project_id": project_id, "title": " "}))
                .await,
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                error("invalid", "title must not be empty")
            )
        );
        assert_eq!(
            ada.post(
                "/specs",
                &json!({"project_id": project_id, "title": "x".repeat(201)})
            )
            .await,
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                error(
                    "invalid",
                    "title is longer than 200 characters; put the details in the description"
                )
            )
        );
        assert_eq!(
            ada.post(
                "/specs",
                &json!({"project_id": project_id, "title": "t", "stop_after": "design"})
            )
            .await,
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                error(
                    "invalid",
                    "stop_after belongs to execute or launch, not create"
                )
            )
        );
        let (status, body) = ada
            .post(
                "/specs",
                &json!({"project_id": project_id, "title": "t", "stop_after": "later"}),
            )
            .await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (StatusCode::UNPROCESSABLE_ENTITY, &json!("invalid"))
        );
        assert_eq!(ada.post_raw("/specs", "[").await.0, StatusCode::BAD_REQUEST);
        server.stop().await;
    })
    .await;
}

pub(super) fn decode_context(env: &std::collections::BTreeMap<String, String>) -> PhaseContext {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&env["PHASE_CONTEXT_B64"])
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn launch_spawns_a_sandbox_at_explore_and_execute_resumes_after_the_last_checkpoint() {
    each_backend(|db| async move {
        let provider = FakeProvider::new();
        let server = TestServer::start(&db, provider.clone(), |s| {
            s.worker_env.insert("OMOI_LLM".into(), "scripted".into());
        })
        .await;
        let (_, ada) = server.user("ada").await;
        let project_id = project(&ada).await;
        let (status, launched) = ada
            .post(
                "/specs/launch",
                &json!({"project_id": project_id, "title": "Add --shout", "description": "loud"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(launched["status"], "executing");
        let id = launched["id"].as_str().unwrap().to_string();
        let (sandbox, token) = sandbox_of(&provider, 0);
        assert_eq!(launched["sandboxes"][0]["id"], json!(sandbox));
        assert_eq!(launched["sandboxes"][0]["status"], "starting");
        assert_eq!(
            launched["sandboxes"][0]["handle"],
            json!(format!("fake-{sandbox}"))
        );

        let spawned = &provider.spawned()[0];
        assert_eq!(
            spawned.repo.as_deref(),
            Some("https://git.example/repo.git")
        );
        assert_eq!(spawned.labels["omoi.spec"], id);
        let env = provider.env(0);
        assert_eq!(env["SPEC_ID"], id);
        assert_eq!(env["SPEC_PHASE"], "explore");
        assert_eq!(env["OMOI_LLM"], "scripted");
        assert_eq!(env["OMOIOS_API_URL"], server.url);
        assert_eq!(env["OMOIOS_PROJECT_ID"], project_id);
        assert_eq!(
            decode_context(&env),
            PhaseContext {
                title: "Add --shout".into(),
                description: "loud".into(),
                ..PhaseContext::default()
            }
        );
        assert_eq!(
            ada.post(&format!("/specs/{id}/execute"), &json!({})).await,
            (
                StatusCode::CONFLICT,
                error("conflict", &format!("spec {id} is already executing"))
            )
        );

        // EXPLORE passes, then the user cancels during REQUIREMENTS.
        let sandbox_api = server.api(Some(&token));
        let (status, ack) = sandbox_api
            .ingest(
                &sandbox,
                &[
                    event(
                        &sandbox,
                        &id,
                        1,
                        "agent.started",
                        json!({"version": "0.1.0", "mode": "spec", "start_phase": "explore"}),
                    ),
                    event(
                        &sandbox,
                        &id,
                        2,
                        "spec.phase_started",
                        json!({"phase": "explore", "attempt": 1}),
                    ),
                    event(
                        &sandbox,
                        &id,
                        3,
                        "spec.phase_completed",
                        phase_completed("explore", 0.9, 1),
                    ),
                    event(
                        &sandbox,
                        &id,
                        4,
                        "spec.phase_started",
                        json!({"phase": "requirements", "attempt": 1}),
                    ),
                ],
            )
            .await;
        assert_eq!((status, ack), (StatusCode::OK, json!({"acked_seq": 4})));
        let (status, cancelled) = ada.post(&format!("/specs/{id}/cancel"), &json!({})).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(cancelled["status"], "cancelled");
        assert_eq!(cancelled["error"], "cancelled by the user");
        assert_eq!(cancelled["sandboxes"][0]["status"], "terminated");
        assert_eq!(provider.terminated(), vec![format!("fake-{sandbox}")]);
        assert_eq!(
            ada.post(&format!("/specs/{id}/cancel"), &json!({})).await,
            (
                StatusCode::CONFLICT,
                error("conflict", &format!("spec {id} already ended (cancelled)"))
            )
        );

        // Resume: a new sandbox starts at REQUIREMENTS with EXPLORE's checkpoint.
        let (status, resumed) = ada.post_raw(&format!("/specs/{id}/execute"), "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(resumed["status"], "executing");
        assert_eq!(resumed["current_phase"], "requirements");
        assert_eq!(resumed["error"], Value::Null);
        let env = provider.env(1);
        assert_eq!(env["SPEC_PHASE"], "requirements");
        let context = decode_context(&env);
        let explore: omoi_protocol::artifact::PhaseOutput =
            serde_json::from_value(phase_output("explore")).unwrap();
        let mut expected = PhaseContext {
            title: "Add --shout".into(),
            description: "loud".into(),
            ..PhaseContext::default()
        };
        expected.set(explore);
        assert_eq!(context, expected);
        assert_eq!(
            ada.post(
                &format!("/specs/{id}/execute"),
                &json!({"stop_after": "soon"})
            )
            .await
            .0,
            StatusCode::UNPROCESSABLE_ENTITY
        );
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_spawn_failure_fails_the_spec_and_answers_503_naming_it_without_the_providers_words() {
    each_backend(|db| async move {
        let provider = FakeProvider::new();
        provider.fail_spawns();
        let server = TestServer::start(&db, provider.clone(), |_| {}).await;
        let (_, ada) = server.user("ada").await;
        let project_id = project(&ada).await;
        let (status, body) = ada
            .post(
                "/specs/launch",
                &json!({"project_id": project_id, "title": "t"}),
            )
            .await;
        let (_, specs) = ada.get("/specs").await;
        assert_eq!(
            (status, body),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                error(
                    "sandbox_unavailable",
                    &format!(
                        "no sandbox could be started for the spec {}; it failed, and it shows why",
                        specs[0]["id"].as_str().unwrap()
                    )
                )
            )
        );
        assert_eq!(specs[0]["status"], "failed");
        let reason = specs[0]["error"].as_str().unwrap();
        assert!(
            reason.starts_with("could not start a sandbox: "),
            "{reason}"
        );
        assert!(reason.ends_with("no capacity"), "{reason}");
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn tasks_of_a_spec_are_listed_and_unknown_tasks_are_404() {
    each_backend(|db| async move {
        let server = TestServer::start(&db, FakeProvider::new(), |_| {}).await;
        let (_, ada) = server.user("ada").await;
        let project_id = project(&ada).await;
        let (_, spec) = ada
            .post("/specs", &json!({"project_id": project_id, "title": "t"}))
            .await;
        let id = spec["id"].as_str().unwrap();
        assert_eq!(
            ada.get(&format!("/specs/{id}/tasks")).await,
            (StatusCode::OK, json!([]))
        );
        assert_eq!(
            ada.get("/tasks/nope").await,
            (StatusCode::NOT_FOUND, error("not_found", "no task nope"))
        );
        server.stop().await;
    })
    .await;
}
