//! `omoi demo`: everything offline in one command — an embedded coordinator on SQLite in a
//! temporary directory, the local provider, the scripted model, a spec run end to end on the
//! sample repository, and what it produced.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use omoi_protocol::env;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::commands::{render_detail, split_request};
use super::serve::locate_worker;
use super::watch::watch;
use super::{CliError, CliResult, Client, DemoArgs};
use crate::api::types::{CreateProject, CreateSpec};
use crate::model::{Project, SpecDetail, SpecStatus, TaskStatus};
use crate::sandbox::local::LocalProvider;
use crate::server::{AppState, Settings, serve};
use crate::store::Store;

/// The fixtures the demo runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoFixtures {
    pub repo: PathBuf,
    pub script: PathBuf,
    pub request: PathBuf,
}

impl DemoFixtures {
    fn in_dir(dir: &Path) -> Option<DemoFixtures> {
        let fixtures = DemoFixtures {
            repo: dir.join("sample-repo"),
            script: dir.join("sample-script.json"),
            request: dir.join("sample-request.txt"),
        };
        (fixtures.repo.is_dir() && fixtures.script.is_file() && fixtures.request.is_file())
            .then_some(fixtures)
    }
}

/// Finds the fixtures: `explicit`, else `tests/fixtures` of the source tree this binary was built
/// from, else `tests/fixtures` above the executable (a binary inside a checkout's `target/`).
pub fn locate_fixtures(explicit: Option<&Path>) -> CliResult<DemoFixtures> {
    if let Some(dir) = explicit {
        return DemoFixtures::in_dir(dir).ok_or_else(|| {
            CliError::Config(format!(
                "{} lacks sample-repo/, sample-script.json or sample-request.txt",
                dir.display()
            ))
        });
    }
    let source_tree = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    if let Some(found) = DemoFixtures::in_dir(&source_tree) {
        return Ok(found);
    }
    let exe = std::env::current_exe().map_err(|source| CliError::Io {
        context: "finding this executable".into(),
        source,
    })?;
    exe.ancestors()
        .find_map(|dir| DemoFixtures::in_dir(&dir.join("tests/fixtures")))
        .ok_or_else(|| {
            CliError::Config(
                "the demo fixtures (tests/fixtures of the omoi repository) were not found; \
                 pass --fixtures DIR"
                    .into(),
            )
        })
}

/// The worker binary; under `cargo run` (which sets `CARGO`) a missing one is built first.
async fn worker_for_demo(explicit: Option<&Path>) -> CliResult<PathBuf> {
    if let Some(found) = locate_worker(explicit) {
        return Ok(found);
    }
    if explicit.is_none() {
        if let Some(cargo) = std::env::var_os("CARGO") {
            eprintln!("building omoi-worker (first run) …");
            let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
            let status = tokio::process::Command::new(cargo)
                .args(["build", "--quiet", "-p", "omoi-worker", "--manifest-path"])
                .arg(&manifest)
                .status()
                .await
                .map_err(|source| CliError::Io {
                    context: "running cargo build -p omoi-worker".into(),
                    source,
                })?;
            if status.success() {
                if let Some(found) = locate_worker(None) {
                    return Ok(found);
                }
            }
        }
    }
    Err(CliError::Config(
        "omoi-worker not found next to omoi or on PATH; build it with \
         `cargo build -p omoi-worker` or pass --worker-bin"
            .into(),
    ))
}

/// Runs the demo; exit code 0 when the spec completed.
pub async fn run(args: DemoArgs) -> CliResult<u8> {
    let fixtures = locate_fixtures(args.fixtures.as_deref())?;
    let worker = worker_for_demo(args.worker_bin.as_deref()).await?;
    let request = std::fs::read_to_string(&fixtures.request).map_err(|source| CliError::Io {
        context: format!("reading {}", fixtures.request.display()),
        source,
    })?;
    let dir = tempfile::Builder::new()
        .prefix("omoi-demo-")
        .tempdir()
        .map_err(|source| CliError::Io {
            context: "creating the demo directory".into(),
            source,
        })?;
    let root = dir.path().to_path_buf();
    let result = run_in(&root, &fixtures, &worker, &request).await;
    if args.keep {
        let kept = dir.keep();
        eprintln!("demo files kept in {}", kept.display());
    }
    result
}

async fn run_in(
    root: &Path,
    fixtures: &DemoFixtures,
    worker: &Path,
    request: &str,
) -> CliResult<u8> {
    let database = format!("sqlite://{}", root.join("omoi.db").display());
    let store = Store::open(&database).await?;
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|source| CliError::Io {
            context: "binding 127.0.0.1:0".into(),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| CliError::Io {
        context: "reading the bound address".into(),
        source,
    })?;
    let mut settings = Settings::new(format!("http://{addr}"));
    settings.heartbeat_secs = 2;
    settings.worker_env = BTreeMap::from([
        (env::OMOI_LLM.to_string(), "scripted".to_string()),
        (
            env::OMOI_SCRIPT.to_string(),
            fixtures.script.display().to_string(),
        ),
        (env::RETRY_BASE_MS.to_string(), "10".to_string()),
    ]);
    let provider = Arc::new(LocalProvider::new(worker.to_path_buf(), &root.join("data")));
    let state = AppState::new(store.clone(), provider, settings);
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(serve(listener, state, shutdown.clone()));

    let outcome = drive(&store, &addr.to_string(), fixtures, request).await;

    shutdown.cancel();
    let _ = server.await;
    store.close().await;
    outcome
}

async fn drive(store: &Store, addr: &str, fixtures: &DemoFixtures, request: &str) -> CliResult<u8> {
    let user = store.create_user("demo").await?;
    let token = store.create_user_token(&user.id).await?;
    let client = Client::new(&format!("http://{addr}"), Some(token))?;
    let project: Project = client
        .post(
            "/projects",
            &CreateProject {
                name: "sample".into(),
                repo_url: fixtures.repo.display().to_string(),
                base_branch: None,
                validation_command: Some("sh tests/run.sh".into()),
                provider: None,
                image: None,
                worker_env: BTreeMap::new(),
            },
        )
        .await?;
    let (title, description) = split_request(request);
    eprintln!("omoi demo: coordinator on http://{addr}, SQLite, local sandboxes, scripted model");
    eprintln!("request: {title}");
    let launched: SpecDetail = client
        .post(
            "/specs/launch",
            &CreateSpec {
                project_id: project.id,
                title,
                description,
                stop_after: None,
            },
        )
        .await?;
    let spec_id = launched.spec.id;
    let outcome = watch(&client, &spec_id).await?;
    let detail: SpecDetail = client.get(&format!("/specs/{spec_id}")).await?;
    println!();
    print!("{}", render_detail(&detail));
    if outcome.status == SpecStatus::Completed {
        let ready = detail
            .tasks
            .iter()
            .filter(|t| t.status == TaskStatus::Ready)
            .count();
        println!(
            "\nThe spec is complete and bridged into {} tasks; {ready} are ready to run.",
            detail.tasks.len()
        );
        Ok(0)
    } else {
        println!(
            "\nThe spec ended {}{}",
            outcome.status,
            outcome.error.map(|e| format!(": {e}")).unwrap_or_default()
        );
        Ok(1)
    }
}
