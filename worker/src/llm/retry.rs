//! The retry policy of model calls: which failures are retried (see
//! [`LlmError::is_retryable`]) and how long to wait (exponential backoff with jitter, or the
//! API's `retry-after`, capped). It knows no HTTP: the transport turns answers into errors.

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio_util::sync::CancellationToken;

use super::LlmError;

/// How one model call is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// The first backoff delay; each further one doubles, plus jitter.
    pub min_delay: Duration,
    /// The longest backoff delay.
    pub max_delay: Duration,
    /// The longest wait a `retry-after` header may ask for; longer asks are cut to this.
    pub max_retry_after: Duration,
}

impl RetryPolicy {
    /// Backoff from 1 s up to 60 s; a `retry-after` of at most 120 s is honoured.
    pub fn new(max_retries: u32) -> Self {
        RetryPolicy {
            max_retries,
            min_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            max_retry_after: Duration::from_secs(120),
        }
    }

    fn backoff(&self) -> impl Iterator<Item = Duration> {
        ExponentialBuilder::new()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_retries as usize)
            .with_jitter()
            .with_jitter_seed(random_seed())
            .build()
    }

    /// The wait before the next attempt after `error`: the API's `retry-after` (capped) when it
    /// gave one, else the next backoff delay.
    fn delay_after(&self, error: &LlmError, backoff: Duration) -> Duration {
        match error {
            LlmError::RateLimited {
                retry_after: Some(wait),
                ..
            } => (*wait).min(self.max_retry_after),
            _ => backoff,
        }
    }
}

/// A seed that differs between processes, so that workers started together do not retry in step.
fn random_seed() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// Runs `attempt` (called with the attempt number, from 1) until it succeeds, fails with an error
/// that is not retryable, or the retries of `policy` are used up; the last error is returned.
/// `cancel` aborts the running attempt or the wait at once with [`LlmError::Cancelled`].
pub async fn with_retries<T, F, Fut>(
    policy: &RetryPolicy,
    cancel: &CancellationToken,
    what: &str,
    mut attempt: F,
) -> Result<T, LlmError>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, LlmError>>,
{
    let mut backoff = policy.backoff();
    let mut number = 1;
    loop {
        let result = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(LlmError::Cancelled),
            result = attempt(number) => result,
        };
        let error = match result {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        if !error.is_retryable() {
            return Err(error);
        }
        let Some(next) = backoff.next() else {
            return Err(error);
        };
        let wait = policy.delay_after(&error, next);
        tracing::warn!(
            %error,
            attempt = number,
            wait_ms = wait.as_millis() as u64,
            "{what} failed; retrying"
        );
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(LlmError::Cancelled),
            _ = tokio::time::sleep(wait) => {}
        }
        number += 1;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use pretty_assertions::assert_eq;
    use tokio::time::Instant;

    use super::*;

    fn policy(max_retries: u32) -> RetryPolicy {
        RetryPolicy {
            max_retries,
            min_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(30),
        }
    }

    /// Runs `with_retries` over a scripted list of attempt results; returns the result, the
    /// number of attempts made and the virtual time it took.
    async fn run_script(
        policy: RetryPolicy,
        cancel: &CancellationToken,
        script: Vec<Result<&'static str, LlmError>>,
    ) -> (Result<&'static str, LlmError>, u32, Duration) {
        let calls = Arc::new(AtomicU32::new(0));
        let start = Instant::now();
        let result = with_retries(&policy, cancel, "test call", |n| {
            let calls = calls.clone();
            let outcome = script
                .get(n as usize - 1)
                .cloned()
                .unwrap_or(Err(LlmError::Script("no more".into())));
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                outcome
            }
        })
        .await;
        (result, calls.load(Ordering::SeqCst), start.elapsed())
    }

    fn server_error() -> LlmError {
        LlmError::Server {
            status: 500,
            message: "boom".into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_retryable_errors_with_growing_backoff() {
        let cancel = CancellationToken::new();
        let script = vec![
            Err(server_error()),
            Err(LlmError::Timeout("stalled".into())),
            Err(LlmError::Connection("reset".into())),
            Ok("answer"),
        ];
        let (result, calls, elapsed) = run_script(policy(5), &cancel, script).await;
        assert_eq!(result, Ok("answer"));
        assert_eq!(calls, 4);
        // 1 s, 2 s, 4 s, each plus jitter below the delay itself.
        assert!(elapsed >= Duration::from_secs(7), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(14), "{elapsed:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn honours_retry_after_and_caps_it() {
        let cancel = CancellationToken::new();
        let limited = |secs| LlmError::RateLimited {
            retry_after: Some(Duration::from_secs(secs)),
            message: "slow down".into(),
        };
        let (result, calls, elapsed) =
            run_script(policy(3), &cancel, vec![Err(limited(20)), Ok("ok")]).await;
        assert_eq!((result, calls), (Ok("ok"), 2));
        assert_eq!(elapsed, Duration::from_secs(20));

        let (result, _, elapsed) =
            run_script(policy(3), &cancel, vec![Err(limited(3600)), Ok("ok")]).await;
        assert_eq!(result, Ok("ok"));
        assert_eq!(elapsed, Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_max_retries_with_the_last_error() {
        let cancel = CancellationToken::new();
        let script = vec![
            Err(server_error()),
            Err(server_error()),
            Err(server_error()),
        ];
        let (result, calls, _) = run_script(policy(2), &cancel, script).await;
        assert_eq!((result, calls), (Err(server_error()), 3));
    }

    #[tokio::test(start_paused = true)]
    async fn does_not_retry_other_errors() {
        let cancel = CancellationToken::new();
        let api = LlmError::Api {
            status: 400,
            message: "max_tokens: too large".into(),
        };
        let (result, calls, elapsed) =
            run_script(policy(5), &cancel, vec![Err(api.clone()), Ok("never")]).await;
        assert_eq!((result, calls, elapsed), (Err(api), 1, Duration::ZERO));
    }

    #[tokio::test(start_paused = true)]
    async fn cancellation_aborts_the_wait() {
        let cancel = CancellationToken::new();
        let trigger = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            trigger.cancel();
        });
        let limited = LlmError::RateLimited {
            retry_after: Some(Duration::from_secs(20)),
            message: "slow down".into(),
        };
        let (result, calls, elapsed) =
            run_script(policy(3), &cancel, vec![Err(limited), Ok("late")]).await;
        assert_eq!(
            (result, calls, elapsed),
            (Err(LlmError::Cancelled), 1, Duration::from_millis(500))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn cancellation_aborts_a_running_attempt() {
        let cancel = CancellationToken::new();
        let trigger = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            trigger.cancel();
        });
        let result: Result<(), LlmError> = with_retries(&policy(3), &cancel, "call", |_| async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(())
        })
        .await;
        assert_eq!(result, Err(LlmError::Cancelled));
    }
}
