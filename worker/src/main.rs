//! `omoi-worker`: reads its contract from the environment and runs a spec, a task or the
//! spec skill; `evaluate` and `schema` serve specs written by hand and CI gates.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use omoi_worker::cli::say;
use omoi_worker::config::standby::StandbyConfig;
use omoi_worker::config::{Config, FailureReport};
use omoi_worker::error::Error;
use omoi_worker::standby::wait_for_assignment;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(
    name = "omoi-worker",
    version,
    about = "The omoi worker: specs and tasks in a sandbox"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run what the environment asks for (the default): spec, task or spec-skill mode, or
    /// standby mode when `OMOI_STANDBY_ID` and `OMOI_STANDBY_TOKEN` are set.
    Run,
    /// Wait in a warm pool's sandbox for an assignment (`OMOI_STANDBY_ID`,
    /// `OMOI_STANDBY_TOKEN`, `OMOIOS_API_URL`), then run it as `run` would.
    Standby,
    /// Evaluate a phase output file, or a whole spec folder (`evaluate spec DIR`); prints the
    /// result as JSON, exits 0 on pass, 1 on fail, 2 on bad input, 3 when a design, tasks or sync
    /// gate lacks the earlier outputs it traces to.
    Evaluate(omoi_worker::cli::args::EvaluateArgs),
    /// Write a spec folder (omoi JSON, Kiro or spec-kit) in another format.
    Convert(omoi_worker::cli::args::ConvertArgs),
    /// Print the SYNC analysis of a spec folder; exits 0 when it is ready for execution, else 1.
    Sync(omoi_worker::cli::args::SyncArgs),
    /// Print the JSON Schema of a phase's output, or of the phase context (`schema context`).
    Schema {
        /// explore, requirements, design, tasks, sync or context.
        target: omoi_worker::cli::SchemaTarget,
    },
    /// The MCP server (stdio) through which a CLI agent reaches the running worker's gate.
    Mcp {
        /// The session's gate socket.
        #[arg(long, env = "OMOI_MCP_SOCKET")]
        socket: PathBuf,
        /// The session's gate nonce.
        #[arg(long, env = "OMOI_MCP_NONCE", hide_env_values = true)]
        nonce: String,
    },
    /// Git's credential helper during a push or fetch of a task: asks the running worker for
    /// the token over the socket it serves for that git command.
    #[command(name = "git-credential", hide = true)]
    GitCredential {
        /// The socket of the git command.
        #[arg(long)]
        socket: PathBuf,
        /// What git asks: get, store or erase.
        action: String,
    },
}

fn main() -> ExitCode {
    // A closed stdin, stdout or stderr gets /dev/null, before anything opens a file that would
    // take its number (and receive the log lines).
    let streams = omoi_seal::open_standard_streams();
    // First, before any thread starts (capabilities are per thread) and before any child.
    let dropped = omoi_worker::secrets::drop_capabilities();
    // As a container's first process, the worker runs as its own child and stays as its init.
    if omoi_worker::init::is_init() {
        return match (dropped, omoi_worker::init::run()) {
            (Ok(()), Ok(code)) => ExitCode::from(code),
            (Err(err), _) | (_, Err(err)) => {
                ExitCode::from(fail(&Error::io("start the worker under its init", err)))
            }
        };
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(err),
    };
    init_tracing();
    if let Err(err) = streams {
        tracing::warn!(%err, "cannot open /dev/null for a closed standard stream");
    }
    let code = match cli.command.unwrap_or(Command::Run) {
        command @ (Command::Run | Command::Standby) => match dropped {
            Ok(()) => run(matches!(command, Command::Standby)),
            Err(err) => fail(&Error::io("drop the capabilities no command may have", err)),
        },
        Command::Evaluate(args) => omoi_worker::cli::args::evaluate(args),
        Command::Convert(args) => omoi_worker::cli::args::convert(args),
        Command::Sync(args) => omoi_worker::cli::args::sync(args),
        Command::Schema { target } => match omoi_worker::cli::schema_command(target) {
            Ok(schema) => print(&schema, 0),
            Err(err) => fail(&err),
        },
        Command::Mcp { socket, nonce } => mcp(socket, nonce),
        Command::GitCredential { socket, action } => git_credential(&socket, &action),
    };
    ExitCode::from(code)
}

/// `--help` and `--version` print as clap does; any other usage error is one line, exit 2.
fn usage_error(err: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) {
        let _ = err.print();
        return ExitCode::SUCCESS;
    }
    let text = err.to_string();
    let first = text.lines().next().unwrap_or("bad arguments");
    say(format_args!(
        "omoi-worker: {}",
        first.trim_start_matches("error: ")
    ));
    ExitCode::from(2)
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("OMOI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        // A log line that cannot be written (stderr closed, its reader gone) is dropped;
        // reporting it would `eprintln!`, which panics on a broken pipe.
        .log_internal_errors(false)
        .init();
}

/// Prints `text` and a newline on stdout and returns `code`. A reader that went away (`| head`)
/// is no error: the command's answer stands, nothing more is said; any other write error is.
fn print(text: &str, code: u8) -> u8 {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Ok(()) => code,
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => code,
        Err(err) => fail(&Error::io("write to stdout", err)),
    }
}

/// Prints one line on stderr and returns the exit code of the error.
fn fail(err: &Error) -> u8 {
    say(format_args!("omoi-worker: {err}"));
    u8::try_from(err.exit_code()).unwrap_or(1)
}

fn git_credential(socket: &std::path::Path, action: &str) -> u8 {
    let answered = omoi_worker::task::credential::helper(
        socket,
        action,
        &mut std::io::stdin().lock(),
        &mut std::io::stdout().lock(),
    );
    match answered {
        Ok(()) => 0,
        Err(err) => fail(&Error::io("answer git's credential request", err)),
    }
}

fn mcp(socket: PathBuf, nonce: String) -> u8 {
    use omoi_worker::cli_agent::mcp::{GateAddress, serve};
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => return fail(&Error::io("start the async runtime", err)),
    };
    let gate = GateAddress { socket, nonce };
    let served = runtime.block_on(serve(
        tokio::io::BufReader::new(tokio::io::stdin()),
        tokio::io::stdout(),
        &gate,
    ));
    match served {
        Ok(()) => 0,
        Err(err) => fail(&Error::io("serve MCP on stdio", err)),
    }
}

/// The run from the environment; in standby mode (`standby`, or its variables set) the
/// environment is the worker's own with the assignment laid over it, once it comes.
fn run(standby: bool) -> u8 {
    // One thread: the worker waits on the model, the network and child processes, and its own
    // work comes in short bursts. Measured against two worker threads (`omoi-bench worker`):
    // EXPLORE 2.56 ms instead of 2.84–2.96, a whole scripted spec 9.8–10.1 ms instead of
    // 11.8–12.1, with a narrower spread — no hand-offs between threads. Blocking work (the
    // search tool's scan) goes to `spawn_blocking`.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => return fail(&Error::io("start the async runtime", err)),
    };
    runtime.block_on(async {
        let signals = listen_for_stop();
        let cancel = CancellationToken::new();
        tokio::spawn(cancel_on_signal(cancel.clone(), signals));
        let vars = omoi_worker::config::process_vars();
        let vars = match StandbyConfig::from_vars(vars.iter().cloned()) {
            Ok(Some(config)) => match wait_for_assignment(&config, &cancel).await {
                Ok(Some(assignment)) => match config.assigned_vars(assignment) {
                    Ok(vars) => vars,
                    Err(err) => return fail(&err),
                },
                Ok(None) => {
                    tracing::info!(
                        idle_secs = config.idle_limit.as_secs(),
                        "no assignment came within the idle limit: exiting"
                    );
                    return 0;
                }
                Err(err) => return fail(&err),
            },
            Ok(None) if standby => {
                return fail(&Error::config(
                    omoi_protocol::env::STANDBY_ID,
                    "required by omoi-worker standby, with OMOI_STANDBY_TOKEN and OMOIOS_API_URL",
                ));
            }
            Ok(None) => vars,
            Err(err) => return fail(&err),
        };
        let config = match Config::from_vars(vars.iter().cloned()) {
            Ok(config) => config,
            Err(err) => {
                if let Some(report) = FailureReport::from_vars(vars) {
                    omoi_worker::run::report_config_failure(report, &err).await;
                }
                return fail(&err);
            }
        };
        // The configuration holds what the worker needs: what a child may not have goes from
        // the environment block (the pool credential of a standby too), and the worker's memory
        // closes, before any child starts.
        if let Err(err) = omoi_worker::secrets::seal(|name| config.children.env.has(name)) {
            return fail(&Error::io(
                "close the worker's memory and environment to its commands",
                err,
            ));
        }
        match omoi_worker::run::run(config, cancel).await {
            Ok(()) => 0,
            Err(err) => fail(&err),
        }
    })
}

/// SIGTERM and SIGINT (Ctrl-C), caught from the moment they are created.
struct StopSignals {
    term: Option<tokio::signal::unix::Signal>,
    int: Option<tokio::signal::unix::Signal>,
}

/// Starts catching SIGTERM and SIGINT; call it first in the runtime, so that a stop that comes
/// while the run starts cancels it instead of killing the worker before its first event.
fn listen_for_stop() -> StopSignals {
    use tokio::signal::unix::{SignalKind, signal};
    let catch = |kind: SignalKind, name: &str| match signal(kind) {
        Ok(signal) => Some(signal),
        Err(err) => {
            tracing::warn!(%err, "cannot listen for {name}");
            None
        }
    };
    StopSignals {
        term: catch(SignalKind::terminate(), "SIGTERM"),
        int: catch(SignalKind::interrupt(), "SIGINT"),
    }
}

/// Cancels the run on SIGTERM or Ctrl-C; the run then drains its events and exits.
async fn cancel_on_signal(cancel: CancellationToken, signals: StopSignals) {
    async fn next(signal: Option<tokio::signal::unix::Signal>) {
        match signal {
            Some(mut signal) => {
                signal.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    }
    tokio::select! {
        _ = next(signals.term) => tracing::info!("SIGTERM: stopping"),
        _ = next(signals.int) => tracing::info!("interrupted: stopping"),
    }
    cancel.cancel();
}
