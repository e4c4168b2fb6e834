//! The `omoi:latest` image (`scripts/build-images.sh --with-coordinator`) as
//! `images/kubernetes/deployment.yaml` runs it: `omoi serve --provider kubernetes` as uid 1000 on
//! a read-only root filesystem with every capability dropped, SQLite on a volume at `/data`, a
//! cluster reached through a kubeconfig (the fake API server of `omoi_tests::fake_kube`, on the
//! host's network). `/healthz` and `/metrics` answer, and SIGTERM ends it cleanly.
//!
//! Without a Docker Engine or the image the test says so and passes, unless `CI=true` or
//! `OMOI_TEST_DOCKER=1`, where it fails (as the docker suites do).

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use omoi_tests::fake_kube::{FakeKube, FakeKubeConfig};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use super::common::kube::{NS, TOKEN};

/// The image the deployment names.
const IMAGE: &str = "omoi:latest";

/// How long the server may take to answer `/healthz`, and to stop after SIGTERM.
const WAIT: Duration = Duration::from_secs(60);

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running docker {args:?}: {e}"))
}

/// `None` (and a line saying why) when the Engine or the image is missing and the test may
/// skip; a failure when it may not.
fn engine_and_image_or_skip() -> Option<()> {
    let why = match Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", IMAGE])
        .output()
    {
        Err(e) => Some(format!("no docker command: {e}")),
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!(
            "no image {IMAGE} ({}); build it with scripts/build-images.sh --with-coordinator",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    };
    let required = std::env::var("CI").is_ok_and(|v| v == "true")
        || std::env::var("OMOI_TEST_DOCKER").is_ok_and(|v| v == "1");
    match why {
        None => Some(()),
        Some(why) if required => panic!("coordinator image test: {why}"),
        Some(why) => {
            eprintln!(
                "coordinator image test skipped: {why} (CI=true or OMOI_TEST_DOCKER=1 makes this \
                 fail)"
            );
            None
        }
    }
}

/// Removes the test's container and volume when it ends, passed or not.
struct Leftovers {
    container: String,
    volume: String,
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        let _ = docker(&["rm", "--force", "--volumes", &self.container]);
        let _ = docker(&["volume", "rm", "--force", &self.volume]);
    }
}

/// A port of 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn state(container: &str) -> Value {
    let out = docker(&["inspect", "--format", "{{json .State}}", container]);
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn logs(container: &str) -> String {
    let out = docker(&["logs", container]);
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn write_kubeconfig(fake: &FakeKube, dir: &Path) -> String {
    let path = dir.join("kubeconfig");
    fake.write_kubeconfig(&path, NS);
    // Read by uid 1000 in the container.
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn the_coordinator_image_serves_with_sqlite_on_a_volume_and_stops_on_sigterm() {
    if engine_and_image_or_skip().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let fake = FakeKube::start(FakeKubeConfig {
        namespaces: vec![NS.to_string()],
        token: TOKEN.to_string(),
        images: Default::default(),
        work_dir: tmp.path().join("kubelet"),
        image_files: Vec::new(),
    })
    .await;
    let kubeconfig = write_kubeconfig(&fake, tmp.path());
    let run = uuid::Uuid::new_v4().simple().to_string();
    let leftovers = Leftovers {
        container: format!("omoi-image-test-{run}"),
        volume: format!("omoi-image-test-{run}"),
    };
    let port = free_port();
    let listen = format!("--listen=127.0.0.1:{port}");
    let volume = format!("{}:/data", leftovers.volume);
    let kubeconfig_mount = format!("{kubeconfig}:/etc/omoi/kubeconfig:ro");
    // As the deployment runs it: its user, a read-only root, no capability, no new privileges;
    // the database and the data directory are the image's defaults, under /data.
    let started = docker(&[
        "run",
        "--detach",
        "--name",
        &leftovers.container,
        "--network",
        "host",
        "--read-only",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--volume",
        &volume,
        "--volume",
        &kubeconfig_mount,
        "--env",
        "KUBECONFIG=/etc/omoi/kubeconfig",
        "--env",
        "OMOI_REPLICA_ID=omoi-image-test",
        IMAGE,
        "serve",
        "--provider=kubernetes",
        &listen,
        "--public-url=http://omoi.omoi.svc:8080",
        "--namespace=omoi",
    ]);
    assert!(started.status.success(), "{started:?}");
    let container = leftovers.container.as_str();

    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + WAIT;
    let health = loop {
        if let Ok(answer) = http.get(format!("{base}/healthz")).send().await {
            break answer;
        }
        let now = state(container);
        assert!(
            now["Running"] == json!(true),
            "the container ended before it answered: {now}\n{}",
            logs(container)
        );
        assert!(
            Instant::now() < deadline,
            "no answer on /healthz: {}",
            logs(container)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(health.status().as_u16(), 200);
    assert_eq!(
        health.json::<Value>().await.unwrap(),
        json!({"status": "ok", "database": "sqlite", "provider": "kubernetes",
            "replica": "omoi-image-test"})
    );
    let metrics = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(metrics.status().as_u16(), 200);
    let text = metrics.text().await.unwrap();
    assert!(
        text.contains("omoi_replica_info{replica=\"omoi-image-test\"} 1"),
        "{text}"
    );
    // The provider found the cluster through the kubeconfig: it listed the namespace's pods.
    let requests = fake.requests();
    assert!(
        requests.get("list pods").is_some_and(|n| *n >= 1),
        "{requests:?}"
    );

    // `docker stop` sends SIGTERM and waits; a server that ignored it would be killed (137).
    let stopping = Instant::now();
    let stopped = docker(&["stop", "--time", "30", container]);
    assert!(stopped.status.success(), "{stopped:?}");
    let end = state(container);
    assert_eq!(
        (end["ExitCode"].clone(), end["OOMKilled"].clone()),
        (json!(0), json!(false)),
        "{}",
        logs(container)
    );
    assert!(stopping.elapsed() < WAIT, "{}", logs(container));
    let log = logs(container);
    assert!(log.contains("omoi coordinator serving"), "{log}");
    assert!(log.contains("shutting down"), "{log}");

    // The database is on the volume, as an SQLite file of the image's user.
    let copied = docker(&["cp", &format!("{container}:/data/omoi.db"), "-"]);
    assert!(copied.status.success(), "{copied:?}");
    let mut archive = tar::Archive::new(copied.stdout.as_slice());
    let mut entries = archive.entries().unwrap();
    let entry = entries.next().unwrap().unwrap();
    assert_eq!(
        (entry.header().uid().unwrap(), entry.header().gid().unwrap()),
        (1000, 1000)
    );
    let mut header = [0u8; 16];
    std::io::Read::read_exact(&mut { entry }, &mut header).unwrap();
    assert_eq!(&header, b"SQLite format 3\0");
    drop(leftovers);
}
