//! The extractors that authenticate a request by its bearer token, as a user, as one sandbox, or
//! (the standby routes) as one standby sandbox of a warm pool.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use crate::app::AppState;
use crate::error::{Error, Result};
use crate::model::User;
use crate::store::TokenRecord;

/// The bearer token of a request.
fn bearer(parts: &Parts) -> Result<&str> {
    let value = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or_else(|| Error::Unauthorized("missing Authorization: Bearer <token>".into()))?;
    let value = value
        .to_str()
        .map_err(|_| Error::Unauthorized("the Authorization header is not text".into()))?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err(Error::Unauthorized(
            "the Authorization header must be `Bearer <token>`".into(),
        )),
    }
}

/// A request made with a user's token.
#[derive(Debug, Clone)]
pub struct CurrentUser(pub User);

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let token = bearer(parts)?;
        match state.store.token(token).await? {
            Some(TokenRecord::User(user)) => Ok(CurrentUser(user)),
            Some(TokenRecord::Sandbox { .. }) => Err(Error::Forbidden(
                "a sandbox token cannot call user routes".into(),
            )),
            None => Err(Error::Unauthorized("unknown or expired token".into())),
        }
    }
}

/// A request made with a sandbox's token.
#[derive(Debug, Clone)]
pub struct CurrentSandbox(pub String);

impl CurrentSandbox {
    /// Refuses the request unless the token belongs to `sandbox_id`.
    pub fn require(&self, sandbox_id: &str) -> Result<()> {
        if self.0 == sandbox_id {
            Ok(())
        } else {
            Err(Error::Forbidden(format!(
                "this token belongs to another sandbox, not {sandbox_id}"
            )))
        }
    }
}

impl FromRequestParts<AppState> for CurrentSandbox {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let token = bearer(parts)?;
        match state.store.token(token).await? {
            Some(TokenRecord::Sandbox { sandbox_id }) => Ok(CurrentSandbox(sandbox_id)),
            Some(TokenRecord::User(_)) => Err(Error::Forbidden(
                "this route takes the sandbox's own token".into(),
            )),
            None => Err(Error::Unauthorized("unknown or expired token".into())),
        }
    }
}

/// The bearer token of a standby route: a pool credential, checked by the route against the
/// standby it names (each standby has its own).
#[derive(Debug, Clone)]
pub struct StandbyCredential(pub String);

impl FromRequestParts<AppState> for StandbyCredential {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _state: &AppState) -> Result<Self> {
        bearer(parts).map(|token| StandbyCredential(token.to_string()))
    }
}
