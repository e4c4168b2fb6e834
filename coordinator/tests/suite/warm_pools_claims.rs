//! Warm pools of the Kubernetes Sandbox API (`--kubernetes-api sandbox` where the agent-sandbox
//! extensions are served), on the fake API server: the coordinator keeps one `SandboxTemplate`
//! and one `SandboxWarmPool` per pool, the pool's pods enroll with the pool's registration
//! credential, a launch takes a warm Sandbox with a `SandboxClaim`; a spec and its tasks run end
//! to end through claimed Sandboxes, a pod killed while idle is replaced and its standby ended, a
//! claimed one killed is lost and recovered, the enrollment route refuses what it must, a pool's
//! size follows `--warm-pool` across restarts, and without the extensions the coordinator keeps
//! its own standby Sandboxes.

use std::sync::Arc;
use std::time::Duration;

use omoi_coordinator::sandbox::kubernetes::KubernetesProvider;
use omoi_coordinator::store::StandbyState;
use omoi_tests::fake_kube::FakeKube;
use omoi_tests::fake_kube::kubelet::Kill;
use pretty_assertions::assert_eq;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::common::kube::{NS, Remote, dump_manifests, fake, provider, sandbox_mode};
use super::common::{TestDb, TestServer, error, eventually};

const WAIT: Duration = Duration::from_secs(120);

/// A counter or gauge of the server's `/metrics`.
async fn metric(server: &TestServer, name: &str) -> u64 {
    let (_, text) = server.api(None).get("/metrics").await;
    let text = text.as_str().unwrap().to_string();
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
        .parse()
        .unwrap()
}

/// A fake cluster with the extensions installed (or not) and a Sandbox-mode provider on it.
async fn cluster(dir: &std::path::Path, extensions: bool) -> (FakeKube, Arc<KubernetesProvider>) {
    let fake = fake(dir).await;
    if extensions {
        fake.install_extensions();
    }
    let kube = Arc::new(
        provider(&fake, &dir.join("data"), sandbox_mode)
            .await
            .unwrap(),
    );
    (fake, kube)
}

async fn server(
    db: &TestDb,
    kube: Arc<KubernetesProvider>,
    size: u32,
    tune: impl FnOnce(&mut omoi_coordinator::app::Settings),
) -> TestServer {
    let script = omoi_tests::fixtures::sample_script().display().to_string();
    TestServer::start(db, kube, |s| {
        s.heartbeat_secs = 2;
        for (name, value) in [
            ("OMOI_LLM", "scripted"),
            ("OMOI_SCRIPT", script.as_str()),
            ("OMOI_RETRY_BASE_MS", "10"),
        ] {
            s.worker_env.insert(name.into(), value.into());
        }
        s.warm_pool = size;
        tune(s);
    })
    .await
}

async fn pool_fills(server: &TestServer, size: u64) {
    eventually(WAIT, "the pool to fill", || async {
        metric(server, "omoi_pool_idle").await == size
    })
    .await;
}

/// The one `SandboxWarmPool` in the fake.
fn warm_pool(fake: &FakeKube) -> Value {
    let pools = fake.objects(NS, "sandboxwarmpools");
    assert_eq!(pools.len(), 1, "{pools:?}");
    pools[0].clone()
}

/// The Sandboxes the pool keeps (unclaimed).
fn pool_sandboxes(fake: &FakeKube) -> Vec<Value> {
    fake.objects(NS, "sandboxes")
        .into_iter()
        .filter(|s| !s["metadata"]["labels"]["agents.x-k8s.io/warm-pool-sandbox"].is_null())
        .collect()
}

async fn launch(server: &TestServer, remote: &Remote) -> (super::common::Api, String) {
    let (_, api) = server.user("ada").await;
    let (status, project) = api
        .post(
            "/projects",
            &json!({"name": "sample", "repo_url": remote.url()}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{project}");
    let (title, description) = omoi_tests::fixtures::sample_request();
    let (status, spec) = api
        .post(
            "/specs/launch",
            &json!({"project_id": project["id"], "title": title, "description": description}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{spec}");
    let id = spec["id"].as_str().unwrap().to_string();
    (api, id)
}

#[tokio::test]
async fn a_spec_and_its_tasks_run_through_claimed_warm_sandboxes() {
    let tmp = tempfile::tempdir().unwrap();
    let (fake, kube) = cluster(tmp.path(), true).await;
    let remote = Remote::start(&tmp.path().join("git"));
    let db = super::common::sqlite();
    let server = server(&db, kube.clone(), 2, |_| {}).await;
    pool_fills(&server, 2).await;
    // One template and one pool of two, owned and labelled by this instance; no Sandbox of the
    // coordinator's own making.
    let pool = warm_pool(&fake);
    let name = pool["metadata"]["name"].as_str().unwrap().to_string();
    assert_eq!(pool["spec"]["replicas"], 2);
    assert_eq!(pool["spec"]["sandboxTemplateRef"]["name"], json!(name));
    assert_eq!(pool["metadata"]["labels"]["omoi.instance"], "default");
    assert_eq!(fake.names(NS, "sandboxtemplates"), vec![name.clone()]);
    assert_eq!(pool_sandboxes(&fake).len(), 2);

    let (api, spec_id) = launch(&server, &remote).await;
    let done = super::common::docker::wait_for_status(&api, &spec_id, "completed").await;
    let tasks = done["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 4);
    assert!(
        tasks.iter().all(|t| t["status"] == "completed"),
        "{tasks:?}"
    );
    // The spec's sandbox was a Sandbox of the pool, handed out by a claim.
    let spec_sandbox = &super::common::docker::spec_sandboxes(&done)[0];
    let handle = spec_sandbox["handle"].as_str().unwrap();
    assert!(handle.starts_with(&format!("{name}-")), "{handle}");
    let claims: Vec<Value> = fake
        .created()
        .into_iter()
        .filter(|o| o["kind"] == "SandboxClaim")
        .collect();
    assert!(!claims.is_empty());
    for claim in &claims {
        assert_eq!(claim["spec"]["warmPoolRef"]["name"], json!(name));
        // No env: the claim may be warm, and no secret is in the claim.
        assert!(claim["spec"]["env"].is_null(), "{claim}");
    }
    let claimed = metric(&server, "omoi_pool_claims_total").await;
    let missed = metric(&server, "omoi_pool_misses_total").await;
    let sandboxes = done["sandboxes"].as_array().unwrap().len() as u64;
    assert_eq!(claimed + missed, sandboxes);
    assert!(claimed >= 1);
    // Every ended sandbox's claim is deleted, and its Sandbox with it; the pool refills.
    eventually(WAIT, "the claims to be deleted", || async {
        fake.names(NS, "sandboxclaims").is_empty()
    })
    .await;
    eventually(WAIT, "the claimed Sandboxes to go", || async {
        fake.objects(NS, "sandboxes")
            .iter()
            .all(|s| !s["metadata"]["labels"]["agents.x-k8s.io/claim-uid"].is_string())
    })
    .await;
    pool_fills(&server, 2).await;
    dump_manifests(&fake, "warm-claims");
    server.stop().await;
}

#[tokio::test]
async fn a_warm_pod_killed_while_idle_is_replaced_and_its_standby_ended() {
    let tmp = tempfile::tempdir().unwrap();
    let (fake, kube) = cluster(tmp.path(), true).await;
    let db = super::common::sqlite();
    let server = server(&db, kube.clone(), 1, |_| {}).await;
    pool_fills(&server, 1).await;
    let first = pool_sandboxes(&fake)[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let pod = fake.pod(NS, &first).unwrap();
    let standby_id = pod.metadata.uid.clone().unwrap();
    assert_eq!(
        server
            .store
            .standby(&standby_id)
            .await
            .unwrap()
            .map(|s| s.state),
        Some(StandbyState::Idle)
    );
    fake.kill(NS, &first, Kill::Sigkill);
    eventually(WAIT, "the killed standby to be ended", || async {
        server
            .store
            .standby(&standby_id)
            .await
            .unwrap()
            .is_some_and(|s| s.state == StandbyState::Dead)
    })
    .await;
    eventually(WAIT, "the pool to have a new sandbox", || async {
        let names: Vec<String> = pool_sandboxes(&fake)
            .iter()
            .filter_map(|s| s["metadata"]["name"].as_str().map(str::to_string))
            .collect();
        names.len() == 1 && names[0] != first
    })
    .await;
    pool_fills(&server, 1).await;
    server.stop().await;

    // A restart with another size resizes the pool.
    // (Its address is another: the pool's Secret changes, and its waiting sandboxes, which
    // started with the old one, are made again.)
    let server = server_again(&db, kube, 3).await;
    eventually(WAIT, "the pool to be resized", || async {
        warm_pool(&fake)["spec"]["replicas"] == 3
    })
    .await;
    pool_fills(&server, 3).await;
    server.stop().await;
}

async fn server_again(db: &TestDb, kube: Arc<KubernetesProvider>, size: u32) -> TestServer {
    server(db, kube, size, |_| {}).await
}

#[tokio::test]
async fn a_claimed_sandbox_killed_is_lost_and_recovered_from_its_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let (fake, kube) = cluster(tmp.path(), true).await;
    let remote = Remote::start(&tmp.path().join("git"));
    let db = super::common::sqlite();
    let marker = tmp.path().join("design-started");
    let command = format!(
        "if [ ! -e '{0}' ]; then touch '{0}'; sleep 60; fi",
        marker.display()
    );
    let script = super::worker_e2e::script_with_design_command(tmp.path(), &command);
    let script = script.display().to_string();
    let server = server(&db, kube, 1, |s| {
        s.worker_env.insert("OMOI_SCRIPT".into(), script.clone());
        s.max_running_tasks = 0;
    })
    .await;
    pool_fills(&server, 1).await;
    let (api, spec_id) = launch(&server, &remote).await;
    super::worker_e2e::wait_for_design(&api, &spec_id).await;
    eventually(WAIT, "the design command to run", || async {
        marker.exists()
    })
    .await;
    let (_, d) = api.get(&format!("/specs/{spec_id}")).await;
    let first = d["sandboxes"][0].clone();
    let handle = first["handle"].as_str().unwrap().to_string();
    assert!(fake.sandbox(NS, &handle).is_some(), "{first}");
    assert!(
        fake.sandbox(NS, &handle).unwrap()["metadata"]["ownerReferences"][0]["kind"]
            == "SandboxClaim"
    );
    fake.kill(NS, &handle, Kill::Sigkill);
    let done = super::common::docker::wait_for_status(&api, &spec_id, "implementing").await;
    assert_eq!(done["recoveries"], 1);
    let sandboxes = done["sandboxes"].as_array().unwrap();
    assert_eq!(sandboxes.len(), 2);
    assert_eq!(
        (&sandboxes[0]["id"], &sandboxes[0]["status"]),
        (&first["id"], &json!("lost"))
    );
    assert_eq!(
        (&sandboxes[1]["status"], &sandboxes[1]["start_phase"]),
        (&json!("completed"), &json!("design"))
    );
    server.stop().await;
}

#[tokio::test]
async fn the_enrollment_route_refuses_what_it_must() {
    let tmp = tempfile::tempdir().unwrap();
    let (fake, kube) = cluster(tmp.path(), true).await;
    let db = super::common::sqlite();
    let server = server(&db, kube, 1, |_| {}).await;
    pool_fills(&server, 1).await;
    let pool = warm_pool(&fake)["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let credential = server.store.pool_credential(&pool).unwrap();
    let member = pool_sandboxes(&fake)[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let uid = fake.pod(NS, &member).unwrap().metadata.uid.unwrap();
    let body = |pod: &str, uid: &str| json!({"pool": pool, "pod": pod, "pod_uid": uid, "worker_version": "0.1.0"});
    let enroll = |token: Option<&str>| server.api(token);
    let unauthorized = error(
        "unauthorized",
        &format!("not the registration credential of the pool {pool}"),
    );
    // No credential, a wrong one, a user's token.
    let (status, _) = enroll(None)
        .post("/standby/enroll", &body(&member, &uid))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        enroll(Some("omoi_r_wrong"))
            .post("/standby/enroll", &body(&member, &uid))
            .await,
        (StatusCode::UNAUTHORIZED, unauthorized.clone())
    );
    let (_, user) = server.user("ada").await;
    assert_eq!(
        user.post("/standby/enroll", &body(&member, &uid)).await,
        (StatusCode::UNAUTHORIZED, unauthorized)
    );
    let with = enroll(Some(&credential));
    // Bad bodies.
    let (status, _) = with.post_raw("/standby/enroll", "{not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let mut extra = body(&member, &uid);
    extra["extra"] = json!(true);
    assert_eq!(
        with.post("/standby/enroll", &extra).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    for (field, value) in [
        ("pool", ""),
        ("pod", "a/b"),
        ("pod_uid", ""),
        ("pod", &"a".repeat(254)),
    ] {
        let mut bad = body(&member, &uid);
        bad[field] = json!(value);
        assert_eq!(
            with.post("/standby/enroll", &bad).await,
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                error(
                    "invalid",
                    &format!("{field} must be 1 to 253 letters, digits, '-', '.' or '_'")
                )
            ),
            "{field}={value:?}"
        );
    }
    let mut old = body(&member, &uid);
    old["worker_version"] = json!("");
    assert_eq!(
        with.post("/standby/enroll", &old).await,
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            error("invalid", "worker_version must be 1 to 64 bytes")
        )
    );
    // The credential of another pool's name does not work for this one.
    let mut other = body(&member, &uid);
    other["pool"] = json!("omoi-pool-00000000");
    let (status, _) = with.post("/standby/enroll", &other).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // A pod that is not a member: no such pod, a wrong uid, a pod of no pool.
    let forbidden = |pod: &str| {
        error(
            "forbidden",
            &format!("{pod} is not a running, unclaimed sandbox of the pool {pool}"),
        )
    };
    for (pod, pod_uid) in [("nope", uid.as_str()), (member.as_str(), "0000-1111")] {
        assert_eq!(
            with.post("/standby/enroll", &body(pod, pod_uid)).await,
            (StatusCode::FORBIDDEN, forbidden(pod))
        );
    }
    // The pod enrolled itself already: a second enrollment is refused.
    assert_eq!(
        with.post("/standby/enroll", &body(&member, &uid)).await,
        (
            StatusCode::CONFLICT,
            error(
                "conflict",
                &format!("the sandbox {member} has enrolled already")
            )
        )
    );
    server.stop().await;

    // A coordinator whose provider keeps no pools of its own has no such route to speak of.
    let plain_db = super::common::sqlite();
    let plain = TestServer::start(&plain_db, super::common::FakeProvider::new(), |s| {
        s.warm_pool = 1;
    })
    .await;
    let (status, _) = plain
        .api(Some(&credential))
        .post("/standby/enroll", &body(&member, &uid))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    plain.stop().await;
}

#[tokio::test]
async fn without_the_extensions_the_standbys_are_sandboxes_of_the_coordinator_s_own() {
    let tmp = tempfile::tempdir().unwrap();
    let (fake, kube) = cluster(tmp.path(), false).await;
    let db = super::common::sqlite();
    let server = server(&db, kube, 2, |_| {}).await;
    pool_fills(&server, 2).await;
    assert!(fake.objects(NS, "sandboxwarmpools").is_empty());
    assert!(fake.objects(NS, "sandboxtemplates").is_empty());
    let sandboxes = fake.names(NS, "sandboxes");
    assert_eq!(sandboxes.len(), 2);
    // Each is a Sandbox named after its standby, with its own environment Secret.
    for name in &sandboxes {
        let id = name.strip_prefix("omoi-").unwrap();
        assert!(server.store.standby(id).await.unwrap().is_some(), "{name}");
    }
    server.stop().await;
}

#[tokio::test]
async fn where_rbac_refuses_what_the_extensions_need_the_standbys_are_the_coordinator_s_own() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = fake(tmp.path()).await;
    fake.install_extensions();
    fake.forbid("create", "sandboxclaims");
    let kube = Arc::new(
        provider(&fake, &tmp.path().join("data"), sandbox_mode)
            .await
            .unwrap(),
    );
    let db = super::common::sqlite();
    let server = server(&db, kube, 1, |_| {}).await;
    pool_fills(&server, 1).await;
    assert!(fake.objects(NS, "sandboxwarmpools").is_empty());
    assert_eq!(fake.names(NS, "sandboxes").len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn two_claims_of_one_sandbox_take_its_standby_once() {
    use omoi_coordinator::store::NewStandby;
    super::common::each_backend(|db| async move {
        let provider = super::common::FakeProvider::new();
        let first = TestServer::start(&db, provider.clone(), |_| {}).await;
        let second = TestServer::start(&db, provider, |_| {}).await;
        let new = NewStandby {
            id: "pod-uid-1",
            pool: "",
            provider: "fake",
            replica_id: "r1",
        };
        let token = first
            .store
            .enroll_standby(new, "omoi-pool-1-abcde", 1)
            .await
            .unwrap()
            .expect("enrolled");
        assert!(token.starts_with("omoi_p_"));
        // One pod enrolls once.
        assert_eq!(
            second
                .store
                .enroll_standby(new, "omoi-pool-1-abcde", 1)
                .await
                .unwrap(),
            None
        );
        // Not idle yet: nothing to claim.
        assert!(
            first
                .store
                .claim_standby_by_handle("fake", "omoi-pool-1-abcde")
                .await
                .unwrap()
                .is_none()
        );
        assert!(first.store.register_standby("pod-uid-1").await.unwrap());
        let (a, b) = tokio::join!(
            first
                .store
                .claim_standby_by_handle("fake", "omoi-pool-1-abcde"),
            second
                .store
                .claim_standby_by_handle("fake", "omoi-pool-1-abcde"),
        );
        let taken: Vec<_> = [a.unwrap(), b.unwrap()].into_iter().flatten().collect();
        assert_eq!(taken.len(), 1, "{taken:?}");
        assert_eq!(taken[0].state, StandbyState::Claimed);
        first.stop().await;
        second.stop().await;
    })
    .await;
}

#[tokio::test]
async fn the_fake_serves_the_extensions_as_their_crds_do() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = fake(tmp.path()).await;
    let http = reqwest::Client::new();
    let base = format!("{}/apis/extensions.agents.x-k8s.io/v1beta1", fake.url());
    let token = format!("Bearer {}", super::common::kube::TOKEN);
    let send = |method: reqwest::Method, url: String, body: Value, content_type: &'static str| {
        let (http, token) = (http.clone(), token.clone());
        async move {
            let answer = http
                .request(method, url)
                .header("authorization", token)
                .header("content-type", content_type)
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            let status = answer.status().as_u16();
            let text = answer.text().await.unwrap();
            (
                status,
                serde_json::from_str::<Value>(&text).unwrap_or(json!(text)),
            )
        }
    };
    let post = |resource: &str, body: Value| {
        send(
            reqwest::Method::POST,
            format!("{base}/namespaces/{NS}/{resource}"),
            body,
            "application/json",
        )
    };
    // Not installed: the group is not served.
    let (status, _) = post("sandboxclaims", json!({})).await;
    assert_eq!(status, 404);
    fake.install_extensions();
    let claim = json!({"apiVersion": "extensions.agents.x-k8s.io/v1beta1", "kind": "SandboxClaim",
        "metadata": {"name": "c"}, "spec": {"warmPoolRef": {"name": "p"}}});
    let mut unknown = claim.clone();
    unknown["spec"]["warmPool"] = json!({"name": "p"});
    let (status, body) = post("sandboxclaims", unknown).await;
    assert_eq!(
        (status, &body["message"]),
        (
            400,
            &json!("strict decoding error: unknown field \"spec.warmPool\"")
        )
    );
    let mut no_pool = claim.clone();
    no_pool["spec"] = json!({});
    let (status, body) = post("sandboxclaims", no_pool).await;
    assert_eq!(
        (status, &body["reason"]),
        (422, &json!("Invalid")),
        "{body}"
    );
    let mut bad_policy = claim.clone();
    bad_policy["spec"]["lifecycle"] = json!({"shutdownPolicy": "Later"});
    let (status, body) = post("sandboxclaims", bad_policy).await;
    assert_eq!(status, 422, "{body}");
    let pool = json!({"apiVersion": "extensions.agents.x-k8s.io/v1beta1",
        "kind": "SandboxWarmPool", "metadata": {"name": "p"},
        "spec": {"replicas": -1, "sandboxTemplateRef": {"name": "t"}}});
    let (status, body) = post("sandboxwarmpools", pool.clone()).await;
    assert_eq!(status, 422, "{body}");
    let mut pool = pool;
    pool["spec"]["replicas"] = json!(0);
    let (status, _) = post("sandboxwarmpools", pool.clone()).await;
    assert_eq!(status, 201);
    let (status, _) = post("sandboxwarmpools", pool).await;
    assert_eq!(status, 409);
    let template = json!({"apiVersion": "extensions.agents.x-k8s.io/v1beta1",
        "kind": "SandboxTemplate", "metadata": {"name": "t"},
        "spec": {"networkPolicyManagement": "Sometimes"}});
    let (status, body) = post("sandboxtemplates", template).await;
    assert_eq!(
        (status, &body["message"]),
        (
            422,
            &json!("SandboxTemplate \"t\" is invalid: spec.podTemplate: Required value")
        ),
        "{body}"
    );
    // Merge patches only.
    let url = format!("{base}/namespaces/{NS}/sandboxwarmpools/p");
    let (status, _) = send(
        reqwest::Method::PATCH,
        url.clone(),
        json!([{"op": "replace", "path": "/spec/replicas", "value": 2}]),
        "application/json-patch+json",
    )
    .await;
    assert_eq!(status, 415);
    let (status, body) = send(
        reqwest::Method::PATCH,
        url.clone(),
        json!({"spec": {"replicas": -2}}),
        "application/merge-patch+json",
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = send(
        reqwest::Method::PATCH,
        url,
        json!({"spec": {"replicas": 2}}),
        "application/merge-patch+json",
    )
    .await;
    assert_eq!((status, &body["spec"]["replicas"]), (200, &json!(2)));
    assert_eq!(body["metadata"]["generation"], 2);
}

#[tokio::test]
async fn a_claimed_sandbox_is_deleted_with_its_claim_even_by_a_provider_that_just_started() {
    use omoi_coordinator::sandbox::{Limits, Provider, SpawnRequest};
    use std::collections::BTreeMap;
    let tmp = tempfile::tempdir().unwrap();
    let (fake, kube) = cluster(tmp.path(), true).await;
    let pools = kube.warm_pools().expect("the extensions are used");
    // A pool whose workers have no coordinator to enroll with: they wait, running.
    let env = BTreeMap::from([
        (
            "OMOIOS_API_URL".to_string(),
            "http://127.0.0.1:9".to_string(),
        ),
        ("OMOI_STANDBY_POOL".to_string(), pools.pool_name("")),
        (
            "OMOI_STANDBY_ENROLL_TOKEN".to_string(),
            "omoi_r_x".to_string(),
        ),
    ]);
    pools.keep("", 1, &env).await.unwrap();
    eventually(WAIT, "a Ready Sandbox in the pool", || async {
        pool_sandboxes(&fake).iter().any(|s| {
            s["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
    })
    .await;
    let request = SpawnRequest {
        sandbox_id: "0b8f6c1e-1111-4c1e-9a9a-000000000001".into(),
        image: None,
        image_pull_secrets: Vec::new(),
        env: BTreeMap::new(),
        labels: BTreeMap::from([("omoi.owner".to_string(), "omoi".to_string())]),
        limits: Limits::default(),
        repo: None,
    };
    let handle = pools
        .claim(&request, Duration::from_secs(5))
        .await
        .unwrap()
        .expect("a warm Sandbox");
    pools.adopt(&handle, &request).await.unwrap();
    let claimed = fake.sandbox(NS, &handle.0).unwrap();
    assert_eq!(
        claimed["metadata"]["labels"]["omoi.sandbox"],
        json!(request.sandbox_id)
    );
    assert_eq!(
        claimed["metadata"]["ownerReferences"][0]["name"],
        json!(format!("omoi-{}-claim", request.sandbox_id))
    );
    // A provider that starts now has not seen the claim: it reads the Sandbox's owner.
    let fresh = provider(&fake, &tmp.path().join("data2"), sandbox_mode)
        .await
        .unwrap();
    fresh.terminate(&handle).await.unwrap();
    eventually(WAIT, "the claim and its Sandbox to go", || async {
        fake.names(NS, "sandboxclaims").is_empty() && fake.sandbox(NS, &handle.0).is_none()
    })
    .await;
    // The pool made another in its place, and the claim took nothing else.
    eventually(WAIT, "the pool to be refilled", || async {
        pool_sandboxes(&fake).len() == 1
    })
    .await;
    assert_eq!(fake.names(NS, "sandboxes").len(), 1);
}
