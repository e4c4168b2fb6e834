//! Secret isolation inside a docker sandbox: the worker in the `omoi-sandbox` image, started by
//! the docker provider with its secrets and a project's under names it does not know, runs an
//! agent command that tries the routes to them. The command counts what it finds (names only, so
//! that its own text holds no secret), and the sandbox's log must hold no secret value and no
//! mask: a mask would mean a secret was read and only hidden on the way out.

use std::collections::BTreeMap;

use omoi_coordinator::sandbox::{Limits, Provider, ProviderStatus, SpawnRequest};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use super::common::docker::{SCRIPT_IN_SANDBOX, Sandboxes, WAIT, script};
use super::common::eventually;

/// The secrets the sandbox starts with: the worker's own and a project's.
const SECRETS: [(&str, &str); 6] = [
    ("ANTHROPIC_API_KEY", "sk-ant-api03-docker0123456789abcdef"),
    ("OPENAI_API_KEY", "sk-proj-docker0123456789abcdef"),
    ("SANDBOX_TOKEN", "sbx-docker0123456789abcdef"),
    ("OMOI_GIT_TOKEN", "ghs_docker0123456789abcdef"),
    ("ACME_SIGNING_SECRET", "acme-sign-docker0123456789abcdef"),
    (
        "ACME_DSN",
        "postgres://app:pw-docker0123456789abcdef@db/app",
    ),
];

/// Counts the secrets' variables in the worker's environment block, in every process's, and in
/// its own; how many of the worker's and the init's environment files are refused; whether the
/// worker's memory is refused; its effective capabilities.
const PROBE: &str = r#"N='^(ANTHROPIC_API_KEY|OPENAI_API_KEY|SANDBOX_TOKEN|OMOI_GIT_TOKEN|ACME_SIGNING_SECRET|ACME_DSN)='
printf 'environ=%s\n' "$( (tr '\0' '\n' < /proc/$PPID/environ) 2>/dev/null | grep -cE "$N")"
printf 'refused=%s\n' "$( (cat /proc/$PPID/environ /proc/1/environ >/dev/null) 2>&1 | grep -c 'Permission denied')"
printf 'all=%s\n' "$(cat /proc/*/environ 2>/dev/null | tr '\0' '\n' | grep -cE "$N")"
printf 'env=%s\n' "$(env | grep -cE "$N")"
printf 'mem=%s\n' "$(head -c 1 /proc/$PPID/mem 2>&1 >/dev/null | grep -c 'Permission denied')"
printf 'caps=%s\n' "$(grep CapEff /proc/self/status | cut -f2)""#;

#[tokio::test]
async fn nothing_a_command_runs_in_a_docker_sandbox_obtains_a_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let file = script(tmp.path(), |s| {
        let turns = s["explore"][0].as_array_mut().unwrap();
        turns.insert(
            0,
            json!({"tool_calls": [{"name": "run", "input": {"command": PROBE}}]}),
        );
    });
    let Some(sandboxes) =
        Sandboxes::start(&tmp.path().join("data"), |c| c.files = vec![file]).await
    else {
        return;
    };
    let provider = &sandboxes.provider;
    let (title, _) = omoi_tests::fixtures::sample_request();
    let mut env: BTreeMap<String, String> = [
        ("SPEC_ID", "spec-secrets"),
        ("SPEC_PHASE", "explore"),
        ("SPEC_STOP_AFTER", "explore"),
        ("SPEC_TITLE", title.as_str()),
        ("OMOI_LLM", "scripted"),
        ("OMOI_SCRIPT", SCRIPT_IN_SANDBOX),
    ]
    .into_iter()
    .chain(SECRETS)
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    env.insert("OMOI_LOG".into(), "warn".into());
    let handle = provider
        .spawn(SpawnRequest {
            sandbox_id: "sb-secrets".into(),
            image: None,
            image_pull_secrets: Vec::new(),
            env,
            labels: BTreeMap::from([
                ("omoi.owner".to_string(), "omoi".to_string()),
                ("omoi.sandbox".to_string(), "sb-secrets".to_string()),
            ]),
            limits: Limits::default(),
            repo: Some(omoi_tests::fixtures::sample_repo().display().to_string()),
        })
        .await
        .unwrap();
    eventually(WAIT, "the sandbox to end", || async {
        provider.status(&handle).await.unwrap() != ProviderStatus::Running
    })
    .await;
    let status = provider.status(&handle).await.unwrap();
    // The log is kept when the sandbox is removed.
    sandboxes.close_and_assert_clean().await;
    let log = std::fs::read_to_string(provider.log_path("sb-secrets")).unwrap();
    assert_eq!(status, ProviderStatus::Exited { code: Some(0) }, "{log}");
    for (name, value) in SECRETS {
        assert!(!log.contains(value), "{name} in the log");
    }
    assert!(!log.contains("***"), "a secret was read and masked: {log}");
    let probed: Vec<String> = log
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|event| event["type"] == "agent.tool_result")
        .filter_map(|event| event["data"]["output_summary"].as_str().map(str::to_owned))
        .filter(|summary| summary.contains("environ="))
        .collect();
    assert_eq!(
        probed,
        ["exit code: 0\nenviron=0\nrefused=2\nall=0\nenv=0\nmem=1\ncaps=0000000000000000\n"]
    );
}
