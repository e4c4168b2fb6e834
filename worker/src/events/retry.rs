//! How failed deliveries are classified and when the next attempt goes: exponential backoff
//! with jitter (`backon`) up to a cap, and the cap for refusals that will not fix themselves.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use reqwest::StatusCode;
use tokio::time::Instant;

/// First retry delay; it doubles per failure (plus up to as much again of jitter) …
pub const RETRY_MIN_DELAY: Duration = Duration::from_millis(250);
/// … up to this cap, which is also the delay after a refusal (`401`, `403`, `404` …).
pub const RETRY_MAX_DELAY: Duration = Duration::from_secs(10);

/// Why a request did not deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Failure {
    /// Worth retrying soon: the coordinator is away, busy or slow.
    Transient {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// The batch is too large for the coordinator.
    TooLarge,
    /// The coordinator refused; retrying soon will not help.
    Rejected(String),
}

/// What a non-success status means for delivery.
pub(super) fn classify(
    status: StatusCode,
    message: String,
    retry_after: Option<Duration>,
) -> Failure {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => Failure::TooLarge,
        StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS => Failure::Transient {
            reason: message,
            retry_after,
        },
        status if status.is_server_error() => Failure::Transient {
            reason: message,
            retry_after,
        },
        _ => Failure::Rejected(message),
    }
}

/// The backoff between failed requests, and what was already said about the failure.
pub(super) struct Retry {
    backoff: Option<ExponentialBackoff>,
    /// When the next request may go; `None` when not backing off.
    pub(super) at: Option<Instant>,
    failures: u32,
    rejection_logged: bool,
}

impl Retry {
    pub(super) fn new() -> Self {
        Retry {
            backoff: None,
            at: None,
            failures: 0,
            rejection_logged: false,
        }
    }

    fn builder() -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(RETRY_MIN_DELAY)
            .with_max_delay(RETRY_MAX_DELAY)
            .with_factor(2.0)
            .with_jitter()
            .with_jitter_seed(jitter_seed())
            .without_max_times()
    }

    pub(super) fn succeeded(&mut self) {
        if self.failures > 0 {
            tracing::info!(failed_attempts = self.failures, "event delivery resumed");
        }
        *self = Retry::new();
    }

    pub(super) fn failed(&mut self, failure: &Failure) {
        self.failures += 1;
        if matches!(failure, Failure::Rejected(_)) && !self.rejection_logged {
            // From now on every delay is the cap (plus jitter).
            self.backoff = Some(Retry::builder().with_min_delay(RETRY_MAX_DELAY).build());
        }
        let backoff = self.backoff.get_or_insert_with(|| Retry::builder().build());
        let next = backoff.next().unwrap_or(RETRY_MAX_DELAY);
        let delay = match failure {
            Failure::Transient {
                reason,
                retry_after,
            } => {
                if self.failures == 1 {
                    tracing::warn!(%reason, "could not deliver events; retrying with backoff");
                } else {
                    tracing::debug!(%reason, attempt = self.failures, "event delivery failed again");
                }
                retry_after.map_or(next, |after| next.max(after.min(RETRY_MAX_DELAY)))
            }
            Failure::Rejected(reason) => {
                if !self.rejection_logged {
                    self.rejection_logged = true;
                    tracing::error!(
                        %reason,
                        "the coordinator refuses this worker's events; they stay in the spool \
                         and are retried every {}s or so",
                        RETRY_MAX_DELAY.as_secs()
                    );
                } else {
                    tracing::debug!(%reason, attempt = self.failures, "events refused again");
                }
                next
            }
            Failure::TooLarge => next,
        };
        self.at = Some(Instant::now() + delay);
    }
}

/// A seed that differs between processes, so many sandboxes do not retry in step.
fn jitter_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;

    #[test]
    fn statuses_are_classified() {
        let transient = |reason: &str| Failure::Transient {
            reason: reason.to_string(),
            retry_after: None,
        };
        let cases = [
            (StatusCode::SERVICE_UNAVAILABLE, transient("m")),
            (StatusCode::INTERNAL_SERVER_ERROR, transient("m")),
            (StatusCode::REQUEST_TIMEOUT, transient("m")),
            (StatusCode::TOO_MANY_REQUESTS, transient("m")),
            (StatusCode::PAYLOAD_TOO_LARGE, Failure::TooLarge),
            (StatusCode::UNAUTHORIZED, Failure::Rejected("m".to_string())),
            (StatusCode::FORBIDDEN, Failure::Rejected("m".to_string())),
            (StatusCode::NOT_FOUND, Failure::Rejected("m".to_string())),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                Failure::Rejected("m".to_string()),
            ),
        ];
        for (status, expected) in cases {
            assert_eq!(
                classify(status, "m".to_string(), None),
                expected,
                "{status}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_grows_to_the_cap_and_refusals_wait_the_cap() {
        let transient = Failure::Transient {
            reason: "down".to_string(),
            retry_after: None,
        };
        let mut retry = Retry::new();
        let mut delays = Vec::new();
        for _ in 0..12 {
            let now = Instant::now();
            retry.failed(&transient);
            delays.push(retry.at.unwrap() - now);
        }
        // Each delay is the exponential step plus up to as much again of jitter.
        let mut step = RETRY_MIN_DELAY;
        for delay in &delays {
            assert!(
                *delay >= step && *delay <= step * 2,
                "{delay:?} for step {step:?}"
            );
            step = (step * 2).min(RETRY_MAX_DELAY);
        }

        retry.succeeded();
        for _ in 0..3 {
            let now = Instant::now();
            retry.failed(&Failure::Rejected("401".to_string()));
            let delay = retry.at.unwrap() - now;
            assert!(
                delay >= RETRY_MAX_DELAY && delay <= RETRY_MAX_DELAY * 2,
                "{delay:?}"
            );
        }
    }
}
