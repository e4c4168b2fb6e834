//! Injected messages and the phase context route.

use pretty_assertions::assert_eq;
use reqwest::StatusCode;
use serde_json::json;

use super::common::{FakeProvider, TestServer, each_backend, error, sandbox_of};

#[tokio::test]
async fn a_user_injects_messages_and_the_sandbox_polls_them() {
    each_backend(|db| async move {
        let provider = FakeProvider::new();
        let server = TestServer::start(&db, provider.clone(), |_| {}).await;
        let (_, ada) = server.user("ada").await;
        let (_, bob) = server.user("bob").await;
        let (_, project) = ada
            .post(
                "/projects",
                &json!({"name": "p", "repo_url": "https://git.example/r.git"}),
            )
            .await;
        let (_, spec) = ada
            .post(
                "/specs/launch",
                &json!({"project_id": project["id"], "title": "t"}),
            )
            .await;
        let (sandbox, token) = sandbox_of(&provider, 0);
        let sb = server.api(Some(&token));
        let path = format!("/sandboxes/{sandbox}/messages");

        assert_eq!(sb.get(&path).await, (StatusCode::OK, json!([])));
        let (status, first) = ada.post(&path, &json!({"text": " use printf "})).await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(first["text"], "use printf");
        let (_, second) = ada.post(&path, &json!({"text": "and test it"})).await;
        assert_eq!(
            sb.get(&path).await,
            (StatusCode::OK, json!([first, second]))
        );
        let after = first["id"].as_u64().unwrap();
        assert_eq!(
            sb.get(&format!("{path}?after={after}")).await,
            (StatusCode::OK, json!([second]))
        );
        assert_eq!(
            sb.get(&format!("{path}?after=x")).await.0,
            StatusCode::BAD_REQUEST
        );

        let not_found = (
            StatusCode::NOT_FOUND,
            error("not_found", &format!("no sandbox {sandbox}")),
        );
        assert_eq!(bob.post(&path, &json!({"text": "hi"})).await, not_found);
        assert_eq!(
            ada.post("/sandboxes/nope/messages", &json!({"text": "hi"}))
                .await,
            (StatusCode::NOT_FOUND, error("not_found", "no sandbox nope"))
        );
        assert_eq!(
            ada.post(&path, &json!({"text": "  "})).await,
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                error("invalid", "text must not be empty")
            )
        );
        assert_eq!(ada.get(&path).await.0, StatusCode::FORBIDDEN);

        let id = spec["id"].as_str().unwrap();
        ada.post(&format!("/specs/{id}/cancel"), &json!({})).await;
        assert_eq!(
            ada.post(&path, &json!({"text": "too late"})).await,
            (
                StatusCode::CONFLICT,
                error(
                    "conflict",
                    &format!(
                        "sandbox {sandbox} is terminated; messages reach running sandboxes only"
                    )
                )
            )
        );
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn the_sandbox_reads_its_phase_context() {
    each_backend(|db| async move {
        let provider = FakeProvider::new();
        let server = TestServer::start(&db, provider.clone(), |_| {}).await;
        let (_, ada) = server.user("ada").await;
        let (_, project) = ada
            .post(
                "/projects",
                &json!({"name": "p", "repo_url": "https://git.example/r.git"}),
            )
            .await;
        ada.post(
            "/specs/launch",
            &json!({"project_id": project["id"], "title": "Add --shout", "description": "loud"}),
        )
        .await;
        let (sandbox, token) = sandbox_of(&provider, 0);
        assert_eq!(
            server
                .api(Some(&token))
                .get(&format!("/sandboxes/{sandbox}/context"))
                .await,
            (
                StatusCode::OK,
                json!({"title": "Add --shout", "description": "loud"})
            )
        );
        assert_eq!(
            ada.get(&format!("/sandboxes/{sandbox}/context")).await.0,
            StatusCode::FORBIDDEN
        );
        server.stop().await;
    })
    .await;
}
