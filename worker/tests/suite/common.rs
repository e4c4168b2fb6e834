//! Helpers the suites share: running the built worker and reading what it printed.

use std::process::Output;

/// The JSON printed on stdout, after checking the exit code.
pub fn stdout_json<T: serde::de::DeserializeOwned>(output: &Output, code: i32) -> T {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&stdout).unwrap()
}

/// Nothing on stdout, one line on stderr (returned), and the exit code.
pub fn one_line_error(output: &Output, code: i32) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert_eq!(output.status.code(), Some(code), "stderr: {stderr}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "");
    assert_eq!(stderr.trim_end().lines().count(), 1, "stderr: {stderr}");
    stderr
}
