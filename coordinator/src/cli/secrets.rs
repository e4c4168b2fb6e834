//! The key `omoi serve` seals project secrets with: `--secret-key-file`, `OMOI_SECRET_KEY`, or
//! for the embedded SQLite default a key file generated in the data directory on first start;
//! the start check that the database's sealed secrets open with it; and the server's own
//! sealing ([`seal_server`]): once its flags are read, its secret variables and the secret values
//! of its command line are erased and it turns undumpable, so that the commands of local
//! sandboxes, which run as its user, find nothing in `/proc/<server>/`.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;

use super::{CliError, CliResult};
use crate::secret::{self, SecretKey};
use crate::store::Store;

/// Variables whose names look secret and that `omoi serve` keeps: paths the PostgreSQL client
/// reads again at every new connection.
const KEPT_PATHS: [&str; 3] = ["PGSSLKEY", "PGSSLCERT", "PGSSLROOTCERT"];

/// Flags whose value is a secret, erased from the command line whole.
const SECRET_FLAGS: [&str; 2] = ["--secret-key", "--daytona-api-key"];

/// Flags whose value may hold credentials (`postgres://user:password@…`): erased when it has
/// a user part.
const URL_FLAGS: [&str; 1] = ["--database"];

/// Flags whose `NAME=VALUE` value loses its value when the name looks secret.
const ENV_FLAGS: [&str; 1] = ["--worker-env"];

/// Closes `omoi serve` to the processes it starts (the local provider's sandboxes run as its
/// user, and their commands could read `/proc/<server>/environ`, `cmdline` and `mem`): erases
/// from its environment block every variable whose name looks secret ([`keeps_variable`]),
/// `DATABASE_URL` among them, and from its command line the secret values
/// ([`argument_kept`]), then makes it undumpable. Call it once the flags are read, before any
/// sandbox starts; a server that cannot do this does not start.
///
/// `PGPASSWORD` is refused: the PostgreSQL client reads it again at every new connection, so
/// erasing it would break the pool later, and keeping it would show it to every sandbox.
pub fn seal_server() -> CliResult<()> {
    if std::env::var_os("PGPASSWORD").is_some_and(|value| !value.is_empty()) {
        return Err(CliError::Config(
            "PGPASSWORD: give the password in --database / DATABASE_URL instead; the server \
             erases its secret variables once read (its local sandboxes run as its user), and \
             the PostgreSQL client would look for this one at every new connection"
                .into(),
        ));
    }
    let previous = std::cell::RefCell::new(Vec::new());
    let kept = |argument: &[u8]| {
        let kept = argument_kept(&previous.borrow(), argument);
        *previous.borrow_mut() = argument.to_vec();
        kept
    };
    omoi_seal::seal_with_arguments(keeps_variable, kept).map_err(|source| CliError::Io {
        context: "erasing the server's secrets from its environment and command line".into(),
        source,
    })
}

/// Whether `omoi serve` keeps the variable `name` in its environment block once started: not
/// when its name looks like a key, token, password… ([`secret::looks_secret`], or `PRIVATE`), nor
/// `DATABASE_URL`; paths the PostgreSQL client reads again are kept ([`KEPT_PATHS`]).
pub fn keeps_variable(name: &str) -> bool {
    if KEPT_PATHS.contains(&name) {
        return true;
    }
    let secret = secret::looks_secret(name)
        || name.to_ascii_uppercase().contains("PRIVATE")
        || name == "DATABASE_URL";
    !secret
}

/// How many leading bytes of `argument` stay on the command line, given the argument before it:
/// all, but for the value of `--secret-key` and `--daytona-api-key` (none of it), of `--database` when it holds a user
/// part (none), and of `--worker-env NAME=VALUE` when `NAME` looks secret (`NAME=` stays). The
/// `--flag=value` spelling keeps the flag.
pub fn argument_kept(previous: &[u8], argument: &[u8]) -> usize {
    let value_kept = |flag: &str, value: &[u8]| -> usize {
        let secret_url = URL_FLAGS.contains(&flag) && value.contains(&b'@');
        if SECRET_FLAGS.contains(&flag) || secret_url {
            0
        } else if ENV_FLAGS.contains(&flag) {
            match value.iter().position(|byte| *byte == b'=') {
                Some(at)
                    if std::str::from_utf8(&value[..at])
                        .is_ok_and(|name| !keeps_variable(name)) =>
                {
                    at + 1
                }
                _ => value.len(),
            }
        } else {
            value.len()
        }
    };
    let flags = SECRET_FLAGS.iter().chain(&URL_FLAGS).chain(&ENV_FLAGS);
    for flag in flags {
        if previous == flag.as_bytes() {
            return value_kept(flag, argument);
        }
        let joined = format!("{flag}=");
        if let Some(value) = argument.strip_prefix(joined.as_bytes()) {
            return joined.len() + value_kept(flag, value);
        }
    }
    argument.len()
}

/// The name of the key file generated in the data directory.
pub const GENERATED_KEY_FILE: &str = "secret.key";

/// Where the key comes from.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct SecretArgs {
    /// A file holding the key project secrets are sealed with (64 hex digits, e.g. from
    /// `openssl rand -hex 32`). With SQLite and no key given, one is generated in the data
    /// directory.
    #[arg(long, env = "OMOI_SECRET_KEY_FILE")]
    pub secret_key_file: Option<PathBuf>,
    /// The key itself (64 hex digits); set it in the environment, where other users' `ps`
    /// does not show it.
    #[arg(
        long = "secret-key",
        env = "OMOI_SECRET_KEY",
        hide_env_values = true,
        hide = true
    )]
    pub secret_key: Option<String>,
}

impl SecretArgs {
    /// The key: the file, else the variable, else (SQLite only) the data directory's generated
    /// key, made on first start with a warning. `None` for PostgreSQL without a key: projects
    /// with secrets are then refused.
    pub fn load(&self, database: &str, data_dir: &Path) -> CliResult<Option<SecretKey>> {
        if let Some(path) = &self.secret_key_file {
            return SecretKey::read(path)
                .map(Some)
                .map_err(|e| CliError::Config(format!("--secret-key-file: {e}")));
        }
        if let Some(text) = self.secret_key.as_deref().filter(|t| !t.is_empty()) {
            return SecretKey::parse(text, "OMOI_SECRET_KEY")
                .map(Some)
                .map_err(|e| CliError::Config(e.to_string()));
        }
        if !database.starts_with("sqlite:") {
            tracing::warn!(
                "no secret key (--secret-key-file or OMOI_SECRET_KEY): projects with secrets \
                 are refused"
            );
            return Ok(None);
        }
        let path = data_dir.join(GENERATED_KEY_FILE);
        if path.exists() {
            return SecretKey::read(&path)
                .map(Some)
                .map_err(|e| CliError::Config(e.to_string()));
        }
        let key = SecretKey::generate().map_err(|e| CliError::Config(e.to_string()))?;
        write_new_key(&path, &key)?;
        tracing::warn!(
            path = %path.display(),
            "generated the key project secrets are sealed with; keep it with the database \
             (without it, stored secrets cannot be read) or pass --secret-key-file"
        );
        Ok(Some(key))
    }
}

/// Writes a new key file readable by its owner only; never replaces one.
fn write_new_key(path: &Path, key: &SecretKey) -> CliResult<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| CliError::Io {
        context: format!("writing the secret key {}", path.display()),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    writeln!(file, "{}", key.to_hex()).map_err(io)?;
    file.sync_all().map_err(io)
}

/// Checks that the database's sealed secrets, if any, open with `key`: a database with secrets
/// and no key, or another key, does not start.
pub async fn check_store(store: &Store, key: Option<&SecretKey>) -> CliResult<()> {
    let Some(sealed) = store.any_sealed_secret().await? else {
        return Ok(());
    };
    match key {
        None => Err(CliError::Config(
            "the database holds sealed project secrets and no key was given: pass \
             --secret-key-file or set OMOI_SECRET_KEY"
                .into(),
        )),
        Some(key) => key.open(&sealed).map(|_| ()).map_err(|_| {
            CliError::Config(
                "the database's sealed project secrets do not open with the key given (another \
                 key?)"
                    .into(),
            )
        }),
    }
}

/// Seals the project secrets the database still holds in clear (stored before secrets were
/// sealed), and says so; without a key, warns that they stay in clear.
pub async fn seal_clear_secrets(store: &Store) -> CliResult<()> {
    let found = store.seal_clear_secrets().await?;
    if found.sealed > 0 {
        tracing::info!(
            projects = found.sealed,
            "sealed project secrets stored in clear before secrets were sealed"
        );
    }
    if found.left_in_clear > 0 {
        tracing::warn!(
            projects = found.left_in_clear,
            "projects hold secrets in clear and there is no key to seal them with: pass \
             --secret-key-file or set OMOI_SECRET_KEY"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn args(file: Option<PathBuf>, text: Option<&str>) -> SecretArgs {
        SecretArgs {
            secret_key_file: file,
            secret_key: text.map(str::to_string),
        }
    }

    #[test]
    fn the_server_erases_secret_variables_and_keeps_the_rest() {
        let erased = [
            "OMOI_SECRET_KEY",
            "OMOI_SECRET_KEY_FILE",
            "ANTHROPIC_API_KEY",
            "GITHUB_TOKEN",
            "OMOI_GIT_TOKEN",
            "DATABASE_URL",
            "ACME_PRIVATE_PEM",
            "db_password",
            "DAYTONA_API_KEY",
        ];
        let kept = [
            "PATH",
            "HOME",
            "LANG",
            "RUST_LOG",
            "OMOI_LISTEN",
            "PGSSLKEY",
            "PGHOST",
            "DAYTONA_API_URL",
            "DAYTONA_ORGANIZATION_ID",
        ];
        assert_eq!(erased.map(keeps_variable), [false; 9]);
        assert_eq!(kept.map(keeps_variable), [true; 9]);
    }

    #[test]
    fn secret_values_leave_the_command_line_and_the_flags_stay() {
        let argv: [&[u8]; 18] = [
            b"omoi",
            b"serve",
            b"--worker-env",
            b"ANTHROPIC_API_KEY=sk-ant-0123456789",
            b"--worker-env",
            b"OMOI_LLM=anthropic",
            b"--worker-env=ACME_TOKEN=t-0123456789",
            b"--worker-env",
            b"ACME_TOKEN",
            b"--secret-key",
            b"00ff",
            b"--secret-key=00ff",
            b"--daytona-api-key",
            b"dtn_0123456789",
            b"--database",
            b"postgres://omoi:pw@db/omoi",
            b"--database=sqlite://omoi.db",
            b"--listen",
        ];
        let mut previous: &[u8] = b"";
        let kept: Vec<String> = argv
            .iter()
            .map(|argument| {
                let kept = argument_kept(previous, argument);
                previous = argument;
                String::from_utf8_lossy(&argument[..kept]).into_owned()
            })
            .collect();
        assert_eq!(
            kept,
            [
                "omoi",
                "serve",
                "--worker-env",
                "ANTHROPIC_API_KEY=",
                "--worker-env",
                "OMOI_LLM=anthropic",
                "--worker-env=ACME_TOKEN=",
                "--worker-env",
                "ACME_TOKEN",
                "--secret-key",
                "",
                "--secret-key=",
                "--daytona-api-key",
                "",
                "--database",
                "",
                "--database=sqlite://omoi.db",
                "--listen",
            ]
        );
    }

    #[test]
    fn sqlite_without_a_key_generates_one_once_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let first = args(None, None)
            .load("sqlite://omoi.db", &data)
            .unwrap()
            .unwrap();
        let path = data.join(GENERATED_KEY_FILE);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = args(None, None)
            .load("sqlite://omoi.db", &data)
            .unwrap()
            .unwrap();
        assert_eq!(again.to_hex(), first.to_hex());
        assert!(
            args(None, None)
                .load("postgres://db/omoi", &dir.path().join("other"))
                .unwrap()
                .is_none()
        );
        let from_file = args(Some(path.clone()), None)
            .load("postgres://db/omoi", &data)
            .unwrap()
            .unwrap();
        assert_eq!(from_file.to_hex(), first.to_hex());
        let from_env = args(None, Some(&first.to_hex()))
            .load("postgres://db/omoi", &data)
            .unwrap()
            .unwrap();
        assert_eq!(from_env.to_hex(), first.to_hex());
    }

    #[test]
    fn a_bad_key_is_a_start_error_naming_its_origin() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, "not a key\n").unwrap();
        let err = args(Some(file.clone()), None)
            .load("sqlite://omoi.db", dir.path())
            .map(|_| ())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "--secret-key-file: {}: a secret key is 64 hex digits (e.g. from `openssl rand \
                 -hex 32`)",
                file.display()
            )
        );
        let err = args(None, Some("short"))
            .load("sqlite://omoi.db", dir.path())
            .map(|_| ())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "OMOI_SECRET_KEY: a secret key is 64 hex digits (e.g. from `openssl rand -hex 32`)"
        );
    }
}
