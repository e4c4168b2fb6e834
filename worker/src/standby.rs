//! Standby mode: a worker in a warm pool's sandbox that starts with no assignment. It announces
//! itself to the coordinator with its pool credential, then long-polls for its assignment (the
//! environment contract as one document), and hands it back for the run. It holds no secret
//! until then, and exits when no assignment comes within its idle limit.
//!
//! What each answer means: `2xx` as the route says; connection errors, timeouts, `408`, `429`
//! and `5xx` are retried with backoff until the idle limit; any other `4xx` (a refused
//! credential, an assignment already delivered) ends the worker at once (exit 2).

use std::time::Duration;

use omoi_protocol::env as var;
use omoi_protocol::standby::{Assignment, Enrolled, StandbyEnrollment, StandbyRegistration};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::standby::{Identity, StandbyConfig};
use crate::error::{Error, Result};

/// The longest one assignment poll waits on the coordinator.
pub const LONG_POLL: Duration = Duration::from_secs(25);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Backoff between failed calls: from this, doubling, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A poll answered "nothing yet" sooner than this did not wait as asked.
const MIN_POLL: Duration = Duration::from_millis(500);

/// Registers the standby and waits for its assignment: `Some` when it came, `None` when the
/// idle limit passed first. Cancellation ends the wait with [`Error::Cancelled`].
pub async fn wait_for_assignment(
    config: &StandbyConfig,
    cancel: &CancellationToken,
) -> Result<Option<Assignment>> {
    let deadline = Instant::now() + config.idle_limit;
    let http = http_client()?;
    let (id, token) = match &config.identity {
        Identity::Own { id, token } => (id.clone(), token.expose().to_string()),
        Identity::Enroll {
            pool,
            pod,
            pod_uid,
            token,
        } => {
            let body = StandbyEnrollment {
                pool: pool.clone(),
                pod: pod.clone(),
                pod_uid: pod_uid.clone(),
                worker_version: env!("CARGO_PKG_VERSION").to_string(),
            };
            let enrolled = tokio::select! {
                () = cancel.cancelled() => return Err(Error::Cancelled),
                enrolled = enroll(&http, &config.api_url, token.expose(), &body, deadline) => enrolled?,
            };
            let Some(enrolled) = enrolled else {
                return Ok(None);
            };
            tracing::info!(standby = %enrolled.id, pod = %pod, "enrolled in the warm pool");
            (enrolled.id, enrolled.token)
        }
    };
    let client = Client::new(http, &config.api_url, &id, &token)?;
    let registered = tokio::select! {
        () = cancel.cancelled() => return Err(Error::Cancelled),
        registered = client.register(deadline) => registered?,
    };
    if !registered {
        return Ok(None);
    }
    tracing::info!(standby = %id, "standing by for an assignment");
    tokio::select! {
        () = cancel.cancelled() => Err(Error::Cancelled),
        assignment = client.poll(deadline) => assignment,
    }
}

struct Client {
    http: reqwest::Client,
    register_url: String,
    assignment_url: String,
    authorization: HeaderValue,
}

impl Client {
    fn new(http: reqwest::Client, api_url: &str, id: &str, token: &str) -> Result<Client> {
        let base = format!("{api_url}/api/v1/standby/{id}");
        Ok(Client {
            http,
            register_url: format!("{base}/register"),
            assignment_url: format!("{base}/assignment"),
            authorization: bearer(var::STANDBY_TOKEN, token)?,
        })
    }

    /// Announces the standby; `false` when the deadline passed before the coordinator answered.
    async fn register(&self, deadline: Instant) -> Result<bool> {
        let body = StandbyRegistration {
            worker_version: env!("CARGO_PKG_VERSION").to_string(),
        };
        let mut backoff = FIRST_BACKOFF;
        loop {
            let sent = self
                .http
                .post(&self.register_url)
                .header(AUTHORIZATION, self.authorization.clone())
                .json(&body)
                .send()
                .await;
            match sent {
                Ok(answer) if answer.status().is_success() => return Ok(true),
                Ok(answer) if !retryable(answer.status()) => {
                    return Err(refused("registering the standby sandbox", answer).await);
                }
                Ok(answer) => {
                    tracing::warn!(status = %answer.status(), "standby registration: retrying");
                }
                Err(err) => tracing::warn!(%err, "standby registration: retrying"),
            }
            if !pause(&mut backoff, deadline).await {
                return Ok(false);
            }
        }
    }

    /// Long-polls for the assignment until it comes or the deadline passes.
    async fn poll(&self, deadline: Instant) -> Result<Option<Assignment>> {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let wait = left.min(LONG_POLL).as_secs().max(1);
            let asked = Instant::now();
            let sent = self
                .http
                .get(format!("{}?wait_secs={wait}", self.assignment_url))
                .header(AUTHORIZATION, self.authorization.clone())
                .send()
                .await;
            match sent {
                Ok(answer) if answer.status() == StatusCode::OK => {
                    return read_json(answer, "the assignment document").await.map(Some);
                }
                // Nothing yet. An answer that did not wait (a proxy in between, a coordinator
                // shutting down) is paced like a failure, so the worker never spins.
                Ok(answer) if answer.status() == StatusCode::NO_CONTENT => {
                    if asked.elapsed() >= MIN_POLL {
                        backoff = FIRST_BACKOFF;
                        continue;
                    }
                }
                Ok(answer) if !retryable(answer.status()) => {
                    return Err(refused("fetching the assignment", answer).await);
                }
                Ok(answer) => {
                    tracing::warn!(status = %answer.status(), "assignment poll: retrying")
                }
                Err(err) => tracing::warn!(%err, "assignment poll: retrying"),
            }
            if !pause(&mut backoff, deadline).await {
                return Ok(None);
            }
        }
    }
}

/// The HTTP client of the standby's calls.
fn http_client() -> Result<reqwest::Client> {
    crate::tls::client_builder()
        .user_agent(concat!("omoi-worker/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(LONG_POLL + Duration::from_secs(10))
        .build()
        .map_err(|err| Error::Internal(format!("building the HTTP client: {err}")))
}

/// The `Authorization` header of `token`, marked sensitive (never logged by the client).
fn bearer(variable: &str, token: &str) -> Result<HeaderValue> {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| Error::config(variable, "holds characters an HTTP header cannot"))?;
    value.set_sensitive(true);
    Ok(value)
}

/// Enrolls this pod in its pool with the pool's registration credential: its own id and token,
/// or `None` when the deadline passed before the coordinator answered.
async fn enroll(
    http: &reqwest::Client,
    api_url: &str,
    token: &str,
    body: &StandbyEnrollment,
    deadline: Instant,
) -> Result<Option<Enrolled>> {
    let url = format!("{api_url}/api/v1/standby/enroll");
    let authorization = bearer(var::STANDBY_ENROLL_TOKEN, token)?;
    let mut backoff = FIRST_BACKOFF;
    loop {
        let sent = http
            .post(&url)
            .header(AUTHORIZATION, authorization.clone())
            .json(body)
            .send()
            .await;
        match sent {
            Ok(answer) if answer.status() == StatusCode::OK => {
                return read_json(answer, "the enrollment answer").await.map(Some);
            }
            Ok(answer) if !retryable(answer.status()) => {
                return Err(refused_as(
                    var::STANDBY_ENROLL_TOKEN,
                    "enrolling the standby sandbox",
                    answer,
                )
                .await);
            }
            Ok(answer) => tracing::warn!(status = %answer.status(), "standby enrollment: retrying"),
            Err(err) => tracing::warn!(%err, "standby enrollment: retrying"),
        }
        if !pause(&mut backoff, deadline).await {
            return Ok(None);
        }
    }
}

/// Whether an answer with `status` is worth asking again.
fn retryable(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
}

/// The error of a refused call: the coordinator's status and message (its error bodies never
/// hold a secret).
async fn refused(what: &str, answer: reqwest::Response) -> Error {
    refused_as(var::STANDBY_TOKEN, what, answer).await
}

/// [`refused`], naming the credential `variable`.
async fn refused_as(variable: &str, what: &str, answer: reqwest::Response) -> Error {
    let status = answer.status();
    let text = answer.text().await.unwrap_or_default();
    let text: String = text.chars().take(300).collect();
    Error::config(
        variable,
        format!("the coordinator refused {what}: {status} {text}"),
    )
}

/// Sleeps `backoff` (then doubles it) unless that passes `deadline`: `false` then.
async fn pause(backoff: &mut Duration, deadline: Instant) -> bool {
    let wake = Instant::now() + *backoff;
    if wake >= deadline {
        return false;
    }
    tokio::time::sleep_until(wake).await;
    *backoff = (*backoff * 2).min(MAX_BACKOFF);
    true
}

/// The JSON body of a successful answer, named `what` in errors.
async fn read_json<T: serde::de::DeserializeOwned>(
    answer: reqwest::Response,
    what: &str,
) -> Result<T> {
    let bytes = answer
        .bytes()
        .await
        .map_err(|err| Error::Internal(format!("reading {what}: {err}")))?;
    serde_json::from_slice(&bytes).map_err(|err| Error::json(what, err))
}
