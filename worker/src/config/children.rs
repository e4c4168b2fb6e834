//! The children's part of the configuration: the environment of every command the worker runs
//! (the allow list and `OMOI_PASS_ENV`) and the masker of every secret value.

use omoi_protocol::env as var;

use super::RawEnv;
use crate::error::{Error, Result};
use crate::process::Children;
use crate::secrets::{self, ChildEnv, Masker};

/// Variables of the worker that are never passed on, whatever `OMOI_PASS_ENV` says.
const NEVER_PASSED: [&str; 4] = [
    var::ANTHROPIC_API_KEY,
    var::OPENAI_API_KEY,
    var::SANDBOX_TOKEN,
    var::GIT_TOKEN,
];

/// The children's environment (the allow list and `OMOI_PASS_ENV`) and the masker of every
/// secret value: the worker's own, and those of variables whose name looks like a secret.
pub(super) fn children(raw: &RawEnv, vars: &[(String, String)]) -> Result<Children> {
    let mut passed = Vec::new();
    for name in raw.omoi_pass_env.as_deref().unwrap_or_default().split(',') {
        let name = name.trim();
        if name.is_empty() {
            continue;
        }
        if !secrets::valid_name(name) {
            return Err(Error::config(
                var::PASS_ENV,
                format!("{name:?} is not a variable name (letters, digits and _)"),
            ));
        }
        if NEVER_PASSED.contains(&name) {
            return Err(Error::config(
                var::PASS_ENV,
                format!("{name} is a secret of the worker and is never passed to commands"),
            ));
        }
        passed.push(name.to_string());
    }
    // A secret that reaches commands must be long enough to be masked in what they print.
    for (name, value) in vars {
        let secret = secrets::looks_secret(name) && passed.iter().any(|p| p == name);
        let value = value.trim();
        if secret && !value.is_empty() && value.len() < secrets::MIN_MASKED_LEN {
            return Err(Error::config(
                var::PASS_ENV,
                format!(
                    "{name} is a secret of {} bytes; secrets passed to commands must be at least \
                     {} bytes, or what the commands print could not be masked",
                    value.len(),
                    secrets::MIN_MASKED_LEN
                ),
            ));
        }
    }
    let masked = vars
        .iter()
        .filter(|(name, _)| NEVER_PASSED.contains(&name.as_str()) || secrets::looks_secret(name))
        .flat_map(|(_, value)| [value.as_str(), value.trim()]);
    let masker = Masker::new(masked).map_err(|err| Error::config("environment", err))?;
    Ok(Children {
        env: ChildEnv::from_vars(vars, &passed),
        masker,
    })
}
