//! The kubernetes provider in Sandbox mode (`--kubernetes-api sandbox`) against the fake API
//! server and its agent-sandbox controller: a whole spec and its tasks complete in Sandboxes; the
//! controller's pod is the template's, owned by the Sandbox, and goes with it; a pod killed
//! mid-phase is lost with its exit code and the spec recovers after its last checkpoint; the
//! start-up checks (the CRD installed, RBAC on sandboxes); what the fake refuses of a Sandbox.

use std::sync::Arc;
use std::time::Duration;

use omoi_coordinator::sandbox::{Provider, ProviderStatus, SandboxHandle, SpawnRequest};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use super::common::docker::{
    all_completed, detail, phase_summary, spec_sandboxes, wait_for_status,
};
use super::common::kube::{
    NS, Remote, TOKEN, dump_manifests, fake, launch, provider, reasons, sandbox_mode,
};
use super::common::{eventually, sqlite};
use omoi_tests::fake_kube::kubelet::Kill;

const WAIT: Duration = Duration::from_secs(180);

fn everything_gone(fake: &omoi_tests::fake_kube::FakeKube) -> bool {
    fake.names(NS, "sandboxes").is_empty()
        && fake.names(NS, "pods").is_empty()
        && fake.names(NS, "secrets").is_empty()
}

#[tokio::test]
async fn a_spec_and_its_tasks_complete_in_agent_sandboxes() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = fake(tmp.path()).await;
    let data = tmp.path().join("data");
    let provider = Arc::new(provider(&fake, &data, sandbox_mode).await.unwrap());
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
        (&spec_sandbox["status"], &spec_sandbox["handle"]),
        (&json!("completed"), &json!(format!("omoi-{sandbox}")))
    );
    let tasks: Vec<&str> = done["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["status"].as_str().unwrap())
        .collect();
    assert_eq!(tasks, ["completed"; 4]);
    let commits = omoi_tests::git::subjects(&remote.bare, done["branch"].as_str().unwrap());
    assert_eq!(
        commits.iter().filter(|s| s.starts_with("TSK-")).count(),
        4,
        "{commits:?}"
    );

    // Every Sandbox is deleted, and its pod and Secret with it; the spec's log is kept.
    eventually(
        Duration::from_secs(30),
        "the Sandboxes, pods and Secrets to be deleted",
        || async { everything_gone(&fake) },
    )
    .await;
    let log = std::fs::read_to_string(provider.log_path(&sandbox)).unwrap();
    assert!(log.contains("the repository is in the workspace"), "{log}");

    // The client created Sandboxes and Secrets only (the controller made the pods); each Secret
    // is owned by its Sandbox; no value of the environment is in a Sandbox.
    let created = fake.created();
    let kinds: Vec<&str> = created
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        (
            kinds.iter().filter(|k| **k == "Sandbox").count(),
            kinds.iter().filter(|k| **k == "Secret").count(),
            kinds.iter().filter(|k| **k == "Pod").count(),
        ),
        (5, 5, 0),
        "{kinds:?}"
    );
    for object in created.iter().filter(|o| o["kind"] == "Sandbox") {
        let text = object.to_string();
        assert!(
            !text.contains("omoi_sbx_") && !text.contains("SANDBOX_TOKEN"),
            "{text}"
        );
        assert_eq!(object["apiVersion"], json!("agents.x-k8s.io/v1beta1"));
    }
    let spec_secret = created
        .iter()
        .find(|o| {
            o["kind"] == "Secret" && o["metadata"]["labels"]["omoi.sandbox"] == json!(sandbox)
        })
        .unwrap();
    let owner = &spec_secret["metadata"]["ownerReferences"][0];
    assert_eq!(
        (&owner["apiVersion"], &owner["kind"], &owner["name"]),
        (
            &json!("agents.x-k8s.io/v1beta1"),
            &json!("Sandbox"),
            &json!(format!("omoi-{sandbox}"))
        )
    );

    // One watch on the Sandboxes, none on pods; per sandbox a Sandbox and a Secret created, a
    // log read, a Sandbox deleted; no pod read (every pod succeeded, which the Sandbox says).
    let requests = fake.requests();
    assert_eq!(
        (
            requests.get("create sandboxes"),
            requests.get("create secrets"),
            requests.get("get pods/log"),
            requests.get("delete sandboxes"),
            requests.get("get pods"),
            requests.get("create pods"),
            requests.get("watch pods"),
            requests.get("delete pods"),
        ),
        (
            Some(&5),
            Some(&6),
            Some(&5),
            Some(&5),
            None,
            None,
            None,
            None
        ),
        "{requests:?}"
    );
    assert!(requests.contains_key("watch sandboxes"), "{requests:?}");
    dump_manifests(&fake, "sandbox-e2e");
    launched.server.stop().await;
    provider.close();
}

/// A sandbox whose worker runs for seconds: its clone fails at once, but it then tries to deliver
/// its events to a coordinator that is not there until its drain deadline.
fn sleeper(id: &str) -> SpawnRequest {
    let script = omoi_tests::fixtures::sample_script();
    SpawnRequest {
        sandbox_id: id.into(),
        image: None,
        image_pull_secrets: Vec::new(),
        env: [
            ("SPEC_ID", "spec-left"),
            ("SPEC_PHASE", "explore"),
            ("SPEC_TITLE", "left over"),
            ("OMOI_LLM", "scripted"),
            ("OMOI_SCRIPT", script.to_str().unwrap()),
            ("OMOI_REPO_URL", "git://127.0.0.1:9/none.git"),
            ("SANDBOX_ID", id),
            ("SANDBOX_TOKEN", "omoi_sbx_left_over_0123456789"),
            ("OMOIOS_API_URL", "http://127.0.0.1:9"),
            ("HEARTBEAT_SECS", "1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        labels: omoi_coordinator::launch::labels(id, "spec-left", None),
        limits: Default::default(),
        repo: None,
    }
}

#[tokio::test]
async fn the_controllers_pod_is_the_template_owned_by_the_sandbox_and_goes_with_it() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = fake(tmp.path()).await;
    let provider = provider(&fake, &tmp.path().join("data"), sandbox_mode)
        .await
        .unwrap();
    let id = "0b8f6c1e-0000-4000-8000-00000000000b";
    let handle = provider.spawn(sleeper(id)).await.unwrap();
    let name = format!("omoi-{id}");
    assert_eq!(handle, SandboxHandle(name.clone()));
    eventually(Duration::from_secs(20), "the controller's pod", || async {
        fake.pod(NS, &name).is_some()
    })
    .await;
    let stored = fake.sandbox(NS, &name).unwrap();
    let pod = fake.objects(NS, "pods").pop().unwrap();
    let owner = &pod["metadata"]["ownerReferences"][0];
    assert_eq!(
        (
            &owner["kind"],
            &owner["name"],
            &owner["uid"],
            &owner["controller"]
        ),
        (
            &json!("Sandbox"),
            &json!(name),
            &stored["metadata"]["uid"],
            &json!(true)
        )
    );
    // The template's labels (this coordinator's, and its instance), the controller's hash, and
    // the spec as the template has it.
    let labels = &pod["metadata"]["labels"];
    assert_eq!(
        (
            &labels["omoi.sandbox"],
            &labels["omoi.instance"],
            &labels["agents.x-k8s.io/sandbox-name-hash"]
        ),
        (
            &json!(id),
            &json!("default"),
            &json!(omoi_tests::fake_kube::agent_sandbox::name_hash(&name))
        )
    );
    assert_eq!(pod["spec"], stored["spec"]["podTemplate"]["spec"]);
    assert_eq!(pod["spec"]["securityContext"]["runAsNonRoot"], json!(true));
    eventually(
        Duration::from_secs(20),
        "the Sandbox to be Ready",
        || async {
            fake.sandbox(NS, &name).is_some_and(|s| {
                s["status"]["conditions"].as_array().is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
            })
        },
    )
    .await;
    assert_eq!(
        provider.status(&handle).await.unwrap(),
        ProviderStatus::Running
    );
    let listed = provider
        .list(&[("omoi.owner".to_string(), "omoi".to_string())].into())
        .await
        .unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|l| (l.handle.clone(), l.status.clone()))
            .collect::<Vec<_>>(),
        vec![(handle.clone(), ProviderStatus::Running)]
    );
    provider.terminate(&handle).await.unwrap();
    eventually(
        Duration::from_secs(20),
        "the Sandbox, its pod and Secret to be gone",
        || async { everything_gone(&fake) },
    )
    .await;
    eventually(Duration::from_secs(5), "the watch to tell", || async {
        provider.status(&handle).await.unwrap() != ProviderStatus::Running
    })
    .await;
    provider.close();
}

#[tokio::test]
async fn a_pod_killed_mid_phase_is_lost_with_its_exit_code_and_the_spec_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = fake(tmp.path()).await;
    let provider = Arc::new(
        provider(&fake, &tmp.path().join("data"), sandbox_mode)
            .await
            .unwrap(),
    );
    let remote = Remote::start(&tmp.path().join("git"));
    // DESIGN's first answer takes 3 s: time to kill its pod mid-phase.
    let mut script = omoi_tests::fixtures::sample_script_json();
    script["design"][0][0]["delay_ms"] = json!(3_000);
    let script = omoi_tests::fixtures::write_script(tmp.path(), "script.json", &script);
    let db = sqlite();
    let launched = launch(&db, provider.clone(), &remote, &script, Some("design")).await;
    let (api, spec) = (&launched.api, launched.spec_id.as_str());
    eventually(WAIT, "DESIGN to start", || async {
        detail(api, spec).await["phases"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["phase"] == "design"))
    })
    .await;
    let first = format!(
        "omoi-{}",
        spec_sandboxes(&detail(api, spec).await)[0]["id"]
            .as_str()
            .unwrap()
    );
    fake.kill(NS, &first, Kill::Sigkill);
    let done = {
        eventually(WAIT, "the spec to stop after design", || async {
            let d = detail(api, spec).await;
            assert_ne!(d["status"], "failed", "{d}");
            d["status"] == "pending"
                && d["phases"].as_array().is_some_and(|p| {
                    p.iter()
                        .any(|p| p["phase"] == "design" && p["status"] == "completed")
                })
        })
        .await;
        detail(api, spec).await
    };
    assert_eq!(done["recoveries"], 1);
    assert_eq!(
        reasons(&done),
        vec![
            (
                "lost".to_string(),
                "the worker exited with code 137 without a terminal event".to_string()
            ),
            ("completed".to_string(), String::new()),
        ]
    );
    let starts: Vec<Value> = spec_sandboxes(&done)
        .iter()
        .map(|s| s["start_phase"].clone())
        .collect();
    assert_eq!(starts, vec![json!("explore"), json!("design")]);
    eventually(
        Duration::from_secs(30),
        "every Sandbox, pod and Secret to be deleted",
        || async { everything_gone(&fake) },
    )
    .await;
    // The failed pod was read once, for its exit code.
    assert_eq!(fake.requests().get("get pods"), Some(&1));
    launched.server.stop().await;
    provider.close();
}

#[tokio::test]
async fn sandbox_mode_needs_the_crd_and_rbac_on_sandboxes_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = fake(tmp.path()).await;
    let data = tmp.path().join("data");
    fake.forbid("watch", "sandboxes");
    fake.forbid("delete", "sandboxes");
    let error = provider(&fake, &data, sandbox_mode)
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        "kubernetes: RBAC does not let this account watch sandboxes.agents.x-k8s.io, delete \
         sandboxes.agents.x-k8s.io in the namespace \"omoi\"; grant the Role of \
         images/kubernetes/role.yaml"
    );
    // Pod mode does not ask for sandboxes.
    assert!(provider(&fake, &data, |_| {}).await.is_ok());
    fake.uninstall_agent_sandbox();
    let error = provider(&fake, &data, sandbox_mode)
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        "kubernetes: the API server does not serve agents.x-k8s.io/v1beta1/sandboxes: install \
         kubernetes-sigs/agent-sandbox (its CRDs and controller), or use --kubernetes-api pod"
    );
}

/// The fake refuses of a Sandbox what the real API server with the agent-sandbox CRD refuses: an
/// unknown field, a missing `spec.podTemplate`, a value outside an enum, a template whose pod is
/// invalid; it serves the group's discovery, lists by label, answers a watch from a compacted
/// version with 410 Gone, and answers 404 for the group once the CRD is gone.
#[tokio::test]
async fn the_fake_serves_sandboxes_as_the_crd_does() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = fake(tmp.path()).await;
    let http = reqwest::Client::new();
    let base = format!("{}/apis/agents.x-k8s.io/v1beta1", fake.url());
    let sandboxes = format!("{base}/namespaces/{NS}/sandboxes");
    let token = format!("Bearer {TOKEN}");
    let send = |body: Value| {
        let (http, token, url) = (http.clone(), token.clone(), sandboxes.clone());
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
            (status, body)
        }
    };
    let sandbox = |name: &str| {
        json!({"apiVersion": "agents.x-k8s.io/v1beta1", "kind": "Sandbox",
            "metadata": {"name": name, "labels": {"omoi.owner": "omoi"}},
            "spec": {"podTemplate": {"metadata": {"labels": {"omoi.owner": "omoi"}},
                "spec": {"containers": [{"name": "worker", "image": "none:1"}]}}}})
    };
    let get = |url: String| {
        let (http, token) = (http.clone(), token.clone());
        async move {
            let answer = http
                .get(url)
                .header("authorization", token)
                .send()
                .await
                .unwrap();
            (answer.status().as_u16(), answer.text().await.unwrap())
        }
    };

    let (status, text) = get(base.clone()).await;
    assert_eq!(status, 200);
    let resources: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(resources["resources"][0]["name"], json!("sandboxes"));

    let mut unknown = sandbox("s");
    unknown["spec"]["podTemplat"] = json!({});
    let (status, body) = send(unknown).await;
    assert_eq!(
        (status, &body["message"]),
        (
            400,
            &json!("strict decoding error: unknown field \"spec.podTemplat\"")
        )
    );
    let mut no_template = sandbox("s");
    no_template["spec"] = json!({});
    let (status, body) = send(no_template).await;
    assert_eq!(
        (status, &body["reason"], &body["message"]),
        (
            422,
            &json!("Invalid"),
            &json!("Sandbox \"s\" is invalid: spec.podTemplate: Required value")
        )
    );
    let mut template_name = sandbox("s");
    template_name["spec"]["podTemplate"]["metadata"]["name"] = json!("p");
    assert_eq!(send(template_name).await.0, 400);
    let mut mode = sandbox("s");
    mode["spec"]["operatingMode"] = json!("Paused");
    assert_eq!(send(mode).await.0, 422);
    let mut bad_pod = sandbox("s");
    bad_pod["spec"]["podTemplate"]["spec"]["containers"][0]["resources"] =
        json!({"limits": {"memory": "lots"}});
    assert_eq!(send(bad_pod).await.0, 422);
    let (status, made) = send(sandbox("s")).await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(send(sandbox("s")).await.1["reason"], json!("AlreadyExists"));

    let (status, list) = get(format!("{sandboxes}?labelSelector=omoi.owner%3Domoi")).await;
    assert_eq!(status, 200);
    let list: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(
        (&list["kind"], &list["items"][0]["metadata"]["name"]),
        (&json!("SandboxList"), &json!("s"))
    );
    let (status, _) = get(format!("{sandboxes}/nothing")).await;
    assert_eq!(status, 404);
    // A watch from before a compaction is 410 Gone, as for pods.
    fake.expire_watches();
    let (status, gone) = get(format!("{sandboxes}?watch=true&resourceVersion=1")).await;
    let event: Value = serde_json::from_str(gone.trim()).unwrap();
    assert_eq!(
        (status, &event["type"], &event["object"]["code"]),
        (200, &json!("ERROR"), &json!(410))
    );

    fake.uninstall_agent_sandbox();
    assert_eq!(get(base).await.0, 404);
    assert_eq!(get(sandboxes).await.0, 404);
}

/// `omoi serve --kubernetes-api sandbox` starts the provider in Sandbox mode (no longer refused
/// by the flag): on a cluster without agent-sandbox it stops with the one line that says so.
#[tokio::test]
async fn serve_in_sandbox_mode_checks_the_crd_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = fake(tmp.path()).await;
    let kubeconfig = tmp.path().join("kubeconfig");
    fake.write_kubeconfig(&kubeconfig, NS);
    fake.uninstall_agent_sandbox();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_omoi"))
        .args([
            "serve",
            "--provider",
            "kubernetes",
            "--kubernetes-api",
            "sandbox",
        ])
        .args(["--listen", "127.0.0.1:0", "--instance", "blue"])
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
            "kubernetes: the API server does not serve agents.x-k8s.io/v1beta1/sandboxes: \
             install kubernetes-sigs/agent-sandbox (its CRDs and controller), or use \
             --kubernetes-api pod"
        ),
        "{stderr}"
    );
}

/// A Sandbox whose pod cannot be scheduled is lost after the pending limit with the scheduler's
/// words (the Sandbox's `PodScheduled` condition), and the Sandbox is deleted.
#[tokio::test]
async fn a_sandbox_stuck_pending_is_lost_with_the_schedulers_words() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = fake(tmp.path()).await;
    let provider = provider(&fake, &tmp.path().join("data"), |c| {
        sandbox_mode(c);
        c.pending_limit = Duration::from_secs(2);
    })
    .await
    .unwrap();
    fake.hold_scheduling(true);
    let handle = provider
        .spawn(sleeper("0b8f6c1e-0000-4000-8000-00000000000e"))
        .await
        .unwrap();
    eventually(
        Duration::from_secs(20),
        "the sandbox to be lost",
        || async { provider.status(&handle).await.unwrap() != ProviderStatus::Running },
    )
    .await;
    assert_eq!(
        provider.status(&handle).await.unwrap(),
        ProviderStatus::Lost {
            reason: "was pending for more than 2 s: Unschedulable: 0/1 nodes are available: 1 \
                     Insufficient memory."
                .into()
        }
    );
    eventually(
        Duration::from_secs(20),
        "the Sandbox, its pod and Secret to be gone",
        || async { everything_gone(&fake) },
    )
    .await;
    provider.close();
}
