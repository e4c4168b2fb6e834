//! Users, bearer tokens (stored as sha256 hashes) and projects.

use std::collections::BTreeMap;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, json_optional_column, new_id, now_ms, to_json};
use crate::error::{Error, Result, corrupt};
use crate::model::{GitToken, Project, SecretValue, User, time_from_ms};
use crate::secret::{SecretKey, is_sealed};
use crate::token::{TokenKind, generate_token, hash_token};

/// A valid token as looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRecord {
    User(User),
    Sandbox { sandbox_id: String },
}

/// The body of a new project, validated by the API.
#[derive(Debug, Clone, PartialEq)]
pub struct NewProject {
    pub name: String,
    pub repo_url: String,
    pub base_branch: String,
    pub validation_command: Option<String>,
    pub provider: String,
    pub image: Option<String>,
    pub image_pull_secrets: Vec<String>,
    pub worker_env: BTreeMap<String, String>,
    /// Worker variables whose values are kept sealed and never served.
    pub worker_secrets: BTreeMap<String, SecretValue>,
    pub github_api_url: Option<String>,
    pub git_token: Option<GitToken>,
}

/// What a revocation removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    /// The user whose tokens they were.
    pub user_id: Option<String>,
    pub tokens: u64,
    /// Dashboard sessions and sign-in links ended.
    pub sessions: u64,
}

impl NewProject {
    /// The project `id`, created at `created_at`, that this body describes.
    fn into_project(self, id: String, created_at: chrono::DateTime<chrono::Utc>) -> Project {
        Project {
            id,
            name: self.name,
            repo_url: self.repo_url,
            base_branch: self.base_branch,
            validation_command: self.validation_command,
            provider: self.provider,
            image: self.image,
            image_pull_secrets: self.image_pull_secrets,
            worker_env: self.worker_env,
            secret_env: self.worker_secrets.keys().cloned().collect(),
            worker_secrets: self.worker_secrets,
            github_api_url: self.github_api_url,
            has_git_token: self.git_token.is_some(),
            git_token: self.git_token,
            created_at,
        }
    }
}

/// The stored form of a project's image pull secrets: NULL for none, else a JSON list.
fn pull_secrets_column(project: &Project) -> Result<Option<String>> {
    if project.image_pull_secrets.is_empty() {
        Ok(None)
    } else {
        Ok(Some(to_json(&project.image_pull_secrets)?))
    }
}

impl Store {
    /// Creates a user; 409 when the name is taken.
    pub async fn create_user(&self, name: &str) -> Result<User> {
        if self.user_by_name(name).await?.is_some() {
            return Err(Error::Conflict(format!("user {name:?} exists")));
        }
        let user = User {
            id: new_id(),
            name: name.to_string(),
        };
        sqlx::query("INSERT INTO users (id, name, created_ms) VALUES ($1, $2, $3)")
            .bind(&user.id)
            .bind(&user.name)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(user)
    }

    /// The user of that name, if any.
    pub async fn user_by_name(&self, name: &str) -> Result<Option<User>> {
        let row = sqlx::query("SELECT id, name FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| user_from_row(&r)).transpose()
    }

    /// A new bearer token for a user; only its hash is stored.
    pub async fn create_user_token(&self, user_id: &str) -> Result<String> {
        insert_token(&self.pool, TokenKind::User, Some(user_id), None, now_ms()).await
    }

    /// Revokes the user token `token` and ends every dashboard session and sign-in link of its
    /// user (a session does not record which token signed it in), in one transaction. `None`
    /// when `token` is no user token.
    pub async fn revoke_user_token(&self, token: &str) -> Result<Option<Revoked>> {
        let mut tx = self.pool.begin().await?;
        let row =
            sqlx::query("DELETE FROM tokens WHERE hash = $1 AND kind = 'user' RETURNING user_id")
                .bind(hash_token(token))
                .fetch_optional(&mut *tx)
                .await?;
        let Some(row) = row else { return Ok(None) };
        let user_id: Option<String> = row.try_get("user_id")?;
        let sessions = match &user_id {
            Some(user_id) => sqlx::query("DELETE FROM dashboard_sessions WHERE user_id = $1")
                .bind(user_id)
                .execute(&mut *tx)
                .await?
                .rows_affected(),
            None => 0,
        };
        tx.commit().await?;
        Ok(Some(Revoked {
            user_id,
            tokens: 1,
            sessions,
        }))
    }

    /// Revokes every token of the user `user_id` and ends its dashboard sessions and sign-in
    /// links, in one transaction.
    pub async fn revoke_user_tokens(&self, user_id: &str) -> Result<Revoked> {
        let mut tx = self.pool.begin().await?;
        let tokens = sqlx::query("DELETE FROM tokens WHERE kind = 'user' AND user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let sessions = sqlx::query("DELETE FROM dashboard_sessions WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(Revoked {
            user_id: Some(user_id.to_string()),
            tokens,
            sessions,
        })
    }

    /// What a presented token speaks for, when it exists and has not expired.
    pub async fn token(&self, token: &str) -> Result<Option<TokenRecord>> {
        let row = sqlx::query(
            "SELECT t.kind, t.sandbox_id, t.expires_ms, u.id AS user_id, u.name AS user_name
             FROM tokens t LEFT JOIN users u ON u.id = t.user_id
             WHERE t.hash = $1",
        )
        .bind(hash_token(token))
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let expires: Option<i64> = row.try_get("expires_ms")?;
        if expires.is_some_and(|at| at <= now_ms()) {
            return Ok(None);
        }
        let kind: String = row.try_get("kind")?;
        let record = match kind.as_str() {
            "user" => {
                let id: Option<String> = row.try_get("user_id")?;
                let name: Option<String> = row.try_get("user_name")?;
                match (id, name) {
                    (Some(id), Some(name)) => TokenRecord::User(User { id, name }),
                    _ => return Ok(None),
                }
            }
            "sandbox" => {
                let sandbox_id: Option<String> = row.try_get("sandbox_id")?;
                match sandbox_id {
                    Some(sandbox_id) => TokenRecord::Sandbox { sandbox_id },
                    None => return Ok(None),
                }
            }
            _ => return Ok(None),
        };
        Ok(Some(record))
    }

    /// Makes a sandbox's tokens invalid from `at_ms` on (now, or after a grace period).
    pub async fn expire_sandbox_tokens(&self, sandbox_id: &str, at_ms: i64) -> Result<()> {
        sqlx::query(
            "UPDATE tokens SET expires_ms = $2
             WHERE sandbox_id = $1 AND (expires_ms IS NULL OR expires_ms > $2)",
        )
        .bind(sandbox_id)
        .bind(at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Creates a project owned by `user_id`.
    pub async fn create_project(&self, user_id: &str, new: NewProject) -> Result<Project> {
        let created = now_ms();
        let project = new.into_project(new_id(), time_from_ms(created));
        let (sealed_env, sealed_token) = self.seal_secrets(&project)?;
        sqlx::query(
            "INSERT INTO projects (id, user_id, name, repo_url, base_branch, validation_command,
                                   provider, image, worker_env, created_ms, github_api_url,
                                   git_token, worker_secrets, image_pull_secrets)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(&project.id)
        .bind(user_id)
        .bind(&project.name)
        .bind(&project.repo_url)
        .bind(&project.base_branch)
        .bind(&project.validation_command)
        .bind(&project.provider)
        .bind(&project.image)
        .bind(to_json(&project.worker_env)?)
        .bind(created)
        .bind(&project.github_api_url)
        .bind(sealed_token)
        .bind(sealed_env)
        .bind(pull_secrets_column(&project)?)
        .execute(&self.pool)
        .await?;
        Ok(project)
    }

    /// Replaces what `new` holds of the project `id` of `user_id` (its id, owner and creation
    /// time stay) in one statement; `None` when the user has no such project.
    pub async fn update_project(
        &self,
        user_id: &str,
        id: &str,
        new: NewProject,
    ) -> Result<Option<Project>> {
        // Its creation time is the stored one, which the statement answers.
        let mut project = new.into_project(id.to_string(), time_from_ms(now_ms()));
        let (sealed_env, sealed_token) = self.seal_secrets(&project)?;
        let updated = sqlx::query(
            "UPDATE projects SET name = $1, repo_url = $2, base_branch = $3,
                    validation_command = $4, provider = $5, image = $6, worker_env = $7,
                    github_api_url = $8, git_token = $9, worker_secrets = $10,
                    image_pull_secrets = $11
             WHERE id = $12 AND user_id = $13
             RETURNING created_ms",
        )
        .bind(&project.name)
        .bind(&project.repo_url)
        .bind(&project.base_branch)
        .bind(&project.validation_command)
        .bind(&project.provider)
        .bind(&project.image)
        .bind(to_json(&project.worker_env)?)
        .bind(&project.github_api_url)
        .bind(sealed_token)
        .bind(sealed_env)
        .bind(pull_secrets_column(&project)?)
        .bind(&project.id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = updated else { return Ok(None) };
        project.created_at = time_from_ms(row.try_get("created_ms")?);
        Ok(Some(project))
    }

    /// The project's secret worker variables (JSON of sealed values) and git token, sealed; an
    /// error when there are secrets and no key.
    fn seal_secrets(&self, project: &Project) -> Result<(Option<String>, Option<String>)> {
        if project.worker_secrets.is_empty() && project.git_token.is_none() {
            return Ok((None, None));
        }
        let key = self.secrets.as_deref().ok_or_else(|| {
            Error::Invalid(
                "this coordinator has no secret key to store secrets with; its operator starts \
                 it with --secret-key-file or OMOI_SECRET_KEY"
                    .into(),
            )
        })?;
        let seal = |value: &str| key.seal(value).map_err(|e| Error::Internal(e.to_string()));
        let env = project
            .worker_secrets
            .iter()
            .map(|(name, value)| Ok((name.clone(), seal(value.expose())?)))
            .collect::<Result<BTreeMap<String, String>>>()?;
        let env = (!env.is_empty()).then(|| to_json(&env)).transpose()?;
        let token = project
            .git_token
            .as_ref()
            .map(|token| seal(token.expose()))
            .transpose()?;
        Ok((env, token))
    }

    /// One sealed secret the database holds, if it holds any: what the start checks the key
    /// against.
    pub async fn any_sealed_secret(&self) -> Result<Option<String>> {
        let row = sqlx::query(
            "SELECT git_token, worker_secrets FROM projects
             WHERE git_token LIKE 'enc:v1:%' OR worker_secrets IS NOT NULL LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        if let Some(token) = row.try_get::<Option<String>, _>("git_token")? {
            if is_sealed(&token) {
                return Ok(Some(token));
            }
        }
        let env: Option<BTreeMap<String, String>> = json_optional_column(&row, "worker_secrets")?;
        Ok(env.and_then(|env| env.into_values().next()))
    }

    /// The user's projects, oldest first.
    pub async fn projects(&self, user_id: &str) -> Result<Vec<Project>> {
        let rows = sqlx::query(&format!(
            "SELECT {PROJECT_COLUMNS} FROM projects WHERE user_id = $1 ORDER BY created_ms, id"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| project_from_row(r, self.secrets.as_deref()))
            .collect()
    }

    /// A project, if it exists and belongs to `user_id`.
    pub async fn project(&self, user_id: &str, id: &str) -> Result<Option<Project>> {
        let row = sqlx::query(&format!(
            "SELECT {PROJECT_COLUMNS} FROM projects WHERE id = $1 AND user_id = $2"
        ))
        .bind(id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| project_from_row(&r, self.secrets.as_deref()))
            .transpose()
    }

    /// A project by id, whoever owns it (for the coordinator's own use).
    pub async fn project_by_id(&self, id: &str) -> Result<Option<Project>> {
        let row = sqlx::query(&format!(
            "SELECT {PROJECT_COLUMNS} FROM projects WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| project_from_row(&r, self.secrets.as_deref()))
            .transpose()
    }
}

const PROJECT_COLUMNS: &str = "id, name, repo_url, base_branch, validation_command, provider, \
                               image, worker_env, created_ms, github_api_url, git_token, \
                               worker_secrets, image_pull_secrets";

fn user_from_row(row: &AnyRow) -> Result<User> {
    Ok(User {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
    })
}

/// A project as stored, its secrets opened with `key`. A git token stored in clear (before
/// secrets were sealed) is read as it is.
fn project_from_row(row: &AnyRow, key: Option<&SecretKey>) -> Result<Project> {
    let open = |sealed: String| -> Result<String> {
        let key = key.ok_or_else(|| {
            Error::Internal("the database holds sealed secrets and this store has no key".into())
        })?;
        key.open(&sealed).map_err(|e| corrupt("project secret", e))
    };
    let git_token = match row.try_get::<Option<String>, _>("git_token")? {
        Some(token) if is_sealed(&token) => Some(open(token)?),
        other => other,
    };
    let sealed_env: BTreeMap<String, String> =
        json_optional_column(row, "worker_secrets")?.unwrap_or_default();
    let worker_secrets = sealed_env
        .into_iter()
        .map(|(name, sealed)| Ok((name, SecretValue::new(open(sealed)?))))
        .collect::<Result<BTreeMap<String, SecretValue>>>()?;
    Ok(Project {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        repo_url: row.try_get("repo_url")?,
        base_branch: row.try_get("base_branch")?,
        validation_command: row.try_get("validation_command")?,
        provider: row.try_get("provider")?,
        image: row.try_get("image")?,
        image_pull_secrets: json_optional_column(row, "image_pull_secrets")?.unwrap_or_default(),
        worker_env: json_optional_column(row, "worker_env")?.unwrap_or_default(),
        secret_env: worker_secrets.keys().cloned().collect(),
        worker_secrets,
        github_api_url: row.try_get("github_api_url")?,
        has_git_token: git_token.is_some(),
        git_token: git_token.map(GitToken::new),
        created_at: time_from_ms(row.try_get("created_ms")?),
    })
}

/// Makes a new bearer token of `kind` and stores its hash; answers the token.
pub(super) async fn insert_token<'e, E>(
    executor: E,
    kind: TokenKind,
    user_id: Option<&str>,
    sandbox_id: Option<&str>,
    now: i64,
) -> Result<String>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let token = generate_token(kind)?;
    sqlx::query(
        "INSERT INTO tokens (id, hash, kind, user_id, sandbox_id, created_ms)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(new_id())
    .bind(hash_token(&token))
    .bind(kind.as_str())
    .bind(user_id)
    .bind(sandbox_id)
    .bind(now)
    .execute(executor)
    .await?;
    Ok(token)
}
