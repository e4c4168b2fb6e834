//! Bearer tokens: missing, unknown, the wrong kind, another sandbox's, revoked.

use pretty_assertions::assert_eq;
use reqwest::StatusCode;
use serde_json::json;

use super::common::{FakeProvider, TestServer, each_backend, error, event, sandbox_of};

#[tokio::test]
async fn user_routes_need_a_user_token() {
    each_backend(|db| async move {
        let provider = FakeProvider::new();
        let server = TestServer::start(&db, provider.clone(), |_| {}).await;
        assert_eq!(
            server.api(None).get("/projects").await,
            (
                StatusCode::UNAUTHORIZED,
                error("unauthorized", "missing Authorization: Bearer <token>")
            )
        );
        assert_eq!(
            server.api(Some("omoi_u_nope")).get("/projects").await,
            (
                StatusCode::UNAUTHORIZED,
                error("unauthorized", "unknown or expired token")
            )
        );
        let basic = server
            .api(None)
            .raw(reqwest::Method::GET, "/projects")
            .header("authorization", "Basic YWRhOnB3")
            .send()
            .await
            .unwrap();
        assert_eq!(basic.status(), StatusCode::UNAUTHORIZED);

        let (_, api) = server.user("ada").await;
        let (_, project) = api
            .post(
                "/projects",
                &json!({"name": "p", "repo_url": "https://git.example/r.git"}),
            )
            .await;
        api.post(
            "/specs/launch",
            &json!({"project_id": project["id"], "title": "t"}),
        )
        .await;
        let (_, sandbox_token) = sandbox_of(&provider, 0);
        assert_eq!(
            server.api(Some(&sandbox_token)).get("/projects").await,
            (
                StatusCode::FORBIDDEN,
                error("forbidden", "a sandbox token cannot call user routes")
            )
        );
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_sandbox_token_works_for_its_own_sandbox_only() {
    each_backend(|db| async move {
        let provider = FakeProvider::new();
        let server = TestServer::start(&db, provider.clone(), |_| {}).await;
        let (_, api) = server.user("ada").await;
        let (_, project) = api
            .post(
                "/projects",
                &json!({"name": "p", "repo_url": "https://git.example/r.git"}),
            )
            .await;
        let (_, first) = api
            .post(
                "/specs/launch",
                &json!({"project_id": project["id"], "title": "one"}),
            )
            .await;
        let (_, second) = api
            .post(
                "/specs/launch",
                &json!({"project_id": project["id"], "title": "two"}),
            )
            .await;
        let (sandbox_a, token_a) = sandbox_of(&provider, 0);
        let (sandbox_b, _) = sandbox_of(&provider, 1);
        let spec_b = second["id"].as_str().unwrap();

        let batch = [event(
            &sandbox_b,
            spec_b,
            1,
            "agent.message",
            json!({"text": "x"}),
        )];
        let sandbox_api = server.api(Some(&token_a));
        assert_eq!(
            sandbox_api.ingest(&sandbox_b, &batch).await,
            (
                StatusCode::FORBIDDEN,
                error(
                    "forbidden",
                    &format!("this token belongs to another sandbox, not {sandbox_b}")
                )
            )
        );
        assert_eq!(
            sandbox_api
                .get(&format!("/sandboxes/{sandbox_b}/context"))
                .await
                .0,
            StatusCode::FORBIDDEN
        );
        // A user token is not a sandbox token.
        assert_eq!(
            api.ingest(&sandbox_a, &[]).await,
            (
                StatusCode::FORBIDDEN,
                error("forbidden", "this route takes the sandbox's own token")
            )
        );
        assert_eq!(
            sandbox_api.ingest(&sandbox_a, &[]).await,
            (StatusCode::OK, json!({"acked_seq": 0}))
        );

        // Cancelling the spec terminates its sandbox; the token outlives it briefly so the
        // events the worker drains on SIGTERM still land, without changing the spec.
        let spec_a = first["id"].as_str().unwrap();
        assert_eq!(
            api.post(&format!("/specs/{spec_a}/cancel"), &json!({}))
                .await
                .0,
            StatusCode::OK
        );
        let drained = [event(
            &sandbox_a,
            spec_a,
            1,
            "agent.failed",
            json!({"kind": "cancelled", "reason": "SIGTERM"}),
        )];
        assert_eq!(
            sandbox_api.ingest(&sandbox_a, &drained).await,
            (StatusCode::OK, json!({"acked_seq": 1}))
        );
        let (_, detail) = api.get(&format!("/specs/{spec_a}")).await;
        assert_eq!(
            (&detail["status"], &detail["sandboxes"][0]["status"]),
            (&json!("cancelled"), &json!("terminated"))
        );
        server.stop().await;
    })
    .await;
}
