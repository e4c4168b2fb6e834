//! Dashboard sessions: the cookie holds a random session id (stored hashed, with an expiry,
//! revoked on sign-out), never a user token; the CSRF token of every form derives from it; a
//! POST whose `Origin` is another site is refused; failed sign-ins are limited per address.

use std::net::SocketAddr;
use std::time::Instant;

use axum::Form;
use axum::extract::{ConnectInfo, FromRequestParts, Query, State};
use axum::http::header::{COOKIE, HOST, ORIGIN, RETRY_AFTER, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{error_page, html, pages, redirect};
use crate::app::AppState;
use crate::error::{Error, Result};
use crate::model::User;
use crate::store::{SessionKind, TokenRecord};

/// The session cookie's name.
pub const COOKIE_NAME: &str = "omoi_session";
/// How long a session lasts.
pub const SESSION_TTL_MS: i64 = 7 * 24 * 3600 * 1000;
/// How long a one-time sign-in link works.
pub const LINK_TTL_MS: i64 = 24 * 3600 * 1000;

/// A signed-in browser: the user and its session id.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: User,
    id: String,
}

impl Session {
    /// The CSRF token of this session: derived from the session id, so a page of another site,
    /// which cannot read the cookie, cannot know it.
    pub fn csrf(&self) -> String {
        csrf_of(&self.id)
    }

    /// Refuses a form whose CSRF token is not this session's.
    pub fn check(&self, sent: &str) -> Result<()> {
        if sent == self.csrf() {
            Ok(())
        } else {
            Err(Error::Forbidden(
                "the form's CSRF token is missing or wrong".into(),
            ))
        }
    }
}

pub fn csrf_of(session_id: &str) -> String {
    let digest = Sha256::digest(format!("omoi-csrf\n{session_id}").as_bytes());
    crate::token::hex(&digest)
}

/// The session id in the request's cookies, if any.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.to_string())
        .filter(|value| !value.is_empty())
}

/// A POST from a page of another site: its `Origin` names another host than the request's
/// `Host` (or is `null`). A request without `Origin` (a program, not a browser) passes.
pub fn cross_site(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(ORIGIN) else {
        return false;
    };
    let Some(host) = headers.get(HOST).and_then(|h| h.to_str().ok()) else {
        return true;
    };
    let origin = origin.to_str().unwrap_or("null");
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    authority != Some(host)
}

/// The session of a request, or `None` when it carries no live session.
pub async fn session(parts: &Parts, state: &AppState) -> Result<Option<Session>> {
    let Some(id) = session_cookie(&parts.headers) else {
        return Ok(None);
    };
    Ok(state
        .store
        .session_user(&id)
        .await?
        .map(|user| Session { user, id }))
}

/// A page that needs a session: without one it answers with the sign-in page (401). A POST
/// from another site is refused (403) before anything else.
pub struct Signed(pub Session);

impl FromRequestParts<AppState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        if parts.method == axum::http::Method::POST && cross_site(&parts.headers) {
            return Err(error_page(&Error::Forbidden(
                "a form of another site cannot post here".into(),
            )));
        }
        match session(parts, state).await {
            Ok(Some(session)) => Ok(Signed(session)),
            Ok(None) => Err(html(StatusCode::UNAUTHORIZED, pages::sign_in(None))),
            Err(e) => Err(e.into_response()),
        }
    }
}

/// The cookie that carries a new session.
fn session_cookie_header(state: &AppState, id: &str) -> Option<HeaderValue> {
    let secure = if state.settings.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    format!(
        "{COOKIE_NAME}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        SESSION_TTL_MS / 1000
    )
    .parse()
    .ok()
}

/// A new session for `user_id`: to the spec list with its cookie.
async fn start_session(state: &AppState, user_id: &str) -> Response {
    match state
        .store
        .create_session(user_id, SessionKind::Session, SESSION_TTL_MS)
        .await
    {
        Ok(id) => {
            let mut response = redirect("/");
            if let Some(cookie) = session_cookie_header(state, &id) {
                response.headers_mut().insert(SET_COOKIE, cookie);
            }
            response
        }
        Err(e) => error_page(&e),
    }
}

/// The key sign-in failures are counted under: the client's address.
pub struct ClientKey(String);

impl<S: Send + Sync> FromRequestParts<S> for ClientKey {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientKey(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map_or_else(|| "unknown".to_string(), |c| c.0.ip().to_string()),
        ))
    }
}

fn too_many(wait: std::time::Duration) -> Response {
    let mut response = html(
        StatusCode::TOO_MANY_REQUESTS,
        pages::sign_in(Some("Too many failed sign-ins from here; try again later.")),
    );
    if let Ok(value) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
        response.headers_mut().insert(RETRY_AFTER, value);
    }
    response
}

#[derive(Debug, Deserialize)]
pub struct SignIn {
    #[serde(default)]
    token: String,
}

/// Signs in with a user token: a new session, or 401 (and a failure counted for the address);
/// 429 once the address failed too often.
pub async fn sign_in(
    State(state): State<AppState>,
    ClientKey(key): ClientKey,
    headers: HeaderMap,
    Form(form): Form<SignIn>,
) -> Response {
    if cross_site(&headers) {
        return error_page(&Error::Forbidden(
            "a form of another site cannot post here".into(),
        ));
    }
    if let Err(wait) = state.sign_in_failures.check(&key, Instant::now()) {
        return too_many(wait);
    }
    match state.store.token(form.token.trim()).await {
        Ok(Some(TokenRecord::User(user))) => start_session(&state, &user.id).await,
        Ok(_) => {
            state.sign_in_failures.fail(&key, Instant::now());
            html(
                StatusCode::UNAUTHORIZED,
                pages::sign_in(Some("That is not a user token.")),
            )
        }
        Err(e) => error_page(&e),
    }
}

#[derive(Debug, Deserialize)]
pub struct LinkQuery {
    #[serde(default)]
    code: String,
}

/// A one-time sign-in link: a new session when the code is live, else the sign-in page (the
/// code is used up either way, and a wrong one counts as a failed sign-in).
pub async fn sign_in_link(
    State(state): State<AppState>,
    ClientKey(key): ClientKey,
    Query(query): Query<LinkQuery>,
) -> Response {
    if let Err(wait) = state.sign_in_failures.check(&key, Instant::now()) {
        return too_many(wait);
    }
    match state.store.redeem_link(query.code.trim()).await {
        Ok(Some(user_id)) => start_session(&state, &user_id).await,
        Ok(None) => {
            state.sign_in_failures.fail(&key, Instant::now());
            html(
                StatusCode::UNAUTHORIZED,
                pages::sign_in(Some("That sign-in link is used, expired or wrong.")),
            )
        }
        Err(e) => error_page(&e),
    }
}

#[derive(Debug, Deserialize)]
pub struct Csrf {
    #[serde(default)]
    pub csrf: String,
}

/// Signs out: the session is deleted on the server and the cookie cleared.
pub async fn sign_out(
    State(state): State<AppState>,
    Signed(session): Signed,
    Form(form): Form<Csrf>,
) -> Response {
    if let Err(e) = session.check(&form.csrf) {
        return error_page(&e);
    }
    if let Err(e) = state.store.end_session(&session.id).await {
        return error_page(&e);
    }
    let mut response = redirect("/");
    let cookie = format!("{COOKIE_NAME}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    if let Ok(value) = cookie.parse() {
        response.headers_mut().insert(SET_COOKIE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn the_session_cookie_is_found_among_others_and_an_empty_one_is_none() {
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            HeaderValue::from_static("a=1; omoi_session=tok; b=2"),
        );
        assert_eq!(session_cookie(&headers), Some("tok".to_string()));
        headers.insert(COOKIE, HeaderValue::from_static("omoi_session="));
        assert_eq!(session_cookie(&headers), None);
        assert_eq!(session_cookie(&HeaderMap::new()), None);
    }

    #[test]
    fn the_csrf_token_depends_on_the_session() {
        assert_eq!(csrf_of("a"), csrf_of("a"));
        assert_ne!(csrf_of("a"), csrf_of("b"));
        assert_eq!(csrf_of("a").len(), 64);
    }

    #[test]
    fn a_post_from_another_origin_is_cross_site() {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(!cross_site(&headers));
        headers.insert(ORIGIN, HeaderValue::from_static("http://127.0.0.1:8080"));
        assert!(!cross_site(&headers));
        for other in [
            "http://evil.example",
            "null",
            "http://127.0.0.1:8081",
            "ftp://127.0.0.1:8080",
        ] {
            headers.insert(ORIGIN, HeaderValue::from_static(other));
            assert!(cross_site(&headers), "{other}");
        }
        headers.remove(HOST);
        headers.insert(ORIGIN, HeaderValue::from_static("http://127.0.0.1:8080"));
        assert!(cross_site(&headers));
    }
}
