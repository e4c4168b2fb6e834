//! Sealing what a database holds in clear from before project secrets were sealed: git tokens,
//! and worker variables named like a key, a token or a password that were kept among the plain
//! `worker_env`. Run at every start; a database with nothing in clear is left as it is.

use std::collections::BTreeMap;

use sqlx::Row;

use super::{Store, json_optional_column, to_json};
use crate::error::{Error, Result};
use crate::secret::{SecretKey, is_sealed, looks_secret};

/// What the start found in clear and did about it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClearSecrets {
    /// Projects whose secrets were sealed now.
    pub sealed: u64,
    /// Projects holding secrets in clear that stay so: no key to seal them with.
    pub left_in_clear: u64,
}

/// A project's secret columns as stored.
struct Stored {
    id: String,
    worker_env: String,
    worker_secrets: Option<String>,
    git_token: Option<String>,
}

/// The same columns with every secret sealed, when anything was in clear.
struct Sealed {
    worker_env: String,
    worker_secrets: Option<String>,
    git_token: Option<String>,
}

impl Store {
    /// Seals every project secret the database holds in clear: a git token, a value of
    /// `worker_secrets`, a `worker_env` variable whose name looks secret (moved to
    /// `worker_secrets`). Each project is rewritten only if its columns are still as read (a
    /// compare-and-set), so replicas starting together seal it once and a concurrent change is
    /// not lost. Without a key, nothing is changed and the projects are counted.
    pub async fn seal_clear_secrets(&self) -> Result<ClearSecrets> {
        let rows = sqlx::query("SELECT id, worker_env, worker_secrets, git_token FROM projects")
            .fetch_all(&self.pool)
            .await?;
        let mut found = ClearSecrets::default();
        for row in &rows {
            let stored = Stored {
                id: row.try_get("id")?,
                worker_env: row.try_get("worker_env")?,
                worker_secrets: row.try_get("worker_secrets")?,
                git_token: row.try_get("git_token")?,
            };
            let key = self.secrets.as_deref();
            let Some(sealed) = seal_project(row, &stored, key)? else {
                continue;
            };
            let Some(sealed) = sealed else {
                found.left_in_clear += 1;
                continue;
            };
            let updated = sqlx::query(
                "UPDATE projects SET worker_env = $2, worker_secrets = $3, git_token = $4
                 WHERE id = $1 AND worker_env = $5 AND COALESCE(worker_secrets, '') = $6
                   AND COALESCE(git_token, '') = $7",
            )
            .bind(&stored.id)
            .bind(&sealed.worker_env)
            .bind(&sealed.worker_secrets)
            .bind(&sealed.git_token)
            .bind(&stored.worker_env)
            .bind(stored.worker_secrets.clone().unwrap_or_default())
            .bind(stored.git_token.clone().unwrap_or_default())
            .execute(&self.pool)
            .await?
            .rows_affected();
            found.sealed += updated;
        }
        Ok(found)
    }
}

/// `None` when the project holds nothing in clear; `Some(None)` when it does and there is no
/// key; else its columns sealed.
fn seal_project(
    row: &sqlx::any::AnyRow,
    stored: &Stored,
    key: Option<&SecretKey>,
) -> Result<Option<Option<Sealed>>> {
    let env: BTreeMap<String, String> =
        json_optional_column(row, "worker_env")?.unwrap_or_default();
    let secrets: BTreeMap<String, String> =
        json_optional_column(row, "worker_secrets")?.unwrap_or_default();
    let (moved, plain): (BTreeMap<_, _>, BTreeMap<_, _>) =
        env.into_iter().partition(|(name, _)| looks_secret(name));
    let token_clear = stored.git_token.as_deref().is_some_and(|t| !is_sealed(t));
    let secrets_clear = secrets.values().any(|value| !is_sealed(value));
    if moved.is_empty() && !token_clear && !secrets_clear {
        return Ok(None);
    }
    let Some(key) = key else {
        return Ok(Some(None));
    };
    let seal = |value: &str| -> Result<String> {
        if is_sealed(value) {
            return Ok(value.to_string());
        }
        key.seal(value).map_err(|e| Error::Internal(e.to_string()))
    };
    let mut sealed_secrets = BTreeMap::new();
    // A name in both keeps its `worker_secrets` value: that is the one workers were given.
    for (name, value) in moved.into_iter().chain(secrets) {
        sealed_secrets.insert(name, seal(&value)?);
    }
    let git_token = stored.git_token.as_deref().map(seal).transpose()?;
    Ok(Some(Some(Sealed {
        worker_env: to_json(&plain)?,
        worker_secrets: Some(to_json(&sealed_secrets)?),
        git_token,
    })))
}
