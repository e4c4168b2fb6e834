//! What the client commands print on stdout, through one writer that turns a closed pipe
//! (`omoi spec list | head -1`) into a quiet end instead of a panic; and their lines on
//! stderr ([`note`]), which a closed stderr loses without a panic.

use std::fmt;
use std::io::Write;

use super::{CliError, CliResult};

/// Writes `text` and a newline to stdout; a closed stdout is `CliError::ClosedPipe`.
pub fn line(text: impl fmt::Display) -> CliResult<()> {
    write(format_args!("{text}\n"))
}

/// Writes `text` and a newline to stderr; a stderr that is closed or whose reader went away
/// loses the line and nothing else (`eprintln!` would panic on a broken pipe).
pub fn note(text: impl fmt::Display) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{text}");
}

/// Writes `text` as it is to stdout.
pub fn text(text: impl fmt::Display) -> CliResult<()> {
    write(format_args!("{text}"))
}

fn write(args: fmt::Arguments<'_>) -> CliResult<()> {
    let mut out = std::io::stdout().lock();
    out.write_fmt(args)
        .and_then(|()| out.flush())
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::BrokenPipe => CliError::ClosedPipe,
            _ => CliError::Io {
                context: "writing to stdout".into(),
                source,
            },
        })
}
