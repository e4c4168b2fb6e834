//! `omoi`: the coordinator server and its client CLI.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use omoi_coordinator::cli::{Cli, CliError, Command, note, run};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    // A closed stdin, stdout or stderr gets /dev/null, before the runtime or a database takes
    // its number (and would receive the log lines).
    let streams = omoi_seal::open_standard_streams();
    let cli = Cli::parse();
    // The server logs what it does; the client commands and the demo only what goes wrong.
    let default_filter = match cli.command {
        Command::Serve(_) => "warn,omoi_coordinator=info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        // A log line that cannot be written (stderr closed, its reader gone) is dropped;
        // reporting it would `eprintln!`, which panics on a broken pipe.
        .log_internal_errors(false)
        .init();
    if let Err(err) = streams {
        tracing::warn!(%err, "cannot open /dev/null for a closed standard stream");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            note(format_args!("omoi: cannot start the async runtime: {e}"));
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        // The reader of stdout went away (`omoi spec list | head -1`): nothing to say.
        Err(CliError::ClosedPipe) => ExitCode::SUCCESS,
        Err(e) => {
            note(format_args!("omoi: {e}"));
            ExitCode::from(1)
        }
    }
}
