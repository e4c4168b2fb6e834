//! The command line, environment and config files of a CLI agent session: Claude Code headless
//! (`-p --input-format stream-json --output-format stream-json --verbose`) or `codex exec
//! --json`, pointed at the session's model proxy and gate, with telemetry, updates and every
//! other outside call off. The environment is built from nothing: the CLI gets a home of its own,
//! the proxy's address and its throwaway credential, and no variable of the worker.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::json;
use tokio::process::Command;

use super::gate::GateSocket;
use super::proxy::ModelProxy;
use crate::error::{Error, Result};

/// Which CLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CliKind {
    ClaudeCode,
    Codex,
}

impl CliKind {
    pub fn name(self) -> &'static str {
        match self {
            CliKind::ClaudeCode => "claude-code",
            CliKind::Codex => "codex",
        }
    }
}

/// The `PATH` a CLI runs with.
const PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// What one session's command is made of.
#[derive(Debug)]
pub struct SessionCommand<'a> {
    pub kind: CliKind,
    pub bin: &'a Path,
    /// `omoi-worker` itself, which the CLI starts as its MCP server.
    pub worker_bin: &'a Path,
    pub model: Option<&'a str>,
    pub workspace: &'a Path,
    /// The session's private directory: the CLI's home and config go here.
    pub home: &'a Path,
    pub proxy: &'a ModelProxy,
    pub gate: &'a GateSocket,
    pub system: &'a str,
    /// Codex takes the first message as an argument; Claude Code reads it on stdin.
    pub prompt: &'a str,
    pub max_turns: u32,
    /// Codex only: continue this thread with a new user message instead of starting one.
    pub resume: Option<Resume<'a>>,
}

/// A Codex session to continue (`codex exec resume THREAD TEXT`): how a message injected
/// mid-run reaches Codex, whose `exec` reads no input once started.
#[derive(Debug, Clone, Copy)]
pub struct Resume<'a> {
    /// The thread id of Codex's `thread.started` line.
    pub thread: &'a str,
    /// The user message that starts the next turn.
    pub text: &'a str,
}

impl SessionCommand<'_> {
    /// The command, its config files written. Stdout and stdin piped (Claude Code), stderr
    /// piped, in a process group of its own, killed when dropped.
    pub fn build(&self) -> Result<Command> {
        let mut command = crate::process::command(&self.bin.to_string_lossy(), self.workspace);
        command
            .env_clear()
            .env("PATH", PATH)
            .env("HOME", self.home)
            .env("LANG", "C.UTF-8")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        match self.kind {
            CliKind::ClaudeCode => self.claude(&mut command)?,
            CliKind::Codex => self.codex(&mut command)?,
        }
        Ok(command)
    }

    fn mcp_args(&self) -> Vec<String> {
        vec![
            "mcp".to_string(),
            "--socket".to_string(),
            self.gate.path().display().to_string(),
            "--nonce".to_string(),
            self.gate.nonce().to_string(),
        ]
    }

    fn claude(&self, command: &mut Command) -> Result<()> {
        let config = json!({"mcpServers": {"omoi": {
            "type": "stdio",
            "command": self.worker_bin,
            "args": self.mcp_args(),
        }}});
        let config_path = self.home.join("mcp.json");
        write(&config_path, &config.to_string())?;
        command
            .stdin(Stdio::piped())
            // `bypassPermissions` is refused to root unless the CLI is told it is sandboxed;
            // the worker runs in a sandbox.
            .env("IS_SANDBOX", "1")
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env("DISABLE_AUTOUPDATER", "1")
            .env("DISABLE_TELEMETRY", "1")
            .env("DISABLE_ERROR_REPORTING", "1")
            // The gate's schema goes into the request's tools, not behind a tool search.
            .env("ENABLE_TOOL_SEARCH", "false")
            .env("ANTHROPIC_BASE_URL", self.proxy.base_url())
            .env("ANTHROPIC_API_KEY", self.proxy.credential())
            .args(["-p", "--input-format", "stream-json"])
            .args(["--output-format", "stream-json", "--verbose"])
            .args(["--permission-mode", "bypassPermissions"])
            .args(["--max-turns", &self.max_turns.to_string()])
            .args(["--strict-mcp-config", "--mcp-config"])
            .arg(&config_path)
            .args(["--append-system-prompt", self.system]);
        if let Some(model) = self.model {
            command.args(["--model", model]);
        }
        Ok(())
    }

    fn codex(&self, command: &mut Command) -> Result<()> {
        let codex_home = self.home.join(".codex");
        std::fs::create_dir_all(&codex_home)
            .map_err(|e| Error::io(format!("create {}", codex_home.display()), e))?;
        let model = self.model.unwrap_or("gpt-5-codex");
        let args: Vec<String> = self.mcp_args().iter().map(|a| toml_string(a)).collect();
        let config = format!(
            "model = {model}\nmodel_provider = \"omoi\"\n\n\
             sandbox_mode = \"workspace-write\"\n\n\
             [model_providers.omoi]\nname = \"omoi\"\nbase_url = {base}\nwire_api = \"responses\"\n\
             env_key = \"OMOI_PROXY_KEY\"\n\n[analytics]\nenabled = false\n\n\
             [mcp_servers.omoi]\ncommand = {worker}\nargs = [{args}]\n\
             default_tools_approval_mode = \"approve\"\n",
            model = toml_string(model),
            base = toml_string(&self.proxy.base_url()),
            worker = toml_string(&self.worker_bin.display().to_string()),
            args = args.join(", "),
        );
        write(&codex_home.join("config.toml"), &config)?;
        write(&codex_home.join("AGENTS.md"), self.system)?;
        command
            .stdin(Stdio::null())
            .env("CODEX_HOME", &codex_home)
            .env("OMOI_PROXY_KEY", self.proxy.credential())
            .arg("exec");
        // `exec resume` takes no `-s`: the sandbox mode is in config.toml for both.
        match self.resume {
            None => command.args(["--json", "--skip-git-repo-check", "-s", "workspace-write"]),
            Some(_) => command.args(["resume", "--json", "--skip-git-repo-check"]),
        };
        command.args(["--disable", "plugins", "--disable", "remote_plugin"]);
        match self.resume {
            // `--` so that a message starting with `-` is not read as a flag.
            None => command.arg("--").arg(self.prompt),
            Some(resume) => command.arg("--").arg(resume.thread).arg(resume.text),
        };
        Ok(())
    }
}

/// The first user message on Claude Code's stdin (`--input-format stream-json`).
pub fn claude_user_line(text: &str) -> String {
    let mut line = json!({
        "type": "user",
        "message": {"role": "user", "content": text},
        "parent_tool_use_id": null,
        "session_id": "",
    })
    .to_string();
    line.push('\n');
    line
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    // JSON string escapes are valid TOML basic-string escapes.
    serde_json::Value::from(text).to_string()
}

fn write(path: &PathBuf, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| Error::io(format!("write {}", path.display()), e))
}
