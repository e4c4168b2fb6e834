//! The checks of the fake's request bodies, as the real services make them: the API's
//! `CreateSandbox` through NestJS's `ValidationPipe` (class-validator messages, collected in a
//! list; unknown fields pass: the pipe runs without `whitelist`), and the toolbox's
//! `ExecuteRequest` through gin's JSON binding and the daemon's own checks.

use std::collections::BTreeMap;

use serde_json::Value;

const STRINGS: [&str; 7] = [
    "name",
    "snapshot",
    "user",
    "networkAllowList",
    "domainAllowList",
    "target",
    "linkedSandbox",
];
const BOOLEANS: [&str; 2] = ["public", "networkBlockAll"];
const NUMBERS: [&str; 7] = [
    "cpu",
    "gpu",
    "memory",
    "disk",
    "autoStopInterval",
    "autoArchiveInterval",
    "autoDeleteInterval",
];
const NOT_NEGATIVE: [&str; 4] = ["cpu", "gpu", "memory", "disk"];
const OBJECTS: [&str; 3] = ["env", "labels", "buildInfo"];

/// The class-validator messages of a `CreateSandbox` body; empty when it passes.
pub fn create_sandbox(body: &Value) -> Vec<String> {
    let Some(fields) = body.as_object() else {
        return vec!["an object is expected".to_string()];
    };
    let mut problems = Vec::new();
    for (name, value) in fields {
        // `@IsOptional()`: null and undefined skip the field's checks.
        if value.is_null() {
            continue;
        }
        let name = name.as_str();
        if STRINGS.contains(&name) && !value.is_string() {
            problems.push(format!("{name} must be a string"));
        }
        if BOOLEANS.contains(&name) && !value.is_boolean() {
            problems.push(format!("{name} must be a boolean value"));
        }
        if NUMBERS.contains(&name) {
            match value.as_f64() {
                None => problems.push(format!(
                    "{name} must be a number conforming to the specified constraints"
                )),
                Some(n) if n < 0.0 && NOT_NEGATIVE.contains(&name) => {
                    problems.push(format!("{name} must not be less than 0"));
                }
                Some(n) if name == "gpu" && n > 1.0 => {
                    problems.push(format!("{name} must not be greater than 1"));
                }
                Some(_) => {}
            }
        }
        if OBJECTS.contains(&name) && !value.is_object() {
            problems.push(format!("{name} must be an object"));
        }
        if name == "volumes" && !value.is_array() {
            problems.push("volumes must be an array".to_string());
        }
    }
    problems
}

/// A map of strings from an object the pipe let through (`@IsObject()` checks no values; the
/// API stores them as given, and the runner sees their text).
pub fn strings(value: Option<&Value>) -> BTreeMap<String, String> {
    value
        .and_then(Value::as_object)
        .map(|map| {
            map.iter()
                .map(|(k, v)| {
                    let text = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                    (k.clone(), text)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The toolbox's `ExecuteRequest`, or the daemon's 400 message.
#[derive(Debug, Clone, PartialEq)]
pub struct Execute {
    pub command: String,
    pub timeout: Option<u32>,
    pub cwd: Option<String>,
    pub envs: BTreeMap<String, String>,
}

/// Decodes an execute body as gin binds it into the daemon's struct (unknown fields ignored,
/// wrong types refused), then the daemon's checks: a command that is not blank, variable names of
/// `^[A-Za-z_][A-Za-z0-9_]*$`.
pub fn execute(body: &[u8]) -> Result<Execute, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("invalid request body: {e}"))?;
    let Some(fields) = value.as_object() else {
        return Err(
            "invalid request body: json: cannot unmarshal into Go value of type \
                    process.ExecuteRequest"
                .to_string(),
        );
    };
    let mismatch = |field: &str, go: &str| {
        format!(
            "invalid request body: json: cannot unmarshal into Go struct field \
             ExecuteRequest.{field} of type {go}"
        )
    };
    let command = match fields.get("command") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(mismatch("command", "string")),
    };
    let timeout = match fields.get("timeout") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| mismatch("timeout", "uint32"))?,
        ),
    };
    let cwd = match fields.get("cwd") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(mismatch("cwd", "string")),
    };
    let mut envs = BTreeMap::new();
    match fields.get("envs") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (k, v) in map {
                let v = v.as_str().ok_or_else(|| mismatch("envs", "string"))?;
                envs.insert(k.clone(), v.to_string());
            }
        }
        Some(_) => return Err(mismatch("envs", "map[string]string")),
    }
    if command.trim().is_empty() {
        return Err("command cannot be empty or whitespace-only".to_string());
    }
    if let Some(bad) = envs.keys().find(|k| !is_env_name(k)) {
        return Err(format!("invalid environment variable name: '{bad}'"));
    }
    Ok(Execute {
        command,
        timeout,
        cwd,
        envs,
    })
}

fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn create_bodies_are_checked_as_the_validation_pipe_checks_them() {
        assert!(
            create_sandbox(&json!({"snapshot": "s", "labels": {}, "unknownField": 1})).is_empty()
        );
        assert_eq!(
            create_sandbox(&json!({"name": 1, "env": [], "cpu": -1, "public": "no",
                "autoStopInterval": "15"})),
            vec![
                "autoStopInterval must be a number conforming to the specified constraints",
                "cpu must not be less than 0",
                "env must be an object",
                "name must be a string",
                "public must be a boolean value",
            ]
        );
    }

    #[test]
    fn execute_bodies_are_bound_as_gin_binds_them() {
        let ok =
            execute(br#"{"command":"true","timeout":5,"envs":{"A_1":"x"},"extra":1}"#).unwrap();
        assert_eq!((ok.command.as_str(), ok.timeout), ("true", Some(5)));
        for (body, message) in [
            (
                &br#"{"command":"  "}"#[..],
                "command cannot be empty or whitespace-only",
            ),
            (
                br#"{"command":"true","envs":{"1A":"x"}}"#,
                "invalid environment variable name: '1A'",
            ),
            (
                br#"{"command":"true","timeout":"5"}"#,
                "invalid request body: json: cannot unmarshal into Go struct field \
                 ExecuteRequest.timeout of type uint32",
            ),
        ] {
            assert_eq!(execute(body).unwrap_err(), message);
        }
        assert!(
            execute(b"{")
                .unwrap_err()
                .starts_with("invalid request body")
        );
    }
}
