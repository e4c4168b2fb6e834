//! The bodies of Daytona's REST API as the provider sends and reads them (the API's
//! `CreateSandbox`, `Sandbox`, `ListSandboxesResponse` and `Snapshot` DTOs; the toolbox's
//! `ExecuteRequest` and `ExecuteResponse`), with only the fields the provider uses.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `POST /sandbox`. Resources (`cpu`, `memory`, `disk`) are not sent: the API refuses them for
/// a sandbox made from a snapshot ("Cannot specify Sandbox resources when using a snapshot");
/// the snapshot fixes them.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateSandbox {
    pub name: String,
    pub snapshot: String,
    /// Variables the API keeps and shows with the sandbox: none of them secret.
    pub env: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// Minutes without activity before Daytona stops the sandbox (0: never).
    pub auto_stop_interval: u32,
    pub public: bool,
}

/// A sandbox as `GET /sandbox/{id}`, `POST /sandbox` and the list answer it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sandbox {
    pub id: String,
    #[serde(default)]
    pub name: String,
    /// Absent while the API does not know it yet.
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub error_reason: Option<String>,
    /// Where the toolbox of this sandbox answers (empty in list items).
    #[serde(default)]
    pub toolbox_proxy_url: String,
}

/// `GET /sandbox`: one page.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxPage {
    pub items: Vec<Sandbox>,
    #[serde(default)]
    pub next_cursor: Option<String>,
}

/// `GET /snapshots/{id or name}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub id: String,
    pub name: String,
    pub state: String,
    #[serde(default)]
    pub cpu: f64,
    #[serde(default)]
    pub mem: f64,
    #[serde(default)]
    pub disk: f64,
    #[serde(default)]
    pub error_reason: Option<String>,
}

/// `POST {toolbox}/{sandbox id}/process/execute`: the daemon pipes `command` into a shell (so it
/// is no process's command line) with `envs` added to that shell's environment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExecuteRequest {
    pub command: String,
    /// Seconds before the daemon kills the command (it answers 408 then).
    pub timeout: u32,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub envs: BTreeMap<String, String>,
}

/// What an executed command did.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecuteResponse {
    #[serde(default)]
    pub exit_code: i32,
    #[serde(default)]
    pub result: String,
}

/// The API's error body: `{statusCode, error, message}`, `message` a string or a list.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ErrorBody {
    #[serde(default)]
    pub message: Option<serde_json::Value>,
    #[serde(default)]
    pub error: Option<String>,
}

impl ErrorBody {
    /// The message in one line, when the body had one.
    pub fn text(&self) -> Option<String> {
        match &self.message {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Array(parts)) => Some(
                parts
                    .iter()
                    .map(|p| p.as_str().map_or_else(|| p.to_string(), str::to_string))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            _ => self.error.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use serde_json::json;

    #[test]
    fn a_create_body_has_the_apis_field_names_and_no_resources() {
        let body = CreateSandbox {
            name: "omoi-sb1".into(),
            snapshot: "omoi-worker".into(),
            env: BTreeMap::from([("SPEC_ID".into(), "s1".into())]),
            labels: BTreeMap::from([("omoi.owner".into(), "omoi".into())]),
            auto_stop_interval: 15,
            public: false,
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            json!({"name": "omoi-sb1", "snapshot": "omoi-worker", "env": {"SPEC_ID": "s1"},
                "labels": {"omoi.owner": "omoi"}, "autoStopInterval": 15, "public": false})
        );
    }

    #[test]
    fn error_messages_read_as_one_line_whether_a_string_or_a_list() {
        let one: ErrorBody =
            serde_json::from_value(json!({"statusCode": 404, "error": "Not Found",
                "message": "Sandbox with ID or name x not found"}))
            .unwrap();
        assert_eq!(one.text().unwrap(), "Sandbox with ID or name x not found");
        let list: ErrorBody = serde_json::from_value(
            json!({"message": ["name must be a string", "env must be an object"]}),
        )
        .unwrap();
        assert_eq!(
            list.text().unwrap(),
            "name must be a string, env must be an object"
        );
        let none: ErrorBody = serde_json::from_value(json!({"error": "Bad Gateway"})).unwrap();
        assert_eq!(none.text().unwrap(), "Bad Gateway");
    }

    #[test]
    fn a_sandbox_reads_with_missing_optional_fields() {
        let sandbox: Sandbox =
            serde_json::from_value(json!({"id": "abc", "state": "started", "cpu": 1})).unwrap();
        assert_eq!(sandbox.state.as_deref(), Some("started"));
        assert!(sandbox.labels.is_empty() && sandbox.toolbox_proxy_url.is_empty());
        assert!(serde_json::from_value::<Sandbox>(json!({"state": "started"})).is_err());
    }
}
