//! The gate socket against real unix sockets: the tool list, verdicts, the nonce, bad requests.

use std::os::unix::fs::PermissionsExt;

use pretty_assertions::assert_eq;
use serde_json::json;

use super::*;
use crate::llm::BoxFuture;

/// Accepts `{"title": "good"}`, rejects anything else with a reason.
pub(crate) struct TitleGate;

/// The submit tool of [`TitleGate`].
pub(crate) fn title_tool() -> SubmitTool {
    SubmitTool {
        name: "submit".to_string(),
        description: "Submit the title.".to_string(),
        schema: json!({"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}),
    }
}

impl SubmitHandler for TitleGate {
    fn check<'a>(&'a self, input: &'a serde_json::Value) -> BoxFuture<'a, SubmitVerdict> {
        Box::pin(async move {
            if input["title"] == "good" {
                SubmitVerdict::Accepted
            } else {
                SubmitVerdict::Rejected {
                    feedback: format!("title {} is not good", input["title"]),
                }
            }
        })
    }
}

/// Asks the gate while it serves.
async fn ask_served(socket: &GateSocket, request: GateRequest) -> GateAnswer {
    let tool = title_tool();
    tokio::select! {
        _ = socket.serve(&tool, &TitleGate) => unreachable!("serve never returns"),
        answer = ask(socket.path(), &request) => answer.unwrap(),
    }
}

/// Sends raw bytes and reads the answer while the gate serves.
async fn raw_served(socket: &GateSocket, bytes: &[u8]) -> GateAnswer {
    let exchange = async {
        let mut stream = UnixStream::connect(socket.path()).await.unwrap();
        stream.write_all(bytes).await.unwrap();
        stream.shutdown().await.unwrap();
        let mut answer = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut answer)
            .await
            .unwrap();
        serde_json::from_str(&answer).unwrap()
    };
    let tool = title_tool();
    tokio::select! {
        _ = socket.serve(&tool, &TitleGate) => unreachable!("serve never returns"),
        answer = exchange => answer,
    }
}

#[tokio::test]
async fn lists_submit_with_the_handlers_schema() {
    let parent = tempfile::tempdir().unwrap();
    let socket = GateSocket::bind(parent.path()).unwrap();
    let nonce = socket.nonce().to_string();
    let answer = ask_served(&socket, GateRequest::Tools { nonce }).await;
    assert_eq!(
        answer,
        GateAnswer::Tools {
            tools: vec![GateTool {
                name: "submit".to_string(),
                description: "Submit the title.".to_string(),
                input_schema: title_tool().schema,
            }]
        }
    );
}

#[tokio::test]
async fn a_rejected_then_an_accepted_submission() {
    let parent = tempfile::tempdir().unwrap();
    let socket = GateSocket::bind(parent.path()).unwrap();
    let call = |title: &str| GateRequest::Call {
        nonce: socket.nonce().to_string(),
        tool: "submit".to_string(),
        input: json!({"title": title}),
    };
    assert_eq!(
        ask_served(&socket, call("bad")).await,
        GateAnswer::Verdict {
            ok: false,
            text: "title \"bad\" is not good".to_string()
        }
    );
    assert_eq!(socket.accepted(), None);
    assert_eq!(
        ask_served(&socket, call("good")).await,
        GateAnswer::Verdict {
            ok: true,
            text: ACCEPTED_TEXT.to_string()
        }
    );
    assert_eq!(socket.wait_accepted().await, json!({"title": "good"}));
}

#[tokio::test]
async fn refuses_a_wrong_nonce_an_unknown_tool_and_bad_json() {
    let parent = tempfile::tempdir().unwrap();
    let socket = GateSocket::bind(parent.path()).unwrap();
    let wrong = GateRequest::Call {
        nonce: "0".repeat(32),
        tool: "submit".to_string(),
        input: json!({"title": "good"}),
    };
    assert_eq!(
        ask_served(&socket, wrong).await,
        GateAnswer::Refused {
            reason: "wrong nonce".to_string()
        }
    );
    assert_eq!(socket.accepted(), None);
    let unknown = GateRequest::Call {
        nonce: socket.nonce().to_string(),
        tool: "run".to_string(),
        input: json!({}),
    };
    assert_eq!(
        ask_served(&socket, unknown).await,
        GateAnswer::Refused {
            reason: "unknown tool `run`".to_string()
        }
    );
    let GateAnswer::Refused { reason } = raw_served(&socket, b"{\"op\":\"tools\"\n").await else {
        panic!("bad JSON was not refused");
    };
    assert!(reason.starts_with("not a gate request: "), "{reason}");
}

#[tokio::test]
async fn a_submission_that_is_not_an_object_goes_back_to_the_model() {
    let parent = tempfile::tempdir().unwrap();
    let socket = GateSocket::bind(parent.path()).unwrap();
    let call = GateRequest::Call {
        nonce: socket.nonce().to_string(),
        tool: "submit".to_string(),
        input: json!("good"),
    };
    assert_eq!(
        ask_served(&socket, call).await,
        GateAnswer::Verdict {
            ok: false,
            text: "the input is not a JSON object".to_string()
        }
    );
}

#[tokio::test]
async fn the_socket_lives_in_a_private_directory_removed_on_drop() {
    let parent = tempfile::tempdir().unwrap();
    let socket = GateSocket::bind(parent.path()).unwrap();
    let dir = socket.path().parent().unwrap().to_path_buf();
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    assert_eq!(socket.nonce().len(), 32);
    drop(socket);
    assert!(!dir.exists());
}

#[tokio::test]
async fn binding_under_a_missing_directory_is_an_error_naming_it() {
    let err = GateSocket::bind(Path::new("/nonexistent/omoi")).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("create the gate directory /nonexistent/omoi/gate-"),
        "{err}"
    );
}
