//! Project secrets at rest and in answers: sealed in the database, given to workers, served as
//! names only.

use std::collections::BTreeMap;

use omoi_coordinator::store::Store;
use pretty_assertions::assert_eq;
use reqwest::StatusCode;
use serde_json::json;
use sqlx::{Connection, Row};

use super::common::{FakeProvider, TestServer, each_backend, error, new_project};

#[tokio::test]
async fn secrets_are_sealed_in_the_database_given_to_workers_and_served_as_names() {
    each_backend(|db| async move {
        let provider = FakeProvider::new();
        let server = TestServer::start(&db, provider.clone(), |_| {}).await;
        let (_, api) = server.user("ada").await;
        let (status, created) = api
            .post(
                "/projects",
                &json!({
                    "name": "p",
                    "repo_url": "https://git.example/r.git",
                    "worker_env": {
                        "OMOI_LLM": "anthropic",
                        "ANTHROPIC_API_KEY": "sk-ant-api-0123",
                        "SEARCH_ENDPOINT": "https://user:pw-4567@search.example",
                    },
                    "secret_env": ["SEARCH_ENDPOINT"],
                    "git_token": "ghp_89ab",
                }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let served = json!({
            "id": created["id"],
            "name": "p",
            "repo_url": "https://git.example/r.git",
            "base_branch": "main",
            "provider": "local",
            "worker_env": {"OMOI_LLM": "anthropic"},
            "secret_env": ["ANTHROPIC_API_KEY", "SEARCH_ENDPOINT"],
            "has_git_token": true,
            "created_at": created["created_at"],
        });
        assert_eq!(created, served);
        assert_eq!(
            api.get("/projects").await,
            (StatusCode::OK, json!([served]))
        );

        let mut conn = sqlx::AnyConnection::connect(&db.url).await.unwrap();
        let row = sqlx::query("SELECT worker_env, worker_secrets, git_token FROM projects")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        let stored = [
            row.get::<String, _>("worker_env"),
            row.get::<String, _>("worker_secrets"),
            row.get::<String, _>("git_token"),
        ]
        .join("\n");
        conn.close().await.unwrap();
        for secret in ["sk-ant-api-0123", "pw-4567", "ghp_89ab"] {
            assert!(
                !stored.contains(secret),
                "{secret} is stored in clear: {stored}"
            );
        }
        assert!(row_is_sealed(&stored), "{stored}");

        let (_, _) = api
            .post(
                "/specs/launch",
                &json!({"project_id": created["id"], "title": "Add --shout"}),
            )
            .await;
        let env = provider.env(0);
        let given: BTreeMap<&str, &str> = ["OMOI_LLM", "ANTHROPIC_API_KEY", "SEARCH_ENDPOINT"]
            .into_iter()
            .map(|name| (name, env.get(name).map_or("", String::as_str)))
            .collect();
        assert_eq!(
            given,
            BTreeMap::from([
                ("OMOI_LLM", "anthropic"),
                ("ANTHROPIC_API_KEY", "sk-ant-api-0123"),
                ("SEARCH_ENDPOINT", "https://user:pw-4567@search.example"),
            ])
        );
        server.stop().await;
    })
    .await;
}

fn row_is_sealed(stored: &str) -> bool {
    stored.matches("enc:v1:").count() == 3
}

#[tokio::test]
async fn secrets_shorter_than_eight_bytes_are_refused_with_the_reason() {
    each_backend(|db| async move {
        let server = TestServer::start(&db, FakeProvider::new(), |_| {}).await;
        let (_, api) = server.user("ada").await;
        let refusal = |what: &str, bytes: usize| {
            error(
                "invalid",
                &format!(
                    "{what} is a secret of {bytes} bytes; secrets must be at least 8 bytes, or \
                     the sandbox could not mask them in what its commands print"
                ),
            )
        };
        for (body, expected) in [
            (
                json!({"worker_env": {"NPM_TOKEN": "abc"}}),
                refusal("worker_env NPM_TOKEN", 3),
            ),
            (
                json!({"worker_env": {"PIN": "1234567"}, "secret_env": ["PIN"]}),
                refusal("worker_env PIN", 7),
            ),
            (json!({"git_token": "ghs_e2e"}), refusal("git_token", 7)),
        ] {
            let mut project = json!({"name": "p", "repo_url": "https://git.example/r.git"});
            project
                .as_object_mut()
                .unwrap()
                .extend(body.as_object().unwrap().clone());
            assert_eq!(
                api.post("/projects", &project).await,
                (StatusCode::UNPROCESSABLE_ENTITY, expected),
                "{project}"
            );
        }
        // Eight bytes, or a plain variable of any length, or an empty (unset) secret, are fine.
        let fine = json!({"name": "p", "repo_url": "https://git.example/r.git",
                          "worker_env": {"NPM_TOKEN": "12345678", "MODE": "x", "EMPTY_KEY": ""},
                          "git_token": "ghs_1234"});
        assert_eq!(api.post("/projects", &fine).await.0, StatusCode::CREATED);
        assert_eq!(api.get("/projects").await.1.as_array().unwrap().len(), 1);
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn secrets_need_a_key_and_a_listed_name() {
    each_backend(|db| async move {
        let server = TestServer::start(&db, FakeProvider::new(), |_| {}).await;
        let (user, api) = server.user("ada").await;
        assert_eq!(
            api.post(
                "/projects",
                &json!({"name": "p", "repo_url": "https://git.example/r.git",
                        "worker_env": {"A": "1"}, "secret_env": ["B"]}),
            )
            .await,
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                error(
                    "invalid",
                    "secret_env names B, which worker_env does not set"
                )
            )
        );
        // A store without a key refuses to keep a secret, and cannot read one kept.
        let keyless = Store::open(&db.url).await.unwrap();
        let new = |token: Option<&str>| omoi_coordinator::store::NewProject {
            git_token: token.map(omoi_coordinator::model::GitToken::new),
            ..new_project("p")
        };
        assert_eq!(
            keyless
                .create_project(&user.id, new(Some("ghp_1")))
                .await
                .unwrap_err()
                .to_string(),
            "this coordinator has no secret key to store secrets with; its operator starts it \
             with --secret-key-file or OMOI_SECRET_KEY"
        );
        let kept = server
            .store
            .create_project(&user.id, new(Some("ghp_2")))
            .await
            .unwrap();
        assert!(keyless.project_by_id(&kept.id).await.is_err());
        assert_eq!(
            server
                .store
                .project_by_id(&kept.id)
                .await
                .unwrap()
                .unwrap()
                .git_token
                .unwrap()
                .expose(),
            "ghp_2"
        );
        assert!(
            keyless
                .any_sealed_secret()
                .await
                .unwrap()
                .is_some_and(|s| s.starts_with("enc:v1:"))
        );
        keyless.close().await;
        server.stop().await;
    })
    .await;
}

/// Inserts a project the way a coordinator from before sealing stored it: worker variables and
/// the git token in clear.
async fn insert_clear_project(
    conn: &mut sqlx::AnyConnection,
    user_id: &str,
    id: &str,
    worker_env: &str,
    git_token: Option<&str>,
) {
    sqlx::query(
        "INSERT INTO projects (id, user_id, name, repo_url, base_branch, provider, worker_env,
                               created_ms, git_token)
         VALUES ($1, $2, 'old', 'https://git.example/r.git', 'main', 'local', $3, 1, $4)",
    )
    .bind(id)
    .bind(user_id)
    .bind(worker_env)
    .bind(git_token)
    .execute(conn)
    .await
    .unwrap();
}

/// The stored secret columns of every project, by id.
async fn stored_columns(
    conn: &mut sqlx::AnyConnection,
) -> Vec<(String, String, Option<String>, Option<String>)> {
    sqlx::query("SELECT id, worker_env, worker_secrets, git_token FROM projects ORDER BY id")
        .fetch_all(conn)
        .await
        .unwrap()
        .iter()
        .map(|row| {
            (
                row.get("id"),
                row.get("worker_env"),
                row.get("worker_secrets"),
                row.get("git_token"),
            )
        })
        .collect()
}

#[tokio::test]
async fn secrets_stored_in_clear_before_sealing_are_sealed_at_start_once() {
    each_backend(|db| async move {
        let server = TestServer::start(&db, FakeProvider::new(), |_| {}).await;
        let (user, api) = server.user("ada").await;
        let mut conn = sqlx::AnyConnection::connect(&db.url).await.unwrap();
        insert_clear_project(
            &mut conn,
            &user.id,
            "p-clear",
            r#"{"OMOI_LLM":"anthropic","ANTHROPIC_API_KEY":"sk-ant-clear-0123456789"}"#,
            Some("ghp_clear0123456789"),
        )
        .await;
        insert_clear_project(&mut conn, &user.id, "p-plain", r#"{"MODE":"x"}"#, None).await;
        let clear = ["sk-ant-clear-0123456789", "ghp_clear0123456789"];

        // Without a key nothing changes: the projects are counted.
        let keyless = Store::open(&db.url).await.unwrap();
        let before = stored_columns(&mut conn).await;
        assert_eq!(
            keyless.seal_clear_secrets().await.unwrap(),
            omoi_coordinator::store::ClearSecrets {
                sealed: 0,
                left_in_clear: 1
            }
        );
        assert_eq!(stored_columns(&mut conn).await, before);
        keyless.close().await;

        // With the key: sealed, the key-like variable moved out of the plain ones.
        let found = server.store.seal_clear_secrets().await.unwrap();
        assert_eq!(
            found,
            omoi_coordinator::store::ClearSecrets {
                sealed: 1,
                left_in_clear: 0
            }
        );
        let after = stored_columns(&mut conn).await;
        let text = format!("{after:?}");
        for secret in clear {
            assert!(!text.contains(secret), "{secret} still in clear: {text}");
        }
        let (_, env, secrets, token) = &after[0];
        assert_eq!(env, r#"{"OMOI_LLM":"anthropic"}"#);
        assert!(
            secrets
                .as_deref()
                .is_some_and(|s| s.contains(r#""ANTHROPIC_API_KEY":"enc:v1:"#)),
            "{secrets:?}"
        );
        assert!(
            token.as_deref().is_some_and(|t| t.starts_with("enc:v1:")),
            "{token:?}"
        );
        assert_eq!(
            after[1], before[1],
            "a project without secrets is left alone"
        );

        // Served as names, given to workers as they were.
        let project = server
            .store
            .project_by_id("p-clear")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(project.git_token.unwrap().expose(), "ghp_clear0123456789");
        assert_eq!(
            project.worker_secrets["ANTHROPIC_API_KEY"].expose(),
            "sk-ant-clear-0123456789"
        );
        let (_, listed) = api.get("/projects").await;
        let old = listed
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == "p-clear")
            .unwrap()
            .clone();
        assert_eq!(old["worker_env"], json!({"OMOI_LLM": "anthropic"}));
        assert_eq!(old["secret_env"], json!(["ANTHROPIC_API_KEY"]));
        assert_eq!(old["has_git_token"], json!(true));

        // Once is enough: a second start changes nothing.
        assert_eq!(
            server.store.seal_clear_secrets().await.unwrap(),
            omoi_coordinator::store::ClearSecrets::default()
        );
        assert_eq!(stored_columns(&mut conn).await, after);
        conn.close().await.unwrap();
        server.stop().await;
    })
    .await;
}
