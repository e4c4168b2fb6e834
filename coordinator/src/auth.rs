//! Bearer tokens: generation, hashing, and the extractors that authenticate a request as a user
//! or as one sandbox.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::model::User;
use crate::server::AppState;
use crate::store::{TokenKind, TokenRecord};

/// A new random token: a kind prefix and 256 bits from the OS as hex.
pub fn generate_token(kind: TokenKind) -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::Internal(format!("no randomness from the OS: {e}")))?;
    let prefix = match kind {
        TokenKind::User => "omoi_u_",
        TokenKind::Sandbox => "omoi_s_",
    };
    Ok(format!("{prefix}{}", hex(&bytes)))
}

/// The stored form of a token: sha256 as hex.
pub fn hash_token(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_prefixed_and_hash_to_hex() {
        let a = generate_token(TokenKind::User).unwrap();
        let b = generate_token(TokenKind::User).unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("omoi_u_") && a.len() == 7 + 64, "{a}");
        assert!(
            generate_token(TokenKind::Sandbox)
                .unwrap()
                .starts_with("omoi_s_")
        );
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
