//! `omoi demo`: everything offline in one command — an embedded coordinator on SQLite in a
//! temporary directory, the local provider, the scripted model, a spec run end to end on a git
//! copy of the sample repository (spec, tasks, their commits on the spec branch), and what it
//! produced. `--provider docker` runs the sandboxes as containers instead; their git remote is then
//! served to them by a `git daemon` on the sandbox network's gateway.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use omoi_protocol::env;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::commands::{render_detail, split_request};
use super::git_daemon::GitDaemon;
use super::output;
use super::serve::{ProviderKind, locate_worker};
use super::watch::watch;
use super::{CliError, CliResult, Client, DemoArgs};
use crate::api::types::{CreateProject, CreateSpec};
use crate::app::{AppState, Settings};
use crate::model::{Project, SpecDetail, SpecStatus, spec_folder};
use crate::sandbox::docker::{DockerConfig, SandboxFile};
use crate::sandbox::{self, ProviderConfig};
use crate::server::serve;
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
            output::note(format_args!("building omoi-worker (first run) …"));
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

/// Where the demo's sandboxes run.
#[derive(Debug, Clone, PartialEq, Eq)]
enum DemoSandboxes {
    /// Child processes of this worker binary.
    Local(PathBuf),
    /// Containers of this image.
    Docker(String),
}

/// The script's name in a docker sandbox's `/work`.
const SCRIPT_IN_SANDBOX: &str = "sample-script.json";

/// Runs the demo; exit code 0 when the spec completed.
pub async fn run(args: DemoArgs) -> CliResult<u8> {
    let fixtures = locate_fixtures(args.fixtures.as_deref())?;
    let sandboxes = match args.provider {
        ProviderKind::Local => {
            DemoSandboxes::Local(worker_for_demo(args.worker_bin.as_deref()).await?)
        }
        ProviderKind::Docker => DemoSandboxes::Docker(args.image.clone()),
        ProviderKind::Kubernetes | ProviderKind::Daytona => {
            return Err(CliError::Config(
                "the demo runs its sandboxes with --provider local or docker".into(),
            ));
        }
    };
    if args.warm_pool > 64 {
        return Err(CliError::Config(format!(
            "--warm-pool {} is more than 64 standby sandboxes",
            args.warm_pool
        )));
    }
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
    let result = match seed_repository(&fixtures.repo, &root).await {
        Ok(repo) => {
            let options = DemoOptions {
                keep: args.keep,
                warm_pool: args.warm_pool,
            };
            run_in(&root, &fixtures, &repo, &sandboxes, &request, options).await
        }
        Err(e) => Err(e),
    };
    if args.keep {
        let kept = dir.keep();
        output::note(format_args!("demo files kept in {}", kept.display()));
    }
    result
}

/// The bare repository the demo's tasks push to: `<root>/greet.git`, whose `main` holds the
/// sample repository in one commit.
async fn seed_repository(sample: &Path, root: &Path) -> CliResult<PathBuf> {
    let seed = root.join("seed.git");
    let bare = root.join("greet.git");
    let (seed_dir, bare_dir, sample_dir) = (path_arg(&seed)?, path_arg(&bare)?, path_arg(sample)?);
    git(
        root,
        &[
            "init",
            "--quiet",
            "--bare",
            "--initial-branch=main",
            "--",
            &seed_dir,
        ],
    )
    .await?;
    // The sample directory is read as the work tree; nothing is written into it.
    let in_seed = ["--git-dir", &seed_dir, "--work-tree", &sample_dir];
    git(root, &[&in_seed[..], &["add", "--all"]].concat()).await?;
    git(
        root,
        &[&in_seed[..], &["commit", "--quiet", "-m", "initial"]].concat(),
    )
    .await?;
    git(
        root,
        &["clone", "--quiet", "--bare", "--", &seed_dir, &bare_dir],
    )
    .await?;
    Ok(bare)
}

fn path_arg(path: &Path) -> CliResult<String> {
    path.to_str()
        .map(str::to_string)
        .ok_or_else(|| CliError::Config(format!("{} is not a UTF-8 path", path.display())))
}

/// Runs git in `dir` with a fixed identity and without the user's or the system's config.
async fn git(dir: &Path, args: &[&str]) -> CliResult<String> {
    let output = tokio::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "omoi demo")
        .env("GIT_AUTHOR_EMAIL", "demo@localhost")
        .env("GIT_COMMITTER_NAME", "omoi demo")
        .env("GIT_COMMITTER_EMAIL", "demo@localhost")
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|source| CliError::Io {
            context: "running git (the demo needs git on PATH)".into(),
            source,
        })?;
    if !output.status.success() {
        return Err(CliError::Config(format!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// What the demo was asked beside its fixtures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DemoOptions {
    /// Keep serving after the spec ends.
    keep: bool,
    /// Standby sandboxes to keep ready (0: none).
    warm_pool: u32,
}

/// The longest the demo waits for its warm pool to fill.
const POOL_FILL_LIMIT: Duration = Duration::from_secs(60);

async fn run_in(
    root: &Path,
    fixtures: &DemoFixtures,
    repo: &Path,
    sandboxes: &DemoSandboxes,
    request: &str,
    options: DemoOptions,
) -> CliResult<u8> {
    let DemoOptions { keep, warm_pool } = options;
    let database = format!("sqlite://{}", root.join("omoi.db").display());
    let mut store = Store::open(&database).await?;
    if warm_pool > 0 {
        // Assignments are sealed in the database until their standby fetches them.
        store = store.with_secret_key(
            crate::secret::SecretKey::generate()
                .map_err(|e| CliError::Config(format!("generating the demo's key: {e}")))?,
        );
    }
    let (config, script) = match sandboxes {
        DemoSandboxes::Local(worker) => (
            ProviderConfig::Local {
                worker_bin: worker.clone(),
                data_dir: root.join("data"),
            },
            fixtures.script.display().to_string(),
        ),
        DemoSandboxes::Docker(image) => {
            let mut config = DockerConfig::new(root.join("data"));
            config.image = image.clone();
            config.files = vec![SandboxFile {
                source: fixtures.script.clone(),
                name: SCRIPT_IN_SANDBOX.into(),
            }];
            (
                ProviderConfig::Docker(config),
                format!("/work/{SCRIPT_IN_SANDBOX}"),
            )
        }
    };
    let provider = sandbox::build(&config).await.map_err(crate::Error::from)?;
    // Sandboxes on another network (docker) reach the coordinator and the git remote at that
    // network's gateway: both listen there.
    let remote_host = provider.sandbox_host();
    let ip = remote_host.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let git_daemon = match remote_host {
        Some(_) => Some(GitDaemon::start(ip, root).await?),
        None => None,
    };
    let repo_url = match (&git_daemon, repo.file_name()) {
        (Some(daemon), Some(name)) => daemon.url(&name.to_string_lossy()),
        _ => path_arg(repo)?,
    };
    let listener = TcpListener::bind((ip, 0))
        .await
        .map_err(|source| CliError::Io {
            context: format!("binding {ip}:0"),
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
        (env::OMOI_SCRIPT.to_string(), script),
        (env::RETRY_BASE_MS.to_string(), "10".to_string()),
    ]);
    settings.task_policy.retry_base = Duration::from_millis(200);
    // The demo's own sample is the one local repository it allows.
    settings.allow_local_repos = super::serve::canonical_dirs(&[repo.to_path_buf()])?;
    settings.scheduler_interval = Duration::from_millis(200);
    settings.warm_pool = warm_pool;
    let state = AppState::new(store.clone(), provider.clone(), settings);
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(serve(listener, state.clone(), shutdown.clone()));
    if warm_pool > 0 {
        let began = std::time::Instant::now();
        while state.metrics.pool_idle() < u64::from(warm_pool) {
            if began.elapsed() > POOL_FILL_LIMIT {
                output::note(format_args!(
                    "omoi demo: the warm pool did not fill within {} s; launching anyway",
                    POOL_FILL_LIMIT.as_secs()
                ));
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        output::note(format_args!(
            "omoi demo: {} standby sandboxes ready in {} ms",
            state.metrics.pool_idle(),
            began.elapsed().as_millis()
        ));
    }

    let label = match sandboxes {
        DemoSandboxes::Local(_) => "local sandboxes".to_string(),
        DemoSandboxes::Docker(image) => format!("docker sandboxes ({image})"),
    };
    let outcome = drive(
        &store,
        &addr.to_string(),
        root,
        repo,
        &repo_url,
        &label,
        request,
    )
    .await;

    if keep {
        output::note(format_args!(
            "\nomoi demo: the dashboard keeps serving at http://{addr}/ until Ctrl-C or SIGTERM"
        ));
        let stop = shutdown.clone();
        tokio::select! {
            () = super::serve::stop_on_signal(stop) => {}
            () = shutdown.cancelled() => {}
        }
    }
    shutdown.cancel();
    let _ = server.await;
    store.close().await;
    match provider.close(Duration::from_secs(30)).await {
        Ok(left) if left.is_empty() => {}
        Ok(left) => output::note(format_args!("sandboxes still running: {}", left.join(", "))),
        Err(e) => output::note(format_args!(
            "cleaning up the {} sandboxes: {e}",
            provider.name()
        )),
    }
    if let Some(daemon) = git_daemon {
        daemon.stop().await;
    }
    outcome
}

async fn drive(
    store: &Store,
    addr: &str,
    root: &Path,
    repo: &Path,
    repo_url: &str,
    sandboxes: &str,
    request: &str,
) -> CliResult<u8> {
    let user = store.create_user("demo").await?;
    let token = store.create_user_token(&user.id).await?;
    let link = crate::dashboard::sign_in_link(store, &format!("http://{addr}"), &user.id).await?;
    let client = Client::new(&format!("http://{addr}"), Some(token))?;
    let project: Project = client
        .post(
            "/projects",
            &CreateProject {
                name: "sample".into(),
                repo_url: repo_url.to_string(),
                base_branch: None,
                validation_command: Some("sh tests/run.sh".into()),
                provider: None,
                image: None,
                image_pull_secrets: Vec::new(),
                worker_env: BTreeMap::new(),
                secret_env: Vec::new(),
                github_api_url: None,
                git_token: None,
            },
        )
        .await?;
    let (title, description) = split_request(request);
    output::note(format_args!(
        "omoi demo: coordinator on http://{addr}, SQLite, {sandboxes}, scripted model"
    ));
    output::note(format_args!(
        "dashboard: http://{addr}/ (sign in once with {link})"
    ));
    output::note(format_args!("request: {title}"));
    let launched_at = std::time::Instant::now();
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
    output::note(format_args!(
        "omoi demo: launch → {} in {:.2} s",
        outcome.status,
        launched_at.elapsed().as_secs_f64()
    ));
    let detail: SpecDetail = client.get(&format!("/specs/{spec_id}")).await?;
    output::line("")?;
    output::text(render_detail(&detail))?;
    match (&outcome.status, &detail.spec.branch) {
        (SpecStatus::Completed, Some(branch)) => {
            let log = git(
                repo,
                &[
                    "log",
                    "--reverse",
                    "--format=%h %s",
                    &format!("main..{branch}"),
                ],
            )
            .await?;
            output::line(format_args!("\nCommits on {branch}:"))?;
            for line in log.lines() {
                output::line(format_args!("  {line}"))?;
            }
            let tests = validate_tip(root, repo, branch).await?;
            let folder = spec_folder(&detail.spec.title, &detail.spec.id);
            let files = ["requirements.md", "design.md", "tasks.md"];
            if files
                .iter()
                .all(|f| root.join(TIP).join(&folder).join(f).is_file())
            {
                output::line(format_args!(
                    "\nThe spec is recorded on the branch in {folder}/ ({}).",
                    files.join(", ")
                ))?;
            } else {
                output::line(format_args!(
                    "\nThe spec is not recorded on the branch ({folder}/ is missing)."
                ))?;
            }
            output::line(format_args!(
                "\nThe spec is complete: {} tasks landed on branch {branch} of {}, and \
                 `sh tests/run.sh` passes at its tip ({tests} checks).",
                detail.tasks.len(),
                repo.display()
            ))?;
            Ok(0)
        }
        _ => {
            output::line(format_args!(
                "\nThe spec ended {}{}",
                outcome.status,
                outcome.error.map(|e| format!(": {e}")).unwrap_or_default()
            ))?;
            Ok(1)
        }
    }
}

/// Where [`validate_tip`] checks out the branch, under the demo's directory.
const TIP: &str = "tip";

/// Checks out the tip of `branch` and runs the validation command there; returns how many
/// checks passed.
async fn validate_tip(root: &Path, repo: &Path, branch: &str) -> CliResult<usize> {
    let checkout = root.join(TIP);
    let (repo_arg, checkout_arg) = (path_arg(repo)?, path_arg(&checkout)?);
    git(
        root,
        &[
            "clone",
            "--quiet",
            "--branch",
            branch,
            "--",
            &repo_arg,
            &checkout_arg,
        ],
    )
    .await?;
    let output = tokio::process::Command::new("sh")
        .arg("tests/run.sh")
        .current_dir(&checkout)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|source| CliError::Io {
            context: "running sh tests/run.sh".into(),
            source,
        })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(CliError::Config(format!(
            "sh tests/run.sh fails at the tip of {branch}:\n{stdout}"
        )));
    }
    Ok(stdout.lines().filter(|l| l.starts_with("ok:")).count())
}
