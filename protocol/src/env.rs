//! Names of the environment variables of the worker contract (DESIGN §3.2).

pub const SPEC_ID: &str = "SPEC_ID";
pub const SPEC_PHASE: &str = "SPEC_PHASE";
pub const PHASE_CONTEXT_B64: &str = "PHASE_CONTEXT_B64";
pub const PHASE_CONTEXT_URL: &str = "PHASE_CONTEXT_URL";
pub const SPEC_TITLE: &str = "SPEC_TITLE";
pub const SPEC_DESCRIPTION: &str = "SPEC_DESCRIPTION";
pub const SPEC_STOP_AFTER: &str = "SPEC_STOP_AFTER";
pub const EXECUTION_MODE: &str = "EXECUTION_MODE";
pub const REQUIRE_SPEC_SKILL: &str = "REQUIRE_SPEC_SKILL";
pub const OMOIOS_API_URL: &str = "OMOIOS_API_URL";
pub const OMOIOS_PROJECT_ID: &str = "OMOIOS_PROJECT_ID";
pub const SANDBOX_ID: &str = "SANDBOX_ID";
pub const SANDBOX_TOKEN: &str = "SANDBOX_TOKEN";
pub const TASK_ID: &str = "TASK_ID";
pub const TASK_CONTEXT_B64: &str = "TASK_CONTEXT_B64";
pub const WORKSPACE: &str = "WORKSPACE";
pub const OMOI_LLM: &str = "OMOI_LLM";
pub const OMOI_SCRIPT: &str = "OMOI_SCRIPT";
/// The Claude Code binary of `OMOI_LLM=claude-code` (default: `claude` on `PATH`).
pub const CLAUDE_BIN: &str = "CLAUDE_BIN";
/// The Codex binary of `OMOI_LLM=codex` (default: `codex` on `PATH`).
pub const CODEX_BIN: &str = "CODEX_BIN";
/// The model's context window in tokens, for the native loop's compaction (default: the
/// model's known window, 128,000 for an unknown model).
pub const CONTEXT_WINDOW: &str = "OMOI_CONTEXT_WINDOW";
/// Seconds a CLI agent may go without output, model traffic or a submission being judged before
/// its session ends as stalled (default 660).
pub const STALL_SECS: &str = "OMOI_STALL_SECS";
pub const ANTHROPIC_API_KEY: &str = "ANTHROPIC_API_KEY";
pub const ANTHROPIC_BASE_URL: &str = "ANTHROPIC_BASE_URL";
pub const OPENAI_API_KEY: &str = "OPENAI_API_KEY";
pub const OPENAI_BASE_URL: &str = "OPENAI_BASE_URL";
pub const MODEL: &str = "MODEL";
pub const MAX_TURNS: &str = "MAX_TURNS";
pub const MAX_BUDGET_USD: &str = "MAX_BUDGET_USD";
pub const PHASE_TIMEOUT_SECS: &str = "PHASE_TIMEOUT_SECS";
pub const MAX_ATTEMPTS: &str = "MAX_ATTEMPTS";
pub const PASS_THRESHOLD: &str = "PASS_THRESHOLD";
pub const HEARTBEAT_SECS: &str = "HEARTBEAT_SECS";
/// Base delay of the backoff between phase attempts, in milliseconds (default 1000).
pub const RETRY_BASE_MS: &str = "OMOI_RETRY_BASE_MS";
/// The git token for task mode; handed to git through a credential helper only.
pub const GIT_TOKEN: &str = "OMOI_GIT_TOKEN";
/// Spec mode: the repository the worker clones into its empty workspace before EXPLORE (for
/// providers without a shared disk: Kubernetes, Daytona); unset, the workspace already holds it.
pub const REPO_URL: &str = "OMOI_REPO_URL";
/// Spec mode with `OMOI_REPO_URL`: the branch checked out (default `main`).
pub const BASE_BRANCH: &str = "OMOI_BASE_BRANCH";
/// Comma-separated names of further variables the worker passes on to the commands it runs
/// (the `run` tool, the validation command, git); every other variable stays with the worker.
pub const PASS_ENV: &str = "OMOI_PASS_ENV";

/// Standby mode (`omoi-worker standby`, or these variables set): the standby sandbox's id
/// among the coordinator's warm pool.
pub const STANDBY_ID: &str = "OMOI_STANDBY_ID";
/// Standby mode: the pool credential of this standby sandbox. It can register the sandbox and
/// fetch its assignment, once; nothing else.
pub const STANDBY_TOKEN: &str = "OMOI_STANDBY_TOKEN";
/// Standby mode: seconds a standby worker waits for an assignment before it exits (default 600).
pub const STANDBY_IDLE_SECS: &str = "OMOI_STANDBY_IDLE_SECS";
/// Standby mode in a pool whose sandboxes share one template (the Kubernetes Sandbox API's warm
/// pools): the pool's registration credential. With [`STANDBY_POOL`] and [`STANDBY_POD`] it
/// enrolls this sandbox, once, and answers the standby's own id and token; nothing else.
pub const STANDBY_ENROLL_TOKEN: &str = "OMOI_STANDBY_ENROLL_TOKEN";
/// Enrolling standby mode: the name of the pool (its `SandboxWarmPool`).
pub const STANDBY_POOL: &str = "OMOI_STANDBY_POOL";
/// Enrolling standby mode: the name of this sandbox's pod (the downward API's `metadata.name`).
pub const STANDBY_POD: &str = "OMOI_STANDBY_POD";
/// Enrolling standby mode: the uid of this sandbox's pod (the downward API's `metadata.uid`).
pub const STANDBY_POD_UID: &str = "OMOI_STANDBY_POD_UID";

/// Linux caps one environment string (`NAME=value`) at 32 pages: 131,072 bytes.
pub const MAX_ENV_VALUE_BYTES: usize = 131_072;
