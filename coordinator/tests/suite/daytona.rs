//! The daytona provider end to end against the fake Daytona: a whole spec and its tasks complete
//! in Daytona sandboxes (each worker cloning the repository itself, started through the toolbox
//! with its environment in the call's body and never in the sandbox's `env`), with the sandboxes
//! deleted after and the logs kept; a sandbox destroyed mid-phase (recovered from the checkpoint)
//! or stopped; answers of 429 and 500 that lose nothing; the start-up checks (key refused,
//! organisation unknown, snapshot missing or not active); and what the fake refuses.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use omoi_coordinator::sandbox::{Provider, ProviderStatus, SandboxHandle};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use super::common::daytona::{KEY, SNAPSHOT, fake, launch, provider};
use super::common::docker::{
    all_completed, detail, phase_summary, spec_sandboxes, wait_for_status,
};
use super::common::kube::{Remote, reasons};
use super::common::{Api, eventually, sqlite};

const WAIT: Duration = Duration::from_secs(180);

/// Waits until the spec stopped after `phase` (pending, that phase completed).
async fn wait_stopped_after(api: &Api, spec_id: &str, phase: &str) -> Value {
    eventually(WAIT, &format!("the spec to stop after {phase}"), || async {
        let d = detail(api, spec_id).await;
        assert!(
            d["status"] != "failed" && d["status"] != "cancelled",
            "the spec ended {}: {}",
            d["status"],
            d["error"]
        );
        d["status"] == "pending"
            && d["phases"].as_array().is_some_and(|p| {
                p.iter()
                    .any(|p| p["phase"] == phase && p["status"] == "completed")
            })
    })
    .await;
    detail(api, spec_id).await
}

#[tokio::test]
async fn a_spec_and_its_tasks_complete_through_the_daytona_provider() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = fake(tmp.path()).await;
    let data = tmp.path().join("data");
    let provider = Arc::new(provider(&fake, &data, |_| {}).await.unwrap());
    let remote = Remote::start(&tmp.path().join("git"));
    let db = sqlite();
    let launched = launch(
        &db,
        provider.clone(),
        &remote,
        &omoi_tests::fixtures::sample_script(),
        None,
    )
    .await;
    let done = wait_for_status(&launched.api, &launched.spec_id, "completed").await;
    assert_eq!(phase_summary(&done), all_completed());
    let spec_sandbox = &spec_sandboxes(&done)[0];
    let sandbox = spec_sandbox["id"].as_str().unwrap().to_string();
    assert_eq!(
        (&spec_sandbox["status"], &spec_sandbox["provider"]),
        (&json!("completed"), &json!("daytona"))
    );
    let tasks: Vec<(String, String)> = done["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["spec_task_id"].as_str().unwrap().to_string(),
                t["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        tasks,
        ["TSK-001", "TSK-002", "TSK-003", "TSK-004"]
            .iter()
            .map(|t| (t.to_string(), "completed".to_string()))
            .collect::<Vec<_>>()
    );
    let commits = omoi_tests::git::subjects(&remote.bare, done["branch"].as_str().unwrap());
    assert_eq!(
        commits.iter().filter(|s| s.starts_with("TSK-")).count(),
        4,
        "{commits:?}"
    );

    // Every sandbox is deleted; the spec's logs are kept.
    eventually(
        Duration::from_secs(30),
        "the sandboxes to be deleted",
        || async { fake.sandboxes().is_empty() },
    )
    .await;
    let log = std::fs::read_to_string(provider.log_path(&sandbox)).unwrap();
    assert!(log.contains("the repository is in the workspace"), "{log}");

    // Five sandboxes (the spec, four tasks) from the snapshot, with omoi's labels, auto-stop, no
    // resources (the snapshot's), and in their `env` only what they run: no token, no key.
    let created = fake.created();
    assert_eq!(created.len(), 5, "{created:?}");
    for body in &created {
        let text = body.to_string();
        assert!(
            !text.contains("omoi_sbx_") && !text.contains("SANDBOX_TOKEN"),
            "{text}"
        );
        assert_eq!(
            (
                &body["snapshot"],
                &body["autoStopInterval"],
                &body["labels"]["omoi.owner"],
                body.get("cpu"),
            ),
            (&json!(SNAPSHOT), &json!(15), &json!("omoi"), None),
            "{text}"
        );
        let env: Vec<&String> = body["env"].as_object().unwrap().keys().collect();
        assert!(
            env.iter()
                .all(|k| omoi_coordinator::sandbox::daytona::launch::VISIBLE.contains(&k.as_str())),
            "{env:?}"
        );
    }
    let spec_body = created
        .iter()
        .find(|b| b["labels"]["omoi.sandbox"] == json!(sandbox))
        .unwrap();
    assert_eq!(spec_body["name"], json!(format!("omoi-{sandbox}")));
    // The worker's environment came in the start call's `envs`, the command held none of it.
    let executed = fake.executed();
    let starts: Vec<&Value> = executed.iter().filter(|b| b["envs"].is_object()).collect();
    assert_eq!(starts.len(), 5);
    for start in &starts {
        let keys: Vec<&String> = start["envs"].as_object().unwrap().keys().collect();
        for name in ["SANDBOX_TOKEN", "OMOIOS_API_URL", "OMOI_SCRIPT"] {
            assert!(keys.iter().any(|k| *k == name), "{name} in {keys:?}");
        }
        assert!(!start["command"].as_str().unwrap().contains("omoi_sbx_"));
    }
    let spec_start = starts
        .iter()
        .find(|b| b["envs"]["SANDBOX_ID"] == json!(sandbox))
        .unwrap();
    for name in ["OMOI_REPO_URL", "OMOI_BASE_BRANCH", "SPEC_ID"] {
        assert!(spec_start["envs"].get(name).is_some(), "{name}");
    }

    // Per sandbox: one create and one delete; the snapshot read once at start.
    let requests = fake.requests();
    assert_eq!(
        (
            requests.get("snapshot"),
            requests.get("create"),
            requests.get("delete"),
        ),
        (Some(&1), Some(&5), Some(&5)),
        "{requests:?}"
    );
    println!(
        "daytona requests for 5 sandboxes: {requests:?}, {} in all",
        provider.requests_sent()
    );

    // A project for Daytona names a git URL: a path of this machine is refused.
    let sample = omoi_tests::fixtures::sample_repo();
    let (status, answer) = launched
        .api
        .post(
            "/projects",
            &json!({"name": "local", "repo_url": sample.display().to_string()}),
        )
        .await;
    assert_eq!(
        status,
        reqwest::StatusCode::UNPROCESSABLE_ENTITY,
        "{answer}"
    );
    assert!(
        answer["error"]["message"].as_str().unwrap().contains(
            "is a path on the coordinator's machine, which daytona sandboxes cannot reach"
        ),
        "{answer}"
    );
    launched.server.stop().await;
    provider.close();
}

#[tokio::test]
async fn a_sandbox_destroyed_or_stopped_mid_phase_is_lost_and_the_spec_recovers_from_its_checkpoint()
 {
    let tmp = tempfile::tempdir().unwrap();
    let fake = fake(tmp.path()).await;
    let provider = Arc::new(
        provider(&fake, &tmp.path().join("data"), |_| {})
            .await
            .unwrap(),
    );
    let remote = Remote::start(&tmp.path().join("git"));
    // DESIGN's first answer takes 3 s: time to end its sandbox mid-phase.
    let mut script = omoi_tests::fixtures::sample_script_json();
    script["design"][0][0]["delay_ms"] = json!(3_000);
    let script = omoi_tests::fixtures::write_script(tmp.path(), "script.json", &script);
    let db = sqlite();
    let launched = launch(&db, provider.clone(), &remote, &script, Some("design")).await;
    let (api, spec) = (&launched.api, launched.spec_id.as_str());

    let running = |n: usize| {
        let fake = &fake;
        async move {
            eventually(WAIT, &format!("sandbox {n} to run"), || async {
                let d = detail(api, spec).await;
                assert_ne!(d["status"], "failed", "{d}");
                let Some(id) = spec_sandboxes(&d).get(n - 1).map(|s| s["id"].clone()) else {
                    return false;
                };
                fake.sandboxes().iter().any(|s| {
                    s.labels.get("omoi.sandbox") == id.as_str().map(str::to_string).as_ref()
                        && s.state == "started"
                })
            })
            .await;
            let d = detail(api, spec).await;
            let id = spec_sandboxes(&d)[n - 1]["id"]
                .as_str()
                .unwrap()
                .to_string();
            fake.sandboxes()
                .into_iter()
                .find(|s| s.labels.get("omoi.sandbox") == Some(&id))
                .unwrap()
                .id
        }
    };
    let first = running(1).await;
    eventually(WAIT, "DESIGN to start", || async {
        detail(api, spec).await["phases"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["phase"] == "design"))
    })
    .await;
    fake.end_sandbox(&first, "destroyed");
    let second = running(2).await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    fake.end_sandbox(&second, "stopped");

    let done = wait_stopped_after(api, spec, "design").await;
    assert_eq!(done["recoveries"], 2);
    let got = reasons(&done);
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[0].0, "lost");
    assert!(
        got[0].1 == "the sandbox was deleted before the worker ended"
            || got[0].1 == "the sandbox was destroyed before the worker ended",
        "{got:?}"
    );
    assert_eq!(
        got[1..],
        [
            (
                "lost".to_string(),
                "the sandbox was stopped by Daytona before the worker ended".to_string()
            ),
            ("completed".to_string(), String::new()),
        ]
    );
    let starts: Vec<Value> = spec_sandboxes(&done)
        .iter()
        .map(|s| s["start_phase"].clone())
        .collect();
    assert_eq!(
        starts,
        vec![json!("explore"), json!("design"), json!("design")]
    );
    eventually(
        Duration::from_secs(30),
        "every sandbox to be deleted",
        || async { fake.sandboxes().is_empty() },
    )
    .await;
    launched.server.stop().await;
    provider.close();
}

#[tokio::test]
async fn answers_of_429_and_500_lose_no_sandbox() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = fake(tmp.path()).await;
    let provider = Arc::new(
        provider(&fake, &tmp.path().join("data"), |_| {})
            .await
            .unwrap(),
    );
    let remote = Remote::start(&tmp.path().join("git"));
    fake.fault("create", &[429, 500]);
    fake.fault("execute", &[500, 503]);
    fake.fault("list", &[500]);
    fake.fault("delete", &[502]);
    let db = sqlite();
    let launched = launch(
        &db,
        provider.clone(),
        &remote,
        &omoi_tests::fixtures::sample_script(),
        Some("requirements"),
    )
    .await;
    let done = wait_stopped_after(&launched.api, &launched.spec_id, "requirements").await;
    assert_eq!(done["recoveries"], 0);
    assert_eq!(
        reasons(&done),
        vec![("completed".to_string(), String::new())]
    );
    eventually(
        Duration::from_secs(30),
        "the sandbox to be deleted",
        || async { fake.sandboxes().is_empty() },
    )
    .await;
    let requests = fake.requests();
    // The create: the 429, the 500, the one that went through; one sandbox was made.
    assert_eq!(
        (requests.get("create"), fake.created().len()),
        (Some(&3), 1),
        "{requests:?}"
    );
    assert!(
        requests.get("delete").is_some_and(|n| *n >= 2),
        "{requests:?}"
    );
    launched.server.stop().await;
    provider.close();
}

#[tokio::test]
async fn a_refused_key_an_unknown_organisation_and_a_missing_or_inactive_snapshot_fail_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = fake(tmp.path()).await;
    let data = tmp.path().join("data");
    let error = |result: Result<_, omoi_coordinator::sandbox::SandboxError>| {
        result
            .map(|_: omoi_coordinator::sandbox::daytona::DaytonaProvider| ())
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        error(
            provider(&fake, &data, |c| c.connection.api_key =
                "dtn_wrong_key_000".into())
            .await
        ),
        "daytona: DAYTONA_API_KEY was refused: Unauthorized (401)"
    );
    assert_eq!(
        error(
            provider(&fake, &data, |c| c.connection.organization_id =
                Some("org-other".into()))
            .await
        ),
        "daytona: the organisation \"org-other\" (DAYTONA_ORGANIZATION_ID) is unknown, or the key \
         may not use it: Invalid authentication context (403)"
    );
    assert_eq!(
        error(provider(&fake, &data, |c| c.snapshot = "no-such-snapshot".into()).await),
        "daytona: the snapshot \"no-such-snapshot\" (--daytona-snapshot) was not found: Snapshot \
         with ID or name no-such-snapshot not found (404)"
    );
    assert_eq!(
        error(provider(&fake, &data, |c| c.snapshot = "omoi-pending".into()).await),
        "daytona: the snapshot \"omoi-pending\" is pending, not active"
    );
    // An API that does not answer: the tries are bounded.
    let started = std::time::Instant::now();
    let message = error(
        provider(&fake, &data, |c| {
            c.connection.api_url = "http://127.0.0.1:9/api".parse().unwrap();
            c.connection.max_tries = 3;
        })
        .await,
    );
    assert!(
        message.starts_with("daytona: the API does not answer as expected: no answer:"),
        "{message}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    // Without an organisation header the key's own is used.
    provider(&fake, &data, |c| c.connection.organization_id = None)
        .await
        .unwrap()
        .close();
}

#[tokio::test]
async fn a_restarted_provider_follows_the_sandboxes_it_finds_and_reconcile_lists_them_by_label() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = fake(tmp.path()).await;
    let data = tmp.path().join("data");
    let first = provider(&fake, &data, |_| {}).await.unwrap();
    // A worker that runs long: it waits for a coordinator that is not there.
    let request = omoi_coordinator::sandbox::SpawnRequest {
        sandbox_id: "0b8f6c1e-0000-4000-8000-00000000000b".into(),
        image: None,
        env: [
            ("SPEC_ID", "spec-left"),
            ("SPEC_PHASE", "explore"),
            ("SANDBOX_ID", "0b8f6c1e-0000-4000-8000-00000000000b"),
            ("SANDBOX_TOKEN", "omoi_sbx_left_over_0123456789"),
            ("OMOIOS_API_URL", "http://127.0.0.1:9"),
            ("HEARTBEAT_SECS", "1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        labels: BTreeMap::from([
            ("omoi.owner".to_string(), "omoi".to_string()),
            ("omoi.task".to_string(), "task-9".to_string()),
        ]),
        limits: Default::default(),
        repo: None,
        image_pull_secrets: Vec::new(),
    };
    let handle = first.spawn(request).await.unwrap();
    first.close();
    drop(first);

    let second = provider(&fake, &data, |_| {}).await.unwrap();
    let owned = BTreeMap::from([("omoi.owner".to_string(), "omoi".to_string())]);
    let listed = second.list(&owned).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].handle, handle);
    assert_eq!(
        listed[0].labels,
        BTreeMap::from([
            ("omoi.owner".to_string(), "omoi".to_string()),
            (
                "omoi.sandbox".to_string(),
                "0b8f6c1e-0000-4000-8000-00000000000b".to_string()
            ),
            ("omoi.spec".to_string(), "spec-left".to_string()),
            ("omoi.task".to_string(), "task-9".to_string()),
        ])
    );
    // Adopted at start: its status is known (not "not found") until its worker ends.
    let status = second.status(&handle).await.unwrap();
    assert!(
        matches!(
            status,
            ProviderStatus::Running | ProviderStatus::Exited { .. }
        ),
        "{status:?}"
    );
    second.terminate(&handle).await.unwrap();
    assert!(fake.sandboxes().is_empty());
    assert!(second.list(&owned).await.unwrap().is_empty());
    assert_eq!(
        second
            .status(&SandboxHandle("never-made".into()))
            .await
            .unwrap(),
        ProviderStatus::NotFound
    );
    second.terminate(&handle).await.unwrap();
    second.close();
}

#[tokio::test]
async fn the_fake_daytona_refuses_what_the_real_one_refuses() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = fake(tmp.path()).await;
    let http = reqwest::Client::new();
    let api = fake.api_url();
    let send = |method: reqwest::Method, url: String, body: Option<Value>, key: &str| {
        let mut request = http.request(method, url).bearer_auth(key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let post = |body: Value| {
        send(
            reqwest::Method::POST,
            format!("{api}/sandbox"),
            Some(body),
            KEY,
        )
    };
    // Unknown fields pass (no whitelist); wrong types are refused with the validator's messages.
    let (status, made) =
        post(json!({"snapshot": SNAPSHOT, "name": "x1", "futureField": true})).await;
    assert_eq!((status, &made["state"]), (200, &json!("started")), "{made}");
    let (status, body) =
        post(json!({"snapshot": SNAPSHOT, "env": "A=1", "autoStopInterval": "15"})).await;
    assert_eq!(
        (status, &body["message"]),
        (
            400,
            &json!([
                "autoStopInterval must be a number conforming to the specified constraints",
                "env must be an object"
            ])
        )
    );
    let (status, body) = post(json!({"snapshot": SNAPSHOT, "memory": 2})).await;
    assert_eq!(
        (status, &body["message"]),
        (
            400,
            &json!("Cannot specify Sandbox resources when using a snapshot")
        )
    );
    let (status, body) = post(json!({"snapshot": SNAPSHOT, "name": "x1"})).await;
    assert_eq!(
        (status, &body["message"]),
        (409, &json!("Sandbox with name x1 already exists"))
    );
    let (status, _) = send(
        reqwest::Method::GET,
        format!("{api}/sandbox/x1"),
        None,
        "wrong",
    )
    .await;
    assert_eq!(status, 401);
    let (status, body) = send(
        reqwest::Method::GET,
        format!("{api}/sandbox?labels=%7Bnot-json"),
        None,
        KEY,
    )
    .await;
    assert_eq!(
        (status, &body["message"]),
        (400, &json!("Invalid labels JSON format"))
    );
    let toolbox = made["toolboxProxyUrl"].as_str().unwrap().to_string();
    let id = made["id"].as_str().unwrap().to_string();
    let execute = |body: Value| {
        send(
            reqwest::Method::POST,
            format!("{toolbox}/{id}/process/execute"),
            Some(body),
            KEY,
        )
    };
    let (status, body) = execute(json!({"command": "echo \"$A_1\"", "envs": {"A_1": "x"}})).await;
    assert_eq!(
        (status, body),
        (200, json!({"exitCode": 0, "result": "x\n"}))
    );
    let (status, body) = execute(json!({"command": "true", "envs": {"1A": "x"}})).await;
    assert_eq!(
        (status, &body["message"]),
        (400, &json!("invalid environment variable name: '1A'"))
    );
    let (status, _) = execute(json!({"command": "sleep 5", "timeout": 1})).await;
    assert_eq!(status, 408);
    let (status, deleted) = send(
        reqwest::Method::DELETE,
        format!("{api}/sandbox/{id}"),
        None,
        KEY,
    )
    .await;
    assert_eq!((status, &deleted["state"]), (200, &json!("destroying")));
    let (status, _) = execute(json!({"command": "true"})).await;
    assert_eq!(status, 404);
    let (status, _) = send(
        reqwest::Method::DELETE,
        format!("{api}/sandbox/{id}"),
        None,
        KEY,
    )
    .await;
    assert_eq!(status, 404);
}

/// `omoi serve --provider daytona` against the fake: each misconfiguration is one line at start,
/// and the key is in none of them.
#[tokio::test]
async fn serve_with_a_refused_key_or_a_missing_snapshot_fails_at_start_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = fake(tmp.path()).await;
    let serve = |key: &'static str, snapshot: &'static str| {
        let tmp = tmp.path().to_path_buf();
        let url = fake.api_url();
        async move {
            let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_omoi"))
                .args(["serve", "--provider", "daytona", "--listen", "127.0.0.1:0"])
                .args(["--public-url", "https://omoi.example"])
                .args(["--daytona-snapshot", snapshot])
                .arg("--database")
                .arg(format!("sqlite://{}", tmp.join("omoi.db").display()))
                .arg("--data-dir")
                .arg(tmp.join("data"))
                .env_clear()
                .env("HOME", &tmp)
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("DAYTONA_API_URL", url)
                .env("DAYTONA_API_KEY", key)
                .output()
                .await
                .unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
            assert_eq!(output.status.code(), Some(1), "{stderr}");
            assert!(!stderr.contains(key), "{stderr}");
            let lines: Vec<String> = stderr
                .lines()
                .filter(|l| l.contains("daytona:"))
                .map(str::to_string)
                .collect();
            assert_eq!(lines.len(), 1, "{stderr}");
            lines[0].clone()
        }
    };
    let line = serve("dtn_refused_key_0123456789", SNAPSHOT).await;
    assert!(
        line.contains("daytona: DAYTONA_API_KEY was refused: Unauthorized (401)"),
        "{line}"
    );
    let line = serve(KEY, "no-such-snapshot").await;
    assert!(
        line.contains(
            "daytona: the snapshot \"no-such-snapshot\" (--daytona-snapshot) was not found"
        ),
        "{line}"
    );
}

#[tokio::test]
async fn a_spawn_past_its_deadline_fails_and_deletes_the_half_made_sandbox() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = fake(tmp.path()).await;
    let data = tmp.path().join("data");
    let provider = provider(&fake, &data, |c| {
        c.spawn_deadline = Duration::from_millis(1_500);
        c.connection.max_tries = 100;
    })
    .await
    .unwrap();
    // The toolbox fails every time: the start is tried again (no bound on the tries here) until
    // the deadline.
    fake.fault("execute", &[503; 200]);
    let request = omoi_coordinator::sandbox::SpawnRequest {
        sandbox_id: "0b8f6c1e-0000-4000-8000-00000000000c".into(),
        image: None,
        env: BTreeMap::from([("SPEC_ID".to_string(), "spec-late".to_string())]),
        labels: BTreeMap::from([("omoi.owner".to_string(), "omoi".to_string())]),
        limits: Default::default(),
        repo: Some("/a/local/path".into()),
        image_pull_secrets: Vec::new(),
    };
    let refused = provider
        .spawn(request.clone())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.ends_with(
            "is a path on the coordinator's machine, which a Daytona sandbox cannot reach; the \
             project must name a git URL"
        ),
        "{refused}"
    );
    let request = omoi_coordinator::sandbox::SpawnRequest {
        repo: Some("git://127.0.0.1:9/x.git".into()),
        ..request
    };
    let started = std::time::Instant::now();
    let error = provider.spawn(request).await.unwrap_err().to_string();
    assert!(started.elapsed() < Duration::from_secs(5), "{error}");
    assert_eq!(
        error,
        "spawning sandbox 0b8f6c1e-0000-4000-8000-00000000000c failed: not started within 1 s"
    );
    assert!(fake.sandboxes().is_empty());
    assert_eq!(fake.requests().get("delete"), Some(&1));
    provider.close();
}

#[tokio::test]
async fn reconcile_lists_every_page_of_labelled_sandboxes() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = fake(tmp.path()).await;
    let http = reqwest::Client::new();
    let made = futures_util::future::join_all((0..150).map(|i| {
        let request = http
            .post(format!("{}/sandbox", fake.api_url()))
            .bearer_auth(KEY)
            .json(&json!({"snapshot": SNAPSHOT, "name": format!("n{i}"),
                "labels": {"omoi.owner": if i % 10 == 0 { "someone-else" } else { "omoi" },
                    "omoi.sandbox": format!("sb-{i}")}}));
        async move { request.send().await.unwrap().status().as_u16() }
    }))
    .await;
    assert!(made.iter().all(|s| *s == 200), "{made:?}");
    let provider = provider(&fake, &tmp.path().join("data"), |_| {})
        .await
        .unwrap();
    let owned = BTreeMap::from([("omoi.owner".to_string(), "omoi".to_string())]);
    let listed = provider.list(&owned).await.unwrap();
    assert_eq!(listed.len(), 135);
    assert!(listed.iter().all(|s| s.status == ProviderStatus::Running));
    // Two pages, read by the provider's first poll and by this list.
    assert_eq!(fake.requests().get("list"), Some(&4));
    provider.close();
}

#[tokio::test]
async fn a_sandbox_found_without_a_worker_is_deleted_after_one_spawn_deadline() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = fake(tmp.path()).await;
    let status = reqwest::Client::new()
        .post(format!("{}/sandbox", fake.api_url()))
        .bearer_auth(KEY)
        .json(&json!({"snapshot": SNAPSHOT, "name": "orphan",
            "labels": {"omoi.owner": "omoi", "omoi.sandbox": "sb-orphan"}}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    let provider = provider(&fake, &tmp.path().join("data"), |c| {
        c.spawn_deadline = Duration::from_secs(1);
    })
    .await
    .unwrap();
    // Within the deadline it is left alone (another replica may be starting its worker).
    assert_eq!(fake.sandboxes().len(), 1);
    eventually(
        Duration::from_secs(10),
        "the orphan to be deleted",
        || async { fake.sandboxes().is_empty() },
    )
    .await;
    provider.close();
}
