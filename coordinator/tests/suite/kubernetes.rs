//! The kubernetes provider end to end against the fake API server: a whole spec and its tasks
//! complete in pods (each worker cloning the repository itself), with the pods and Secrets gone
//! after and the logs kept; what the pods and Secrets carry; reconcile by label; the start-up
//! checks (a missing namespace, RBAC refusing a verb, no cluster configuration).

use std::sync::Arc;
use std::time::Duration;

use omoi_coordinator::sandbox::{Provider, ProviderStatus, SandboxHandle};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use super::common::docker::{all_completed, phase_summary, spec_sandboxes, wait_for_status};
use super::common::kube::{NS, Remote, dump_manifests, fake, launch, provider};
use super::common::{eventually, sqlite};

#[tokio::test]
async fn a_spec_and_its_tasks_complete_through_the_kubernetes_provider() {
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
        (
            &spec_sandbox["status"],
            &spec_sandbox["provider"],
            &spec_sandbox["handle"]
        ),
        (
            &json!("completed"),
            &json!("kubernetes"),
            &json!(format!("omoi-{sandbox}"))
        )
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

    // Every pod and Secret is gone (the Secrets with their pods); the spec's logs are kept.
    eventually(
        Duration::from_secs(30),
        "the pods and Secrets to be deleted",
        || async { fake.names(NS, "pods").is_empty() && fake.names(NS, "secrets").is_empty() },
    )
    .await;
    let log = std::fs::read_to_string(provider.log_path(&sandbox)).unwrap();
    assert!(log.contains("the repository is in the workspace"), "{log}");

    // Five pods (the spec, four tasks), each with its Secret, and no value of the environment in a
    // pod: the sandbox token is only in the Secret.
    let created = fake.created();
    let kinds: Vec<&str> = created
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "Pod").count(),
        5,
        "{kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == "Secret").count(),
        5,
        "{kinds:?}"
    );
    for object in created.iter().filter(|o| o["kind"] == "Pod") {
        let text = object.to_string();
        assert!(
            !text.contains("omoi_sbx_") && !text.contains("SANDBOX_TOKEN"),
            "{text}"
        );
        assert_eq!(
            object["spec"]["containers"][0]["envFrom"][0]["secretRef"]["name"],
            json!(format!(
                "{}-env",
                object["metadata"]["name"].as_str().unwrap()
            ))
        );
    }
    let spec_secret = created
        .iter()
        .find(|o| {
            o["kind"] == "Secret" && o["metadata"]["labels"]["omoi.sandbox"] == json!(sandbox)
        })
        .unwrap();
    assert_eq!(
        (
            &spec_secret["metadata"]["ownerReferences"][0]["kind"],
            &spec_secret["metadata"]["ownerReferences"][0]["name"],
        ),
        (&json!("Pod"), &json!(format!("omoi-{sandbox}")))
    );
    let keys: Vec<&String> = spec_secret["data"].as_object().unwrap().keys().collect();
    for name in [
        "SANDBOX_TOKEN",
        "OMOI_REPO_URL",
        "OMOI_BASE_BRANCH",
        "SPEC_ID",
    ] {
        assert!(keys.iter().any(|k| *k == name), "{name} in {keys:?}");
    }

    // A watch, not a poll: no per-pod get; per sandbox a pod and a Secret created, a log read, a
    // pod deleted (and one Secret created as a dry run at start, the namespace check).
    let requests = fake.requests();
    assert_eq!(
        (
            requests.get("create pods"),
            requests.get("create secrets"),
            requests.get("get pods/log"),
            requests.get("delete pods"),
            requests.get("get pods"),
        ),
        (Some(&5), Some(&6), Some(&5), Some(&5), None),
        "{requests:?}"
    );
    dump_manifests(&fake, "e2e");

    // A project for a cluster names a git URL: a path of this machine is refused.
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
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .ends_with("is a path on the coordinator's machine, which kubernetes sandboxes cannot reach; name a git URL (https://, ssh://, git://, user@host:path)"),
        "{answer}"
    );
    launched.server.stop().await;
    provider.close();
}

#[tokio::test]
async fn reconcile_lists_by_label_and_stops_a_pod_nothing_waits_for() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = fake(tmp.path()).await;
    let data = tmp.path().join("data");
    // An earlier run's sandbox: a pod that sleeps in the fake (its worker waits for a phase
    // context it can fetch from nowhere, so it fails; the script makes it run long instead).
    let first = provider(&fake, &data, |_| {}).await.unwrap();
    let script = omoi_tests::fixtures::sample_script();
    let request = omoi_coordinator::sandbox::SpawnRequest {
        sandbox_id: "0b8f6c1e-0000-4000-8000-00000000000a".into(),
        image: None,
        image_pull_secrets: Vec::new(),
        env: [
            ("SPEC_ID", "spec-left"),
            ("SPEC_PHASE", "explore"),
            ("SPEC_TITLE", "left over"),
            ("OMOI_LLM", "scripted"),
            ("OMOI_SCRIPT", script.to_str().unwrap()),
            ("OMOI_REPO_URL", "git://127.0.0.1:9/none.git"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        labels: omoi_coordinator::launch::labels(
            "0b8f6c1e-0000-4000-8000-00000000000a",
            "spec-left",
            None,
        ),
        limits: Default::default(),
        repo: None,
    };
    let handle = first.spawn(request).await.unwrap();
    first.close();
    drop(first);

    let second = provider(&fake, &data, |_| {}).await.unwrap();
    let listed = second
        .list(&[("omoi.owner".to_string(), "omoi".to_string())].into())
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (
            &listed[0].handle,
            listed[0].labels.get("omoi.spec").map(String::as_str)
        ),
        (&handle, Some("spec-left"))
    );
    second.terminate(&handle).await.unwrap();
    eventually(Duration::from_secs(20), "the pod to be gone", || async {
        fake.names(NS, "pods").is_empty() && fake.names(NS, "secrets").is_empty()
    })
    .await;
    eventually(Duration::from_secs(5), "the watch to tell", || async {
        second.status(&handle).await.unwrap() != ProviderStatus::Running
    })
    .await;
    assert_eq!(
        second
            .status(&SandboxHandle("omoi-unknown".into()))
            .await
            .unwrap(),
        ProviderStatus::NotFound
    );
    second.close();
}

#[tokio::test]
async fn a_missing_namespace_or_a_verb_rbac_refuses_fails_at_start_with_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = fake(tmp.path()).await;
    let data = tmp.path().join("data");
    let error = provider(&fake, &data, |c| c.namespace = "nowhere".into())
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        "kubernetes: the namespace \"nowhere\" does not exist (create it, or name another with \
         --namespace)"
    );
    fake.forbid("create", "pods");
    fake.forbid("get", "pods/log");
    let error = provider(&fake, &data, |_| {})
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        "kubernetes: RBAC does not let this account create pods, get pods/log in the namespace \
         \"omoi\"; grant the Role of images/kubernetes/role.yaml"
    );
    assert!(!error.contains('\n'));
}

#[tokio::test]
async fn serve_without_a_cluster_configuration_says_so_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_omoi"))
        .args([
            "serve",
            "--provider",
            "kubernetes",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--public-url", "http://omoi.omoi.svc:8080"])
        .arg("--database")
        .arg(format!("sqlite://{}", tmp.path().join("omoi.db").display()))
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .env_clear()
        .env("HOME", tmp.path())
        .env("KUBECONFIG", tmp.path().join("no-such-kubeconfig"))
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("kubernetes"))
        .collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains("kubernetes: no cluster configuration (no usable kubeconfig, and not running in a cluster)"),
        "{stderr}"
    );
}

#[tokio::test]
async fn serve_with_a_kubeconfig_of_the_fake_checks_rbac_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = fake(tmp.path()).await;
    let kubeconfig = tmp.path().join("kubeconfig");
    fake.write_kubeconfig(&kubeconfig, NS);
    fake.forbid("delete", "secrets");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_omoi"))
        .args([
            "serve",
            "--provider",
            "kubernetes",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--public-url", "http://omoi.omoi.svc:8080"])
        .arg("--database")
        .arg(format!("sqlite://{}", tmp.path().join("omoi.db").display()))
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .env_clear()
        .env("HOME", tmp.path())
        .env("KUBECONFIG", &kubeconfig)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "kubernetes: RBAC does not let this account delete secrets in the namespace \"omoi\""
        ),
        "{stderr}"
    );
}

/// The fake refuses what the real API server refuses, on the wire: no token, a namespace that
/// does not exist, an unknown field, a missing required field, a name that is no DNS name, a
/// label selector it cannot read, a duplicate; and a watch from a compacted version is 410 Gone.
#[tokio::test]
async fn the_fake_api_server_refuses_what_the_real_one_refuses() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = fake(tmp.path()).await;
    let http = reqwest::Client::new();
    let pods = format!("{}/api/v1/namespaces/{NS}/pods", fake.url());
    let token = format!("Bearer {}", super::common::kube::TOKEN);
    let send = |url: String, body: Value| {
        let (http, token) = (http.clone(), token.clone());
        async move {
            let answer = http
                .post(url)
                .header("authorization", token)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = answer.status().as_u16();
            let body: Value = answer.json().await.unwrap();
            (status, body["reason"].clone(), body["message"].clone())
        }
    };
    let pod = |name: &str| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "worker", "image": "none:1"}]}})
    };

    let anonymous = http.get(&pods).send().await.unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    let (status, reason, _) = send(
        format!("{}/api/v1/namespaces/nowhere/pods", fake.url()),
        pod("p"),
    )
    .await;
    assert_eq!((status, reason), (404, json!("NotFound")));
    let mut unknown = pod("p");
    unknown["spec"]["containers"][0]["imagePullPolice"] = json!("Always");
    assert_eq!(
        send(pods.clone(), unknown).await,
        (
            400,
            json!("BadRequest"),
            json!("strict decoding error: unknown field \"spec.containers[0].imagePullPolice\"")
        )
    );
    let mut nameless = pod("p");
    nameless["spec"]["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("name");
    let (status, reason, message) = send(pods.clone(), nameless).await;
    assert_eq!((status, reason), (422, json!("Invalid")), "{message}");
    assert!(
        message
            .as_str()
            .unwrap()
            .contains("spec.containers[0].name: Required value")
    );
    let (status, _, message) = send(pods.clone(), pod("Not_A_Name")).await;
    assert_eq!(status, 422, "{message}");
    let mut bad_label = pod("p");
    bad_label["metadata"]["labels"] = json!({"omoi.spec": "a b"});
    assert_eq!(send(pods.clone(), bad_label).await.0, 422);
    let mut bad_quantity = pod("p");
    bad_quantity["spec"]["containers"][0]["resources"] = json!({"limits": {"memory": "lots"}});
    assert_eq!(send(pods.clone(), bad_quantity).await.0, 422);
    let mut bad_base64 = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}});
    bad_base64["data"] = json!({"KEY": "not base64!"});
    assert_eq!(
        send(
            format!("{}/api/v1/namespaces/{NS}/secrets", fake.url()),
            bad_base64
        )
        .await
        .0,
        400
    );
    assert_eq!(send(pods.clone(), pod("p")).await.0, 201);
    assert_eq!(send(pods.clone(), pod("p")).await.1, json!("AlreadyExists"));
    let set_based = http
        .get(format!("{pods}?labelSelector=omoi.owner%20in%20(omoi)"))
        .header("authorization", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(set_based.status().as_u16(), 400);

    fake.expire_watches();
    let gone = http
        .get(format!("{pods}?watch=true&resourceVersion=1"))
        .header("authorization", &token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let event: Value = serde_json::from_str(gone.trim()).unwrap();
    assert_eq!(
        (
            &event["type"],
            &event["object"]["code"],
            &event["object"]["reason"]
        ),
        (&json!("ERROR"), &json!(410), &json!("Expired"))
    );
}

/// Two coordinators with separate databases share a namespace: each one's list (what reconcile
/// stops) and watch (what `status` answers) see only the objects of its own `--instance`.
#[tokio::test]
async fn coordinators_of_other_instances_do_not_see_each_others_sandboxes() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = fake(tmp.path()).await;
    let data = tmp.path().join("data");
    let blue = provider(&fake, &data, |c| c.instance = "blue".into())
        .await
        .unwrap();
    let green = provider(&fake, &data, |c| c.instance = "green".into())
        .await
        .unwrap();
    let owner = [("omoi.owner".to_string(), "omoi".to_string())].into();
    let spawn = |id: &str| {
        let script = omoi_tests::fixtures::sample_script();
        omoi_coordinator::sandbox::SpawnRequest {
            sandbox_id: id.into(),
            image: None,
            image_pull_secrets: Vec::new(),
            env: [
                ("SPEC_ID", "spec-x"),
                ("SPEC_PHASE", "explore"),
                ("SPEC_TITLE", "x"),
                ("OMOI_LLM", "scripted"),
                ("OMOI_SCRIPT", script.to_str().unwrap()),
                ("OMOI_REPO_URL", "git://127.0.0.1:9/none.git"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            labels: omoi_coordinator::launch::labels(id, "spec-x", None),
            limits: Default::default(),
            repo: None,
        }
    };
    let blues = blue
        .spawn(spawn("0b8f6c1e-0000-4000-8000-0000000000b1"))
        .await
        .unwrap();
    let greens = green
        .spawn(spawn("0b8f6c1e-0000-4000-8000-0000000000c1"))
        .await
        .unwrap();
    let handles = |listed: Vec<omoi_coordinator::sandbox::ListedSandbox>| {
        listed.into_iter().map(|l| l.handle).collect::<Vec<_>>()
    };
    assert_eq!(
        handles(blue.list(&owner).await.unwrap()),
        vec![blues.clone()]
    );
    assert_eq!(
        handles(green.list(&owner).await.unwrap()),
        vec![greens.clone()]
    );
    // Each watch heard of its own pod only (whose worker, with no coordinator to reach, soon
    // exits: the status is the pod's, whatever it is).
    eventually(
        Duration::from_secs(10),
        "blue's watch to hear of its pod",
        || async {
            blue.status(&blues).await.unwrap() != ProviderStatus::NotFound
                && green.status(&greens).await.unwrap() != ProviderStatus::NotFound
        },
    )
    .await;
    assert_eq!(
        (
            blue.status(&greens).await.unwrap(),
            green.status(&blues).await.unwrap(),
        ),
        (ProviderStatus::NotFound, ProviderStatus::NotFound)
    );
    blue.terminate(&blues).await.unwrap();
    green.terminate(&greens).await.unwrap();
    eventually(Duration::from_secs(20), "the pods to be gone", || async {
        fake.names(NS, "pods").is_empty() && fake.names(NS, "secrets").is_empty()
    })
    .await;
    blue.close();
    green.close();
}
