//! `POST /projects`, `GET /projects`, `GET /projects/{id}`, `PATCH /projects/{id}`.

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

#[tokio::test]
async fn a_project_is_shown_and_changed_by_its_owner_only_and_launches_use_the_change() {
    each_backend(|db| async move {
        let provider = FakeProvider::new();
        let server = TestServer::start(&db, provider.clone(), |_| {}).await;
        let (_, ada) = server.user("ada").await;
        let (_, bob) = server.user("bob").await;
        let (_, created) = ada
            .post(
                "/projects",
                &json!({
                    "name": "sample",
                    "repo_url": "https://git.example/repo.git",
                    "validation_command": "sh tests/run.sh",
                    "image": "registry.example/omoi-sandbox:2",
                    "worker_env": {"OMOI_LLM": "scripted", "MODEL": "m1", "ANTHROPIC_API_KEY": "sk-old-key-1"},
                    "git_token": "ghp_old_token"
                }),
            )
            .await;
        let id = created["id"].as_str().unwrap().to_string();
        let path = format!("/projects/{id}");
        assert_eq!(ada.get(&path).await, (StatusCode::OK, created.clone()));
        let missing = error("not_found", &format!("no project {id}"));
        assert_eq!(
            bob.get(&path).await,
            (StatusCode::NOT_FOUND, missing.clone())
        );
        assert_eq!(
            bob.patch(&path, &json!({"name": "mine"})).await,
            (StatusCode::NOT_FOUND, missing)
        );

        let (status, changed) = ada
            .patch(
                &path,
                &json!({
                    "name": "renamed",
                    "validation_command": null,
                    "image": null,
                    "image_pull_secrets": ["regcred"],
                    "worker_env": {"MODEL": null, "EXTRA": "1", "DB_URL": "postgres://db/s", "ANTHROPIC_API_KEY": "sk-new-key-2"},
                    "secret_env": ["DB_URL"],
                    "git_token": null
                }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{changed}");
        assert_eq!(
            changed,
            json!({
                "id": id,
                "name": "renamed",
                "repo_url": "https://git.example/repo.git",
                "base_branch": "main",
                "provider": "local",
                "image_pull_secrets": ["regcred"],
                "worker_env": {"EXTRA": "1", "OMOI_LLM": "scripted"},
                "secret_env": ["ANTHROPIC_API_KEY", "DB_URL"],
                "has_git_token": false,
                "created_at": created["created_at"],
            })
        );
        assert_eq!(ada.get(&path).await, (StatusCode::OK, changed.clone()));
        assert_eq!(bob.get("/projects").await, (StatusCode::OK, json!([])));
        // Nothing left out changes: an empty change answers the project as it is.
        assert_eq!(
            ada.patch(&path, &json!({})).await,
            (StatusCode::OK, changed.clone())
        );

        // The next launch runs with the change: secrets included, the removed variable gone.
        let (status, launched) = ada
            .post("/specs/launch", &json!({"project_id": id, "title": "t"}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{launched}");
        let spawned = provider.spawned();
        let env = &spawned.last().unwrap().env;
        assert_eq!(env.get("EXTRA").map(String::as_str), Some("1"));
        assert_eq!(env.get("DB_URL").map(String::as_str), Some("postgres://db/s"));
        assert_eq!(
            env.get("ANTHROPIC_API_KEY").map(String::as_str),
            Some("sk-new-key-2")
        );
        assert!(!env.contains_key("MODEL"), "{env:?}");
        assert!(!env.contains_key("OMOI_GIT_TOKEN"), "{env:?}");
        assert_eq!(spawned.last().unwrap().image, None);

        // A secret stays secret when set again without being listed; a token comes back.
        let (status, again) = ada
            .patch(
                &path,
                &json!({"worker_env": {"DB_URL": "postgres://db/t"}, "git_token": "ghp_new_token"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{again}");
        assert_eq!(again["secret_env"], json!(["ANTHROPIC_API_KEY", "DB_URL"]));
        assert_eq!(again["worker_env"], json!({"EXTRA": "1", "OMOI_LLM": "scripted"}));
        assert_eq!(again["has_git_token"], json!(true));
        let stored = server.store.project_by_id(&id).await.unwrap().unwrap();
        assert_eq!(
            stored.worker_secrets["DB_URL"].expose(),
            "postgres://db/t"
        );
        assert_eq!(stored.git_token.unwrap().expose(), "ghp_new_token");
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_refused_change_says_why_and_changes_nothing() {
    each_backend(|db| async move {
        let server = TestServer::start(&db, FakeProvider::new(), |_| {}).await;
        let (_, api) = server.user("ada").await;
        let (_, created) = api
            .post(
                "/projects",
                &json!({"name": "p", "repo_url": "https://git.example/r.git", "worker_env": {"A": "1"}}),
            )
            .await;
        let path = format!("/projects/{}", created["id"].as_str().unwrap());
        let cases = [
            (
                json!({"name": " "}),
                error("invalid", "name must not be empty"),
            ),
            (
                json!({"base_branch": ""}),
                error("invalid", "base_branch must not be empty"),
            ),
            (
                json!({"repo_url": "garbage"}),
                error(
                    "invalid",
                    "repo_url \"garbage\" is not a git URL (https://, ssh://, git://, \
                     user@host:path) nor an absolute path",
                ),
            ),
            (
                json!({"worker_env": {"SANDBOX_TOKEN": "x"}}),
                error(
                    "invalid",
                    "worker_env may not set SANDBOX_TOKEN: the coordinator sets it",
                ),
            ),
            (
                json!({"worker_env": {"B=C": "x"}}),
                error("invalid", "worker_env name \"B=C\" is not a valid variable name"),
            ),
            (
                json!({"secret_env": ["A"]}),
                error("invalid", "secret_env names A, which worker_env does not set"),
            ),
            (
                json!({"worker_env": {"A": null}, "secret_env": ["A"]}),
                error("invalid", "secret_env names A, which worker_env does not set"),
            ),
            (
                json!({"image_pull_secrets": ["a", "a"]}),
                error("invalid", "image_pull_secrets names \"a\" twice"),
            ),
            (
                json!({"github_api_url": "api.github.com"}),
                error(
                    "invalid",
                    "github_api_url \"api.github.com\" must start with https:// or http://",
                ),
            ),
            (
                json!({"name": "a\u{202e}b"}),
                error(
                    "invalid",
                    "name must not contain control or bidirectional formatting characters \
                     (found U+202E)",
                ),
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(
                api.patch(&path, &body).await,
                (StatusCode::UNPROCESSABLE_ENTITY, expected),
                "{body}"
            );
        }
        // Fields that are not the project's, or of the wrong type, do not decode.
        for body in [
            json!({"provider": "docker"}),
            json!({"id": "other"}),
            json!({"image_pull_secrets": "regcred"}),
            json!({"worker_env": {"A": 1}}),
        ] {
            let (status, answer) = api.patch(&path, &body).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
        }
        let (status, answer) = api
            .raw(reqwest::Method::PATCH, &path)
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .map(|r| r.status())
            .map(|s| (s, ()))
            .unwrap();
        assert_eq!((status, answer), (StatusCode::BAD_REQUEST, ()));
        assert_eq!(api.get(&path).await, (StatusCode::OK, created));
        // Without a token: refused before anything is read.
        let (status, _) = server.api(None).patch(&path, &json!({"name": "x"})).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        server.stop().await;
    })
    .await;
}
