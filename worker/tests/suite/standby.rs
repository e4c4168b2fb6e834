//! `omoi-worker standby` as a process: what it refuses to start with, what it does when the
//! coordinator refuses its credential or delivers an assignment twice, and that it exits when no
//! assignment comes within its idle limit. The coordinator here is a minimal HTTP responder that
//! answers each route with a fixed status; the full protocol runs against the real coordinator
//! in its `warm_pools` suite.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pretty_assertions::assert_eq;

/// Answers `POST …/register` with `register` and `GET …/assignment…` with `assignment` (status
/// and body), forever; records each request line. Returns its base URL.
fn coordinator(
    register: (u16, &'static str),
    assignment: (u16, &'static str),
) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let mut length = 0usize;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
                    break;
                }
                let lower = header.to_ascii_lowercase();
                if let Some(value) = lower.strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            log.lock().unwrap().push(line.trim().to_string());
            let (status, text) = if line.contains("/register") {
                register
            } else {
                assignment
            };
            let answer = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                text.len()
            );
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    (url, seen)
}

fn standby(url: &str, extra: &[(&str, &str)]) -> Output {
    let workspace = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_omoi-worker"))
        .arg("standby")
        .env_clear()
        .env("OMOIOS_API_URL", url)
        .env("OMOI_STANDBY_ID", "sb-1")
        .env("OMOI_STANDBY_TOKEN", "omoi_p_0123456789")
        .env("WORKSPACE", workspace.path())
        .envs(extra.iter().copied())
        .output()
        .unwrap()
}

fn stderr_line(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .find(|l| l.starts_with("omoi-worker: "))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn standby_without_its_variables_or_with_an_assignment_s_is_bad_input() {
    let output = Command::new(env!("CARGO_BIN_EXE_omoi-worker"))
        .arg("standby")
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        stderr_line(&output),
        "omoi-worker: OMOI_STANDBY_ID: required by omoi-worker standby, with OMOI_STANDBY_TOKEN \
         and OMOIOS_API_URL"
    );
    let output = standby("http://127.0.0.1:9", &[("SANDBOX_TOKEN", "omoi_s_x")]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        stderr_line(&output),
        "omoi-worker: SANDBOX_TOKEN: must not be set in standby mode: it arrives with the \
         assignment"
    );
}

#[test]
fn a_refused_credential_ends_the_standby_with_the_coordinator_s_words() {
    let (url, seen) = coordinator(
        (401, r#"{"error":{"code":"unauthorized","message":"no"}}"#),
        (204, ""),
    );
    let output = standby(&url, &[]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        stderr_line(&output),
        "omoi-worker: OMOI_STANDBY_TOKEN: the coordinator refused registering the standby \
         sandbox: 401 Unauthorized {\"error\":{\"code\":\"unauthorized\",\"message\":\"no\"}}"
    );
    assert_eq!(
        *seen.lock().unwrap(),
        vec!["POST /api/v1/standby/sb-1/register HTTP/1.1".to_string()]
    );
}

#[test]
fn an_assignment_delivered_already_ends_the_standby() {
    let (url, _) = coordinator(
        (204, ""),
        (
            409,
            r#"{"error":{"code":"conflict","message":"delivered"}}"#,
        ),
    );
    let output = standby(&url, &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr_line(&output).starts_with(
            "omoi-worker: OMOI_STANDBY_TOKEN: the coordinator refused fetching the assignment: 409"
        ),
        "{}",
        stderr_line(&output)
    );
}

#[test]
fn a_standby_never_assigned_exits_after_its_idle_limit() {
    let (url, seen) = coordinator((204, ""), (204, ""));
    let began = Instant::now();
    let output = standby(&url, &[("OMOI_STANDBY_IDLE_SECS", "2")]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(began.elapsed() < Duration::from_secs(30));
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0], "POST /api/v1/standby/sb-1/register HTTP/1.1");
    assert!(
        seen[1..]
            .iter()
            .all(|l| l.starts_with("GET /api/v1/standby/sb-1/assignment?wait_secs=")),
        "{seen:?}"
    );
    // The fake answers at once instead of waiting: the worker paces its polls (backoff from
    // 100 ms, doubling) rather than spinning.
    assert!((2..=8).contains(&seen.len()), "{seen:?}");
}
