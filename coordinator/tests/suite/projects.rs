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
                    "repo_url": "https://git.example/repo.git",
                    "validation_command": "sh tests/run.sh",
                    "image": "registry.example/omoi-sandbox:2",
                    "image_pull_secrets": ["regcred", "mirror.example"],
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
                "repo_url": "https://git.example/repo.git",
                "base_branch": "main",
                "validation_command": "sh tests/run.sh",
                "provider": "local",
                "image": "registry.example/omoi-sandbox:2",
                "image_pull_secrets": ["regcred", "mirror.example"],
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
                json!({"name": "", "repo_url": "https://git.example/r.git"}),
                error("invalid", "name must not be empty"),
            ),
            (
                json!({"name": "p", "repo_url": "  "}),
                error("invalid", "repo_url must not be empty"),
            ),
            (
                json!({"name": "p", "repo_url": "https://git.example/r.git", "provider": "docker"}),
                error(
                    "invalid",
                    "provider \"docker\" is not available here; this coordinator runs \"local\"",
                ),
            ),
            (
                json!({"name": "p", "repo_url": "https://git.example/r.git", "worker_env": {"SANDBOX_TOKEN": "x"}}),
                error(
                    "invalid",
                    "worker_env may not set SANDBOX_TOKEN: the coordinator sets it",
                ),
            ),
            (
                json!({"name": "p", "repo_url": "https://git.example/r.git", "worker_env": {"OMOI_GIT_TOKEN": "x"}}),
                error(
                    "invalid",
                    "worker_env may not set OMOI_GIT_TOKEN: the coordinator sets it",
                ),
            ),
            (
                json!({"name": "p", "repo_url": "https://git.example/r.git", "github_api_url": "api.github.com"}),
                error(
                    "invalid",
                    "github_api_url \"api.github.com\" must start with https:// or http://",
                ),
            ),
            (
                json!({"name": "p", "repo_url": "https://git.example/r.git", "image_pull_secrets": ["Not_A_Name"]}),
                error(
                    "invalid",
                    "image_pull_secrets: \"Not_A_Name\" is not a Secret name (a DNS subdomain: \
                     a-z, 0-9, '-' and '.', at most 253 characters)",
                ),
            ),
            (
                json!({"name": "p", "repo_url": "https://git.example/r.git", "image_pull_secrets": [""]}),
                error(
                    "invalid",
                    "image_pull_secrets: \"\" is not a Secret name (a DNS subdomain: a-z, 0-9, \
                     '-' and '.', at most 253 characters)",
                ),
            ),
            (
                json!({"name": "p", "repo_url": "https://git.example/r.git", "image_pull_secrets": ["a", "a"]}),
                error("invalid", "image_pull_secrets names \"a\" twice"),
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
        // Not a list of names: the body does not decode.
        let (status, body) = api
            .post(
                "/projects",
                &json!({"name": "p", "repo_url": "https://git.example/r.git", "image_pull_secrets": "regcred"}),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let (status, body) = api.post_raw("/projects", "{not json").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["code"], "bad_request");
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_repository_outside_the_allowed_directories_or_like_an_option_is_refused() {
    each_backend(|db| async move {
        let server = TestServer::start(&db, FakeProvider::new(), |_| {}).await;
        let (_, api) = server.user("ada").await;
        let dir = tempfile::tempdir().unwrap();
        let inside = std::fs::canonicalize(dir.path()).unwrap().join("repo");
        std::fs::create_dir(&inside).unwrap();
        let link = dir.path().join("etc");
        std::os::unix::fs::symlink("/etc", &link).unwrap();
        let outside = |url: &str| {
            error(
                "invalid",
                &format!(
                    "repo_url {url} is outside the directories this server allows local \
                     repositories in"
                ),
            )
        };
        let not_git = |url: &str| {
            error(
                "invalid",
                &format!(
                    "repo_url {url:?} is not a git URL (https://, ssh://, git://, user@host:path) \
                     nor an absolute path"
                ),
            )
        };
        let link_url = link.display().to_string();
        let cases = [
            ("/etc".to_string(), outside("/etc")),
            ("file:///etc".to_string(), outside("/etc")),
            (link_url.clone(), outside(&link_url)),
            (
                "--upload-pack=touch /tmp/owned".to_string(),
                error("invalid", "repo_url must not begin with '-'"),
            ),
            ("garbage".to_string(), not_git("garbage")),
            ("ext::sh".to_string(), not_git("ext::sh")),
        ];
        for (url, expected) in cases {
            assert_eq!(
                api.post("/projects", &json!({"name": "p", "repo_url": url}))
                    .await,
                (StatusCode::UNPROCESSABLE_ENTITY, expected),
                "{url}"
            );
        }
        let (status, created) = api
            .post(
                "/projects",
                &json!({"name": "p", "repo_url": format!("{}/../repo", inside.display())}),
            )
            .await;
        assert_eq!(
            (status, created["repo_url"].clone()),
            (StatusCode::CREATED, json!(inside.display().to_string()))
        );
        assert_eq!(api.get("/projects").await.1.as_array().unwrap().len(), 1);
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn control_and_bidi_characters_are_refused_in_names_and_titles() {
    each_backend(|db| async move {
        let server = TestServer::start(&db, FakeProvider::new(), |_| {}).await;
        let (_, api) = server.user("ada").await;
        let refused = |field: &str, code: &str| {
            error(
                "invalid",
                &format!(
                    "{field} must not contain control or bidirectional formatting characters \
                     (found U+{code})"
                ),
            )
        };
        for (name, code) in [
            ("a\u{0}b", "0000"),
            ("\u{1b}[31mred", "001B"),
            ("x\u{202e}y", "202E"),
        ] {
            assert_eq!(
                api.post(
                    "/projects",
                    &json!({"name": name, "repo_url": "https://git.example/r.git"})
                )
                .await,
                (StatusCode::UNPROCESSABLE_ENTITY, refused("name", code)),
            );
        }
        let (_, project) = api
            .post(
                "/projects",
                &json!({"name": "p", "repo_url": "https://git.example/r.git"}),
            )
            .await;
        for (title, code) in [("bell\u{7}", "0007"), ("abc\u{2067}def", "2067")] {
            assert_eq!(
                api.post(
                    "/specs",
                    &json!({"project_id": project["id"], "title": title})
                )
                .await,
                (StatusCode::UNPROCESSABLE_ENTITY, refused("title", code)),
            );
        }
        server.stop().await;
    })
    .await;
}
