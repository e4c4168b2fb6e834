//! The settings of `OMOI_LLM=claude-code` and `OMOI_LLM=codex`: the CLI binary (`CLAUDE_BIN`,
//! `CODEX_BIN`, else found on `PATH`), the real API the model proxy forwards to, the model, the
//! stall window (`OMOI_STALL_SECS`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use omoi_protocol::env as var;

use super::{RawEnv, Secret, http_url, number};
use crate::cli_agent::agent::CliAgentConfig;
use crate::cli_agent::command::CliKind;
use crate::error::{Error, Result};

/// The default stall window: longer than the longest command Claude Code's Bash tool runs
/// (10 minutes), so a slow build or test run is not taken for a stall.
pub const DEFAULT_STALL_SECS: u64 = 660;

/// The config of a CLI agent of `kind`.
pub(super) fn cli_agent(kind: CliKind, raw: &RawEnv) -> Result<CliAgentConfig> {
    let (variable, given, default_name) = match kind {
        CliKind::ClaudeCode => (var::CLAUDE_BIN, raw.claude_bin.as_deref(), "claude"),
        CliKind::Codex => (var::CODEX_BIN, raw.codex_bin.as_deref(), "codex"),
    };
    let bin = binary(variable, given, default_name, raw.path.as_deref())?;
    let (upstream, key) = match kind {
        CliKind::ClaudeCode => {
            let key = raw.anthropic_api_key.clone().ok_or_else(|| {
                Error::config(var::ANTHROPIC_API_KEY, "required with OMOI_LLM=claude-code")
            })?;
            let base = raw
                .anthropic_base_url
                .as_deref()
                .unwrap_or("https://api.anthropic.com");
            (http_url(var::ANTHROPIC_BASE_URL, base)?, Some(key))
        }
        CliKind::Codex => {
            let base = raw
                .openai_base_url
                .as_deref()
                .unwrap_or("https://api.openai.com/v1");
            let key = match (&raw.openai_api_key, raw.openai_base_url.is_some()) {
                (Some(key), _) => Some(key.clone()),
                (None, true) => None,
                (None, false) => {
                    return Err(Error::config(
                        var::OPENAI_API_KEY,
                        "required with OMOI_LLM=codex unless OPENAI_BASE_URL names a local server",
                    ));
                }
            };
            (http_url(var::OPENAI_BASE_URL, base)?, key)
        }
    };
    let worker_bin = std::env::current_exe().map_err(|e| {
        Error::config(
            var::OMOI_LLM,
            format!("cannot find omoi-worker itself: {e}"),
        )
    })?;
    Ok(CliAgentConfig {
        kind,
        bin,
        worker_bin,
        model: raw.model.clone(),
        upstream,
        key: key.map(Secret::new),
        runtime_dir: PathBuf::from("/tmp"),
        stall: Duration::from_secs(number(
            var::STALL_SECS,
            raw.omoi_stall_secs.as_deref(),
            DEFAULT_STALL_SECS,
            1..=86_400,
        )?),
    })
}

/// The binary `given` (a path), or `name` found on `path`; an error naming `variable` when it
/// is missing or not executable.
fn binary(variable: &str, given: Option<&str>, name: &str, path: Option<&str>) -> Result<PathBuf> {
    match given {
        Some(given) => {
            let bin = PathBuf::from(given);
            if executable(&bin) {
                Ok(bin)
            } else {
                Err(Error::config(
                    variable,
                    format!("{given} is not an executable file"),
                ))
            }
        }
        None => path
            .unwrap_or_default()
            .split(':')
            .filter(|dir| !dir.is_empty())
            .map(|dir| Path::new(dir).join(name))
            .find(|bin| executable(bin))
            .ok_or_else(|| {
                Error::config(
                    variable,
                    format!("not set and no `{name}` on PATH; name the binary"),
                )
            }),
    }
}

fn executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
