//! What a cluster does to a spec, played by the fake API server: pods killed mid-phase, killed at
//! their memory limit and evicted (each sandbox lost with the reason, the spec recovered after its
//! last checkpoint), a pod stuck pending, watches that expire (410 Gone) and API answers of 409,
//! 429 and 500, none of which loses a sandbox or leaves a pod behind.

use std::sync::Arc;
use std::time::Duration;

use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use super::common::docker::{detail, spec_sandboxes};
use super::common::kube::{NS, Remote, fake, launch, provider, reasons};
use super::common::{Api, eventually, sqlite};
use omoi_tests::fake_kube::Fault;
use omoi_tests::fake_kube::kubelet::Kill;

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

/// Waits until the spec has `n` sandboxes of its own and the last one's pod runs; answers its
/// pod's name.
async fn wait_running(
    api: &Api,
    spec_id: &str,
    fake: &omoi_tests::fake_kube::FakeKube,
    n: usize,
) -> String {
    let pod_of = |sandboxes: &[Value]| {
        sandboxes
            .get(n - 1)
            .map(|s| format!("omoi-{}", s["id"].as_str().unwrap()))
    };
    eventually(WAIT, &format!("sandbox {n} to run"), || async {
        let d = detail(api, spec_id).await;
        assert_ne!(d["status"], "failed", "{d}");
        let Some(pod) = pod_of(&spec_sandboxes(&d)) else {
            return false;
        };
        fake.pod(NS, &pod)
            .and_then(|p| p.status)
            .and_then(|s| s.phase)
            .is_some_and(|phase| phase == "Running")
    })
    .await;
    pod_of(&spec_sandboxes(&detail(api, spec_id).await)).unwrap_or_default()
}

#[tokio::test]
async fn pods_killed_oom_killed_and_evicted_are_lost_with_the_reason_and_the_spec_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = fake(tmp.path()).await;
    let provider = Arc::new(
        provider(&fake, &tmp.path().join("data"), |_| {})
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

    // The first sandbox runs EXPLORE, REQUIREMENTS, then DESIGN, where its pod is killed.
    let first = wait_running(api, spec, &fake, 1).await;
    eventually(WAIT, "DESIGN to start", || async {
        detail(api, spec).await["phases"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["phase"] == "design"))
    })
    .await;
    fake.kill(NS, &first, Kill::Sigkill);
    let second = wait_running(api, spec, &fake, 2).await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    fake.kill(NS, &second, Kill::OutOfMemory);
    let third = wait_running(api, spec, &fake, 3).await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    fake.kill(NS, &third, Kill::Evict);

    let done = wait_stopped_after(api, spec, "design").await;
    assert_eq!(done["recoveries"], 3);
    assert_eq!(
        reasons(&done),
        [
            (
                "lost",
                "the worker exited with code 137 without a terminal event"
            ),
            (
                "lost",
                "the worker was killed: out of memory (limit 2048 MiB) without a terminal event"
            ),
            (
                "lost",
                "the sandbox was evicted from its node: The node was low on resource: memory. \
                 Threshold quantity: 100Mi, available: 50Mi."
            ),
            ("completed", ""),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect::<Vec<_>>()
    );
    // Each replacement started after the last checkpoint: DESIGN.
    let starts: Vec<Value> = spec_sandboxes(&done)
        .iter()
        .map(|s| s["start_phase"].clone())
        .collect();
    assert_eq!(
        starts,
        vec![
            json!("explore"),
            json!("design"),
            json!("design"),
            json!("design")
        ]
    );
    eventually(
        Duration::from_secs(30),
        "every pod and Secret to be deleted",
        || async { fake.names(NS, "pods").is_empty() && fake.names(NS, "secrets").is_empty() },
    )
    .await;
    launched.server.stop().await;
    provider.close();
}

#[tokio::test]
async fn a_pod_stuck_pending_is_lost_with_the_reason_and_its_replacement_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = fake(tmp.path()).await;
    let provider = Arc::new(
        provider(&fake, &tmp.path().join("data"), |c| {
            c.pending_limit = Duration::from_secs(2)
        })
        .await
        .unwrap(),
    );
    let remote = Remote::start(&tmp.path().join("git"));
    fake.hold_scheduling(true);
    let db = sqlite();
    let launched = launch(
        &db,
        provider.clone(),
        &remote,
        &omoi_tests::fixtures::sample_script(),
        Some("explore"),
    )
    .await;
    let (api, spec) = (&launched.api, launched.spec_id.as_str());
    eventually(WAIT, "the first sandbox to be lost", || async {
        spec_sandboxes(&detail(api, spec).await)
            .first()
            .is_some_and(|s| s["status"] == "lost")
    })
    .await;
    fake.hold_scheduling(false);
    let done = wait_stopped_after(api, spec, "explore").await;
    assert_eq!(
        reasons(&done)[0],
        (
            "lost".to_string(),
            "the sandbox was pending for more than 2 s: Unschedulable: 0/1 nodes are available: \
             1 Insufficient memory."
                .to_string()
        )
    );
    assert_eq!(reasons(&done).last().unwrap().0, "completed");
    launched.server.stop().await;
    provider.close();
}

#[tokio::test]
async fn expiring_watches_and_api_answers_of_409_429_and_500_lose_no_sandbox() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = Arc::new(fake(tmp.path()).await);
    let provider = Arc::new(
        provider(&fake, &tmp.path().join("data"), |_| {})
            .await
            .unwrap(),
    );
    let remote = Remote::start(&tmp.path().join("git"));
    // The first pod is made but its answer is lost (500): the retry finds it (409) and adopts it.
    fake.fault("create", "pods", &[Fault::DoThenFail(500)]);
    // The Secret is refused twice: 429 (kube's client waits and retries), then 500 (sent again).
    fake.fault("create", "secrets", &[Fault::Fail(429), Fault::Fail(500)]);
    // The first delete of an ended pod fails.
    fake.fault("delete", "pods", &[Fault::Fail(500)]);
    // Watches expire every 300 ms, all along.
    let expiring = {
        let fake = fake.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(300)).await;
                fake.expire_watches();
            }
        })
    };
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
        "the pod and Secret to be deleted",
        || async { fake.names(NS, "pods").is_empty() && fake.names(NS, "secrets").is_empty() },
    )
    .await;
    expiring.abort();
    let requests = fake.requests();
    assert_eq!(
        (
            requests.get("create pods"),
            requests.get("get pods"),
            requests.get("create secrets"),
            requests.get("delete pods"),
        ),
        // Secrets: the dry run at start, the 429, the 500, the one made.
        (Some(&2), Some(&1), Some(&4), Some(&2)),
        "{requests:?}"
    );
    assert!(
        requests.get("list pods").is_some_and(|n| *n >= 2),
        "expired watches are followed by a new list: {requests:?}"
    );
    launched.server.stop().await;
    provider.close();
}

/// A create that keeps answering 429 (retried inside kube's client, honouring `Retry-After`) or
/// 500 (sent again by the provider) fails the spawn with the reason once the spawn deadline
/// passes, and leaves nothing behind.
#[tokio::test]
async fn a_create_that_keeps_failing_ends_the_spawn_at_its_deadline() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = fake(tmp.path()).await;
    let provider = provider(&fake, &tmp.path().join("data"), |c| {
        c.spawn_deadline = Duration::from_secs(2)
    })
    .await
    .unwrap();
    let request = |id: &str| omoi_coordinator::sandbox::SpawnRequest {
        sandbox_id: id.into(),
        image: None,
        image_pull_secrets: Vec::new(),
        env: [("SPEC_ID".to_string(), "spec-x".to_string())].into(),
        labels: omoi_coordinator::launch::labels(id, "spec-x", None),
        limits: Default::default(),
        repo: None,
    };
    use omoi_coordinator::sandbox::Provider;
    fake.fault("create", "pods", &[Fault::Fail(429); 40]);
    let id = "0b8f6c1e-0000-4000-8000-0000000000d1";
    let started = std::time::Instant::now();
    let error = provider.spawn(request(id)).await.unwrap_err().to_string();
    let took = started.elapsed();
    assert!(
        error.ends_with(&format!(
            "the API server did not take omoi-{id} within the spawn deadline of 2 s (the client \
             was still retrying answers of 429, 503 or 504)"
        )),
        "{error}"
    );
    assert!(took < Duration::from_secs(10), "{took:?}");

    provider.close();
    fake.clear_faults();

    let provider = super::common::kube::provider(&fake, &tmp.path().join("data"), |c| {
        c.spawn_deadline = Duration::from_millis(300)
    })
    .await
    .unwrap();
    fake.fault("create", "pods", &[Fault::Fail(500); 40]);
    let id = "0b8f6c1e-0000-4000-8000-0000000000d2";
    let error = provider.spawn(request(id)).await.unwrap_err().to_string();
    assert!(
        error.ends_with(&format!(
            "the API server did not take omoi-{id} within the spawn deadline of 300 ms (the last \
             answer: Internal error occurred: etcdserver: request timed out (500))"
        )),
        "{error}"
    );
    fake.clear_faults();
    assert!(fake.names(NS, "pods").is_empty() && fake.names(NS, "secrets").is_empty());
    provider.close();
}
