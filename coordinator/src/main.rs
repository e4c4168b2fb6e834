//! `omoi`: the coordinator server and its client CLI.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use omoi_coordinator::cli::{Cli, CliError, Command, run};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
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
        .init();
    match run(cli).await {
        Ok(code) => ExitCode::from(code),
        // The reader of stdout went away (`omoi spec list | head -1`): nothing to say.
        Err(CliError::ClosedPipe) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("omoi: {e}");
            ExitCode::from(1)
        }
    }
}
