//! Review between phases: a spec stopped after REQUIREMENTS is edited (the worker's evaluator
//! judges the edit) and approved; the next sandbox starts from the edited output.

use omoi_coordinator::review::rejection_message;
use omoi_protocol::artifact::PhaseOutput;
use omoi_protocol::context::PhaseContext;
use pretty_assertions::assert_eq;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::cli::{omoi, stdout};
use super::common::{
    Api, FakeProvider, TestServer, each_backend, error, event, phase_completed, phase_output,
    sandbox_of,
};

/// A spec of `ada` launched with `--stop-after requirements` whose worker stopped there.
pub(super) async fn stopped_after_requirements(
    server: &TestServer,
    provider: &FakeProvider,
) -> (Api, String) {
    let (_, ada) = server.user("ada").await;
    let (_, project) = ada
        .post(
            "/projects",
            &json!({"name": "p", "repo_url": "https://git.example/r.git"}),
        )
        .await;
    let (status, launched) = ada
        .post(
            "/specs/launch",
            &json!({"project_id": project["id"], "title": "Add --shout",
                    "stop_after": "requirements"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let id = launched["id"].as_str().unwrap().to_string();
    let (sandbox, token) = sandbox_of(provider, 0);
    let counters = json!({"turns": 1, "tool_calls": 1,
                          "usage": {"input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0}});
    let (status, _) = server
        .api(Some(&token))
        .ingest(
            &sandbox,
            &[
                event(
                    &sandbox,
                    &id,
                    1,
                    "spec.phase_completed",
                    phase_completed("explore", 0.9, 1),
                ),
                event(
                    &sandbox,
                    &id,
                    2,
                    "spec.phase_completed",
                    phase_completed("requirements", 0.95, 1),
                ),
                event(
                    &sandbox,
                    &id,
                    3,
                    "agent.completed",
                    json!({"success": true, "counters": counters, "stopped_after": "requirements"}),
                ),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    (ada, id)
}

async fn put(api: &Api, path: &str, body: &str) -> (StatusCode, Value) {
    let response = api
        .raw(Method::PUT, path)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

pub(super) fn requirements_with(edit: impl FnOnce(&mut Value)) -> Value {
    let mut document = phase_output("requirements")["requirements"].clone();
    edit(&mut document);
    document
}

/// What the worker's evaluator says of a requirements document at the default threshold (it
/// reads no earlier phase).
pub(super) fn judged(document: &Value) -> omoi_protocol::eval::Evaluation {
    let output = PhaseOutput::Requirements(serde_json::from_value(document.clone()).unwrap());
    omoi_worker::evaluate::evaluate(
        &output,
        &PhaseContext::default(),
        std::path::Path::new("."),
        0.7,
    )
}

#[tokio::test]
async fn an_edit_is_judged_by_the_evaluator_and_approval_starts_from_it() {
    each_backend(|db| async move {
        let provider = FakeProvider::new();
        let server = TestServer::start(&db, provider.clone(), |_| {}).await;
        let (ada, id) = stopped_after_requirements(&server, &provider).await;
        let (_, stopped) = ada.get(&format!("/specs/{id}")).await;
        assert_eq!(
            (
                &stopped["status"],
                &stopped["current_phase"],
                &stopped["stop_after"]
            ),
            (&json!("pending"), &json!("design"), &json!("requirements"))
        );
        let output_path = format!("/specs/{id}/phases/requirements/output");

        // A requirement rewritten so that it is no EARS sentence: the evaluator's message, 422.
        let not_ears = requirements_with(|d| {
            d["requirements"][0]["text"] = json!("Make the greeting loud.");
        });
        let expected = judged(&not_ears);
        assert!(
            expected.passed,
            "a score-only issue: the stored output had none"
        );
        let (status, body) = put(&ada, &output_path, &not_ears.to_string()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            body,
            json!({
                "error": {"code": "rejected",
                          "message": rejection_message(&expected)},
                "evaluation": expected,
            })
        );
        assert!(
            body["evaluation"]["issues"][0]["message"]
                .as_str()
                .unwrap()
                .contains("EARS"),
            "{body}"
        );
        // A duplicate id is blocking.
        let duplicate = requirements_with(|d| {
            d["requirements"][1]["id"] = json!("REQ-CLI-001");
        });
        let (status, body) = put(&ada, &output_path, &duplicate.to_string()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["evaluation"], json!(judged(&duplicate)));
        assert_eq!(body["evaluation"]["passed"], json!(false));
        // Nothing moved.
        let (_, after) = ada.get(&format!("/specs/{id}")).await;
        assert_eq!(after, stopped);

        // A good edit is stored with its score and feedback.
        let retitled = requirements_with(|d| {
            d["requirements"][0]["title"] = json!("Shout in capitals");
        });
        let accepted = judged(&retitled);
        let (status, body) = put(&ada, &output_path, &retitled.to_string()).await;
        assert_eq!(
            (status, body),
            (
                StatusCode::OK,
                json!({"evaluation": accepted,
                       "feedback": omoi_worker::evaluate::feedback(&accepted)})
            )
        );
        let (_, edited) = ada.get(&format!("/specs/{id}")).await;
        assert_eq!(
            edited["phases"][1]["output"],
            json!({"requirements": retitled})
        );
        assert_eq!(edited["phases"][1]["score"], json!(accepted.score));
        assert_eq!(edited["status"], "pending");

        // Approval: a new sandbox at DESIGN with the edited requirements in its context.
        assert_eq!(
            ada.post(
                &format!("/specs/{id}/approve"),
                &json!({"stop_after": "explore"})
            )
            .await,
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                error(
                    "invalid",
                    "stop_after explore is not after requirements, where the spec stopped"
                )
            )
        );
        let (status, approved) = ada.post_raw(&format!("/specs/{id}/approve"), "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            (
                &approved["status"],
                &approved["current_phase"],
                &approved["stop_after"]
            ),
            (&json!("executing"), &json!("design"), &Value::Null)
        );
        let env = provider.env(1);
        assert_eq!(env["SPEC_PHASE"], "design");
        let context = super::specs::decode_context(&env);
        assert_eq!(
            serde_json::to_value(&context.requirements).unwrap(),
            retitled
        );

        // Running now: neither approval nor an edit.
        let not_stopped = format!("spec {id} is not stopped after a phase (it is executing)");
        assert_eq!(
            ada.post(&format!("/specs/{id}/approve"), &json!({})).await,
            (StatusCode::CONFLICT, error("conflict", &not_stopped))
        );
        assert_eq!(
            put(&ada, &output_path, &retitled.to_string()).await,
            (StatusCode::CONFLICT, error("conflict", &not_stopped))
        );
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn review_refuses_bad_input_and_other_users_specs() {
    each_backend(|db| async move {
        let provider = FakeProvider::new();
        let server = TestServer::start(&db, provider.clone(), |_| {}).await;
        let (ada, id) = stopped_after_requirements(&server, &provider).await;
        let good = phase_output("requirements")["requirements"].to_string();
        let cases = [
            (
                format!("/specs/{id}/phases/later/output"),
                good.clone(),
                StatusCode::NOT_FOUND,
                error("not_found", "no phase later"),
            ),
            (
                format!("/specs/{id}/phases/design/output"),
                phase_output("design")["design"].to_string(),
                StatusCode::CONFLICT,
                error(
                    "conflict",
                    &format!(
                        "spec {id} stopped after requirements; only that phase's output can be replaced"
                    ),
                ),
            ),
            (
                format!("/specs/{id}/phases/requirements/output"),
                "{not json".into(),
                StatusCode::BAD_REQUEST,
                error(
                    "bad_request",
                    "the body is not JSON: key must be a string at line 1 column 2",
                ),
            ),
            (
                format!("/specs/{id}/phases/requirements/output"),
                r#"{"requirements": "all of them"}"#.into(),
                StatusCode::UNPROCESSABLE_ENTITY,
                error(
                    "invalid",
                    "the body is not a requirements output: invalid type: string \"all of them\", expected a sequence",
                ),
            ),
            (
                "/specs/nope/phases/requirements/output".into(),
                good.clone(),
                StatusCode::NOT_FOUND,
                error("not_found", "no spec nope"),
            ),
        ];
        for (path, body, status, answer) in cases {
            assert_eq!(put(&ada, &path, &body).await, (status, answer), "{path} {body}");
        }
        // Another user sees neither the spec nor its review routes.
        let (_, bob) = server.user("bob").await;
        let missing = error("not_found", &format!("no spec {id}"));
        assert_eq!(
            put(&bob, &format!("/specs/{id}/phases/requirements/output"), &good).await,
            (StatusCode::NOT_FOUND, missing.clone())
        );
        assert_eq!(
            bob.post(&format!("/specs/{id}/approve"), &json!({})).await,
            (StatusCode::NOT_FOUND, missing)
        );
        // Without a token: 401.
        assert_eq!(
            server
                .api(None)
                .post(&format!("/specs/{id}/approve"), &json!({}))
                .await
                .0,
            StatusCode::UNAUTHORIZED
        );
        // A bad approval body.
        assert_eq!(
            ada.post(&format!("/specs/{id}/approve"), &json!({"stop_after": "soon"}))
                .await
                .0,
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(provider.spawned().len(), 1);
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn the_command_line_edits_and_approves() {
    each_backend(|db| async move {
        let provider = FakeProvider::new();
        let server = TestServer::start(&db, provider.clone(), |_| {}).await;
        let (ada, id) = stopped_after_requirements(&server, &provider).await;
        let token = ada.token.clone().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let edit = |args: Vec<String>| {
            let url = server.url.clone();
            let token = token.clone();
            async move {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                omoi(&args, &url, Some(&token)).await
            }
        };
        let spec_edit = |file: String| {
            edit(vec![
                "spec".into(),
                "edit".into(),
                id.clone(),
                "requirements".into(),
                file,
            ])
        };
        let file = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path.display().to_string()
        };

        let missing = dir.path().join("missing.json").display().to_string();
        let output = spec_edit(missing.clone()).await;
        assert_eq!(output.status.code(), Some(1));
        assert!(
            String::from_utf8_lossy(&output.stderr)
                .starts_with(&format!("omoi: reading {missing}: No such file")),
            "{output:?}"
        );
        let not_json = file("bad.json", "requirements: all");
        let output = spec_edit(not_json.clone()).await;
        assert_eq!(output.status.code(), Some(1));
        assert!(
            String::from_utf8_lossy(&output.stderr)
                .starts_with(&format!("omoi: {not_json} is not JSON: ")),
            "{output:?}"
        );
        let not_ears = requirements_with(|d| {
            d["requirements"][0]["text"] = json!("Make the greeting loud.");
        });
        let rejected = file("not-ears.json", &not_ears.to_string());
        let output = spec_edit(rejected).await;
        assert_eq!(output.status.code(), Some(1));
        assert_eq!(
            String::from_utf8_lossy(&output.stderr),
            format!(
                "omoi: {} (422 rejected)\n",
                rejection_message(&judged(&not_ears))
            )
        );

        let retitled = requirements_with(|d| {
            d["requirements"][0]["title"] = json!("Shout in capitals");
        });
        let accepted = file("retitled.json", &retitled.to_string());
        let output = spec_edit(accepted).await;
        assert_eq!(
            stdout(&output),
            omoi_worker::evaluate::feedback(&judged(&retitled))
        );
        let output = edit(vec!["spec".into(), "approve".into(), id.clone()]).await;
        assert_eq!(
            stdout(&output),
            format!("{id}  executing    design        Add --shout\n")
        );
        assert_eq!(provider.env(1)["SPEC_PHASE"], "design");
        server.stop().await;
    })
    .await;
}
