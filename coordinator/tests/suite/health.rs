//! `/healthz`, `/metrics`, the OpenAPI document and unknown routes.

use pretty_assertions::assert_eq;
use reqwest::StatusCode;
use serde_json::json;

use super::common::{FakeProvider, TestServer, each_backend, error, event};

#[tokio::test]
async fn healthz_names_the_database_and_the_provider() {
    each_backend(|db| async move {
        let server = TestServer::start(&db, FakeProvider::new(), |_| {}).await;
        let (status, body) = server.api(None).get("/healthz").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            json!({"status": "ok", "database": db.backend, "provider": "local"})
        );
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn unknown_routes_answer_a_json_404() {
    each_backend(|db| async move {
        let server = TestServer::start(&db, FakeProvider::new(), |_| {}).await;
        let (status, body) = server.api(None).get("/api/v1/nothing").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body, error("not_found", "no such route"));
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn metrics_count_specs_sandboxes_and_ingested_events() {
    each_backend(|db| async move {
        let provider = FakeProvider::new();
        let server = TestServer::start(&db, provider.clone(), |_| {}).await;
        let (_, api) = server.user("ada").await;
        let (_, project) = api
            .post("/projects", &json!({"name": "p", "repo_url": "/tmp/repo"}))
            .await;
        let (_, spec) = api
            .post(
                "/specs/launch",
                &json!({"project_id": project["id"], "title": "t"}),
            )
            .await;
        let spec_id = spec["id"].as_str().unwrap();
        let (sandbox, token) = super::common::sandbox_of(&provider, 0);
        let (status, _) = server
            .api(Some(&token))
            .ingest(
                &sandbox,
                &[
                    event(&sandbox, spec_id, 1, "agent.message", json!({"text": "a"})),
                    event(&sandbox, spec_id, 2, "agent.message", json!({"text": "b"})),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::OK);

        let response = reqwest::get(format!("{}/metrics", server.url))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()["content-type"],
            "text/plain; version=0.0.4"
        );
        let text = response.text().await.unwrap();
        for line in [
            "omoi_specs{status=\"executing\"} 1",
            "omoi_specs{status=\"completed\"} 0",
            "omoi_sandboxes_alive 1",
            "omoi_sandboxes_spawned_total 1",
            "omoi_events_ingested_total 2",
            "omoi_ingest_seconds_bucket{le=\"+Inf\"} 1",
            "omoi_ingest_seconds_count 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in:\n{text}"
            );
        }
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn the_openapi_document_is_served_to_anyone_and_is_the_committed_one() {
    each_backend(|db| async move {
        let server = TestServer::start(&db, FakeProvider::new(), |_| {}).await;
        let (status, body) = server.api(None).get("/api/v1/openapi.json").await;
        assert_eq!(status, StatusCode::OK);
        let committed: serde_json::Value =
            serde_json::from_str(include_str!("../../openapi.json")).unwrap();
        assert_eq!(body, committed);
        assert_eq!(body["openapi"], "3.1.0");
        server.stop().await;
    })
    .await;
}
