//! One worker run: start event delivery, announce the run, dispatch on the mode, and end with
//! exactly one terminal event (`agent.completed` or `agent.failed`).

use std::time::Duration;

use omoi_protocol::context::PhaseContext;
use omoi_protocol::env as var;
use omoi_protocol::event::{AgentCompleted, AgentFailed, AgentStarted, Event, WorkerMode};
use omoi_protocol::phase::Phase;
use tokio_util::sync::CancellationToken;

use crate::agent::{self, Agent, EndReason, NativeAgent, SessionOutcome};
use crate::checkpoint;
use crate::cli_agent::agent::CliAgent;
use crate::config::{
    Config, ContextSource, FailureReport, LlmConfig, MAX_FETCHED_CONTEXT_BYTES, Mode,
    SpecRepository, check_resume, parse_context, state_dir,
};
use crate::error::{Error, Result};
use crate::events::{self, Emitter, EventIds, EventsConfig, SinkConfig};
use crate::inbox::{self, Inbox};
use crate::llm::anthropic::AnthropicProvider;
use crate::llm::openai::OpenAiProvider;
use crate::llm::scripted::ScriptedProvider;
use crate::machine::{self, SpecOutcome, SpecRun};
use crate::process;
use crate::secrets::Masker;
use crate::skill::{SkillRequest, run_spec_skill};

/// How long the event sender may take to deliver what is queued when the run ends.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// How often a worker with a coordinator asks for injected messages.
pub const MESSAGE_POLL: Duration = Duration::from_secs(2);

/// What the worker can do, announced in `agent.started`.
pub const CAPABILITIES: &[&str] = &[
    "mode:spec",
    "mode:task",
    "mode:spec-skill",
    "llm:scripted",
    "llm:anthropic",
    "llm:openai",
    "tools:read_file,list_files,search,write_file,edit_file,run,submit",
];

/// Runs the configured mode to its end. The error, if any, has been reported as `agent.failed`.
pub async fn run(config: Config, cancel: CancellationToken) -> Result<()> {
    process::set_children(config.children.clone());
    checkpoint::ensure_state_dir(&state_dir(&config.workspace))?;
    let (emitter, delivery) = events::start(events_config(&config)).await?;
    let (mode, start_phase) = match &config.mode {
        Mode::Spec(spec) => (WorkerMode::Spec, Some(spec.start)),
        Mode::Task(_) => (WorkerMode::Task, None),
        Mode::SpecSkill(_) => (WorkerMode::SpecSkill, None),
    };
    emitter.emit(Event::AgentStarted(AgentStarted {
        version: env!("CARGO_PKG_VERSION").to_string(),
        mode,
        start_phase,
        capabilities: CAPABILITIES.iter().map(|c| c.to_string()).collect(),
    }));
    let inbox = Inbox::default();
    let stop_polling = CancellationToken::new();
    let poller = config.coordinator.as_ref().map(|coordinator| {
        tokio::spawn(inbox::poll(
            inbox::Poll {
                url: format!(
                    "{}/api/v1/sandboxes/{}/messages",
                    coordinator.base_url, config.sandbox_id
                ),
                token: coordinator.token.expose().to_string(),
                every: MESSAGE_POLL,
                cursor_file: state_dir(&config.workspace).join("inbox.after"),
            },
            inbox.clone(),
            emitter.clone(),
            stop_polling.clone(),
        ))
    });
    let result = dispatch(&config, &emitter, &inbox, &cancel).await;
    stop_polling.cancel();
    if let Some(poller) = poller {
        let _ = poller.await;
    }
    let counters = emitter.status().counters;
    match &result {
        Ok(stopped_after) => emitter.emit(Event::AgentCompleted(AgentCompleted {
            success: true,
            counters,
            stopped_after: *stopped_after,
        })),
        Err(err) => emitter.emit(Event::AgentFailed(AgentFailed {
            kind: err.kind(),
            reason: err.to_string(),
            counters,
        })),
    };
    drop(emitter);
    let report = delivery.finish(DRAIN_DEADLINE).await;
    if report.unsent > 0 {
        tracing::warn!(
            unsent = report.unsent,
            "events left undelivered in the spool; a restart in this workspace resends them"
        );
    }
    result.map(|_| ())
}

/// Runs the mode; `Ok(Some(phase))` when the run stopped early after `phase`.
async fn dispatch(
    config: &Config,
    emitter: &Emitter,
    inbox: &Inbox,
    cancel: &CancellationToken,
) -> Result<Option<Phase>> {
    let agent = agent(&config.llm)?;
    match &config.mode {
        Mode::Spec(spec) => {
            if let Some(repository) = &spec.repository {
                clone_repository(repository, &config.workspace, cancel).await?;
            }
            let context = resolve_context(&spec.context, spec.start).await?;
            let outcome = machine::run(SpecRun {
                spec_id: &spec.spec_id,
                start: spec.start,
                stop_after: spec.stop_after,
                context,
                workspace: &config.workspace,
                limits: config.limits,
                agent: agent.as_ref(),
                emitter,
                cancel,
                inbox: inbox.clone(),
            })
            .await?;
            Ok(match outcome {
                SpecOutcome::Completed(_) => None,
                SpecOutcome::Stopped { after } => Some(after),
            })
        }
        Mode::Task(task_mode) => {
            crate::task::run(crate::task::TaskRun {
                task_id: &task_mode.task_id,
                context: &task_mode.context,
                git_token: task_mode.git_token.as_ref(),
                workspace: &config.workspace,
                limits: config.limits,
                agent: agent.as_ref(),
                emitter,
                cancel,
                inbox: inbox.clone(),
            })
            .await?;
            Ok(None)
        }
        Mode::SpecSkill(skill) => {
            let report = run_spec_skill(
                agent.as_ref(),
                &SkillRequest {
                    workspace: config.workspace.clone(),
                    title: skill.title.clone(),
                    description: skill.description.clone(),
                    limits: agent::Limits {
                        max_turns: config.limits.max_turns,
                        max_budget_usd: config.limits.max_budget_usd,
                        timeout: config.limits.phase_timeout,
                        price: config.limits.price,
                    },
                    threshold: config.limits.pass_threshold,
                    inbox: inbox.clone(),
                },
                emitter,
                cancel,
            )
            .await?;
            // The documents' evaluations are reported as events and never block; the run
            // fails only when the agent never submitted.
            match report.session {
                SessionOutcome::Submitted { .. } => Ok(None),
                SessionOutcome::Ended {
                    reason: EndReason::Cancelled,
                    ..
                } => Err(Error::Cancelled),
                SessionOutcome::Ended { reason, detail } => Err(reason.into_error(detail)),
            }
        }
    }
}

/// Spec mode on a provider without a shared disk: the repository cloned into the workspace (or a
/// checkout there fetched and reset, on a restart in the same workspace), its base branch checked
/// out. The token reaches git through the credential helper only, as in task mode.
async fn clone_repository(
    repository: &SpecRepository,
    workspace: &std::path::Path,
    cancel: &CancellationToken,
) -> Result<()> {
    let git = crate::task::git::Git::new(
        workspace,
        repository.git_token.clone(),
        cancel.child_token(),
    );
    let checkout = crate::task::checkout::prepare(
        &git,
        &crate::task::checkout::CheckoutSpec {
            repo_url: &repository.url,
            base_branch: &repository.base_branch,
            branch: &repository.base_branch,
        },
    )
    .await?;
    tracing::info!(
        commit = %checkout.start,
        reused = checkout.reused,
        "the repository is in the workspace"
    );
    Ok(())
}

/// The agent of the config: the one place where it is chosen.
pub fn agent(llm: &LlmConfig) -> Result<Box<dyn Agent>> {
    Ok(match llm {
        LlmConfig::Scripted { script } => {
            Box::new(NativeAgent::new(ScriptedProvider::load(script)?))
        }
        LlmConfig::Anthropic(settings) => {
            Box::new(NativeAgent::new(AnthropicProvider::new(settings.clone())?))
        }
        LlmConfig::OpenAi(settings) => {
            Box::new(NativeAgent::new(OpenAiProvider::new(settings.clone())?))
        }
        LlmConfig::Cli(settings) => Box::new(CliAgent::new(settings.clone())),
    })
}

fn events_config(config: &Config) -> EventsConfig {
    let sink = match &config.coordinator {
        None => SinkConfig::Stdout,
        Some(coordinator) => SinkConfig::Http {
            base_url: coordinator.base_url.clone(),
            token: coordinator.token.expose().to_string(),
            spool_dir: state_dir(&config.workspace),
        },
    };
    EventsConfig {
        ids: EventIds {
            sandbox_id: config.sandbox_id.clone(),
            spec_id: config.spec_id().map(str::to_string),
            task_id: config.task_id().map(str::to_string),
        },
        sink,
        heartbeat: config.limits.heartbeat,
        masker: config.children.masker.clone(),
    }
}

/// The phase context: inline, or fetched from `PHASE_CONTEXT_URL` with the sandbox token.
async fn resolve_context(source: &ContextSource, start: Phase) -> Result<PhaseContext> {
    match source {
        ContextSource::Inline(context) => Ok((**context).clone()),
        ContextSource::Url { url, token } => {
            let bytes = fetch_context(url, token.expose()).await?;
            let context = parse_context(var::PHASE_CONTEXT_URL, &bytes)?;
            check_resume(var::PHASE_CONTEXT_URL, &context, start)?;
            Ok(context)
        }
    }
}

async fn fetch_context(url: &str, token: &str) -> Result<Vec<u8>> {
    let fail = |problem: String| Error::config(var::PHASE_CONTEXT_URL, problem);
    let client = crate::tls::client_builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| fail(format!("cannot build an HTTP client: {e}")))?;
    let mut last = String::new();
    for attempt in 0..4u32 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
        }
        let response = match client.get(url).bearer_auth(token).send().await {
            Ok(response) => response,
            Err(err) => {
                last = format!("cannot fetch the context: {err}");
                continue;
            }
        };
        let status = response.status();
        if status.is_server_error() {
            last = format!("the coordinator answered {status}");
            continue;
        }
        if !status.is_success() {
            return Err(fail(format!("the coordinator answered {status}")));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_FETCHED_CONTEXT_BYTES as u64)
        {
            return Err(fail(format!(
                "the context is over the {MAX_FETCHED_CONTEXT_BYTES}-byte limit"
            )));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| fail(format!("cannot read the context: {e}")))?;
        if bytes.len() > MAX_FETCHED_CONTEXT_BYTES {
            return Err(fail(format!(
                "the context is over the {MAX_FETCHED_CONTEXT_BYTES}-byte limit"
            )));
        }
        return Ok(bytes.to_vec());
    }
    Err(fail(last))
}

/// Reports a config error to the coordinator as `agent.failed`, when the environment names a
/// usable coordinator. Best effort: the caller still exits 2.
pub async fn report_config_failure(report: FailureReport, error: &Error) {
    let spool_dir = state_dir(&report.workspace);
    if checkpoint::ensure_state_dir(&spool_dir).is_err() {
        return;
    }
    let config = EventsConfig {
        ids: EventIds {
            sandbox_id: report.sandbox_id,
            spec_id: report.spec_id,
            task_id: report.task_id,
        },
        sink: SinkConfig::Http {
            base_url: report.coordinator.base_url,
            token: report.coordinator.token.expose().to_string(),
            spool_dir,
        },
        heartbeat: Duration::ZERO,
        // The config was not read, so its secrets are unknown; the reason names variables only.
        masker: Masker::default(),
    };
    let Ok((emitter, delivery)) = events::start(config).await else {
        return;
    };
    emitter.emit(Event::AgentFailed(AgentFailed {
        kind: error.kind(),
        reason: error.to_string(),
        counters: Default::default(),
    }));
    drop(emitter);
    delivery.finish(Duration::from_secs(5)).await;
}
