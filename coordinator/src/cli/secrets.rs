//! The key `omoi serve` seals project secrets with: `--secret-key-file`, `OMOI_SECRET_KEY`, or
//! for the embedded SQLite default a key file generated in the data directory on first start;
//! and the start check that the database's sealed secrets open with it.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;

use super::{CliError, CliResult};
use crate::secret::SecretKey;
use crate::store::Store;

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
