//! The worker's environment contract (DESIGN §3.2): read once, validated into [`Config`].
//!
//! Nothing else in the worker reads the process environment. Every problem is a
//! [`Error::Config`] naming the variable, which the binary turns into exit code 2.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use omoi_protocol::context::PhaseContext;
use omoi_protocol::env as var;
use omoi_protocol::phase::Phase;
use omoi_protocol::task::TaskContext;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::llm::HttpProviderConfig;
use crate::llm::pricing::Price;
use crate::process::Children;

mod children;
pub mod standby;
use children::children;

/// The validated configuration of one worker run.
#[derive(Debug, Clone)]
pub struct Config {
    pub mode: Mode,
    /// The repository the agent works in (canonical, exists).
    pub workspace: PathBuf,
    /// Identity of this sandbox in every event (`local` on a local run without `SANDBOX_ID`).
    pub sandbox_id: String,
    /// Where events go: stdout (local run) or the coordinator.
    pub coordinator: Option<Coordinator>,
    pub llm: LlmConfig,
    pub limits: Limits,
    /// The environment of every command the worker runs and the masker of secrets.
    pub children: Children,
}

/// What the worker was started to do.
#[derive(Debug, Clone)]
pub enum Mode {
    Spec(SpecMode),
    Task(Box<TaskMode>),
    SpecSkill(SkillMode),
}

/// Spec mode: run the state machine from `start` through COMPLETE.
#[derive(Debug, Clone)]
pub struct SpecMode {
    pub spec_id: String,
    pub start: Phase,
    pub context: ContextSource,
    pub stop_after: Option<Phase>,
    /// The repository to clone into the workspace first (`OMOI_REPO_URL`), when the sandbox
    /// starts without it.
    pub repository: Option<SpecRepository>,
}

/// Where a spec sandbox's workspace comes from when the worker clones it itself.
#[derive(Debug, Clone)]
pub struct SpecRepository {
    pub url: String,
    pub base_branch: String,
    /// Never printed: `Debug` of the config redacts it.
    pub git_token: Option<Secret>,
}

/// Where the phase context comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum ContextSource {
    /// Decoded from `PHASE_CONTEXT_B64`, or built from `SPEC_TITLE` / `SPEC_DESCRIPTION`.
    Inline(Box<PhaseContext>),
    /// `PHASE_CONTEXT_URL`, fetched with the sandbox token.
    Url { url: String, token: Secret },
}

/// Task mode: implement one task in a git checkout.
#[derive(Debug, Clone)]
pub struct TaskMode {
    pub task_id: String,
    pub context: TaskContext,
    /// Never printed: `Debug` of the config redacts it.
    pub git_token: Option<Secret>,
}

/// Spec-skill mode: one free agent run with the spec instructions injected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkillMode {
    pub title: String,
    pub description: String,
}

/// The coordinator the worker reports to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coordinator {
    /// Base URL without a trailing slash, e.g. `http://127.0.0.1:8080`.
    pub base_url: String,
    pub token: Secret,
    pub project_id: Option<String>,
}

/// A string that never shows in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Which model provider to use.
#[derive(Debug, Clone, PartialEq)]
pub enum LlmConfig {
    Anthropic(HttpProviderConfig),
    OpenAi(HttpProviderConfig),
    /// Replays the script file offline.
    Scripted {
        script: PathBuf,
    },
    /// Claude Code or Codex as a child process, through the model proxy.
    Cli(crate::cli_agent::agent::CliAgentConfig),
}

/// Limits of a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub max_turns: u32,
    pub max_budget_usd: f64,
    pub phase_timeout: Duration,
    pub max_attempts: u32,
    pub pass_threshold: f64,
    pub heartbeat: Duration,
    /// First backoff between phase attempts; doubles each time.
    pub retry_base: Duration,
    /// Limit of one run of a task's validation command (`VALIDATION_TIMEOUT_SECS`).
    pub validation_timeout: Duration,
    /// Price override for cost estimates.
    pub price: Option<Price>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_turns: 50,
            max_budget_usd: 10.0,
            phase_timeout: Duration::from_secs(900),
            max_attempts: 3,
            pass_threshold: 0.7,
            heartbeat: Duration::from_secs(10),
            retry_base: Duration::from_millis(1000),
            validation_timeout: Duration::from_secs(600),
            price: None,
        }
    }
}

/// The variables as they come, all optional strings, so that each gets its own message.
#[derive(Debug, Default, Deserialize)]
struct RawEnv {
    spec_id: Option<String>,
    spec_phase: Option<String>,
    phase_context_b64: Option<String>,
    phase_context_url: Option<String>,
    spec_title: Option<String>,
    spec_description: Option<String>,
    spec_stop_after: Option<String>,
    execution_mode: Option<String>,
    require_spec_skill: Option<String>,
    omoios_api_url: Option<String>,
    omoios_project_id: Option<String>,
    sandbox_id: Option<String>,
    sandbox_token: Option<String>,
    task_id: Option<String>,
    task_context_b64: Option<String>,
    workspace: Option<String>,
    omoi_llm: Option<String>,
    omoi_script: Option<String>,
    anthropic_api_key: Option<String>,
    anthropic_base_url: Option<String>,
    openai_api_key: Option<String>,
    openai_base_url: Option<String>,
    model: Option<String>,
    max_turns: Option<String>,
    max_budget_usd: Option<String>,
    phase_timeout_secs: Option<String>,
    max_attempts: Option<String>,
    pass_threshold: Option<String>,
    heartbeat_secs: Option<String>,
    omoi_retry_base_ms: Option<String>,
    validation_timeout_secs: Option<String>,
    omoi_git_token: Option<String>,
    omoi_repo_url: Option<String>,
    omoi_base_branch: Option<String>,
    omoi_price_input_per_mtok: Option<String>,
    omoi_price_output_per_mtok: Option<String>,
    omoi_llm_timeout_secs: Option<String>,
    omoi_llm_max_retries: Option<String>,
    claude_bin: Option<String>,
    codex_bin: Option<String>,
    omoi_stall_secs: Option<String>,
    omoi_context_window: Option<String>,
    /// Where `claude` and `codex` are looked for when their variables are not set.
    path: Option<String>,
    omoi_pass_env: Option<String>,
}

impl RawEnv {
    fn from_vars<I: IntoIterator<Item = (String, String)>>(vars: I) -> Result<Self> {
        // Empty values count as unset: `FOO=` in a container spec means "no value".
        let vars = vars.into_iter().filter(|(_, v)| !v.trim().is_empty());
        envy::from_iter(vars).map_err(|e| Error::config("environment", e.to_string()))
    }
}

/// Where to report a failure even when the rest of the config is bad: the coordinator URL,
/// sandbox id and token, if those three are usable, and the workspace.
#[derive(Debug, Clone)]
pub struct FailureReport {
    pub coordinator: Coordinator,
    pub sandbox_id: String,
    pub spec_id: Option<String>,
    pub task_id: Option<String>,
    pub workspace: PathBuf,
}

impl FailureReport {
    /// Reads what is needed to report a config failure to the coordinator, if possible.
    pub fn from_vars<I: IntoIterator<Item = (String, String)>>(vars: I) -> Option<Self> {
        let raw = RawEnv::from_vars(vars).ok()?;
        let coordinator = coordinator(&raw).ok()??;
        let workspace = raw
            .workspace
            .clone()
            .map(PathBuf::from)
            .or_else(|| std::env::current_dir().ok())?;
        Some(FailureReport {
            coordinator,
            sandbox_id: raw.sandbox_id?,
            spec_id: raw.spec_id,
            task_id: raw.task_id,
            workspace,
        })
    }
}

/// The process environment as name-value pairs, for [`Config::from_vars`] and the standby
/// configuration. A variable whose name or value is not UTF-8 is left out (no variable of the
/// contract can be one; `std::env::vars` would panic on it).
pub fn process_vars() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
        .collect()
}

impl Config {
    /// Reads and validates the process environment.
    pub fn from_env() -> Result<Self> {
        Config::from_vars(std::env::vars())
    }

    /// Reads and validates the given variables (tests build configs this way).
    pub fn from_vars<I: IntoIterator<Item = (String, String)>>(vars: I) -> Result<Self> {
        let vars: Vec<(String, String)> = vars.into_iter().collect();
        let raw = RawEnv::from_vars(vars.iter().cloned())?;
        let children = children(&raw, &vars)?;
        let workspace = workspace(raw.workspace.as_deref())?;
        let coordinator = coordinator(&raw)?;
        let sandbox_id = raw
            .sandbox_id
            .clone()
            .unwrap_or_else(|| "local".to_string());
        let limits = limits(&raw)?;
        let mode = mode(&raw)?;
        let llm = llm(&raw)?;
        Ok(Config {
            mode,
            workspace,
            sandbox_id,
            coordinator,
            llm,
            limits,
            children,
        })
    }

    /// The spec id, when in spec mode.
    pub fn spec_id(&self) -> Option<&str> {
        match &self.mode {
            Mode::Spec(spec) => Some(&spec.spec_id),
            Mode::Task(task) => Some(&task.context.spec_id),
            Mode::SpecSkill(_) => None,
        }
    }

    /// The task id, when in task mode.
    pub fn task_id(&self) -> Option<&str> {
        match &self.mode {
            Mode::Task(task) => Some(&task.task_id),
            Mode::Spec(_) | Mode::SpecSkill(_) => None,
        }
    }
}

fn workspace(value: Option<&str>) -> Result<PathBuf> {
    let path = match value {
        Some(v) => PathBuf::from(v),
        None => std::env::current_dir()
            .map_err(|e| Error::config(var::WORKSPACE, format!("no current directory: {e}")))?,
    };
    let canonical = path.canonicalize().map_err(|e| {
        Error::config(
            var::WORKSPACE,
            format!("{} is not usable: {e}", path.display()),
        )
    })?;
    if !canonical.is_dir() {
        return Err(Error::config(
            var::WORKSPACE,
            format!("{} is not a directory", path.display()),
        ));
    }
    Ok(canonical)
}

fn coordinator(raw: &RawEnv) -> Result<Option<Coordinator>> {
    let Some(url) = raw.omoios_api_url.as_deref() else {
        return Ok(None);
    };
    let base_url = http_url(var::OMOIOS_API_URL, url)?;
    if raw.sandbox_id.is_none() {
        return Err(Error::config(
            var::SANDBOX_ID,
            "required when OMOIOS_API_URL is set (events carry it)",
        ));
    }
    let Some(token) = raw.sandbox_token.as_deref() else {
        return Err(Error::config(
            var::SANDBOX_TOKEN,
            "required when OMOIOS_API_URL is set (every call to the coordinator sends it)",
        ));
    };
    Ok(Some(Coordinator {
        base_url,
        token: Secret::new(token),
        project_id: raw.omoios_project_id.clone(),
    }))
}

/// Checks that `value` is an absolute http(s) URL and returns it without a trailing slash.
pub fn http_url(variable: &str, value: &str) -> Result<String> {
    let trimmed = value.trim().trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("http://")
        .or_else(|| trimmed.strip_prefix("https://"));
    match rest {
        Some(host) if !host.is_empty() && !host.starts_with('/') && !host.contains(' ') => {
            Ok(trimmed.to_string())
        }
        _ => Err(Error::config(
            variable,
            format!("{value:?} is not an http:// or https:// URL"),
        )),
    }
}

fn mode(raw: &RawEnv) -> Result<Mode> {
    let skill = skill_requested(raw)?;
    match (&raw.spec_id, &raw.spec_phase) {
        (Some(spec_id), Some(phase)) => return spec_mode(raw, spec_id, phase).map(Mode::Spec),
        (Some(_), None) => {
            return Err(Error::config(
                var::SPEC_PHASE,
                "required with SPEC_ID: one of explore, requirements, design, tasks, sync, all",
            ));
        }
        (None, Some(_)) => {
            return Err(Error::config(
                var::SPEC_ID,
                "required with SPEC_PHASE: the id of the spec to run",
            ));
        }
        (None, None) => {}
    }
    if let Some(task_id) = &raw.task_id {
        return task_mode(raw, task_id).map(|t| Mode::Task(Box::new(t)));
    }
    if skill {
        let title = raw.spec_title.clone().ok_or_else(|| {
            Error::config(
                var::SPEC_TITLE,
                "required in spec-skill mode: the feature request",
            )
        })?;
        return Ok(Mode::SpecSkill(SkillMode {
            title,
            description: raw.spec_description.clone().unwrap_or_default(),
        }));
    }
    Err(Error::config(
        "mode",
        "no mode selected: set SPEC_ID and SPEC_PHASE (spec mode), TASK_ID (task mode), \
         or EXECUTION_MODE=exploration with REQUIRE_SPEC_SKILL=true (spec-skill mode)",
    ))
}

fn skill_requested(raw: &RawEnv) -> Result<bool> {
    let exploration = match raw.execution_mode.as_deref().map(str::trim) {
        None => false,
        Some(m) if m.eq_ignore_ascii_case("exploration") => true,
        Some(m) if m.eq_ignore_ascii_case("implementation") => false,
        Some(other) => {
            return Err(Error::config(
                var::EXECUTION_MODE,
                format!("{other:?} is not one of exploration, implementation"),
            ));
        }
    };
    let require = match raw.require_spec_skill.as_deref() {
        None => false,
        Some(v) => parse_bool(var::REQUIRE_SPEC_SKILL, v)?,
    };
    Ok(exploration && require)
}

fn parse_bool(variable: &str, value: &str) -> Result<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(Error::config(
            variable,
            format!("{value:?} is not a boolean (true or false)"),
        )),
    }
}

fn phase(variable: &str, value: &str) -> Result<Phase> {
    value
        .parse::<Phase>()
        .map_err(|e| Error::config(variable, e.to_string()))
}

fn spec_mode(raw: &RawEnv, spec_id: &str, phase_name: &str) -> Result<SpecMode> {
    let start = phase(var::SPEC_PHASE, phase_name)?;
    let stop_after = raw
        .spec_stop_after
        .as_deref()
        .map(|v| phase(var::SPEC_STOP_AFTER, v))
        .transpose()?;
    if let Some(stop) = stop_after {
        if stop < start {
            return Err(Error::config(
                var::SPEC_STOP_AFTER,
                format!("{stop} comes before the start phase {start}"),
            ));
        }
    }
    let context = match (&raw.phase_context_b64, &raw.phase_context_url) {
        (Some(_), Some(_)) => {
            return Err(Error::config(
                var::PHASE_CONTEXT_URL,
                "set either PHASE_CONTEXT_B64 or PHASE_CONTEXT_URL, not both",
            ));
        }
        (Some(b64), None) => {
            let mut context = decode_context(b64)?;
            fill_request(&mut context, raw);
            check_resume(var::PHASE_CONTEXT_B64, &context, start)?;
            ContextSource::Inline(Box::new(context))
        }
        (None, Some(url)) => {
            let url = http_url(var::PHASE_CONTEXT_URL, url)?;
            let token = raw.sandbox_token.clone().map(Secret::new).ok_or_else(|| {
                Error::config(
                    var::SANDBOX_TOKEN,
                    "required with PHASE_CONTEXT_URL (the context is fetched with it)",
                )
            })?;
            ContextSource::Url { url, token }
        }
        (None, None) => {
            let title = raw.spec_title.clone().ok_or_else(|| {
                Error::config(
                    var::SPEC_TITLE,
                    "required when neither PHASE_CONTEXT_B64 nor PHASE_CONTEXT_URL is set",
                )
            })?;
            let context = PhaseContext {
                title,
                description: raw.spec_description.clone().unwrap_or_default(),
                ..PhaseContext::default()
            };
            check_resume(var::SPEC_PHASE, &context, start)?;
            ContextSource::Inline(Box::new(context))
        }
    };
    Ok(SpecMode {
        spec_id: spec_id.to_string(),
        start,
        context,
        stop_after,
        repository: spec_repository(raw)?,
    })
}

/// A repository address or branch name: no leading `-` (git would read an option), no space or
/// control character. The checkout checks the rest when it runs.
fn plain_value(variable: &str, value: &str) -> Result<()> {
    if value.starts_with('-') {
        return Err(Error::config(variable, "must not begin with '-'"));
    }
    if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(Error::config(
            variable,
            "must not contain spaces or control characters",
        ));
    }
    Ok(())
}

/// `OMOI_REPO_URL` (with `OMOI_BASE_BRANCH`, default `main`) of a spec sandbox, when set.
fn spec_repository(raw: &RawEnv) -> Result<Option<SpecRepository>> {
    let Some(url) = raw.omoi_repo_url.as_deref().map(str::trim) else {
        if raw.omoi_base_branch.is_some() {
            return Err(Error::config(
                var::BASE_BRANCH,
                "set without OMOI_REPO_URL (the branch of which repository?)",
            ));
        }
        return Ok(None);
    };
    plain_value(var::REPO_URL, url)?;
    let base_branch = raw
        .omoi_base_branch
        .as_deref()
        .map_or("main", str::trim)
        .to_string();
    plain_value(var::BASE_BRANCH, &base_branch)?;
    Ok(Some(SpecRepository {
        url: url.to_string(),
        base_branch,
        git_token: raw.omoi_git_token.clone().map(Secret::new),
    }))
}

/// The largest context fetched from `PHASE_CONTEXT_URL`.
pub const MAX_FETCHED_CONTEXT_BYTES: usize = 16 * 1024 * 1024;

fn decode_context(b64: &str) -> Result<PhaseContext> {
    if b64.len() > var::MAX_ENV_VALUE_BYTES {
        return Err(Error::config(
            var::PHASE_CONTEXT_B64,
            format!(
                "{} bytes is over the {}-byte limit of one environment variable; \
                 serve the context through PHASE_CONTEXT_URL instead",
                b64.len(),
                var::MAX_ENV_VALUE_BYTES
            ),
        ));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| Error::config(var::PHASE_CONTEXT_B64, format!("not valid base64: {e}")))?;
    parse_context(var::PHASE_CONTEXT_B64, &bytes)
}

/// Parses a `PhaseContext` from JSON bytes; errors name `variable`.
pub fn parse_context(variable: &str, bytes: &[u8]) -> Result<PhaseContext> {
    let context: PhaseContext = serde_json::from_slice(bytes)
        .map_err(|e| Error::config(variable, format!("not a phase context JSON: {e}")))?;
    if context.title.trim().is_empty() {
        return Err(Error::config(variable, "the context has an empty title"));
    }
    Ok(context)
}

/// The context's values win; SPEC_TITLE / SPEC_DESCRIPTION only fill what it lacks.
fn fill_request(context: &mut PhaseContext, raw: &RawEnv) {
    if context.description.is_empty() {
        if let Some(description) = &raw.spec_description {
            context.description = description.clone();
        }
    }
}

/// A start phase after EXPLORE is a resume: the context must hold every earlier output.
pub fn check_resume(variable: &str, context: &PhaseContext, start: Phase) -> Result<()> {
    let missing = context.missing_before(start);
    if missing.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = missing.iter().map(|p| p.as_str()).collect();
    Err(Error::config(
        variable,
        format!(
            "starting at {start} needs the outputs of every earlier phase; missing: {}",
            names.join(", ")
        ),
    ))
}

fn task_mode(raw: &RawEnv, task_id: &str) -> Result<TaskMode> {
    let b64 = raw.task_context_b64.as_deref().ok_or_else(|| {
        Error::config(
            var::TASK_CONTEXT_B64,
            "required with TASK_ID: the task's context",
        )
    })?;
    if b64.len() > var::MAX_ENV_VALUE_BYTES {
        return Err(Error::config(
            var::TASK_CONTEXT_B64,
            format!(
                "{} bytes is over the {}-byte limit of one environment variable",
                b64.len(),
                var::MAX_ENV_VALUE_BYTES
            ),
        ));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| Error::config(var::TASK_CONTEXT_B64, format!("not valid base64: {e}")))?;
    let context: TaskContext = serde_json::from_slice(&bytes).map_err(|e| {
        Error::config(
            var::TASK_CONTEXT_B64,
            format!("not a task context JSON: {e}"),
        )
    })?;
    if context.task.id != task_id {
        return Err(Error::config(
            var::TASK_CONTEXT_B64,
            format!("holds task {} but TASK_ID is {task_id}", context.task.id),
        ));
    }
    Ok(TaskMode {
        task_id: task_id.to_string(),
        context,
        git_token: raw.omoi_git_token.clone().map(Secret::new),
    })
}

fn llm(raw: &RawEnv) -> Result<LlmConfig> {
    let timeout = Duration::from_secs(number(
        "OMOI_LLM_TIMEOUT_SECS",
        raw.omoi_llm_timeout_secs.as_deref(),
        600,
        1..=3600,
    )?);
    let max_retries = number(
        "OMOI_LLM_MAX_RETRIES",
        raw.omoi_llm_max_retries.as_deref(),
        5,
        0..=20,
    )? as u32;
    let context_window = raw
        .omoi_context_window
        .as_deref()
        .map(|value| number(var::CONTEXT_WINDOW, Some(value), 0, 1_000..=10_000_000))
        .transpose()?;
    let provider = match raw.omoi_llm.as_deref() {
        Some(p) => p.trim().to_ascii_lowercase(),
        None if raw.anthropic_api_key.is_some() => "anthropic".to_string(),
        None if raw.openai_api_key.is_some() || raw.openai_base_url.is_some() => {
            "openai".to_string()
        }
        None => {
            return Err(Error::config(
                var::OMOI_LLM,
                "not set and no ANTHROPIC_API_KEY or OPENAI_API_KEY found; set OMOI_LLM=scripted \
                 with OMOI_SCRIPT for an offline run",
            ));
        }
    };
    match provider.as_str() {
        "anthropic" => {
            let api_key = raw.anthropic_api_key.clone().ok_or_else(|| {
                Error::config(var::ANTHROPIC_API_KEY, "required with OMOI_LLM=anthropic")
            })?;
            let base_url = http_url(
                var::ANTHROPIC_BASE_URL,
                raw.anthropic_base_url
                    .as_deref()
                    .unwrap_or("https://api.anthropic.com"),
            )?;
            Ok(LlmConfig::Anthropic(HttpProviderConfig {
                api_key,
                base_url,
                model: raw
                    .model
                    .clone()
                    .unwrap_or_else(|| "claude-sonnet-4-5".to_string()),
                request_timeout: timeout,
                max_retries,
                context_window,
            }))
        }
        "openai" => {
            let base_url = http_url(
                var::OPENAI_BASE_URL,
                raw.openai_base_url
                    .as_deref()
                    .unwrap_or("https://api.openai.com/v1"),
            )?;
            // Local OpenAI-compatible servers often need no key; api.openai.com does.
            let api_key = match (&raw.openai_api_key, raw.openai_base_url.is_some()) {
                (Some(key), _) => key.clone(),
                (None, true) => String::new(),
                (None, false) => {
                    return Err(Error::config(
                        var::OPENAI_API_KEY,
                        "required with OMOI_LLM=openai unless OPENAI_BASE_URL names a local server",
                    ));
                }
            };
            let model = raw.model.clone().ok_or_else(|| {
                Error::config(var::MODEL, "required with OMOI_LLM=openai (e.g. gpt-4.1)")
            })?;
            Ok(LlmConfig::OpenAi(HttpProviderConfig {
                api_key,
                base_url,
                model,
                request_timeout: timeout,
                max_retries,
                context_window,
            }))
        }
        "scripted" => {
            let script = raw.omoi_script.as_deref().ok_or_else(|| {
                Error::config(var::OMOI_SCRIPT, "required with OMOI_LLM=scripted")
            })?;
            let script = PathBuf::from(script);
            if !script.is_file() {
                return Err(Error::config(
                    var::OMOI_SCRIPT,
                    format!("{} is not a readable file", script.display()),
                ));
            }
            Ok(LlmConfig::Scripted { script })
        }
        "claude-code" => Ok(LlmConfig::Cli(cli_agent::cli_agent(
            crate::cli_agent::command::CliKind::ClaudeCode,
            raw,
        )?)),
        "codex" => Ok(LlmConfig::Cli(cli_agent::cli_agent(
            crate::cli_agent::command::CliKind::Codex,
            raw,
        )?)),
        other => Err(Error::config(
            var::OMOI_LLM,
            format!("{other:?} is not one of anthropic, openai, scripted, claude-code, codex"),
        )),
    }
}

fn limits(raw: &RawEnv) -> Result<Limits> {
    let defaults = Limits::default();
    let price = match (
        raw.omoi_price_input_per_mtok.as_deref(),
        raw.omoi_price_output_per_mtok.as_deref(),
    ) {
        (None, None) => None,
        (input, output) => Some(Price {
            input_per_mtok: decimal("OMOI_PRICE_INPUT_PER_MTOK", input, 0.0, 0.0, 10_000.0)?,
            output_per_mtok: decimal("OMOI_PRICE_OUTPUT_PER_MTOK", output, 0.0, 0.0, 10_000.0)?,
        }),
    };
    Ok(Limits {
        max_turns: number(var::MAX_TURNS, raw.max_turns.as_deref(), 50, 1..=10_000)? as u32,
        max_budget_usd: decimal(
            var::MAX_BUDGET_USD,
            raw.max_budget_usd.as_deref(),
            defaults.max_budget_usd,
            0.0001,
            1_000_000.0,
        )?,
        phase_timeout: Duration::from_secs(number(
            var::PHASE_TIMEOUT_SECS,
            raw.phase_timeout_secs.as_deref(),
            900,
            1..=86_400,
        )?),
        max_attempts: number(var::MAX_ATTEMPTS, raw.max_attempts.as_deref(), 3, 1..=20)? as u32,
        pass_threshold: decimal(
            var::PASS_THRESHOLD,
            raw.pass_threshold.as_deref(),
            defaults.pass_threshold,
            0.0,
            1.0,
        )?,
        heartbeat: Duration::from_secs(number(
            var::HEARTBEAT_SECS,
            raw.heartbeat_secs.as_deref(),
            10,
            1..=3600,
        )?),
        retry_base: Duration::from_millis(number(
            var::RETRY_BASE_MS,
            raw.omoi_retry_base_ms.as_deref(),
            1000,
            0..=600_000,
        )?),
        validation_timeout: Duration::from_secs(number(
            "VALIDATION_TIMEOUT_SECS",
            raw.validation_timeout_secs.as_deref(),
            600,
            1..=86_400,
        )?),
        price,
    })
}

fn number(
    variable: &str,
    value: Option<&str>,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64> {
    let Some(value) = value else {
        return Ok(default);
    };
    let n: u64 = value
        .trim()
        .parse()
        .map_err(|_| Error::config(variable, format!("{value:?} is not a whole number")))?;
    if !range.contains(&n) {
        return Err(Error::config(
            variable,
            format!("{n} is outside {}..={}", range.start(), range.end()),
        ));
    }
    Ok(n)
}

fn decimal(variable: &str, value: Option<&str>, default: f64, min: f64, max: f64) -> Result<f64> {
    let Some(value) = value else {
        return Ok(default);
    };
    let n: f64 = value
        .trim()
        .parse()
        .map_err(|_| Error::config(variable, format!("{value:?} is not a number")))?;
    if !n.is_finite() || n < min || n > max {
        return Err(Error::config(
            variable,
            format!("{value} is outside {min}..={max}"),
        ));
    }
    Ok(n)
}

/// The `.omoi` directory of a workspace, where checkpoints, the spool and artifacts live.
pub fn state_dir(workspace: &Path) -> PathBuf {
    workspace.join(".omoi")
}

mod cli_agent;
#[cfg(test)]
mod tests;
