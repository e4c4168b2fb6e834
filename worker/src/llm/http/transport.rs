//! The HTTP transport of the model providers: the client, one POST with its answer's status
//! turned into an [`LlmError`] (the API's message, `retry-after`), the time limit of one
//! attempt, and what a failed connection means. Streaming bodies are read in [`super::sse`].

use std::future::Future;
use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;

use crate::llm::LlmError;

/// Runs one attempt within `limit`, first byte to last; past it, the attempt is a timeout.
pub async fn within<T>(
    limit: Duration,
    attempt: impl Future<Output = Result<T, LlmError>>,
) -> Result<T, LlmError> {
    match tokio::time::timeout(limit, attempt).await {
        Ok(result) => result,
        Err(_) => Err(LlmError::Timeout(format!(
            "no complete answer within {} s",
            limit.as_secs_f64()
        ))),
    }
}

/// POSTs `body` as JSON and returns the answer when its status is a success; any other status
/// becomes its [`LlmError`] (with the API's message and `retry-after`). A streamed answer must
/// start within `idle`; a whole one may take as long as the model needs.
pub async fn send_json(
    client: &reqwest::Client,
    endpoint: &reqwest::Url,
    headers: &HeaderMap,
    body: &impl serde::Serialize,
    streamed: bool,
    idle: Duration,
) -> Result<reqwest::Response, LlmError> {
    let send = client
        .post(endpoint.clone())
        .headers(headers.clone())
        .json(body)
        .send();
    let sent = if streamed {
        tokio::time::timeout(idle, send).await.map_err(|_| {
            LlmError::Timeout(format!(
                "no answer from the API for {} s",
                idle.as_secs_f64()
            ))
        })?
    } else {
        send.await
    };
    let mut response = sent.map_err(|e| transport_error(&e))?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let wait = retry_after(response.headers(), SystemTime::now());
    let text = super::sse::read_body(&mut response, idle)
        .await
        .unwrap_or_default();
    Err(error_from_status(status.as_u16(), wait, &text))
}

/// The HTTP client of the providers: rustls, a connect limit, no other timeouts (the providers
/// keep their own, so that cancellation and paused test clocks apply to them).
pub fn http_client() -> Result<reqwest::Client, crate::error::Error> {
    crate::tls::client_builder()
        .connect_timeout(Duration::from_secs(30))
        .user_agent(concat!("omoi-worker/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| crate::error::Error::Internal(format!("cannot build the HTTP client: {e}")))
}

/// The wait an answer asks for: `retry-after-ms`, or `retry-after` in seconds or as an HTTP date.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(millis) = header("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        if millis.is_finite() && millis >= 0.0 {
            return Some(Duration::from_secs_f64(millis / 1000.0));
        }
    }
    let value = header("retry-after")?;
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let at = SystemTime::from(date);
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The error an HTTP error answer means. `body` is the answer's text: both APIs put their message
/// in `error.message`; anything else is quoted (shortened).
pub fn error_from_status(status: u16, retry_after: Option<Duration>, body: &str) -> LlmError {
    let message = api_message(body);
    match status {
        429 => LlmError::RateLimited {
            retry_after,
            message,
        },
        408 => LlmError::Timeout(format!("the API answered 408: {message}")),
        500..=599 => LlmError::Server { status, message },
        _ => LlmError::Api { status, message },
    }
}

/// `error.message` of an error body, or the body itself, shortened.
pub fn api_message(body: &str) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let message = parsed.as_ref().and_then(|value| {
        let error = value.get("error")?;
        match error {
            serde_json::Value::String(text) => Some(text.clone()),
            _ => error.get("message")?.as_str().map(str::to_string),
        }
    });
    match message {
        Some(message) => message,
        None if body.trim().is_empty() => "(empty answer)".to_string(),
        None => shorten(body.trim(), 500),
    }
}

fn shorten(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// The error a failed `reqwest` call means: all are transport failures, so retryable.
pub fn transport_error(error: &reqwest::Error) -> LlmError {
    if error.is_timeout() {
        LlmError::Timeout(error.to_string())
    } else {
        // Connect, request and body errors: the connection failed or broke.
        LlmError::Connection(describe(error))
    }
}

/// The error and its sources, which is where reqwest keeps the useful part.
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;
    use reqwest::header::HeaderValue;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn within_turns_a_slow_attempt_into_a_timeout() {
        let slow = async {
            tokio::time::sleep(Duration::from_secs(61)).await;
            Ok::<_, LlmError>(())
        };
        assert_eq!(
            within(Duration::from_secs(60), slow).await,
            Err(LlmError::Timeout("no complete answer within 60 s".into()))
        );
        let quick = async { Ok::<_, LlmError>(7) };
        assert_eq!(within(Duration::from_secs(60), quick).await, Ok(7));
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn parses_retry_after_in_every_form() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_470);
        let cases = [
            (vec![("retry-after", "7")], Some(Duration::from_secs(7))),
            (
                vec![("retry-after", "1.5")],
                Some(Duration::from_millis(1500)),
            ),
            (
                vec![("retry-after-ms", "250"), ("retry-after", "9")],
                Some(Duration::from_millis(250)),
            ),
            // 2015-10-21 07:28:00 UTC is 10 s after `now`.
            (
                vec![("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")],
                Some(Duration::from_secs(10)),
            ),
            (
                vec![("retry-after", "Wed, 21 Oct 2015 07:00:00 GMT")],
                Some(Duration::ZERO),
            ),
            (vec![("retry-after", "soon")], None),
            (vec![("retry-after", "-3")], None),
            (vec![], None),
        ];
        for (pairs, expected) in cases {
            assert_eq!(retry_after(&headers(&pairs), now), expected, "{pairs:?}");
        }
    }

    #[test]
    fn classifies_statuses_with_the_api_message() {
        let anthropic = r#"{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: Field required"}}"#;
        let openai = r#"{"error":{"message":"Invalid model","type":"invalid_request_error","param":"model","code":null}}"#;
        let wait = Some(Duration::from_secs(3));
        let cases = [
            (
                400,
                anthropic,
                None,
                LlmError::Api {
                    status: 400,
                    message: "max_tokens: Field required".into(),
                },
            ),
            (
                404,
                openai,
                None,
                LlmError::Api {
                    status: 404,
                    message: "Invalid model".into(),
                },
            ),
            (
                429,
                openai,
                wait,
                LlmError::RateLimited {
                    retry_after: wait,
                    message: "Invalid model".into(),
                },
            ),
            (
                529,
                anthropic,
                None,
                LlmError::Server {
                    status: 529,
                    message: "max_tokens: Field required".into(),
                },
            ),
            (
                502,
                "<html>bad gateway</html>",
                None,
                LlmError::Server {
                    status: 502,
                    message: "<html>bad gateway</html>".into(),
                },
            ),
            (
                503,
                "  ",
                None,
                LlmError::Server {
                    status: 503,
                    message: "(empty answer)".into(),
                },
            ),
            (
                408,
                "",
                None,
                LlmError::Timeout("the API answered 408: (empty answer)".into()),
            ),
        ];
        for (status, body, wait, expected) in cases {
            assert_eq!(
                error_from_status(status, wait, body),
                expected,
                "{status} {body}"
            );
        }
    }

    #[test]
    fn shortens_long_bodies() {
        let body = "x".repeat(600);
        assert_eq!(api_message(&body), format!("{}…", "x".repeat(500)));
    }
}
