//! Secrets at rest: the operator's key, and the sealing (XChaCha20-Poly1305) of the project
//! secrets the database keeps (worker environment values marked or named as secrets, git tokens).
//!
//! A sealed value is `enc:v1:` and the base64 of a random 24-byte nonce and the ciphertext.

use std::fmt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

/// What marks a sealed value.
pub const SEALED_PREFIX: &str = "enc:v1:";

const NONCE_BYTES: usize = 24;
const KEY_BYTES: usize = 32;

/// What can go wrong with a key or a sealed value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The key file or variable does not hold a key. Not retryable.
    #[error("{0}")]
    BadKey(String),
    /// A stored value does not open with this key (another key, or altered). Not retryable.
    #[error("a stored secret does not open with this key (another key, or altered data)")]
    WrongKey,
    /// The random source failed. Retryable.
    #[error("no randomness for a nonce: {0}")]
    Random(String),
}

/// The operator's key: 32 bytes, written as 64 hex digits. `Debug` never shows it.
#[derive(Clone)]
pub struct SecretKey([u8; KEY_BYTES]);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

impl SecretKey {
    /// A key from its text form (64 hex digits, surrounding whitespace ignored); `origin` names
    /// where it came from in the error.
    pub fn parse(text: &str, origin: &str) -> Result<SecretKey, SecretError> {
        let text = text.trim();
        let bad = || {
            SecretError::BadKey(format!(
                "{origin}: a secret key is {} hex digits (e.g. from `openssl rand -hex 32`)",
                KEY_BYTES * 2
            ))
        };
        if text.len() != KEY_BYTES * 2 || !text.is_ascii() {
            return Err(bad());
        }
        let mut key = [0u8; KEY_BYTES];
        for (at, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[at * 2..at * 2 + 2], 16).map_err(|_| bad())?;
        }
        Ok(SecretKey(key))
    }

    /// A key from a file holding its text form.
    pub fn read(path: &Path) -> Result<SecretKey, SecretError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| SecretError::BadKey(format!("{}: {e}", path.display())))?;
        SecretKey::parse(&text, &path.display().to_string())
    }

    /// A new random key.
    pub fn generate() -> Result<SecretKey, SecretError> {
        let mut key = [0u8; KEY_BYTES];
        getrandom::fill(&mut key).map_err(|e| SecretError::Random(e.to_string()))?;
        Ok(SecretKey(key))
    }

    /// The text form, for the file a generated key is kept in.
    pub fn to_hex(&self) -> String {
        crate::token::hex(&self.0)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&self.0.into())
    }

    /// Seals `plain` under a fresh random nonce.
    pub fn seal(&self, plain: &str) -> Result<String, SecretError> {
        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::fill(&mut nonce).map_err(|e| SecretError::Random(e.to_string()))?;
        let sealed = self
            .cipher()
            .encrypt(XNonce::from_slice(&nonce), plain.as_bytes())
            .map_err(|_| SecretError::Random("sealing failed".into()))?;
        let mut bytes = nonce.to_vec();
        bytes.extend(sealed);
        Ok(format!("{SEALED_PREFIX}{}", STANDARD.encode(bytes)))
    }

    /// A credential derived from this key for `purpose` (HMAC-SHA-256, as hex): the same on every
    /// coordinator that holds the key, and nothing of the key can be learnt from it.
    pub fn derive(&self, purpose: &str) -> String {
        use sha2::{Digest, Sha256};
        const BLOCK: usize = 64;
        let mut inner_pad = [0x36u8; BLOCK];
        let mut outer_pad = [0x5cu8; BLOCK];
        for (i, byte) in self.0.iter().enumerate() {
            inner_pad[i] ^= byte;
            outer_pad[i] ^= byte;
        }
        let inner = Sha256::new()
            .chain_update(inner_pad)
            .chain_update(purpose.as_bytes())
            .finalize();
        let mac = Sha256::new()
            .chain_update(outer_pad)
            .chain_update(inner)
            .finalize();
        crate::token::hex(&mac)
    }

    /// Opens a value sealed by [`SecretKey::seal`] with this key.
    pub fn open(&self, sealed: &str) -> Result<String, SecretError> {
        let bytes = sealed
            .strip_prefix(SEALED_PREFIX)
            .and_then(|b64| STANDARD.decode(b64).ok())
            .filter(|bytes| bytes.len() > NONCE_BYTES)
            .ok_or(SecretError::WrongKey)?;
        let (nonce, sealed) = bytes.split_at(NONCE_BYTES);
        let plain = self
            .cipher()
            .decrypt(XNonce::from_slice(nonce), sealed)
            .map_err(|_| SecretError::WrongKey)?;
        String::from_utf8(plain).map_err(|_| SecretError::WrongKey)
    }
}

/// The shortest secret value a project may hold: the worker masks secret values in command
/// output and events only from this length on (a shorter one would garble ordinary text and
/// protects little), so a shorter one could leave a sandbox in clear. The same bound as the
/// worker's `secrets::MIN_MASKED_LEN`.
pub const MIN_SECRET_BYTES: usize = 8;

/// Refuses a secret value that is set (not empty) and shorter than [`MIN_SECRET_BYTES`]; `what`
/// names it in the message.
pub fn check_length(what: &str, value: &str) -> Result<(), String> {
    if value.is_empty() || value.len() >= MIN_SECRET_BYTES {
        return Ok(());
    }
    Err(format!(
        "{what} is a secret of {} bytes; secrets must be at least {MIN_SECRET_BYTES} bytes, or \
         the sandbox could not mask them in what its commands print",
        value.len()
    ))
}

/// Whether a stored value is sealed.
pub fn is_sealed(value: &str) -> bool {
    value.starts_with(SEALED_PREFIX)
}

/// Whether a worker variable's name says it holds a secret (a key, a token, a password…), so
/// its value is kept sealed even when the user did not mark it.
pub fn looks_secret(name: &str) -> bool {
    let name = name.to_ascii_uppercase();
    [
        "KEY",
        "TOKEN",
        "SECRET",
        "PASSWORD",
        "PASSWD",
        "CREDENTIAL",
        "AUTH",
    ]
    .iter()
    .any(|word| name.contains(word))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn a_sealed_value_opens_with_its_key_only() {
        let key = SecretKey::generate().unwrap();
        let sealed = key.seal("sk-ant-very-secret").unwrap();
        assert!(sealed.starts_with(SEALED_PREFIX), "{sealed}");
        assert!(!sealed.contains("very-secret"));
        assert_ne!(key.seal("sk-ant-very-secret").unwrap(), sealed);
        assert_eq!(key.open(&sealed), Ok("sk-ant-very-secret".to_string()));
        let other = SecretKey::generate().unwrap();
        assert_eq!(other.open(&sealed), Err(SecretError::WrongKey));
        let mut altered = sealed.clone();
        altered.pop();
        altered.push('A');
        assert_eq!(key.open(&altered), Err(SecretError::WrongKey));
        assert_eq!(key.open("plain"), Err(SecretError::WrongKey));
    }

    #[test]
    fn keys_are_64_hex_digits_and_never_printed() {
        let key = SecretKey::generate().unwrap();
        let again = SecretKey::parse(&format!(" {}\n", key.to_hex()), "k").unwrap();
        assert_eq!(again.0, key.0);
        assert_eq!(format!("{key:?}"), "SecretKey(<redacted>)");
        let bad = "the key: a secret key is 64 hex digits (e.g. from `openssl rand -hex 32`)";
        for text in ["", "abc", &"zz".repeat(32), &"é".repeat(32)] {
            assert_eq!(
                SecretKey::parse(text, "the key").map(|_| ()),
                Err(SecretError::BadKey(bad.into())),
                "{text:?}"
            );
        }
    }

    #[test]
    fn secrets_shorter_than_eight_bytes_are_refused() {
        assert_eq!(check_length("git_token", "12345678"), Ok(()));
        assert_eq!(check_length("git_token", ""), Ok(()));
        assert_eq!(
            check_length("git_token", "ghs_e2e"),
            Err(
                "git_token is a secret of 7 bytes; secrets must be at least 8 bytes, or the \
                 sandbox could not mask them in what its commands print"
                    .into()
            )
        );
    }

    #[test]
    fn names_of_keys_and_tokens_look_secret() {
        let secret = [
            "ANTHROPIC_API_KEY",
            "github_token",
            "DB_PASSWORD",
            "AWS_SECRET",
        ];
        let plain = ["OMOI_LLM", "MODEL", "MAX_TURNS", "OPENAI_BASE_URL"];
        assert_eq!(secret.map(looks_secret).to_vec(), vec![true; secret.len()]);
        assert_eq!(plain.map(looks_secret).to_vec(), vec![false; plain.len()]);
    }

    #[test]
    fn a_derived_credential_is_hmac_sha256_of_the_purpose() {
        // RFC 4231 test case 1 (a key of twenty 0x0b bytes, "Hi There"): HMAC pads a short key
        // with zeros, so the same key padded to 32 bytes gives the same MAC.
        let key = SecretKey([0x0b; KEY_BYTES]);
        let other = SecretKey([0x0c; KEY_BYTES]);
        assert_eq!(key.derive("a").len(), 64);
        assert_eq!(key.derive("a"), key.derive("a"));
        assert_ne!(key.derive("a"), key.derive("b"));
        assert_ne!(key.derive("a"), other.derive("a"));
        let mut twenty = [0u8; KEY_BYTES];
        twenty[..20].copy_from_slice(&[0x0b; 20]);
        assert_eq!(
            SecretKey(twenty).derive("Hi There"),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
    }
}
