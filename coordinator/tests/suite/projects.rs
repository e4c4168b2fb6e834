//! `POST /projects`, `GET /projects`.

use pretty_assertions::assert_eq;
use reqwest::StatusCode;
use serde_json::json;

use super::common::{FakeProvider, TestServer, each_backend, error};

#[tokio::test]
async fn a_project_is_created_and_listed_for_its_owner_only() {
    each_backend(|db| async move {
        let server = TestServer::start(&db, FakeProvider::new(), |_| {}).await;
        let (_, ada) = server.user("ada").await;
        let (_, bob) = server.user("bob").await;
        let (status, created) = ada
            .post(
                "/projects",
                &json!({
                    "name": " sample ",
                    "repo_url": "/srv/repo",
                    "validation_command": "sh tests/run.sh",
                    "worker_env": {"OMOI_LLM": "scripted"}
                }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(
            created,
            json!({
                "id": created["id"],
                "name": "sample",
                "repo_url": "/srv/repo",
                "base_branch": "main",
                "validation_command": "sh tests/run.sh",
                "provider": "local",
                "worker_env": {"OMOI_LLM": "scripted"},
                "has_git_token": false,
                "created_at": created["created_at"],
            })
        );
        assert_eq!(
            ada.get("/projects").await,
            (StatusCode::OK, json!([created]))
        );
        assert_eq!(bob.get("/projects").await, (StatusCode::OK, json!([])));
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn project_creation_refuses_bad_input_with_the_reason() {
    each_backend(|db| async move {
        let server = TestServer::start(&db, FakeProvider::new(), |_| {}).await;
        let (_, api) = server.user("ada").await;
        let cases = [
            (
                json!({"name": "", "repo_url": "/r"}),
                error("invalid", "name must not be empty"),
            ),
            (
                json!({"name": "p", "repo_url": "  "}),
                error("invalid", "repo_url must not be empty"),
            ),
            (
                json!({"name": "p", "repo_url": "/r", "provider": "docker"}),
                error(
                    "invalid",
                    "provider \"docker\" is not available here; this coordinator runs \"local\"",
                ),
            ),
            (
                json!({"name": "p", "repo_url": "/r", "worker_env": {"SANDBOX_TOKEN": "x"}}),
                error(
                    "invalid",
                    "worker_env may not set SANDBOX_TOKEN: the coordinator sets it",
                ),
            ),
            (
                json!({"name": "p", "repo_url": "/r", "worker_env": {"OMOI_GIT_TOKEN": "x"}}),
                error(
                    "invalid",
                    "worker_env may not set OMOI_GIT_TOKEN: the coordinator sets it",
                ),
            ),
            (
                json!({"name": "p", "repo_url": "/r", "github_api_url": "api.github.com"}),
                error(
                    "invalid",
                    "github_api_url \"api.github.com\" must start with https:// or http://",
                ),
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(
                api.post("/projects", &body).await,
                (StatusCode::UNPROCESSABLE_ENTITY, expected),
                "{body}"
            );
        }
        let (status, body) = api.post("/projects", &json!({"name": "p"})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["error"]["code"], "invalid");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("repo_url"),
            "{body}"
        );
        let (status, body) = api.post_raw("/projects", "{not json").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["code"], "bad_request");
        server.stop().await;
    })
    .await;
}
