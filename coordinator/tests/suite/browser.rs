//! The dashboard in a real headless Chromium (Debian's `chromium` and `chromium-driver`, driven
//! over WebDriver): sign in, watch a spec of the real worker run to completion with the timeline
//! and the task graph updating without a reload, edit a requirement into a non-EARS sentence and
//! see the evaluator's message, approve after `--stop-after requirements`, another user's spec
//! not found, a `<script>` title as text, a forged cross-site POST refused. Screenshots of the
//! pages go to `target/tmp/dashboard-screenshots/`. SQLite only: the browser is the subject.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use omoi_coordinator::review::rejection_message;
use omoi_coordinator::sandbox::local::LocalProvider;
use pretty_assertions::assert_eq;
use reqwest::StatusCode;
use serde_json::json;

use super::common::tasks::quick;
use super::common::webdriver::Browser;
use super::common::{FakeProvider, TestServer, eventually, sqlite};
use super::review::{judged, requirements_with, stopped_after_requirements};
use super::worker_e2e::{tune, worker_bin};

fn screenshots() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots")
}

/// Signs in through the form, as a person would.
async fn sign_in(browser: &Browser, base: &str, token: &str) {
    browser.goto(&format!("{base}/")).await;
    browser.type_into("input[name=token]", token).await;
    browser.click("form[action='/sign-in'] button").await;
    wait_for_text(browser, "h1", "Specs").await;
}

/// Waits until the element of a CSS selector says `text` (a click's navigation may still be
/// under way when the click returns).
async fn wait_for_text(browser: &Browser, css: &str, text: &str) {
    let mut shown = None;
    for _ in 0..100 {
        shown = browser.text(css).await;
        if shown.as_deref() == Some(text) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{css} says {shown:?}, not {text:?}");
}

/// Records, in the page, every distinct state of the status, the timeline and the graph (a
/// reload would lose `__marker` and the record).
const OBSERVE: &str = r#"
window.__marker = 'same page';
window.__seen = [];
const snap = () => {
  const status = (document.getElementById('status') || {}).textContent || '';
  const phases = Array.from(document.querySelectorAll('#timeline tr[data-phase]'))
    .map(r => r.dataset.phase + ':' + r.dataset.status).join(',');
  const tasks = Array.from(document.querySelectorAll('#graph g.task'))
    .map(g => g.dataset.status).join(',');
  const events = document.querySelectorAll('#event-list li').length;
  const last = window.__seen[window.__seen.length - 1];
  if (!last || last.status !== status || last.phases !== phases || last.tasks !== tasks) {
    window.__seen.push({status, phases, tasks, events});
  }
};
new MutationObserver(snap).observe(document.body,
  {subtree: true, childList: true, attributes: true, characterData: true});
snap();
return true;
"#;

#[tokio::test]
async fn a_spec_runs_to_completion_while_its_page_updates_without_a_reload() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let db = sqlite();
    let tmp = tempfile::tempdir().unwrap();
    let bare = omoi_tests::git::seed_bare_repo(
        &omoi_tests::fixtures::sample_repo(),
        &tmp.path().join("acme/greet.git"),
    );
    let script = omoi_tests::fixtures::write_script(
        tmp.path(),
        "script.json",
        &omoi_tests::fixtures::sample_script_json(),
    );
    let provider = Arc::new(LocalProvider::new(worker_bin(), &tmp.path().join("data")));
    let server = TestServer::start(&db, provider, |s| {
        tune(s, &script);
        quick(s);
    })
    .await;
    let (_, api) = server.user("ada").await;
    let (status, project) = api
        .post(
            "/projects",
            &json!({"name": "greet", "repo_url": format!("file://{}", bare.display()),
                    "validation_command": "sh tests/run.sh"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{project}");
    let (title, description) = omoi_tests::fixtures::sample_request();
    let (status, spec) = api
        .post(
            "/specs",
            &json!({"project_id": project["id"], "title": title, "description": description}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{spec}");
    let id = spec["id"].as_str().unwrap().to_string();
    let base = server.url.clone();

    sign_in(&browser, &base, api.token.as_deref().unwrap()).await;
    browser.goto(&format!("{base}/specs/{id}")).await;
    assert_eq!(browser.text("#status").await.as_deref(), Some("pending"));
    assert_eq!(browser.eval(OBSERVE, json!([])).await, json!(true));

    // Started through the API: the open page follows without a reload.
    let (status, _) = api.post(&format!("/specs/{id}/execute"), &json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let started = Instant::now();
    loop {
        let shown = browser.text("#status").await.unwrap_or_default();
        if shown == "completed" {
            break;
        }
        let (_, detail) = api.get(&format!("/specs/{id}")).await;
        assert!(
            detail["status"] != "failed" && detail["status"] != "cancelled",
            "the spec ended {}: {}",
            detail["status"],
            detail["error"]
        );
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "the page still says {shown:?}; the spec is {}",
            detail["status"]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    browser
        .screenshot(&screenshots().join("spec-completed.png"))
        .await;
    assert_eq!(
        browser.eval("return window.__marker;", json!([])).await,
        json!("same page"),
        "the page was reloaded"
    );
    let seen = browser.eval("return window.__seen;", json!([])).await;
    let seen = seen.as_array().unwrap();
    let statuses: Vec<&str> = seen.iter().map(|s| s["status"].as_str().unwrap()).collect();
    assert!(statuses.contains(&"executing"), "{statuses:?}");
    assert!(statuses.contains(&"implementing"), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&"completed"));
    // The timeline grew from nothing to every phase (the scripted phases take well under a
    // second, so the page may take several in one re-read).
    let completed_phases: Vec<usize> = seen
        .iter()
        .map(|s| s["phases"].as_str().unwrap().matches(":completed").count())
        .collect();
    assert!(
        completed_phases.windows(2).all(|w| w[0] <= w[1]),
        "{completed_phases:?}"
    );
    assert_eq!(completed_phases.first(), Some(&0));
    assert!(
        *completed_phases.last().unwrap() >= 5,
        "{completed_phases:?}"
    );
    // The graph appeared with tasks still to do, then every task completed.
    let graphs: Vec<&str> = seen
        .iter()
        .map(|s| s["tasks"].as_str().unwrap())
        .filter(|t| !t.is_empty())
        .collect();
    assert!(
        graphs
            .iter()
            .any(|g| g.split(',').any(|t| t != "completed")),
        "{graphs:?}"
    );
    let last = graphs.last().unwrap();
    assert!(last.split(',').all(|t| t == "completed"), "{last}");
    assert!(seen.last().unwrap()["events"].as_u64().unwrap() > 10);
    // The critical path is marked and each task's commit is in its row.
    let critical = browser
        .eval(
            "return document.querySelectorAll('#graph g.task.critical').length;",
            json!([]),
        )
        .await;
    assert!(critical.as_u64().unwrap() >= 2, "{critical}");
    let (_, detail) = api.get(&format!("/specs/{id}")).await;
    let commit = detail["tasks"][0]["commit_sha"].as_str().unwrap();
    let row = browser
        .text(&format!(
            "#task-{}",
            detail["tasks"][0]["id"].as_str().unwrap()
        ))
        .await
        .unwrap();
    assert!(row.contains(&commit[..12]), "{row}");

    browser.goto(&format!("{base}/")).await;
    browser.screenshot(&screenshots().join("specs.png")).await;
    assert!(
        browser.text("#specs").await.unwrap().contains("tasks 4/4"),
        "{:?}",
        browser.text("#specs").await
    );
    browser.close();
    server.stop().await;
}

/// A page of another origin that posts a form to the dashboard as soon as it loads.
async fn evil_site(target: String) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let page = format!(
        "<!doctype html><form method=post action=\"{target}\"><input name=csrf value=\"{}\">\
         </form><script>document.forms[0].submit()</script>",
        "0".repeat(64)
    );
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let page = page.clone();
            async move { axum::response::Html(page) }
        }),
    );
    let handle = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, handle)
}

#[tokio::test]
async fn review_in_the_browser_edit_refused_approve_foreign_specs_hostile_titles_and_forgery() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let db = sqlite();
    let provider = FakeProvider::new();
    let server = TestServer::start(&db, provider.clone(), |_| {}).await;
    let (ada, stopped) = stopped_after_requirements(&server, &provider).await;
    let (_, project) = ada.get("/projects").await;
    let (_, hostile) = ada
        .post(
            "/specs",
            &json!({"project_id": project[0]["id"],
                    "title": "<script>window.__xss=1</script><img src=x onerror=\"window.__xss=2\">"}),
        )
        .await;
    let (_, bob) = server.user("bob").await;
    let (_, bob_project) = bob
        .post(
            "/projects",
            &json!({"name": "b", "repo_url": "https://git.example/b.git"}),
        )
        .await;
    let (_, bob_spec) = bob
        .post(
            "/specs",
            &json!({"project_id": bob_project["id"], "title": "Bob's"}),
        )
        .await;
    let base = server.url.clone();

    browser.goto(&format!("{base}/")).await;
    browser.screenshot(&screenshots().join("sign-in.png")).await;
    sign_in(&browser, &base, ada.token.as_deref().unwrap()).await;

    // The hostile title is text: no script ran, the markup shows as written.
    assert_eq!(
        browser
            .eval("return window.__xss === undefined;", json!([]))
            .await,
        json!(true)
    );
    let row = browser
        .text(&format!(
            "tr[data-spec='{}']",
            hostile["id"].as_str().unwrap()
        ))
        .await
        .unwrap();
    assert!(row.contains("<script>window.__xss=1</script>"), "{row}");
    browser
        .goto(&format!("{base}/specs/{}", hostile["id"].as_str().unwrap()))
        .await;
    assert_eq!(
        browser
            .eval("return window.__xss === undefined;", json!([]))
            .await,
        json!(true)
    );
    assert!(browser.text("h1").await.unwrap().starts_with("<script>"));

    // The stopped spec: its requirements with their EARS pattern; an edit into a non-EARS
    // sentence shows the evaluator's message and the spec does not move.
    browser.goto(&format!("{base}/specs/{stopped}")).await;
    let actions = browser.text("#actions").await.unwrap_or_default();
    assert!(actions.contains("Stopped after requirements."), "{actions}");
    browser
        .screenshot(&screenshots().join("spec-stopped.png"))
        .await;
    let not_ears = requirements_with(|d| {
        d["requirements"][0]["text"] = json!("Make the greeting loud.");
    });
    browser
        .eval(
            "document.getElementById('edit').open = true; \
             document.querySelector('#edit textarea').value = arguments[0]; return true;",
            json!([serde_json::to_string_pretty(&not_ears).unwrap()]),
        )
        .await;
    browser.click("#edit button").await;
    wait_for_text(
        &browser,
        "#feedback",
        &rejection_message(&judged(&not_ears)),
    )
    .await;
    // What was typed is still in the form.
    let kept = browser
        .eval(
            "return document.querySelector('#edit textarea').value;",
            json!([]),
        )
        .await;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(kept.as_str().unwrap()).unwrap(),
        not_ears
    );
    browser
        .screenshot(&screenshots().join("edit-rejected.png"))
        .await;
    let (_, still) = ada.get(&format!("/specs/{stopped}")).await;
    assert_eq!(still["status"], "pending");
    assert_eq!(
        still["phases"][1]["output"],
        super::common::phase_output("requirements")
    );

    // Approve: the next phase starts and the page says so.
    browser.click("#approve").await;
    wait_for_text(&browser, "#status", "executing").await;
    assert_eq!(browser.url().await, format!("{base}/specs/{stopped}"));
    assert_eq!(provider.spawned().len(), 2);
    assert_eq!(provider.env(1)["SPEC_PHASE"], "design");

    // Another user's spec is not found.
    browser
        .goto(&format!(
            "{base}/specs/{}",
            bob_spec["id"].as_str().unwrap()
        ))
        .await;
    let error = browser.text("#error").await.unwrap_or_default();
    assert_eq!(
        error,
        format!("no spec {}", bob_spec["id"].as_str().unwrap())
    );

    // A page of another origin posts a cancel with a guessed token: refused, nothing moves.
    let (evil, evil_server) = evil_site(format!("{base}/specs/{stopped}/cancel")).await;
    browser.goto(&evil).await;
    eventually(
        Duration::from_secs(10),
        "the forged post to land",
        || async { browser.url().await.ends_with("/cancel") },
    )
    .await;
    let refused = browser.text("#error").await.unwrap_or_default();
    assert_eq!(refused, "a form of another site cannot post here");
    browser
        .screenshot(&screenshots().join("forged-post.png"))
        .await;
    let (_, detail) = ada.get(&format!("/specs/{stopped}")).await;
    assert_eq!(detail["status"], "executing");
    assert!(provider.terminated().is_empty());
    evil_server.abort();

    browser.close();
    server.stop().await;
}
