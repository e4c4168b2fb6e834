//! The web dashboard: sign-in and its cookie, escaped output, other users' specs, CSRF.

use omoi_coordinator::review::rejection_message;
use pretty_assertions::assert_eq;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use serde_json::json;

use super::common::{FakeProvider, TestServer, each_backend};
use super::review::stopped_after_requirements;

/// A browser without redirects or a cookie jar: the test carries the cookie itself.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The type of a form's body (the values sent here need no escaping: tokens and hex).
const FORM: &str = "application/x-www-form-urlencoded";

/// Posts a form body, with the session cookie when given.
async fn post_form(
    web: &reqwest::Client,
    url: String,
    cookie: Option<&str>,
    body: impl Into<String>,
) -> reqwest::Response {
    let mut request = web.post(url).header(CONTENT_TYPE, FORM);
    if let Some(cookie) = cookie {
        request = request.header(COOKIE, cookie);
    }
    request.body(body.into()).send().await.unwrap()
}

/// Text as the pages escape it.
fn html_text(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A form value, percent-encoded.
fn percent(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Signs in with `token`: the session cookie (`omoi_session=<id>`) the server set.
pub(super) async fn sign_in(web: &reqwest::Client, base: &str, token: &str) -> String {
    let signed = post_form(
        web,
        format!("{base}/sign-in"),
        None,
        format!("token={token}"),
    )
    .await;
    assert_eq!(signed.status(), StatusCode::SEE_OTHER);
    let set = signed.headers()[SET_COOKIE].to_str().unwrap().to_string();
    set.split(';').next().unwrap().to_string()
}

/// A page as text, with a cookie.
async fn page(web: &reqwest::Client, url: String, cookie: &str) -> (StatusCode, String) {
    let answer = web.get(url).header(COOKIE, cookie).send().await.unwrap();
    (answer.status(), answer.text().await.unwrap())
}

/// The value of `name="csrf"` in a page.
fn csrf_in(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").unwrap() + "name=\"csrf\" value=\"".len();
    page[at..at + 64].to_string()
}

#[tokio::test]
async fn a_user_signs_in_sees_escaped_specs_and_approves_with_the_csrf_token() {
    each_backend(|db| async move {
        let provider = FakeProvider::new();
        let server = TestServer::start(&db, provider.clone(), |_| {}).await;
        let (ada, stopped) = stopped_after_requirements(&server, &provider).await;
        let token = ada.token.clone().unwrap();
        let (_, project) = ada.get("/projects").await;
        let (_, hostile) = ada
            .post(
                "/specs",
                &json!({"project_id": project[0]["id"], "title": "<script>alert(1)</script>"}),
            )
            .await;
        let web = browser();
        let url = |path: &str| format!("{}{path}", server.url);

        // Signed out: the sign-in form; a wrong token is refused.
        let page = web.get(url("/")).send().await.unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        assert!(page.text().await.unwrap().contains("action=\"/sign-in\""));
        let refused = post_form(&web, url("/sign-in"), None, "token=omoi_u_nope").await;
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        assert!(refused.headers().get(SET_COOKIE).is_none());
        assert!(
            refused
                .text()
                .await
                .unwrap()
                .contains("That is not a user token.")
        );

        let signed = post_form(
            &web,
            url("/sign-in"),
            None,
            format!("token={}", token.as_str()),
        )
        .await;
        assert_eq!(signed.status(), StatusCode::SEE_OTHER);
        assert_eq!(signed.headers()[LOCATION], "/");
        // The cookie holds a session id, never the user token.
        let set = signed.headers()[SET_COOKIE].to_str().unwrap().to_string();
        assert!(set.starts_with("omoi_session=omoi_w_"), "{set}");
        assert!(!set.contains(&token), "{set}");
        assert!(
            set.ends_with("; Path=/; HttpOnly; SameSite=Strict; Max-Age=604800"),
            "{set}"
        );
        let cookie = set.split(';').next().unwrap().to_string();

        // The list: the hostile title is text, not markup.
        let list = web
            .get(url("/"))
            .header(COOKIE, &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(list.status(), StatusCode::OK);
        let list = list.text().await.unwrap();
        assert!(
            list.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{list}"
        );
        assert!(!list.contains("<script>"), "{list}");
        assert!(
            list.contains(&format!("href=\"/specs/{stopped}\"")),
            "{list}"
        );
        let hostile_page = web
            .get(url(&format!("/specs/{}", hostile["id"].as_str().unwrap())))
            .header(COOKIE, &cookie)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(!hostile_page.contains("<script>"), "{hostile_page}");

        // The stopped spec: requirements with their EARS pattern and an approve form.
        let page = web
            .get(url(&format!("/specs/{stopped}")))
            .header(COOKIE, &cookie)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(page.contains("REQ-CLI-001"), "{page}");
        assert!(page.contains("[event-driven]"), "{page}");
        assert!(page.contains("Stopped after requirements."), "{page}");
        let csrf = csrf_in(&page);

        // An edit that makes a requirement no EARS sentence: the evaluator's message, 422.
        let not_ears = super::review::requirements_with(|d| {
            d["requirements"][0]["text"] = json!("Make the greeting loud.");
        });
        let rejected = post_form(
            &web,
            url(&format!("/specs/{stopped}/edit")),
            Some(&cookie),
            format!(
                "csrf={csrf}&phase=requirements&output={}",
                percent(&not_ears.to_string())
            ),
        )
        .await;
        assert_eq!(rejected.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let rejected = rejected.text().await.unwrap();
        let message = rejection_message(&super::review::judged(&not_ears));
        assert!(message.starts_with("The edit is refused: it brings issues"));
        assert!(
            rejected.contains(&format!(
                "<pre class=\"error\" id=\"feedback\">{}</pre>",
                html_text(&message)
            )),
            "{rejected}"
        );
        let (_, still) = ada.get(&format!("/specs/{stopped}")).await;
        assert_eq!(
            (&still["status"], &still["phases"][1]["output"]),
            (
                &json!("pending"),
                &super::common::phase_output("requirements")
            )
        );

        // A forged POST (no token, or another session's) is refused and nothing moves.
        for forged in [String::new(), "0".repeat(64)] {
            let answer = post_form(
                &web,
                url(&format!("/specs/{stopped}/approve")),
                Some(&cookie),
                format!("csrf={}", forged.as_str()),
            )
            .await;
            assert_eq!(answer.status(), StatusCode::FORBIDDEN);
        }
        let without_session = post_form(
            &web,
            url(&format!("/specs/{stopped}/approve")),
            None,
            format!("csrf={}", csrf.as_str()),
        )
        .await;
        assert_eq!(without_session.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(provider.spawned().len(), 1);

        let approved = post_form(
            &web,
            url(&format!("/specs/{stopped}/approve")),
            Some(&cookie),
            format!("csrf={}", csrf.as_str()),
        )
        .await;
        assert_eq!(approved.status(), StatusCode::SEE_OTHER);
        assert_eq!(provider.env(1)["SPEC_PHASE"], "design");
        let (_, detail) = ada.get(&format!("/specs/{stopped}")).await;
        assert_eq!(detail["status"], "executing");

        // Another user's spec is not found; sign-out needs the token too.
        let (_, bob) = server.user("bob").await;
        let bob_cookie = sign_in(&web, &server.url, bob.token.as_deref().unwrap()).await;
        let foreign = web
            .get(url(&format!("/specs/{stopped}")))
            .header(COOKIE, &bob_cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(foreign.status(), StatusCode::NOT_FOUND);
        let out = post_form(&web, url("/sign-out"), Some(&cookie), "csrf=").await;
        assert_eq!(out.status(), StatusCode::FORBIDDEN);
        let out = post_form(
            &web,
            url("/sign-out"),
            Some(&cookie),
            format!("csrf={}", csrf.as_str()),
        )
        .await;
        assert_eq!(out.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            out.headers()[SET_COOKIE],
            "omoi_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
        );
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn sessions_live_on_the_server_end_at_sign_out_and_failed_sign_ins_are_limited() {
    each_backend(|db| async move {
        let server = TestServer::start(&db, FakeProvider::new(), |_| {}).await;
        let (ada, api) = server.user("ada").await;
        let token = api.token.clone().unwrap();
        let web = browser();
        let base = server.url.clone();

        // The user token itself is no session.
        let (status, _) = page(
            &web,
            format!("{base}/specs/x"),
            &format!("omoi_session={token}"),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        // Two sessions; signing one out ends that one only, on the server.
        let first = sign_in(&web, &base, &token).await;
        let second = sign_in(&web, &base, &token).await;
        assert_ne!(first, second);
        let (status, list) = page(&web, format!("{base}/"), &first).await;
        assert_eq!(status, StatusCode::OK);
        let out = post_form(
            &web,
            format!("{base}/sign-out"),
            Some(&first),
            format!("csrf={}", csrf_in(&list)),
        )
        .await;
        assert_eq!(out.status(), StatusCode::SEE_OTHER);
        let (status, page_after) = page(&web, format!("{base}/"), &first).await;
        assert_eq!(status, StatusCode::OK);
        assert!(page_after.contains("action=\"/sign-in\""), "{page_after}");
        let (status, _) = page(&web, format!("{base}/live"), &first).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, still) = page(&web, format!("{base}/"), &second).await;
        assert_eq!(status, StatusCode::OK);
        assert!(still.contains("<h1>Specs</h1>"), "{still}");

        // A sign-in link works once.
        let link = omoi_coordinator::dashboard::sign_in_link(&server.store, &base, &ada.id)
            .await
            .unwrap();
        assert!(
            link.starts_with(&format!("{base}/sign-in/link?code=omoi_l_")),
            "{link}"
        );
        let used = web.get(&link).send().await.unwrap();
        assert_eq!(used.status(), StatusCode::SEE_OTHER);
        assert!(
            used.headers()[SET_COOKIE]
                .to_str()
                .unwrap()
                .starts_with("omoi_session=omoi_w_")
        );
        let again = web.get(&link).send().await.unwrap();
        assert_eq!(again.status(), StatusCode::UNAUTHORIZED);
        assert!(again.headers().get(SET_COOKIE).is_none());
        for bad in ["", "?code=", "?code=omoi_l_nope", "?code=%FF%FE"] {
            let answer = web
                .get(format!("{base}/sign-in/link{bad}"))
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), StatusCode::UNAUTHORIZED, "{bad}");
        }

        // A sign-in posted by another site's page is refused before the token is looked at.
        let forged = web
            .post(format!("{base}/sign-in"))
            .header(CONTENT_TYPE, FORM)
            .header("origin", "http://evil.example")
            .body(format!("token={token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(forged.status(), StatusCode::FORBIDDEN);

        // Failed sign-ins from one address (the five bad links above count): after ten, even
        // the right token waits.
        for _ in 0..3 {
            let refused =
                post_form(&web, format!("{base}/sign-in"), None, "token=omoi_u_nope").await;
            assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        }
        let refused = post_form(&web, format!("{base}/sign-in"), None, "nothing=here").await;
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        let refused = post_form(&web, format!("{base}/sign-in"), None, "%%%").await;
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        let answer = post_form(&web, format!("{base}/sign-in"), None, "token=omoi_u_nope").await;
        assert_eq!(answer.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(answer.headers().get("retry-after").is_some());
        let limited = post_form(
            &web,
            format!("{base}/sign-in"),
            None,
            format!("token={token}"),
        )
        .await;
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(limited.headers().get(SET_COOKIE).is_none());
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn actions_launch_cancel_resume_and_message_need_the_csrf_token_and_the_owner() {
    each_backend(|db| async move {
        let provider = FakeProvider::new();
        let server = TestServer::start(&db, provider.clone(), |_| {}).await;
        let (_, ada) = server.user("ada").await;
        let (_, bob) = server.user("bob").await;
        let (_, project) = ada
            .post(
                "/projects",
                &json!({"name": "p<1>", "repo_url": "https://git.example/r.git"}),
            )
            .await;
        let project_id = project["id"].as_str().unwrap().to_string();
        let web = browser();
        let base = server.url.clone();
        let cookie = sign_in(&web, &base, ada.token.as_deref().unwrap()).await;
        let bob_cookie = sign_in(&web, &base, bob.token.as_deref().unwrap()).await;
        let (_, list) = page(&web, format!("{base}/"), &cookie).await;
        assert!(list.contains("p&lt;1&gt;"), "{list}");
        let csrf = csrf_in(&list);

        // Launch: bad input is refused with its reason, nothing spawned.
        for (body, status) in [
            (
                format!("csrf={csrf}&project_id={project_id}&title=&stop_after="),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                format!("csrf={csrf}&project_id={project_id}&title=x&stop_after=lunch"),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                format!("csrf={csrf}&project_id=nope&title=x"),
                StatusCode::NOT_FOUND,
            ),
            (
                format!("csrf=&project_id={project_id}&title=x"),
                StatusCode::FORBIDDEN,
            ),
        ] {
            let answer =
                post_form(&web, format!("{base}/launch"), Some(&cookie), body.clone()).await;
            assert_eq!(answer.status(), status, "{body}");
        }
        assert_eq!(provider.spawned().len(), 0);
        let launched = post_form(
            &web,
            format!("{base}/launch"),
            Some(&cookie),
            format!(
                "csrf={csrf}&project_id={project_id}&title={}&description=d&stop_after=design",
                percent("Add --shout")
            ),
        )
        .await;
        assert_eq!(launched.status(), StatusCode::SEE_OTHER);
        let at = launched.headers()[LOCATION].to_str().unwrap().to_string();
        let id = at.trim_start_matches("/specs/").to_string();
        assert_eq!(provider.spawned().len(), 1);
        assert_eq!(provider.env(0)["SPEC_STOP_AFTER"], "design");
        let (sandbox, _) = super::common::sandbox_of(&provider, 0);

        // The running spec's page offers cancel and a message to its live sandbox.
        let (status, spec_page) = page(&web, format!("{base}{at}"), &cookie).await;
        assert_eq!(status, StatusCode::OK);
        assert!(spec_page.contains("id=\"cancel\""), "{spec_page}");
        assert!(
            spec_page.contains(&format!("<option value=\"{sandbox}\">")),
            "{spec_page}"
        );

        // A message: not to another user's spec, not empty, not without the token.
        let message = |csrf: &str, text: &str| {
            format!("csrf={csrf}&sandbox_id={sandbox}&text={}", percent(text))
        };
        let foreign = post_form(
            &web,
            format!("{base}/specs/{id}/message"),
            Some(&bob_cookie),
            message(
                &csrf_in(&page(&web, format!("{base}/"), &bob_cookie).await.1),
                "hi",
            ),
        )
        .await;
        assert_eq!(foreign.status(), StatusCode::NOT_FOUND);
        let empty = post_form(
            &web,
            format!("{base}/specs/{id}/message"),
            Some(&cookie),
            message(&csrf, "  "),
        )
        .await;
        assert_eq!(empty.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let forged = post_form(
            &web,
            format!("{base}/specs/{id}/message"),
            Some(&cookie),
            message("", "hi"),
        )
        .await;
        assert_eq!(forged.status(), StatusCode::FORBIDDEN);
        let sent = post_form(
            &web,
            format!("{base}/specs/{id}/message"),
            Some(&cookie),
            message(&csrf, "Use clap."),
        )
        .await;
        assert_eq!(sent.status(), StatusCode::SEE_OTHER);
        let messages = server.store.messages_after(&sandbox, 0).await.unwrap();
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].text, "Use clap.");

        // Cancel: not bob's to cancel; then ada's; then resume starts a new sandbox.
        let bob_csrf = csrf_in(&page(&web, format!("{base}/"), &bob_cookie).await.1);
        let foreign = post_form(
            &web,
            format!("{base}/specs/{id}/cancel"),
            Some(&bob_cookie),
            format!("csrf={bob_csrf}"),
        )
        .await;
        assert_eq!(foreign.status(), StatusCode::NOT_FOUND);
        let cancelled = post_form(
            &web,
            format!("{base}/specs/{id}/cancel"),
            Some(&cookie),
            format!("csrf={csrf}"),
        )
        .await;
        assert_eq!(cancelled.status(), StatusCode::SEE_OTHER);
        let (_, detail) = ada.get(&format!("/specs/{id}")).await;
        assert_eq!(detail["status"], "cancelled");
        let again = post_form(
            &web,
            format!("{base}/specs/{id}/cancel"),
            Some(&cookie),
            format!("csrf={csrf}"),
        )
        .await;
        assert_eq!(again.status(), StatusCode::CONFLICT);
        let (_, spec_page) = page(&web, format!("{base}{at}"), &cookie).await;
        assert!(spec_page.contains("id=\"resume\""), "{spec_page}");
        let resumed = post_form(
            &web,
            format!("{base}/specs/{id}/resume"),
            Some(&cookie),
            format!("csrf={csrf}"),
        )
        .await;
        assert_eq!(resumed.status(), StatusCode::SEE_OTHER);
        assert_eq!(provider.spawned().len(), 2);
        let (_, detail) = ada.get(&format!("/specs/{id}")).await;
        assert_eq!(detail["status"], "executing");

        // A cross-site POST with the right cookie and token is refused all the same.
        let cross = web
            .post(format!("{base}/specs/{id}/cancel"))
            .header(CONTENT_TYPE, FORM)
            .header(COOKIE, &cookie)
            .header("origin", "http://evil.example")
            .body(format!("csrf={csrf}"))
            .send()
            .await
            .unwrap();
        assert_eq!(cross.status(), StatusCode::FORBIDDEN);
        let (_, detail) = ada.get(&format!("/specs/{id}")).await;
        assert_eq!(detail["status"], "executing");
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn the_pages_show_usage_design_filters_and_stream_events_live() {
    use futures_util::StreamExt;
    each_backend(|db| async move {
        let provider = FakeProvider::new();
        let server = TestServer::start(&db, provider.clone(), |_| {}).await;
        let (ada, stopped) = stopped_after_requirements(&server, &provider).await;
        let web = browser();
        let base = server.url.clone();
        let cookie = sign_in(&web, &base, ada.token.as_deref().unwrap()).await;

        // The list: filters by status and project; a bad status is a 400.
        let (_, all) = page(&web, format!("{base}/"), &cookie).await;
        assert!(all.contains(&format!("data-spec=\"{stopped}\"")), "{all}");
        assert!(all.contains("phase 3/6"), "{all}");
        let (_, none) = page(&web, format!("{base}/?status=completed"), &cookie).await;
        assert!(!none.contains(&format!("data-spec=\"{stopped}\"")), "{none}");
        assert!(none.contains("No spec matches."), "{none}");
        let (_, other) = page(&web, format!("{base}/?project=elsewhere"), &cookie).await;
        assert!(!other.contains(&format!("data-spec=\"{stopped}\"")), "{other}");
        let (status, _) = page(&web, format!("{base}/?status=lunch"), &cookie).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);

        // Approve, then the design phase reports usage, an evaluation and its output.
        let csrf = csrf_in(&page(&web, format!("{base}/specs/{stopped}"), &cookie).await.1);
        let approved = post_form(&web, format!("{base}/specs/{stopped}/approve"), Some(&cookie), format!("csrf={csrf}")).await;
        assert_eq!(approved.status(), StatusCode::SEE_OTHER);
        let (sandbox, token) = super::common::sandbox_of(&provider, 1);

        // A live stream: the session is needed; it starts with the status.
        let unsigned = web.get(format!("{base}/specs/{stopped}/live")).send().await.unwrap();
        assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);
        let (status, _) = page(&web, format!("{base}/specs/{stopped}/live?after=-1"), &cookie).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let live = web
            .get(format!("{base}/specs/{stopped}/live?after=3"))
            .header(COOKIE, &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(live.status(), StatusCode::OK);
        let mut live = live.bytes_stream();
        let list_live = web.get(format!("{base}/live")).header(COOKIE, &cookie).send().await.unwrap();
        assert_eq!(list_live.status(), StatusCode::OK);
        let mut list_live = list_live.bytes_stream();

        let usage = json!({"call": {"input_tokens": 1000, "output_tokens": 200, "cost_usd": 0.125},
                           "total": {"input_tokens": 1000, "output_tokens": 200, "cost_usd": 0.125}});
        let design = super::common::phase_output("design");
        let evaluation = json!({"attempt": 1, "phase": "design", "score": 0.91, "passed": true,
            "criteria": [{"name": "coverage", "weight": 1.0, "score": 0.91, "detail": "all <served>"}],
            "issues": [], "warnings": []});
        let (status, _) = server
            .api(Some(&token))
            .ingest(
                &sandbox,
                &[
                    super::common::event(&sandbox, &stopped, 1, "spec.phase_started", json!({"phase": "design", "attempt": 1})),
                    super::common::event(&sandbox, &stopped, 2, "agent.usage", usage),
                    super::common::event(&sandbox, &stopped, 3, "spec.eval_result", evaluation),
                    super::common::event(&sandbox, &stopped, 4, "spec.phase_completed", json!({
                        "phase": "design", "score": 0.91, "attempts": 1, "duration_ms": 900,
                        "output": design})),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::OK);

        // Both streams hear of it.
        let mut heard = String::new();
        while !heard.contains("event: spec.phase_completed") {
            let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), live.next())
                .await
                .expect("the spec stream is silent")
                .unwrap()
                .unwrap();
            heard.push_str(&String::from_utf8_lossy(&chunk));
        }
        assert!(heard.starts_with("event: status"), "{heard}");
        assert!(heard.contains("event: agent.usage"), "{heard}");
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), list_live.next())
            .await
            .expect("the list stream is silent")
            .unwrap()
            .unwrap();
        let chunk = String::from_utf8_lossy(&chunk).to_string();
        assert!(chunk.contains("event: change"), "{chunk}");
        assert!(chunk.contains(&stopped), "{chunk}");

        // The spec page: usage per phase and in all, the evaluation, the components and what
        // they serve, the events with a filter.
        let (_, spec_page) = page(&web, format!("{base}/specs/{stopped}"), &cookie).await;
        assert!(spec_page.contains("1000 tokens in, 200 out · $0.1250 so far"), "{spec_page}");
        assert!(spec_page.contains("<td>1000 in / 200 out</td><td>$0.1250</td>"), "{spec_page}");
        assert!(spec_page.contains("attempt 1 · score 0.91 · passed"), "{spec_page}");
        assert!(spec_page.contains("all &lt;served&gt;"), "{spec_page}");
        assert!(spec_page.contains("<h2>Design</h2>"), "{spec_page}");
        assert!(spec_page.contains("href=\"#req-REQ-CLI-001\""), "{spec_page}");
        assert!(spec_page.contains("data-cursor=\"7\""), "{spec_page}");
        assert!(spec_page.contains("spec.eval_result"), "{spec_page}");
        let (_, filtered) = page(&web, format!("{base}/specs/{stopped}?kind=agent.u"), &cookie).await;
        let events = &filtered[filtered.find("id=\"event-list\"").unwrap()..];
        assert!(events.contains("agent.usage"), "{events}");
        assert!(!events.contains("spec.eval_result"), "{events}");
        let (_, by_sandbox) = page(&web, format!("{base}/specs/{stopped}?sandbox={sandbox}"), &cookie).await;
        let events = &by_sandbox[by_sandbox.find("id=\"event-list\"").unwrap()..];
        assert!(!events.contains("spec.phase_completed\u{20}") || events.contains(&sandbox[..8]));
        assert_eq!(events.matches("<li ").count(), 4, "{events}");
        let (status, _) = page(&web, format!("{base}/specs/{stopped}?kind={}", "a".repeat(300)), &cookie).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (_, list) = page(&web, format!("{base}/"), &cookie).await;
        assert!(list.contains("$0.1250"), "{list}");

        // The script is served, and the pages load it.
        let script = web.get(format!("{base}/assets/live.js")).send().await.unwrap();
        assert_eq!(script.status(), StatusCode::OK);
        assert!(script.text().await.unwrap().contains("EventSource"));
        assert!(list.contains("<script src=\"/assets/live.js\" defer></script>"));
        server.stop().await;
    })
    .await;
}
