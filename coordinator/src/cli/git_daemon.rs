//! A `git daemon` for `omoi demo --provider docker`: it serves the demo's bare repository on the
//! sandbox network's gateway, pushes enabled, so that task containers (which see no path of the
//! host) clone from it and push to it, as they would to a hosted git service.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use super::{CliError, CliResult};

/// A running `git daemon`; killed when dropped.
#[derive(Debug)]
pub struct GitDaemon {
    child: Child,
    addr: SocketAddr,
}

impl GitDaemon {
    /// Serves the repositories under `base` on `ip` (a free port), and waits until it listens.
    pub async fn start(ip: IpAddr, base: &Path) -> CliResult<GitDaemon> {
        let io = |context: &str| {
            let context = context.to_string();
            move |source| CliError::Io { context, source }
        };
        let port = std::net::TcpListener::bind((ip, 0))
            .and_then(|l| l.local_addr())
            .map_err(io("finding a free port for git daemon"))?
            .port();
        let addr = SocketAddr::new(ip, port);
        // `git daemon` would run `git-daemon` as a child of its own, which killing `git` leaves
        // behind: start the daemon itself.
        let exec_path = Command::new("git")
            .arg("--exec-path")
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(io("running git --exec-path (the demo needs git on PATH)"))?;
        let program =
            Path::new(String::from_utf8_lossy(&exec_path.stdout).trim()).join("git-daemon");
        let child = Command::new(&program)
            .args(["--export-all", "--enable=receive-pack", "--reuseaddr"])
            .arg(format!("--listen={ip}"))
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .arg(base)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(io(&format!("starting {}", program.display())))?;
        let mut daemon = GitDaemon { child, addr };
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(daemon);
            }
            if let Ok(Some(status)) = daemon.child.try_wait() {
                return Err(CliError::Config(format!(
                    "git daemon exited at start ({status}); is git's daemon installed?"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(CliError::Config(format!(
            "git daemon did not listen on {addr} within 5 s"
        )))
    }

    /// The `git://` URL of a repository under the base directory, e.g. `greet.git`.
    pub fn url(&self, repository: &str) -> String {
        format!("git://{}/{repository}", self.addr)
    }

    /// Stops the daemon.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
