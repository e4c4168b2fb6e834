//! `omoi serve`: flags (with environment fallbacks), their validation, and the server's run loop
//! with shutdown on SIGTERM or Ctrl-C.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{CliError, CliResult};
use crate::sandbox::local::LocalProvider;
use crate::server::{AppState, Settings, serve};
use crate::store::Store;

/// The sandbox providers `--provider` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProviderKind {
    Local,
    Docker,
    Kubernetes,
    Daytona,
}

/// The flags of `omoi serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "OMOI_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// `sqlite://PATH` (created on first start) or `postgres://…`.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://omoi.db")]
    pub database: String,
    /// Where sandboxes run.
    #[arg(long, env = "OMOI_PROVIDER", value_enum, default_value = "local")]
    pub provider: ProviderKind,
    /// The `omoi-worker` binary for the local provider (default: next to `omoi`, then on PATH).
    #[arg(long, env = "OMOI_WORKER_BIN")]
    pub worker_bin: Option<PathBuf>,
    /// The URL sandboxes call back (default: http:// and the listen address).
    #[arg(long, env = "OMOI_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Sandbox work directories and logs.
    #[arg(long, env = "OMOI_DATA_DIR", default_value = "omoi-data")]
    pub data_dir: PathBuf,
    /// Workers send a heartbeat this often; three missed ones make a sandbox lost.
    #[arg(long, env = "OMOI_HEARTBEAT_SECS", default_value_t = 10)]
    pub heartbeat_secs: u64,
    /// How many times a lost sandbox is replaced before its spec fails.
    #[arg(long, env = "OMOI_MAX_RECOVERIES", default_value_t = 3)]
    pub max_recoveries: u32,
    /// Worker environment for every sandbox, `NAME=VALUE` (repeatable), e.g. `OMOI_LLM=anthropic`.
    #[arg(long = "worker-env", value_name = "NAME=VALUE")]
    pub worker_env: Vec<String>,
}

/// `omoi serve`'s settings, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub database: String,
    pub worker_bin: PathBuf,
    pub data_dir: PathBuf,
    pub settings: Settings,
}

impl ServeArgs {
    /// Checks the flags: the provider available, the address parsed, the worker found.
    pub fn validate(self) -> CliResult<ServeConfig> {
        match self.provider {
            ProviderKind::Local => {}
            other => {
                return Err(CliError::Config(format!(
                    "--provider {}: only the local provider is available in this build",
                    other
                        .to_possible_value()
                        .map_or_else(String::new, |v| v.get_name().to_string())
                )));
            }
        }
        let listen: SocketAddr = self.listen.parse().map_err(|e| {
            CliError::Config(format!("--listen {:?} is not an address: {e}", self.listen))
        })?;
        if self.heartbeat_secs == 0 {
            return Err(CliError::Config(
                "--heartbeat-secs must be at least 1".into(),
            ));
        }
        let worker_bin = locate_worker(self.worker_bin.as_deref()).ok_or_else(|| {
            CliError::Config(
                "omoi-worker not found next to omoi or on PATH; pass --worker-bin".into(),
            )
        })?;
        let public_url = match self.public_url {
            Some(url) if url.starts_with("http://") || url.starts_with("https://") => url,
            Some(url) => {
                return Err(CliError::Config(format!(
                    "--public-url {url:?} must start with http:// or https://"
                )));
            }
            None => format!("http://{listen}"),
        };
        let mut settings = Settings::new(public_url);
        settings.heartbeat_secs = self.heartbeat_secs;
        settings.max_recoveries = self.max_recoveries;
        settings.worker_env = parse_env_pairs(&self.worker_env, "--worker-env")?;
        Ok(ServeConfig {
            listen,
            database: self.database,
            worker_bin,
            data_dir: self.data_dir,
            settings,
        })
    }
}

/// Parses `NAME=VALUE` pairs.
pub fn parse_env_pairs(pairs: &[String], flag: &str) -> CliResult<BTreeMap<String, String>> {
    pairs
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
            _ => Err(CliError::Config(format!(
                "{flag} {pair:?}: expected NAME=VALUE"
            ))),
        })
        .collect()
}

/// The worker binary: `explicit` when it exists, else `omoi-worker` next to this executable,
/// else on PATH.
pub fn locate_worker(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(path) = explicit {
        return path.is_file().then(|| path.to_path_buf());
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("omoi-worker")));
    if let Some(path) = beside.filter(|p| p.is_file()) {
        return Some(path);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("omoi-worker"))
            .find(|p| p.is_file())
    })
}

/// Runs the server until SIGTERM or Ctrl-C.
pub async fn run(args: ServeArgs) -> CliResult<u8> {
    let config = args.validate()?;
    let store = Store::open(&config.database).await?;
    let provider = Arc::new(LocalProvider::new(
        config.worker_bin.clone(),
        &config.data_dir,
    ));
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| CliError::Io {
            context: format!("listening on {}", config.listen),
            source,
        })?;
    tracing::info!(
        listen = %config.listen,
        database = store.backend_name(),
        worker = %config.worker_bin.display(),
        "omoi coordinator serving"
    );
    let state = AppState::new(store.clone(), provider, config.settings);
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    serve(listener, state, shutdown)
        .await
        .map_err(|source| CliError::Io {
            context: "serving".into(),
            source,
        })?;
    store.close().await;
    Ok(0)
}

/// Cancels `shutdown` on SIGTERM or Ctrl-C.
async fn stop_on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
    tracing::info!("shutting down");
    shutdown.cancel();
    // A second signal while draining ends at once.
    let _ = tokio::time::timeout(Duration::from_secs(30), tokio::signal::ctrl_c()).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use pretty_assertions::assert_eq;

    use crate::cli::{Cli, Command};

    fn serve_args(extra: &[&str]) -> ServeArgs {
        let mut argv = vec!["omoi", "serve", "--worker-bin", "/bin/sh"];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Serve(args) => args,
            other => panic!("parsed {other:?}"),
        }
    }

    #[test]
    fn defaults_validate_into_a_config() {
        let config = serve_args(&["--worker-env", "OMOI_LLM=scripted"])
            .validate()
            .unwrap();
        let mut settings = Settings::new("http://127.0.0.1:8080");
        settings.worker_env = BTreeMap::from([("OMOI_LLM".into(), "scripted".into())]);
        assert_eq!(
            config,
            ServeConfig {
                listen: "127.0.0.1:8080".parse().unwrap(),
                database: "sqlite://omoi.db".into(),
                worker_bin: "/bin/sh".into(),
                data_dir: "omoi-data".into(),
                settings,
            }
        );
    }

    #[test]
    fn unavailable_providers_and_bad_flags_are_refused_with_a_reason() {
        let err = serve_args(&["--provider", "docker"])
            .validate()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "--provider docker: only the local provider is available in this build"
        );
        let err = serve_args(&["--listen", "nowhere"]).validate().unwrap_err();
        assert!(
            err.to_string()
                .starts_with("--listen \"nowhere\" is not an address")
        );
        let err = serve_args(&["--worker-env", "JUSTANAME"])
            .validate()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "--worker-env \"JUSTANAME\": expected NAME=VALUE"
        );
        let err = serve_args(&["--public-url", "example.com"])
            .validate()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "--public-url \"example.com\" must start with http:// or https://"
        );
        let err = ServeArgs {
            worker_bin: Some("/no/such/worker".into()),
            ..serve_args(&[])
        }
        .validate()
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "omoi-worker not found next to omoi or on PATH; pass --worker-bin"
        );
    }
}
