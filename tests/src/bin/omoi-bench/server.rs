//! The coordinator under test: `omoi serve` as its own process on a free loopback port, with a
//! scratch data directory and a user token, and what the benchmarks read about it from `/proc`.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::Result;
use crate::api::Api;

/// How to start the coordinator.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The `omoi` binary.
    pub omoi: PathBuf,
    /// `sqlite://…` or `postgres://…`; default a SQLite file in the scratch directory.
    pub database: Option<String>,
    /// The worker the local provider runs.
    pub worker_bin: PathBuf,
    /// `--worker-env NAME=VALUE` pairs.
    pub worker_env: Vec<(String, String)>,
    /// More flags of `omoi serve`.
    pub serve_args: Vec<String>,
    /// A command that runs the server, e.g. `valgrind --tool=callgrind` to profile it (it then
    /// gets more time to start and to stop).
    pub wrap: Vec<String>,
}

/// A running `omoi serve`; stopped (SIGTERM, then SIGKILL) when dropped.
#[derive(Debug)]
pub struct Coordinator {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// A user token (from `omoi token create`).
    pub token: String,
    /// `--data-dir`: the local provider's sandboxes live under `sandboxes/`.
    pub data_dir: PathBuf,
    dir: TempDir,
    /// How long start-up and shutdown may take.
    patience: Duration,
}

impl Coordinator {
    pub async fn start(options: &ServeOptions) -> Result<Coordinator> {
        let dir = tempfile::tempdir()?;
        let database = options
            .database
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("omoi.db").display()));
        let output = Command::new(&options.omoi)
            .args([
                "token",
                "create",
                "--user",
                "bench",
                "--database",
                &database,
            ])
            .stdin(Stdio::null())
            .output()?;
        if !output.status.success() {
            return Err(format!(
                "omoi token create failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            )
            .into());
        }
        let token = String::from_utf8(output.stdout)?.trim().to_string();
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let url = format!("http://127.0.0.1:{port}");
        let data_dir = dir.path().join("data");
        let log = File::create(dir.path().join("omoi.log"))?;
        let mut command = match options.wrap.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(&options.omoi);
                command
            }
            None => Command::new(&options.omoi),
        };
        command
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--database", &database])
            .arg("--worker-bin")
            .arg(&options.worker_bin)
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--heartbeat-secs", "600"])
            // The benchmarks' projects are the fixtures and repositories in temporary
            // directories.
            .arg("--allow-local-repos")
            .arg(std::env::temp_dir())
            .arg("--allow-local-repos")
            .arg(omoi_tests::fixtures::sample_repo())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        for (name, value) in &options.worker_env {
            command.arg("--worker-env").arg(format!("{name}={value}"));
        }
        command.args(&options.serve_args);
        let child = command.spawn()?;
        let mut coordinator = Coordinator {
            child,
            url,
            token,
            data_dir,
            dir,
            patience: Duration::from_secs(if options.wrap.is_empty() { 20 } else { 300 }),
        };
        coordinator.wait_healthy().await?;
        Ok(coordinator)
    }

    async fn wait_healthy(&mut self) -> Result<()> {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + self.patience;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(format!("omoi serve exited ({status}): {}", self.log_tail()).into());
            }
            if let Ok(response) = http.get(format!("{}/healthz", self.url)).send().await {
                if response.status().is_success() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(
                    format!("omoi serve did not become healthy: {}", self.log_tail()).into(),
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The end of the server's log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("omoi.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    /// A client with the user token.
    pub fn api(&self) -> Result<Api> {
        Api::new(&self.url, &self.token)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory now, in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> Result<u64> {
        status_field(self.pid(), "VmRSS:")
    }

    /// Peak resident memory so far, in KiB (`VmHWM`).
    pub fn peak_rss_kib(&self) -> Result<u64> {
        status_field(self.pid(), "VmHWM:")
    }

    /// CPU time (user + system) the server has used so far, in seconds.
    pub fn cpu_secs(&self) -> Result<f64> {
        cpu_secs(self.pid())
    }

    /// Stops the server: SIGTERM, then SIGKILL when it takes too long.
    pub async fn stop(mut self) -> Result<()> {
        self.terminate().await
    }

    async fn terminate(&mut self) -> Result<()> {
        if self.child.try_wait()?.is_some() {
            return Ok(());
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + self.patience / 4;
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `--wrap "COMMAND ARGS"`: the command that runs the server, split on whitespace.
pub fn wrap_flag(args: &[String]) -> Vec<String> {
    crate::flag(args, "--wrap")
        .map(|w| w.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// A `kB` field of `/proc/<pid>/status`.
fn status_field(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .ok_or_else(|| format!("no {field} in /proc/{pid}/status").into())
}

/// User + system CPU seconds of a process (`/proc/<pid>/stat` fields 14 and 15).
pub fn cpu_secs(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .ok_or("unreadable /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the command name: state is field 3, utime 14, stime 15.
    let ticks = |n: usize| -> Result<f64> {
        Ok(fields
            .get(n - 3)
            .ok_or("short /proc stat")?
            .parse::<f64>()?)
    };
    Ok((ticks(14)? + ticks(15)?) / clock_ticks())
}

/// `sysconf(_SC_CLK_TCK)`, read through `getconf` (100 on Linux unless told otherwise).
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// The `omoi` binary next to this one, unless `--omoi` names it.
pub fn omoi_binary(flag: Option<&str>) -> Result<PathBuf> {
    let path = match flag {
        Some(path) => PathBuf::from(path),
        None => std::env::current_exe()?
            .parent()
            .map(|dir| dir.join("omoi"))
            .ok_or("no directory of omoi-bench")?,
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!("{} not found; pass --omoi PATH", path.display()).into())
    }
}
