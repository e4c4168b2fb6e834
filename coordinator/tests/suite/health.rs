//! `/healthz`, `/metrics`, the OpenAPI document and unknown routes.

use pretty_assertions::assert_eq;
use reqwest::StatusCode;
use serde_json::json;

use super::common::{FakeProvider, TestServer, each_backend, error, event};

#[tokio::test]
async fn healthz_names_the_database_the_provider_and_the_replica() {
    each_backend(|db| async move {
        let server =
            TestServer::start(&db, FakeProvider::new(), |s| s.replica_id = "omoi-0".into()).await;
        let (status, body) = server.api(None).get("/healthz").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            json!({"status": "ok", "database": db.backend, "provider": "local", "replica": "omoi-0"})
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
        let server =
            TestServer::start(&db, provider.clone(), |s| s.replica_id = "omoi-1".into()).await;
        let (_, api) = server.user("ada").await;
        let (_, project) = api
            .post(
                "/projects",
                &json!({"name": "p", "repo_url": "https://git.example/tmp-repo.git"}),
            )
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
            "omoi_replica_info{replica=\"omoi-1\"} 1",
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
async fn a_database_that_cannot_be_opened_fails_at_once_with_its_cause() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("omoi.db");
    std::fs::write(&path, vec![0x5a_u8; 64 * 1024]).unwrap();
    let opened = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        omoi_coordinator::store::Store::open(&format!("sqlite://{}", path.display())),
    )
    .await
    .expect("opening a corrupt database must not wait for the pool's retries");
    let message = opened.map(|_| ()).unwrap_err().to_string();
    assert!(message.contains("file is not a database"), "{message}");
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
