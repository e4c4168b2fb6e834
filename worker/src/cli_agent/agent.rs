//! [`CliAgent`]: a session of Claude Code or Codex as an [`Agent`]. Per session: a private
//! directory (the CLI's home, the gate socket), the gate, the model proxy, and the CLI as a child
//! process in its own process group. Its output stream becomes events; the session ends when a
//! submission passes, the CLI exits, a limit is reached or the session is cancelled, and the
//! whole process group is killed then.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use omoi_protocol::event::Event;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;

use super::command::{CliKind, Resume, SessionCommand, claude_user_line};
use super::gate::GateSocket;
use super::proxy::{ModelProxy, ProxyConfig, Wire};
use super::stream::{Mapped, claude::ClaudeStream, codex::CodexStream};
use crate::agent::{Agent, BoxFuture, EndReason, SessionOutcome, SessionSpec, SubmitHandler};
use crate::config::Secret;
use crate::error::{Error, Result};
use crate::events::Emitter;
use crate::process::ProcessGroup;

/// How long the CLI may take to report an accepted submission before it is stopped.
const ACCEPT_GRACE: Duration = Duration::from_millis(500);
/// How often the session looks at the inbox and the turn count.
const TICK: Duration = Duration::from_millis(250);

/// What a CLI agent needs.
#[derive(Debug, Clone, PartialEq)]
pub struct CliAgentConfig {
    pub kind: CliKind,
    /// The CLI binary (`CLAUDE_BIN`, `CODEX_BIN`).
    pub bin: PathBuf,
    /// `omoi-worker` itself, started by the CLI as its MCP server.
    pub worker_bin: PathBuf,
    pub model: Option<String>,
    /// The real API: `ANTHROPIC_BASE_URL` or `OPENAI_BASE_URL`.
    pub upstream: String,
    pub key: Option<Secret>,
    /// Where the sessions' private directories are made.
    pub runtime_dir: PathBuf,
    /// The stall window (`OMOI_STALL_SECS`): a session in which the CLI prints nothing, no
    /// model call comes in or streams an answer, and no submission is judged for this long
    /// is ended as stalled (the CLI killed), whatever the phase timeout still allows.
    pub stall: Duration,
}

/// Claude Code or Codex as an agent.
#[derive(Debug)]
pub struct CliAgent {
    config: CliAgentConfig,
}

impl CliAgent {
    pub fn new(config: CliAgentConfig) -> Self {
        CliAgent { config }
    }
}

impl Agent for CliAgent {
    fn name(&self) -> &'static str {
        self.config.kind.name()
    }

    fn run_session<'a>(
        &'a self,
        spec: SessionSpec,
        submit: &'a dyn SubmitHandler,
        emitter: &'a Emitter,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<SessionOutcome>> {
        Box::pin(self.session(spec, submit, emitter, cancel))
    }
}

/// A directory of mode 0700, removed on drop.
struct PrivateDir(PathBuf);

impl PrivateDir {
    fn create(parent: &Path) -> Result<Self> {
        // Short: the gate's socket lives under it, and its path must fit in 108 bytes.
        let random = uuid::Uuid::new_v4().simple().to_string();
        let path = parent.join(format!("omoi-{}", &random[..12]));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| Error::io(format!("create {}", path.display()), e))?;
        Ok(PrivateDir(path))
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn ended(reason: EndReason, detail: impl Into<String>) -> SessionOutcome {
    SessionOutcome::Ended {
        reason,
        detail: detail.into(),
    }
}

/// The output mapper of either CLI.
enum Mapper {
    Claude(ClaudeStream),
    Codex(CodexStream),
}

impl Mapper {
    fn line(&mut self, line: &str) -> Vec<Mapped> {
        match self {
            Mapper::Claude(stream) => stream.line(line),
            Mapper::Codex(stream) => stream.line(line),
        }
    }
}

/// What the session has learnt from the CLI's output.
#[derive(Debug, Default)]
struct Seen {
    /// The CLI's session id (Codex's thread id, which `codex exec resume` takes).
    session: Option<String>,
    /// The CLI's own last words about its run.
    detail: String,
}

/// Maps and emits one line of the CLI's output; true when it carried a tool result.
fn handle_line(
    mapper: &mut Mapper,
    line: &str,
    emitter: &Emitter,
    seen: &mut Seen,
    kind: CliKind,
) -> bool {
    let mut had_result = false;
    for mapped in mapper.line(line) {
        match mapped {
            Mapped::Event(event) => {
                match &event {
                    Event::AgentToolUse(_) => emitter.count_tool_call(),
                    Event::AgentToolResult(_) => had_result = true,
                    _ => {}
                }
                emitter.emit(event);
            }
            Mapped::SessionId(id) => {
                tracing::info!(cli = kind.name(), session = %id, "CLI session started");
                seen.session = Some(id);
            }
            Mapped::Finished(finished) => {
                tracing::info!(cli = kind.name(), ok = finished.ok, detail = %finished.detail,
                    "CLI reports the end of its run");
                seen.detail = finished.detail;
            }
        }
    }
    had_result
}

impl CliAgent {
    async fn session(
        &self,
        spec: SessionSpec,
        submit: &dyn SubmitHandler,
        emitter: &Emitter,
        cancel: &CancellationToken,
    ) -> Result<SessionOutcome> {
        let config = &self.config;
        let dir = PrivateDir::create(&config.runtime_dir)?;
        let home = dir.0.join("home");
        std::fs::create_dir_all(&home)
            .map_err(|e| Error::io(format!("create {}", home.display()), e))?;
        let gate = GateSocket::bind(&dir.0)?;
        let wire = match config.kind {
            CliKind::ClaudeCode => Wire::Anthropic,
            CliKind::Codex => Wire::OpenAiResponses,
        };
        let proxy = ModelProxy::start(
            ProxyConfig {
                wire,
                upstream: config.upstream.clone(),
                key: config.key.clone(),
                budget_usd: spec.limits.max_budget_usd,
                price: spec.limits.price,
            },
            Some(emitter.clone()),
        )
        .await?;
        let command = |resume: Option<Resume<'_>>| {
            SessionCommand {
                kind: config.kind,
                bin: &config.bin,
                worker_bin: &config.worker_bin,
                model: config.model.as_deref(),
                workspace: &spec.workspace,
                home: &home,
                proxy: &proxy,
                gate: &gate,
                system: &spec.system,
                prompt: &spec.prompt,
                max_turns: spec.limits.max_turns,
                resume,
            }
            .build()
        };
        let mut cli = self.start(command(None)?)?;
        if let Some(stdin) = &mut cli.stdin {
            if let Err(err) = stdin
                .write_all(claude_user_line(&spec.prompt).as_bytes())
                .await
            {
                tracing::warn!(%err, "cannot hand the first message to the CLI");
            }
        }
        let mut mapper = match config.kind {
            CliKind::ClaudeCode => Mapper::Claude(ClaudeStream::new(&spec.workspace)),
            CliKind::Codex => Mapper::Codex(CodexStream::new(&spec.workspace)),
        };
        let serve = gate.serve(&spec.submit, submit);
        tokio::pin!(serve);
        let deadline = tokio::time::sleep(spec.limits.timeout);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(TICK);
        let mut seen = Seen::default();
        // The CLI's last line, or a submission being judged (the proxy keeps its own time).
        let mut last_seen = Instant::now();
        // Messages injected into a Codex session, waiting for its next turn.
        let mut pending: Vec<String> = Vec::new();
        let outcome = loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break ended(EndReason::Cancelled, "the session was cancelled"),
                input = gate.wait_accepted() => {
                    // The CLI reports the call and its result a moment later: take what it
                    // prints until the result (or a short grace) before it is stopped.
                    let grace = tokio::time::sleep(ACCEPT_GRACE);
                    tokio::pin!(grace);
                    loop {
                        tokio::select! {
                            _ = &mut grace => break,
                            line = cli.lines.next_line() => match line {
                                Ok(Some(line)) => {
                                    if handle_line(&mut mapper, &line, emitter, &mut seen, config.kind) {
                                        break;
                                    }
                                }
                                Ok(None) | Err(_) => break,
                            },
                        }
                    }
                    break SessionOutcome::Submitted { input };
                }
                _ = &mut deadline => break ended(
                    EndReason::Timeout,
                    format!("the session's time limit of {} s ran out", spec.limits.timeout.as_secs()),
                ),
                _ = proxy.budget_spent() => break ended(
                    EndReason::Budget,
                    format!("the budget of ${:.2} is spent (${:.4} used)",
                        spec.limits.max_budget_usd, proxy.total().cost_usd),
                ),
                _ = &mut serve => {}
                _ = tick.tick() => {
                    if proxy.calls() > u64::from(spec.limits.max_turns) {
                        break ended(EndReason::MaxTurns, format!(
                            "the limit of {} turns is reached", spec.limits.max_turns));
                    }
                    if gate.checking() {
                        last_seen = Instant::now();
                    }
                    let quiet = last_seen.max(proxy.last_traffic()).elapsed();
                    if quiet >= config.stall {
                        break ended(EndReason::Idle, format!(
                            "stalled: {} printed nothing and the model sent or was sent \
                             nothing for {} s (OMOI_STALL_SECS)",
                            config.kind.name(), config.stall.as_secs()));
                    }
                    match (&mut cli.stdin, config.kind) {
                        // Claude Code reads injected messages on stdin, mid-run.
                        (Some(stdin), _) => {
                            for text in spec.inbox.drain() {
                                if let Err(err) = stdin.write_all(claude_user_line(&text).as_bytes()).await {
                                    tracing::warn!(%err, "cannot hand an injected message to the CLI");
                                }
                            }
                        }
                        // Codex gets them when its turn ends (`codex exec` reads no input).
                        (None, CliKind::Codex) => pending.extend(spec.inbox.drain()),
                        (None, CliKind::ClaudeCode) => {}
                    }
                }
                line = cli.lines.next_line() => match line {
                    Ok(Some(line)) => {
                        last_seen = Instant::now();
                        handle_line(&mut mapper, &line, emitter, &mut seen, config.kind);
                    }
                    Ok(None) | Err(_) => {
                        let status = cli.child.wait().await;
                        if let Some(input) = gate.accepted() {
                            break SessionOutcome::Submitted { input };
                        }
                        if config.kind == CliKind::Codex {
                            pending.extend(spec.inbox.drain());
                        }
                        if let (false, Some(thread)) = (pending.is_empty(), &seen.session) {
                            // Codex ended its turn: the waiting messages start the next one,
                            // in the same thread (its transcript is under CODEX_HOME).
                            let text = injected_text(&std::mem::take(&mut pending));
                            tracing::info!(thread = %thread,
                                "Codex ended its turn: resuming its session with the injected messages");
                            cli = self.start(command(Some(Resume { thread, text: &text }))?)?;
                            continue;
                        }
                        let how = match status {
                            Ok(status) => status.to_string(),
                            Err(err) => err.to_string(),
                        };
                        break ended(EndReason::NoSubmission, format!(
                            "{} ended ({how}) without a passing submission{}",
                            config.kind.name(),
                            if seen.detail.is_empty() { String::new() } else { format!(": {}", seen.detail) },
                        ));
                    }
                },
            }
        };
        if !pending.is_empty() {
            tracing::warn!(
                messages = pending.len(),
                "the Codex session ended before its next turn: injected messages not delivered"
            );
        }
        // Dropping `cli` kills whatever the CLI left running in its process group.
        drop(cli);
        Ok(outcome)
    }

    /// Starts the CLI: its stderr to the log, its stdout read line by line, its process group
    /// killed when the [`Running`] is dropped.
    fn start(&self, mut command: tokio::process::Command) -> Result<Running> {
        let config = &self.config;
        let variable = match config.kind {
            CliKind::ClaudeCode => omoi_protocol::env::CLAUDE_BIN,
            CliKind::Codex => omoi_protocol::env::CODEX_BIN,
        };
        let mut child = command.spawn().map_err(|e| {
            Error::config(
                variable,
                format!("cannot start {}: {e}", config.bin.display()),
            )
        })?;
        let group = ProcessGroup(child.id());
        let stdin = child.stdin.take();
        if let Some(stderr) = child.stderr.take() {
            let name = config.kind.name();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::debug!(cli = name, "{line}");
                }
            });
        }
        let Some(stdout) = child.stdout.take() else {
            return Err(Error::Internal("the CLI's stdout is not piped".to_string()));
        };
        Ok(Running {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
            _group: group,
        })
    }
}

/// One running CLI process. Dropping it kills its process group.
struct Running {
    child: tokio::process::Child,
    /// Claude Code's stdin (its first and injected messages); `None` for Codex.
    stdin: Option<tokio::process::ChildStdin>,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    // Dropped after `stdin`, so the CLI sees its input end before it is killed.
    _group: ProcessGroup,
}

/// Injected messages as the one user message that resumes a Codex session.
fn injected_text(messages: &[String]) -> String {
    messages
        .iter()
        .map(|text| format!("Message from the user while you work: {text}"))
        .collect::<Vec<_>>()
        .join("\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn injected_messages_become_one_user_message() {
        assert_eq!(
            injected_text(&["Use tabs.".to_string(), "And tests.".to_string()]),
            "Message from the user while you work: Use tabs.\n\n\
             Message from the user while you work: And tests."
        );
    }
}
