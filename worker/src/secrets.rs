//! What keeps the worker's secrets from what it runs: [`drop_capabilities`] and [`seal`] make
//! the worker's own process unreadable by its children, [`ChildEnv`] is the environment every child starts with (an allow
//! list), and [`Masker`] replaces any known secret value in command output and events.
//!
//! Invariant: a child process never inherits the worker's environment; it gets [`ChildEnv`]
//! only, built from [`ALLOWED`] and the names of `OMOI_PASS_ENV`.

use std::borrow::Cow;
use std::collections::BTreeSet;

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine;
use rustix::thread::CapabilitySet;

/// What a masked secret value becomes.
pub const MASK: &str = "***";

/// Values shorter than this are not masked: they would garble ordinary text, and a value that
/// short protects nothing anyway.
pub const MIN_MASKED_LEN: usize = 8;

/// Variables a child gets when the worker has them: what a shell, git and a build need.
pub const ALLOWED: [&str; 17] = [
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "TERM",
    "TZ",
    "TMPDIR",
    "LANG",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
];

/// Prefix of the locale variables a child gets (`LC_ALL`, `LC_CTYPE`, …).
const LOCALE_PREFIX: &str = "LC_";

/// `PATH` of a child when the worker has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Parts of a variable's name that mark its value as a secret to mask.
const SECRET_NAME_PARTS: [&str; 7] = [
    "KEY",
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "CREDENTIAL",
    "PRIVATE",
];

/// Capabilities a child must not hold: reading another process's memory or environment
/// (`CAP_SYS_PTRACE` overrides the worker being undumpable) and raw memory access.
const DROPPED_CAPABILITIES: [CapabilitySet; 2] =
    [CapabilitySet::SYS_PTRACE, CapabilitySet::SYS_RAWIO];

/// Whether `name` looks like the name of a secret (`NPM_TOKEN`, `AWS_SECRET_ACCESS_KEY`, …).
pub fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    SECRET_NAME_PARTS.iter().any(|part| upper.contains(part))
}

/// Whether `name` is usable as a variable name (`[A-Za-z_][A-Za-z0-9_]*`).
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The environment every child process of the worker starts with.
#[derive(Clone, PartialEq, Eq)]
pub struct ChildEnv {
    vars: Vec<(String, String)>,
}

impl std::fmt::Debug for ChildEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: a passed variable may hold a secret the operator chose to hand on.
        f.debug_list()
            .entries(self.vars.iter().map(|(name, _)| name))
            .finish()
    }
}

impl Default for ChildEnv {
    /// `PATH` only (the library used without a configuration: tests, the CLI subcommands).
    fn default() -> Self {
        ChildEnv::from_vars(&[], &[])
    }
}

impl ChildEnv {
    /// The variables of `vars` on the allow list ([`ALLOWED`], `LC_*`) or named in `passed`,
    /// with [`DEFAULT_PATH`] when `PATH` is missing.
    pub fn from_vars(vars: &[(String, String)], passed: &[String]) -> Self {
        let mut kept: Vec<(String, String)> = vars
            .iter()
            .filter(|(name, _)| {
                ALLOWED.contains(&name.as_str())
                    || name.starts_with(LOCALE_PREFIX)
                    || passed.iter().any(|p| p == name)
            })
            .cloned()
            .collect();
        if !kept.iter().any(|(name, _)| name == "PATH") {
            kept.push(("PATH".to_string(), DEFAULT_PATH.to_string()));
        }
        kept.sort();
        kept.dedup_by(|a, b| a.0 == b.0);
        ChildEnv { vars: kept }
    }

    /// The variables, sorted by name.
    pub fn vars(&self) -> &[(String, String)] {
        &self.vars
    }

    /// Whether a child gets the variable `name`.
    pub fn has(&self, name: &str) -> bool {
        self.vars.iter().any(|(n, _)| n == name)
    }
}

/// Replaces every known secret value, and its base64 form, with [`MASK`], in one pass.
#[derive(Clone, Default)]
pub struct Masker {
    /// `None` when there is nothing to mask.
    matcher: Option<AhoCorasick>,
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let patterns = self.matcher.as_ref().map_or(0, AhoCorasick::patterns_len);
        f.debug_struct("Masker")
            .field("patterns", &patterns)
            .finish()
    }
}

impl Masker {
    /// A masker of `values` (those of at least [`MIN_MASKED_LEN`] bytes) and their standard
    /// base64 form without padding. Fails only when the automaton cannot be built.
    pub fn new<'a>(values: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut patterns = BTreeSet::new();
        for value in values {
            if value.len() < MIN_MASKED_LEN {
                continue;
            }
            let encoded = base64::engine::general_purpose::STANDARD.encode(value);
            patterns.insert(encoded.trim_end_matches('=').to_string());
            patterns.insert(value.to_string());
        }
        if patterns.is_empty() {
            return Ok(Masker::default());
        }
        let matcher = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&patterns)
            .map_err(|err| format!("cannot build the secret masker: {err}"))?;
        Ok(Masker {
            matcher: Some(matcher),
        })
    }

    /// Whether there is no secret to mask.
    pub fn is_empty(&self) -> bool {
        self.matcher.is_none()
    }

    /// `text` with every secret replaced by [`MASK`].
    pub fn mask<'t>(&self, text: &'t str) -> Cow<'t, str> {
        match &self.matcher {
            Some(matcher) if matcher.is_match(text) => {
                let masks = vec![MASK; matcher.patterns_len()];
                Cow::Owned(matcher.replace_all(text, &masks))
            }
            _ => Cow::Borrowed(text),
        }
    }

    /// Masks every string (and object key) in `value`; whether anything changed.
    pub fn mask_json(&self, value: &mut serde_json::Value) -> bool {
        if self.matcher.is_none() {
            return false;
        }
        match value {
            serde_json::Value::String(text) => match self.mask(text) {
                Cow::Owned(masked) => {
                    *text = masked;
                    true
                }
                Cow::Borrowed(_) => false,
            },
            serde_json::Value::Array(items) => items
                .iter_mut()
                .fold(false, |changed, item| self.mask_json(item) | changed),
            serde_json::Value::Object(map) => {
                let entries = std::mem::take(map);
                let mut changed = false;
                for (key, mut item) in entries {
                    changed |= self.mask_json(&mut item);
                    let key = match self.mask(&key) {
                        Cow::Owned(masked) => {
                            changed = true;
                            masked
                        }
                        Cow::Borrowed(_) => key,
                    };
                    map.insert(key, item);
                }
                changed
            }
            serde_json::Value::Null | serde_json::Value::Bool(_) | serde_json::Value::Number(_) => {
                false
            }
        }
    }
}

/// Takes `CAP_SYS_PTRACE` and `CAP_SYS_RAWIO` out of the bounding set (and the inheritable and
/// ambient sets), so no child gains them: with `CAP_SYS_PTRACE` a child reads and traces any
/// process whatever it is owed, and a child running as root would get it back at exec. Call it
/// before any thread starts: capability sets are per thread and inherited.
///
/// Fails when a capability cannot be dropped while a child could hold it (the worker runs as
/// root or holds it).
pub fn drop_capabilities() -> std::io::Result<()> {
    // Ambient capabilities pass to children of non-root processes; the worker needs none.
    // EINVAL on kernels without ambient capabilities: then there are none to clear.
    let _ = rustix::thread::clear_ambient_capability_set();
    let root = rustix::process::getuid().is_root();
    let mut sets = rustix::thread::capabilities(None)?;
    for capability in DROPPED_CAPABILITIES {
        if !rustix::thread::capability_is_in_bounding_set(capability)? {
            continue;
        }
        if let Err(err) = rustix::thread::remove_capability_from_bounding_set(capability) {
            let held = sets.permitted.contains(capability);
            if root || held {
                return Err(err.into());
            }
        }
    }
    let inherited = sets.inheritable;
    for capability in DROPPED_CAPABILITIES {
        sets.inheritable.remove(capability);
    }
    if sets.inheritable != inherited {
        rustix::thread::set_capabilities(None, sets)?;
    }
    Ok(())
}

/// Closes the worker to its children once the configuration has read the environment: erases
/// from the environment block every variable for which `keep` is false, then makes the process
/// undumpable, so that its `/proc/<pid>/mem`, `environ` and ptrace need `CAP_SYS_PTRACE`
/// ([`omoi_seal::seal`], which the coordinator shares). The worker relies on the erasure for its
/// environment, not on being undumpable: Linux 6.18 lets a same-user child read the `environ` of
/// an undumpable process. Afterwards the erased variables are gone for the worker too.
pub fn seal(keep: impl Fn(&str) -> bool) -> std::io::Result<()> {
    omoi_seal::seal(keep)
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_child_gets_the_allowed_variables_and_the_passed_ones_only() {
        let worker = vars(&[
            ("PATH", "/bin"),
            ("HOME", "/home/w"),
            ("LC_ALL", "C.UTF-8"),
            ("ANTHROPIC_API_KEY", "sk-ant-0123456789"),
            ("SANDBOX_TOKEN", "sbx-0123456789"),
            ("ACME_DEPLOY_KEY", "acme-0123456789"),
            ("NPM_TOKEN", "npm-0123456789"),
            ("SPEC_ID", "spec-1"),
        ]);
        let env = ChildEnv::from_vars(&worker, &["NPM_TOKEN".to_string()]);
        assert_eq!(
            env.vars(),
            vars(&[
                ("HOME", "/home/w"),
                ("LC_ALL", "C.UTF-8"),
                ("NPM_TOKEN", "npm-0123456789"),
                ("PATH", "/bin"),
            ])
        );
        assert_eq!(
            format!("{env:?}"),
            r#"["HOME", "LC_ALL", "NPM_TOKEN", "PATH"]"#
        );
    }

    #[test]
    fn a_child_of_a_worker_without_path_gets_the_default_path() {
        assert_eq!(ChildEnv::default().vars(), vars(&[("PATH", DEFAULT_PATH)]));
    }

    #[test]
    fn secret_values_and_their_base64_are_masked_and_short_values_are_not() {
        let masker = Masker::new(["sk-ant-0123456789", "short"]).unwrap();
        let encoded = base64::engine::general_purpose::STANDARD.encode("sk-ant-0123456789");
        let text =
            format!("KEY=sk-ant-0123456789\nauth {encoded}\nshort stays, sk-ant-01234 stays");
        assert_eq!(
            masker.mask(&text),
            "KEY=***\nauth ***=\nshort stays, sk-ant-01234 stays"
        );
    }

    #[test]
    fn masking_reaches_every_string_and_key_of_a_json_value() {
        let masker = Masker::new(["secret-value-1"]).unwrap();
        let mut value = serde_json::json!({
            "a": ["x secret-value-1 y", 3, null],
            "secret-value-1": {"b": "secret-value-1"},
            "c": "clean"
        });
        assert!(masker.mask_json(&mut value));
        assert_eq!(
            value,
            serde_json::json!({"a": ["x *** y", 3, null], "***": {"b": "***"}, "c": "clean"})
        );
        let mut clean = serde_json::json!({"c": "clean"});
        assert!(!masker.mask_json(&mut clean));
    }

    #[test]
    fn an_empty_masker_changes_nothing() {
        let masker = Masker::new([]).unwrap();
        assert!(matches!(masker.mask("anything"), Cow::Borrowed("anything")));
    }

    #[test]
    fn names_of_secrets_are_recognised() {
        let names = [
            "NPM_TOKEN",
            "aws_secret_access_key",
            "DB_PASSWORD",
            "PATH",
            "GIT_AUTHOR_NAME",
        ];
        let secret: Vec<bool> = names.iter().map(|n| looks_secret(n)).collect();
        assert_eq!(secret, [true, true, true, false, false]);
        let valid: Vec<bool> = ["A_1", "_x", "1A", "A-B", ""]
            .iter()
            .map(|n| valid_name(n))
            .collect();
        assert_eq!(valid, [true, true, false, false, false]);
    }
}
