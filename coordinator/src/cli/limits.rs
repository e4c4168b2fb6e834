//! The flags of `omoi serve` that bound what a client may take: the quotas of one sandbox
//! (seq window, held-back events, stored event data) and the server's own limits (header-read
//! and idle timeouts, open connections).

use std::time::Duration;

use clap::Args;

use super::{CliError, CliResult};
use crate::app::Settings;
use crate::ingest::Quotas;
use crate::server::ServerLimits;

/// Quotas and server limits.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct LimitArgs {
    /// How far past its acknowledged seq a sandbox's events may run.
    #[arg(long, env = "OMOI_MAX_SEQ_AHEAD", default_value_t = 10_000)]
    pub max_seq_ahead: u64,
    /// Events of one sandbox that may wait for a gap in its seq to fill.
    #[arg(long, env = "OMOI_MAX_HELD_EVENTS", default_value_t = 2_000)]
    pub max_held_events: u64,
    /// Event data one sandbox may store, in MiB.
    #[arg(long, env = "OMOI_MAX_SANDBOX_MIB", default_value_t = 256)]
    pub max_sandbox_mib: u64,
    /// Seconds a client has to send a request's headers.
    #[arg(long, env = "OMOI_HEADER_TIMEOUT_SECS", default_value_t = 10)]
    pub header_timeout_secs: u64,
    /// Seconds a connection may stay silent before it is closed.
    #[arg(long, env = "OMOI_IDLE_TIMEOUT_SECS", default_value_t = 60)]
    pub idle_timeout_secs: u64,
    /// Connections open at once; more are closed on arrival.
    #[arg(long, env = "OMOI_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
}

impl LimitArgs {
    /// Checks the flags, sets the quotas on `settings` and answers the server's limits.
    pub fn apply(&self, settings: &mut Settings) -> CliResult<ServerLimits> {
        let at_least_one = [
            ("--max-seq-ahead", self.max_seq_ahead),
            ("--max-held-events", self.max_held_events),
            ("--max-sandbox-mib", self.max_sandbox_mib),
            ("--header-timeout-secs", self.header_timeout_secs),
            ("--idle-timeout-secs", self.idle_timeout_secs),
            (
                "--max-connections",
                u64::try_from(self.max_connections).unwrap_or(u64::MAX),
            ),
        ];
        if let Some((flag, _)) = at_least_one.iter().find(|(_, value)| *value == 0) {
            return Err(CliError::Config(format!("{flag} must be at least 1")));
        }
        if self.max_connections > 1 << 20 {
            return Err(CliError::Config(
                "--max-connections must be at most 1048576".into(),
            ));
        }
        settings.quotas = Quotas {
            seq_window: self.max_seq_ahead,
            held_events: self.max_held_events,
            stored_bytes: self.max_sandbox_mib.saturating_mul(1024 * 1024),
        };
        Ok(ServerLimits {
            header_read_timeout: Duration::from_secs(self.header_timeout_secs),
            idle_timeout: Duration::from_secs(self.idle_timeout_secs),
            max_connections: self.max_connections,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn args() -> LimitArgs {
        LimitArgs {
            max_seq_ahead: 50,
            max_held_events: 20,
            max_sandbox_mib: 2,
            header_timeout_secs: 3,
            idle_timeout_secs: 4,
            max_connections: 5,
        }
    }

    #[test]
    fn the_flags_set_the_quotas_and_the_server_limits() {
        let mut settings = Settings::new("http://127.0.0.1:8080");
        let limits = args().apply(&mut settings).unwrap();
        assert_eq!(
            (settings.quotas, limits),
            (
                Quotas {
                    seq_window: 50,
                    held_events: 20,
                    stored_bytes: 2 * 1024 * 1024,
                },
                ServerLimits {
                    header_read_timeout: Duration::from_secs(3),
                    idle_timeout: Duration::from_secs(4),
                    max_connections: 5,
                }
            )
        );
    }

    #[test]
    fn zero_limits_are_refused_with_the_flag() {
        let mut settings = Settings::new("http://127.0.0.1:8080");
        let cases = [
            (
                LimitArgs {
                    max_seq_ahead: 0,
                    ..args()
                },
                "--max-seq-ahead must be at least 1",
            ),
            (
                LimitArgs {
                    idle_timeout_secs: 0,
                    ..args()
                },
                "--idle-timeout-secs must be at least 1",
            ),
            (
                LimitArgs {
                    max_connections: 0,
                    ..args()
                },
                "--max-connections must be at least 1",
            ),
            (
                LimitArgs {
                    max_connections: usize::MAX,
                    ..args()
                },
                "--max-connections must be at most 1048576",
            ),
        ];
        for (flags, message) in cases {
            assert_eq!(flags.apply(&mut settings).unwrap_err().to_string(), message);
        }
    }
}
