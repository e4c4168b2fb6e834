//! Bearer tokens as values: their kinds, generation from the OS's randomness, and the hash the
//! store keeps (a token itself is never stored).

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Who a token speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// A person: every user route.
    User,
    /// One sandbox: its own ingest, context and message routes.
    Sandbox,
    /// One standby sandbox of a warm pool: registers it and fetches its assignment, nothing
    /// else (stored with the standby, not among the tokens).
    Standby,
}

impl TokenKind {
    /// The stored name of the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::User => "user",
            TokenKind::Sandbox => "sandbox",
            TokenKind::Standby => "standby",
        }
    }
}

/// A new random token: a kind prefix and 256 bits from the OS as hex.
pub fn generate_token(kind: TokenKind) -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::Internal(format!("no randomness from the OS: {e}")))?;
    let prefix = match kind {
        TokenKind::User => "omoi_u_",
        TokenKind::Sandbox => "omoi_s_",
        TokenKind::Standby => "omoi_p_",
    };
    Ok(format!("{prefix}{}", hex(&bytes)))
}

/// A new random secret that is no bearer token (a dashboard session id, a sign-in link's code):
/// `prefix` and 256 bits from the OS as hex.
pub fn random_secret(prefix: &str) -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::Internal(format!("no randomness from the OS: {e}")))?;
    Ok(format!("{prefix}{}", hex(&bytes)))
}

/// The stored form of a token: sha256 as hex.
pub fn hash_token(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// `bytes` as lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
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
