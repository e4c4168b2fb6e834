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
        assert_eq!(
            signed.headers()[SET_COOKIE],
            format!("omoi_session={token}; Path=/; HttpOnly; SameSite=Strict").as_str()
        );
        let cookie = format!("omoi_session={token}");

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
        let bob_cookie = format!("omoi_session={}", bob.token.unwrap());
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
