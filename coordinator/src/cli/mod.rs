//! The `omoi` command line: `serve`, the client commands (`token`, `project`, `spec`) and `demo`.

mod client;
mod commands;
mod demo;
mod git_daemon;
mod limits;
mod output;
mod scheduling;
mod secrets;
mod serve;
mod watch;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use omoi_protocol::phase::Phase;

pub use client::Client;
pub use output::note;
pub use serve::{DockerArgs, ProviderKind, ServeArgs, ServeConfig, UrlSource, locate_worker};
pub use watch::{Outcome, watch};

/// What a command failed at.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A flag or setting is wrong.
    #[error("{0}")]
    Config(String),
    /// The server answered an error.
    #[error("{message} ({status} {code})")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// The server could not be reached or answered something unreadable.
    #[error("{0}")]
    Http(#[from] reqwest::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    /// Stdout was closed by its reader (`| head`): the command ends quietly.
    #[error("stdout closed")]
    ClosedPipe,
    /// The embedded coordinator failed.
    #[error(transparent)]
    Coordinator(#[from] crate::Error),
}

/// The result of CLI commands.
pub type CliResult<T> = std::result::Result<T, CliError>;

/// `omoi`: spec-driven development with autonomous coding agents.
#[derive(Debug, Parser)]
#[command(name = "omoi", version, about)]
pub struct Cli {
    /// The coordinator's base URL.
    #[arg(
        long,
        env = "OMOI_SERVER",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub server: String,
    /// The bearer token (from `omoi token create`).
    #[arg(long, env = "OMOI_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs the coordinator.
    Serve(Box<ServeArgs>),
    /// Manages API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Manages projects.
    #[command(subcommand)]
    Project(ProjectCommand),
    /// Launches and follows specs.
    #[command(subcommand)]
    Spec(SpecCommand),
    /// Runs a whole spec offline on the sample repository with the scripted model.
    Demo(DemoArgs),
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Creates a user (when missing) and prints a new token for it. Works on the database
    /// directly, so run it where the server's database is.
    Create {
        /// The user's name.
        #[arg(long, default_value = "admin")]
        user: String,
        #[arg(long, env = "DATABASE_URL", default_value = "sqlite://omoi.db")]
        database: String,
    },
    /// Revokes user tokens and ends the user's dashboard sessions: every token of `--user`, or
    /// the one token read from stdin (`--stdin`, so that it stays off the command line). Works on
    /// the database directly; a revoked token is refused by every replica at its next request.
    #[command(group(clap::ArgGroup::new("which").required(true).args(["user", "stdin"])))]
    Revoke {
        /// Every token of this user.
        #[arg(long)]
        user: Option<String>,
        /// The token to revoke, on the first line of stdin.
        #[arg(long)]
        stdin: bool,
        #[arg(long, env = "DATABASE_URL", default_value = "sqlite://omoi.db")]
        database: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProjectCommand {
    /// Adds a project.
    Add(Box<ProjectAddArgs>),
    /// Lists your projects.
    List,
    /// Shows a project as JSON (secret values are never shown, only their names).
    Show { id: String },
    /// Changes a project: what is not given stays; sandboxes already running keep what they
    /// started with.
    Update(Box<ProjectUpdateArgs>),
}

#[derive(Debug, Args)]
pub struct ProjectUpdateArgs {
    /// The project's id.
    pub id: String,
    #[arg(long)]
    pub name: Option<String>,
    /// Git URL or local path of the repository.
    #[arg(long)]
    pub repo: Option<String>,
    #[arg(long)]
    pub base_branch: Option<String>,
    #[arg(long, conflicts_with = "no_validation_command")]
    pub validation_command: Option<String>,
    /// Tasks commit without a validation command.
    #[arg(long)]
    pub no_validation_command: bool,
    #[arg(long, conflicts_with = "default_image")]
    pub image: Option<String>,
    /// The server's image.
    #[arg(long)]
    pub default_image: bool,
    /// Replaces the project's image pull secrets (repeatable).
    #[arg(
        long = "image-pull-secret",
        value_name = "NAME",
        conflicts_with = "default_image_pull_secrets"
    )]
    pub image_pull_secrets: Vec<String>,
    /// The server's `--image-pull-secret`s.
    #[arg(long)]
    pub default_image_pull_secrets: bool,
    /// Sets a worker variable, `NAME=VALUE` or a bare `NAME` taken from here (repeatable).
    #[arg(long = "env", value_name = "NAME[=VALUE]")]
    pub env: Vec<String>,
    /// Sets a secret worker variable, as `--env` (repeatable).
    #[arg(long = "secret-env", value_name = "NAME[=VALUE]")]
    pub secret_env: Vec<String>,
    /// Removes a worker variable (repeatable).
    #[arg(long = "unset-env", value_name = "NAME")]
    pub unset_env: Vec<String>,
    #[arg(long, conflicts_with = "no_github_api_url")]
    pub github_api_url: Option<String>,
    /// The GitHub API is derived from the repository URL.
    #[arg(long)]
    pub no_github_api_url: bool,
    /// A new token to push and open pull requests with (or `OMOI_GIT_TOKEN`).
    #[arg(
        long,
        env = "OMOI_GIT_TOKEN",
        hide_env_values = true,
        conflicts_with = "no_git_token"
    )]
    pub git_token: Option<String>,
    /// Removes the project's git token.
    #[arg(long)]
    pub no_git_token: bool,
}

#[derive(Debug, Args)]
pub struct ProjectAddArgs {
    /// A name for the project.
    #[arg(long)]
    pub name: String,
    /// Git URL or local path of the repository.
    #[arg(long)]
    pub repo: String,
    #[arg(long, default_value = "main")]
    pub base_branch: String,
    /// Shell command that must pass before a task commits, e.g. `cargo test`.
    #[arg(long)]
    pub validation_command: Option<String>,
    /// The image of this project's sandboxes (docker, kubernetes); default the server's.
    #[arg(long)]
    pub image: Option<String>,
    /// Kubernetes: a Secret of the sandboxes' namespace to pull the image with (repeatable);
    /// default the server's `--image-pull-secret`s.
    #[arg(long = "image-pull-secret", value_name = "NAME")]
    pub image_pull_secrets: Vec<String>,
    /// Worker environment for this project's sandboxes, `NAME=VALUE` (repeatable); a bare
    /// `NAME` takes the value of that variable here.
    #[arg(long = "env", value_name = "NAME[=VALUE]")]
    pub env: Vec<String>,
    /// A secret worker variable, `NAME=VALUE` (repeatable): stored sealed, never shown again; a
    /// bare `NAME` takes the value of that variable here, off the command line. Names like
    /// `*_KEY` or `*_TOKEN` given with `--env` are secret too.
    #[arg(long = "secret-env", value_name = "NAME[=VALUE]")]
    pub secret_env: Vec<String>,
    /// The GitHub REST API of the repository's host, when its URL does not say it (GitHub
    /// Enterprise: `https://HOST/api/v3`).
    #[arg(long)]
    pub github_api_url: Option<String>,
    /// The token tasks push with and pull requests are opened with.
    #[arg(long, env = "OMOI_GIT_TOKEN", hide_env_values = true)]
    pub git_token: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum SpecCommand {
    /// Creates a spec from a feature request and starts it.
    Launch {
        /// The feature request: the first line is the title.
        request: String,
        #[arg(long)]
        project: String,
        /// Stop after this phase (for approval); `omoi spec resume` goes on.
        #[arg(long)]
        stop_after: Option<Phase>,
        /// Follow the progress until the spec ends; the exit code tells the outcome.
        #[arg(long)]
        watch: bool,
    },
    /// Lists your specs.
    List,
    /// Shows a spec: phases, scores, tasks (state, attempts, commit), sandboxes, and the pull
    /// request or branch at the end.
    Show { id: String },
    /// Prints a spec's events as JSON lines.
    Events {
        id: String,
        /// Start after this cursor.
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// Keep streaming live events.
        #[arg(long)]
        follow: bool,
    },
    /// Cancels a spec.
    Cancel { id: String },
    /// Continues a spec stopped after a phase (`--stop-after`).
    Approve {
        id: String,
        /// Stop again after this later phase.
        #[arg(long)]
        stop_after: Option<Phase>,
        #[arg(long)]
        watch: bool,
    },
    /// Replaces the output of the phase a spec stopped after with the JSON document in FILE
    /// (the phase's output, as `omoi-worker schema PHASE` describes it); the evaluator judges it
    /// first, and the spec goes on from it when approved.
    Edit {
        id: String,
        phase: Phase,
        file: PathBuf,
    },
    /// Runs a spec again from the phase after its last checkpoint.
    Resume {
        id: String,
        #[arg(long)]
        stop_after: Option<Phase>,
        #[arg(long)]
        watch: bool,
    },
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The directory with `sample-repo/`, `sample-script.json` and `sample-request.txt`
    /// (default: the repository's `tests/fixtures`).
    #[arg(long)]
    pub fixtures: Option<PathBuf>,
    /// The worker binary (default: next to `omoi`, then on PATH; under `cargo run` it is built).
    #[arg(long, env = "OMOI_WORKER_BIN")]
    pub worker_bin: Option<PathBuf>,
    /// Keep serving the dashboard after the spec ends (until Ctrl-C), then keep the demo's
    /// directory (database, sandbox workspaces and logs) and print where it is.
    #[arg(long)]
    pub keep: bool,
    /// Where the sandboxes run: `local` processes, or `docker` containers of `--image` (build it
    /// with scripts/build-images.sh).
    #[arg(long, value_enum, default_value = "local")]
    pub provider: ProviderKind,
    /// Docker: the sandbox image.
    #[arg(long, default_value = crate::sandbox::docker::DEFAULT_IMAGE)]
    pub image: String,
    /// Keep this many standby sandboxes ready (0 to 64) and launch once they are: the spec and
    /// its tasks then take running sandboxes instead of starting them.
    #[arg(long, default_value_t = 0)]
    pub warm_pool: u32,
}

/// Runs a parsed command line; returns the process exit code.
pub async fn run(cli: Cli) -> CliResult<u8> {
    match cli.command {
        Command::Serve(args) => serve::run(*args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Token(TokenCommand::Create { user, database }) => {
            commands::token_create(&database, &user).await
        }
        Command::Token(TokenCommand::Revoke {
            user,
            stdin: _,
            database,
        }) => commands::token_revoke(&database, user.as_deref()).await,
        Command::Project(command) => {
            let client = Client::new(&cli.server, cli.token)?;
            commands::project(&client, command).await
        }
        Command::Spec(command) => {
            let client = Client::new(&cli.server, cli.token)?;
            commands::spec(&client, command).await
        }
    }
}
