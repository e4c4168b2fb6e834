//! `POST /projects`, `GET /projects`, `GET /projects/{id}`, `PATCH /projects/{id}`.

use std::collections::{BTreeMap, BTreeSet};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::ApiJson;
use super::auth::CurrentUser;
use super::types::{CreateProject, UpdateProject};
use crate::app::{AppState, Settings};
use crate::error::{Error, Result};
use crate::launch::RESERVED_ENV;
use crate::model::{GitToken, Project, SecretValue};
use crate::repo::{check_repo_url, is_local};
use crate::secret::{check_length, looks_secret};
use crate::store::NewProject;
use crate::text::check_line;

pub(super) async fn create(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiJson(body): ApiJson<CreateProject>,
) -> Result<(StatusCode, Json<Project>)> {
    let new = validate(
        body,
        &state.settings,
        state.provider.name(),
        state.provider.clones_repository(),
    )?;
    let project = state.store.create_project(&user.id, new).await?;
    prepare_repository(&state, &project.repo_url);
    Ok((StatusCode::CREATED, Json(project)))
}

/// Readies a project's repository in the background where the worker does not clone it:
/// packed now, it is only uploaded into the project's first sandbox.
fn prepare_repository(state: &AppState, repo: &str) {
    if state.provider.clones_repository() {
        return;
    }
    let (provider, repo) = (state.provider.clone(), repo.to_string());
    tokio::spawn(async move {
        if let Err(e) = provider.prepare_repository(&repo).await {
            tracing::warn!(error = %e, "packing a project's repository failed");
        }
    });
}

pub(super) async fn list(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> Result<Json<Vec<Project>>> {
    Ok(Json(state.store.projects(&user.id).await?))
}

pub(super) async fn show(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<Project>> {
    state
        .store
        .project(&user.id, &id)
        .await?
        .map(Json)
        .ok_or_else(|| Error::NotFound(format!("no project {id}")))
}

/// Applies the change to the stored project and checks the result as a new project is checked.
pub(super) async fn update(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateProject>,
) -> Result<Json<Project>> {
    let not_found = || Error::NotFound(format!("no project {id}"));
    let current = state
        .store
        .project(&user.id, &id)
        .await?
        .ok_or_else(not_found)?;
    let previous_repo = current.repo_url.clone();
    let new = validate(
        merge(current, body)?,
        &state.settings,
        state.provider.name(),
        state.provider.clones_repository(),
    )?;
    let project = state
        .store
        .update_project(&user.id, &id, new)
        .await?
        .ok_or_else(not_found)?;
    if project.repo_url != previous_repo {
        prepare_repository(&state, &project.repo_url);
    }
    Ok(Json(project))
}

/// The project `current` with `change` applied, as the body that would create it. A secret
/// variable stays secret when it is set again; `null` removes a variable.
fn merge(current: Project, change: UpdateProject) -> Result<CreateProject> {
    if let Some(name) = change
        .secret_env
        .iter()
        .find(|name| !matches!(change.worker_env.get(*name), Some(Some(_))))
    {
        return Err(Error::Invalid(format!(
            "secret_env names {name}, which worker_env does not set"
        )));
    }
    let mut secret_env: BTreeSet<String> = current.worker_secrets.keys().cloned().collect();
    let mut worker_env = current.worker_env;
    worker_env.extend(
        current
            .worker_secrets
            .into_iter()
            .map(|(name, value)| (name, value.expose().to_string())),
    );
    for (name, value) in change.worker_env {
        match value {
            Some(value) => {
                worker_env.insert(name, value);
            }
            None => {
                worker_env.remove(&name);
                secret_env.remove(&name);
            }
        }
    }
    secret_env.extend(change.secret_env);
    Ok(CreateProject {
        name: change.name.unwrap_or(current.name),
        repo_url: change.repo_url.unwrap_or(current.repo_url),
        base_branch: Some(change.base_branch.unwrap_or(current.base_branch)),
        validation_command: change
            .validation_command
            .unwrap_or(current.validation_command),
        provider: Some(current.provider),
        image: change.image.unwrap_or(current.image),
        image_pull_secrets: change
            .image_pull_secrets
            .unwrap_or(current.image_pull_secrets),
        worker_env,
        secret_env: secret_env.into_iter().collect(),
        github_api_url: change.github_api_url.unwrap_or(current.github_api_url),
        git_token: change
            .git_token
            .unwrap_or_else(|| current.git_token.map(|t| t.expose().to_string())),
    })
}

/// Checks a new project: names present, the provider the one this server runs, no reserved
/// worker variables, and a git URL for a provider whose sandboxes clone the repository (they see
/// no path of this machine).
fn validate(
    body: CreateProject,
    settings: &Settings,
    server_provider: &str,
    clones: bool,
) -> Result<NewProject> {
    let name = body.name.trim().to_string();
    if name.is_empty() {
        return Err(Error::Invalid("name must not be empty".into()));
    }
    check_line("name", &name).map_err(Error::Invalid)?;
    let repo_url =
        check_repo_url(&body.repo_url, &settings.allow_local_repos).map_err(Error::Invalid)?;
    if clones && is_local(&repo_url) {
        return Err(Error::Invalid(format!(
            "repo_url {repo_url:?} is a path on the coordinator's machine, which {server_provider} \
             sandboxes cannot reach; name a git URL (https://, ssh://, git://, user@host:path)"
        )));
    }
    let base_branch = body
        .base_branch
        .map(|b| b.trim().to_string())
        .unwrap_or_else(|| "main".into());
    if base_branch.is_empty() {
        return Err(Error::Invalid("base_branch must not be empty".into()));
    }
    let provider = body.provider.unwrap_or_else(|| server_provider.to_string());
    if provider != server_provider {
        return Err(Error::Invalid(format!(
            "provider {provider:?} is not available here; this coordinator runs {server_provider:?}"
        )));
    }
    if let Some(name) = body
        .worker_env
        .keys()
        .find(|k| RESERVED_ENV.contains(&k.as_str()))
    {
        return Err(Error::Invalid(format!(
            "worker_env may not set {name}: the coordinator sets it"
        )));
    }
    if let Some(name) = body
        .worker_env
        .keys()
        .find(|k| k.is_empty() || k.contains(['=', '\0']))
    {
        return Err(Error::Invalid(format!(
            "worker_env name {name:?} is not a valid variable name"
        )));
    }
    let image_pull_secrets = check_pull_secrets(body.image_pull_secrets)?;
    let github_api_url = body
        .github_api_url
        .map(|url| url.trim().trim_end_matches('/').to_string())
        .filter(|url| !url.is_empty());
    if let Some(url) = &github_api_url {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(Error::Invalid(format!(
                "github_api_url {url:?} must start with https:// or http://"
            )));
        }
    }
    let git_token = body.git_token.filter(|t| !t.trim().is_empty());
    if git_token
        .as_deref()
        .is_some_and(|t| t.chars().any(char::is_control))
    {
        return Err(Error::Invalid(
            "git_token must not contain control characters".into(),
        ));
    }
    if let Some(name) = body
        .secret_env
        .iter()
        .find(|name| !body.worker_env.contains_key(*name))
    {
        return Err(Error::Invalid(format!(
            "secret_env names {name}, which worker_env does not set"
        )));
    }
    let secret_names: BTreeSet<&str> = body.secret_env.iter().map(String::as_str).collect();
    let (secret, plain): (BTreeMap<_, _>, BTreeMap<_, _>) = body
        .worker_env
        .into_iter()
        .partition(|(name, _)| looks_secret(name) || secret_names.contains(name.as_str()));
    if let Some(token) = &git_token {
        check_length("git_token", token).map_err(Error::Invalid)?;
    }
    for (name, value) in &secret {
        check_length(&format!("worker_env {name}"), value).map_err(Error::Invalid)?;
    }
    let worker_secrets = secret
        .into_iter()
        .map(|(name, value)| (name, SecretValue::new(value)))
        .collect();
    Ok(NewProject {
        name,
        repo_url,
        base_branch,
        validation_command: body.validation_command.filter(|c| !c.trim().is_empty()),
        provider,
        image: body.image,
        image_pull_secrets,
        worker_env: plain,
        worker_secrets,
        github_api_url,
        git_token: git_token.map(GitToken::new),
    })
}

/// The most image pull secrets a project names.
const MAX_PULL_SECRETS: usize = 16;

/// Image pull secrets: each the name of a Secret (a DNS subdomain), at most
/// [`MAX_PULL_SECRETS`], no repeats.
fn check_pull_secrets(names: Vec<String>) -> Result<Vec<String>> {
    if names.len() > MAX_PULL_SECRETS {
        return Err(Error::Invalid(format!(
            "image_pull_secrets names {} Secrets; at most {MAX_PULL_SECRETS}",
            names.len()
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    for name in &names {
        if !is_dns_subdomain(name) {
            return Err(Error::Invalid(format!(
                "image_pull_secrets: {name:?} is not a Secret name (a DNS subdomain: a-z, 0-9, \
                 '-' and '.', at most 253 characters)"
            )));
        }
        if !seen.insert(name.as_str()) {
            return Err(Error::Invalid(format!(
                "image_pull_secrets names {name:?} twice"
            )));
        }
    }
    Ok(names)
}

/// Whether `name` is a DNS subdomain (RFC 1123): dot-separated DNS labels, at most 253
/// characters.
fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253
        && name
            .split('.')
            .all(crate::sandbox::kubernetes::manifest::is_dns_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_secrets_are_secret_names_few_and_distinct() {
        assert_eq!(
            check_pull_secrets(vec!["regcred".into(), "registry.example-1".into()]).unwrap(),
            vec!["regcred".to_string(), "registry.example-1".to_string()]
        );
        for bad in ["", "Regcred", "a b", "-a", "a..b", "a_b", &"a".repeat(254)] {
            let error = check_pull_secrets(vec![bad.to_string()]).unwrap_err();
            assert!(
                error.to_string().contains("is not a Secret name"),
                "{bad:?}: {error}"
            );
        }
        assert_eq!(
            check_pull_secrets(vec!["a".into(), "a".into()])
                .unwrap_err()
                .to_string(),
            "image_pull_secrets names \"a\" twice"
        );
        let many: Vec<String> = (0..17).map(|i| format!("s{i}")).collect();
        assert_eq!(
            check_pull_secrets(many).unwrap_err().to_string(),
            "image_pull_secrets names 17 Secrets; at most 16"
        );
    }
}
