//! `omoi serve` closed to its local sandboxes: the server binary, started with its key, a model
//! key and a GitHub token in its environment and a project key on its command line, runs a spec
//! whose tasks' validation command (a process of the server's user) reads the server's
//! `/proc/<pid>/environ`, `cmdline` and `mem`; no secret is there, and the spec completes.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pretty_assertions::assert_eq;

use super::cli::stdout;
use super::worker_e2e::worker_bin;

/// The server's secrets: in its environment, and one on its command line.
const ENV_SECRETS: [(&str, &str); 3] = [
    (
        "OMOI_SECRET_KEY",
        "3f1e0c9b8a7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f",
    ),
    ("ANTHROPIC_API_KEY", "sk-ant-coordinator-0123456789abcdef"),
    ("GITHUB_TOKEN", "ghp_coordinator0123456789abcdef"),
];
const ARG_SECRET: (&str, &str) = ("ACME_DEPLOY_TOKEN", "acme-cmdline-0123456789abcdef");

/// The validation command: finds the server (the parent of its worker), writes what it can
/// read of it under `<dir>/<pid>/`, then runs the sample's tests.
fn probe(dir: &Path) -> String {
    format!(
        r#"c=$(cut -d' ' -f4 /proc/$PPID/stat)
d={dir}/$$
mkdir -p "$d"
cat /proc/$c/comm > "$d/comm"
tr '\0' '\n' < /proc/$c/environ > "$d/environ" 2> "$d/environ.err"
tr '\0' ' ' < /proc/$c/cmdline > "$d/cmdline" 2> "$d/cmdline.err"
head -c 64 /proc/$c/mem > "$d/mem" 2> "$d/mem.err"
sh tests/run.sh"#,
        dir = dir.display()
    )
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn omoi(args: &[&str], url: &str, token: Option<&str>) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_omoi"));
    command
        .args(args)
        .env("OMOI_SERVER", url)
        .env_remove("OMOI_TOKEN")
        .env_remove("DATABASE_URL");
    if let Some(token) = token {
        command.env("OMOI_TOKEN", token);
    }
    command.output().unwrap()
}

#[test]
fn a_validation_command_finds_no_secret_of_the_server_that_started_its_sandbox() {
    let tmp = tempfile::tempdir().unwrap();
    let repos = tmp.path().join("repos");
    let bare = omoi_tests::git::seed_bare_repo(
        &omoi_tests::fixtures::sample_repo(),
        &repos.join("greet.git"),
    );
    let probes = tmp.path().join("probes");
    std::fs::create_dir_all(&probes).unwrap();
    let database = format!("sqlite://{}?mode=rwc", tmp.path().join("omoi.db").display());
    let url = format!("http://127.0.0.1:{}", free_port());
    let script = omoi_tests::fixtures::sample_script();
    let arg_secret = format!("{}={}", ARG_SECRET.0, ARG_SECRET.1);
    let server = Command::new(env!("CARGO_BIN_EXE_omoi"))
        .args(["serve", "--listen", url.trim_start_matches("http://")])
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .arg("--worker-bin")
        .arg(worker_bin())
        .arg("--allow-local-repos")
        .arg(&repos)
        .args(["--heartbeat-secs", "1", "--worker-env", "OMOI_LLM=scripted"])
        .arg("--worker-env")
        .arg(format!("OMOI_SCRIPT={}", script.display()))
        .args(["--worker-env", "OMOI_RETRY_BASE_MS=10"])
        // A key taken from the server's environment, and one given on its command line.
        .args([
            "--worker-env",
            "ANTHROPIC_API_KEY",
            "--worker-env",
            &arg_secret,
        ])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", tmp.path())
        .env("DATABASE_URL", &database)
        .envs(ENV_SECRETS)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _server = Server(server);
    let started = Instant::now();
    while !healthy(url.trim_start_matches("http://")) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the server did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let token = stdout(&omoi(
        &["token", "create", "--user", "ada", "--database", &database],
        &url,
        None,
    ));
    let token = token.trim();
    let validation = probe(&probes);
    let project = stdout(&omoi(
        &[
            "project",
            "add",
            "--name",
            "greet",
            "--repo",
            &bare.display().to_string(),
            "--validation-command",
            &validation,
        ],
        &url,
        Some(token),
    ));
    let (title, _) = omoi_tests::fixtures::sample_request();
    let launched = omoi(
        &[
            "spec",
            "launch",
            &title,
            "--project",
            project.trim(),
            "--watch",
        ],
        &url,
        Some(token),
    );
    let progress = String::from_utf8_lossy(&launched.stderr).into_owned();
    stdout(&launched);
    assert!(progress.contains("completed: branch omoi/"), "{progress}");

    let runs: Vec<_> = std::fs::read_dir(&probes)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert!(runs.len() >= 4, "one probe per task: {runs:?}");
    let secrets: Vec<&str> = ENV_SECRETS
        .iter()
        .map(|(_, value)| *value)
        .chain([ARG_SECRET.1])
        .collect();
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|line| line.starts_with("Uid:") && line.split_whitespace().nth(2) == Some("0"));
    for run in runs {
        let read = |file: &str| std::fs::read_to_string(run.join(file)).unwrap_or_default();
        assert_eq!(read("comm"), "omoi\n", "the probe found the server");
        for file in ["environ", "environ.err", "cmdline", "cmdline.err", "mem"] {
            for secret in &secrets {
                assert!(!read(file).contains(secret), "{file}: {}", read(file));
            }
        }
        // The environment block: closed, or open and erased of every secret variable.
        let environ = read("environ");
        let mut names: Vec<&str> = environ
            .lines()
            .filter_map(|line| line.split_once('=').map(|(name, _)| name))
            .collect();
        names.sort();
        let refused = read("environ.err").contains("Permission denied");
        assert!(
            refused && names.is_empty() || !refused && names == ["HOME", "PATH"],
            "{names:?} {}",
            read("environ.err")
        );
        // The command line: the flags stay, the secret value went.
        let cmdline = read("cmdline");
        assert!(cmdline.contains(" serve "), "{cmdline}");
        assert!(
            cmdline.contains(&format!("{}= ", ARG_SECRET.0)),
            "{cmdline}"
        );
        // Its memory: closed to the user's processes (root keeps CAP_SYS_PTRACE).
        if !root {
            assert!(
                read("mem.err").contains("Permission denied"),
                "{}",
                read("mem.err")
            );
        }
    }
}

/// Whether `GET <address>/healthz` answers 200 (no runtime needed).
fn healthy(address: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(address) else {
        return false;
    };
    let asked = write!(
        stream,
        "GET /healthz HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    );
    let mut answer = String::new();
    asked.is_ok()
        && stream.read_to_string(&mut answer).is_ok()
        && answer.starts_with("HTTP/1.1 200")
}
