//! Which repositories a project may name: git URLs (https, ssh, git, scp-like `user@host:path`)
//! for every provider, and local paths only under the directories the operator allowed.

use std::path::{Path, PathBuf};

/// Checks a project's `repo_url` and answers the form to store, or the reason it is refused.
///
/// A local path (or `file://` URL) is resolved (symlinks included) and must lie under one of
/// `allowed`, which are canonical directories; it is stored resolved. Nothing that git could read
/// as an option (a leading `-`) or as a remote helper (`transport::address`) passes.
pub fn check_repo_url(url: &str, allowed: &[PathBuf]) -> Result<String, String> {
    let url = url.trim();
    if url.is_empty() {
        return Err("repo_url must not be empty".into());
    }
    if url.starts_with('-') {
        return Err("repo_url must not begin with '-'".into());
    }
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("repo_url must not contain spaces or control characters".into());
    }
    if let Some(path) = url.strip_prefix("file://") {
        return check_local(path, allowed).map(|p| format!("file://{}", p.display()));
    }
    if let Some((scheme, rest)) = url.split_once("://") {
        return check_remote(scheme, rest).map(|()| url.to_string());
    }
    if url.starts_with('/') || url.starts_with('.') || url.starts_with('~') {
        return check_local(url, allowed).map(|p| p.display().to_string());
    }
    check_scp_like(url).map(|()| url.to_string())
}

/// Whether a stored `repo_url` names a path of this machine (a `file://` URL or a path) rather
/// than a remote a sandbox elsewhere can fetch.
pub fn is_local(url: &str) -> bool {
    let url = url.trim();
    url.starts_with("file://")
        || url.starts_with('/')
        || url.starts_with('.')
        || url.starts_with('~')
}

/// The schemes a remote repository may use.
const SCHEMES: [&str; 4] = ["https", "http", "ssh", "git"];

fn check_remote(scheme: &str, rest: &str) -> Result<(), String> {
    if !SCHEMES.contains(&scheme) {
        return Err(format!(
            "repo_url scheme {scheme:?} is not allowed (use https, http, ssh or git)"
        ));
    }
    let authority = rest.split('/').next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    if host.is_empty() || host.starts_with('-') {
        return Err("repo_url has no host".into());
    }
    if rest.len() <= authority.len() + 1 {
        return Err("repo_url names no repository on its host".into());
    }
    Ok(())
}

/// `[user@]host:path`, the short form of an ssh URL.
fn check_scp_like(url: &str) -> Result<(), String> {
    let refused = || {
        format!(
            "repo_url {url:?} is not a git URL (https://, ssh://, git://, user@host:path) \
             nor an absolute path"
        )
    };
    let (login, path) = url.split_once(':').ok_or_else(refused)?;
    let host = login.rsplit('@').next().unwrap_or_default();
    let host_ok = !host.is_empty()
        && !host.starts_with('-')
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    let user_ok = login.len() == host.len()
        || login[..login.len() - host.len() - 1]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    // `transport::address` runs a remote helper; refuse it with the empty path it leaves.
    if !host_ok || !user_ok || path.is_empty() || path.starts_with(':') || login.contains('/') {
        return Err(refused());
    }
    Ok(())
}

fn check_local(path: &str, allowed: &[PathBuf]) -> Result<PathBuf, String> {
    let path = Path::new(path);
    if !path.is_absolute() {
        return Err(format!(
            "repo_url {} must be an absolute path",
            path.display()
        ));
    }
    if allowed.is_empty() {
        return Err(format!(
            "repo_url {}: local repositories are not allowed on this server \
             (its operator allows them with --allow-local-repos DIR)",
            path.display()
        ));
    }
    let resolved =
        std::fs::canonicalize(path).map_err(|e| format!("repo_url {}: {e}", path.display()))?;
    if allowed.iter().any(|dir| resolved.starts_with(dir)) {
        Ok(resolved)
    } else {
        Err(format!(
            "repo_url {} is outside the directories this server allows local repositories in",
            path.display()
        ))
    }
}

/// `text` with the credential of `repo`'s URL (the password of its user part, or the whole user
/// part when it has no password: a token given as the user) replaced by `***`, for messages that
/// name the repository.
pub fn redact_credential(repo: &str, text: &str) -> String {
    match credential_of(repo) {
        Some(secret) if !secret.is_empty() => text.replace(secret, "***"),
        _ => text.to_string(),
    }
}

fn credential_of(repo: &str) -> Option<&str> {
    let (_, rest) = repo.split_once("://")?;
    let authority = rest.split('/').next()?;
    let (user, _) = authority.rsplit_once('@')?;
    Some(user.split_once(':').map_or(user, |(_, password)| password))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_credential_in_a_repository_url_is_hidden_in_messages_that_name_it() {
        use super::redact_credential as redact;
        let as_user = "https://tok-123@example.invalid/o/r.git";
        assert_eq!(
            redact(as_user, &format!("cloning {as_user}")),
            "cloning https://***@example.invalid/o/r.git"
        );
        let with_password = "http://ada:s3cret@h/r.git";
        assert_eq!(
            redact(with_password, &format!("git clone {with_password} failed")),
            "git clone http://ada:***@h/r.git failed"
        );
        assert_eq!(redact("/srv/r.git", "text"), "text");
        assert_eq!(
            redact("git@host:o/r.git", "git@host:o/r.git"),
            "git@host:o/r.git"
        );
        assert_eq!(
            redact("https://@h/r.git", "https://@h/r.git"),
            "https://@h/r.git"
        );
    }

    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn paths_are_local_and_git_urls_are_not() {
        for url in ["/srv/repo", "file:///srv/repo", "./repo", "~/repo"] {
            assert!(is_local(url), "{url}");
        }
        for url in [
            "git://h/r.git",
            "https://h/r.git",
            "git@h:r.git",
            "ssh://h/r",
        ] {
            assert!(!is_local(url), "{url}");
        }
    }

    #[test]
    fn remote_urls_pass_as_they_are() {
        for url in [
            "https://github.com/o/r.git",
            "http://git.example:8080/r",
            "ssh://git@host:22/o/r.git",
            "ssh://[::1]/o/r.git",
            "git://127.0.0.1:9418/sample",
            "git@github.com:o/r.git",
            "host.example:o/r",
        ] {
            assert_eq!(check_repo_url(url, &[]), Ok(url.to_string()), "{url}");
        }
    }

    #[test]
    fn refused_urls_say_why() {
        let cases = [
            ("  ", "repo_url must not be empty"),
            (
                "--upload-pack=touch /tmp/x",
                "repo_url must not begin with '-'",
            ),
            ("-oProxyCommand=x", "repo_url must not begin with '-'"),
            (
                "https://h/r\u{1b}[2J",
                "repo_url must not contain spaces or control characters",
            ),
            (
                "ftp://h/r",
                "repo_url scheme \"ftp\" is not allowed (use https, http, ssh or git)",
            ),
            ("https:///r", "repo_url has no host"),
            ("ssh://-oProxyCommand=x/r", "repo_url has no host"),
            (
                "https://github.com/",
                "repo_url names no repository on its host",
            ),
            (
                "ext::sh -c touch% /tmp/pwned",
                "repo_url must not contain spaces or control characters",
            ),
            (
                "ext::sh",
                "repo_url \"ext::sh\" is not a git URL (https://, ssh://, git://, user@host:path) \
                 nor an absolute path",
            ),
            (
                "garbage",
                "repo_url \"garbage\" is not a git URL (https://, ssh://, git://, user@host:path) \
                 nor an absolute path",
            ),
            (
                "/etc",
                "repo_url /etc: local repositories are not allowed on this server \
                 (its operator allows them with --allow-local-repos DIR)",
            ),
            (
                "file:///etc",
                "repo_url /etc: local repositories are not allowed on this server \
                 (its operator allows them with --allow-local-repos DIR)",
            ),
            ("./r", "repo_url ./r must be an absolute path"),
        ];
        for (url, reason) in cases {
            assert_eq!(check_repo_url(url, &[]), Err(reason.to_string()), "{url}");
        }
    }

    #[test]
    fn local_paths_only_under_an_allowed_directory_after_symlinks() {
        let root = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(root.path()).unwrap();
        let allowed = root.join("repos");
        let repo = allowed.join("sample");
        std::fs::create_dir_all(&repo).unwrap();
        std::fs::create_dir_all(root.join("private")).unwrap();
        std::os::unix::fs::symlink(root.join("private"), allowed.join("escape")).unwrap();
        let dirs = [allowed.clone()];

        assert_eq!(
            check_repo_url(&repo.display().to_string(), &dirs),
            Ok(repo.display().to_string())
        );
        assert_eq!(
            check_repo_url(&format!("file://{}/../sample", repo.display()), &dirs),
            Ok(format!("file://{}", repo.display()))
        );
        let escape = allowed.join("escape");
        assert_eq!(
            check_repo_url(&escape.display().to_string(), &dirs),
            Err(format!(
                "repo_url {} is outside the directories this server allows local repositories in",
                escape.display()
            ))
        );
        let dotdot = format!("{}/../private", allowed.display());
        assert_eq!(
            check_repo_url(&dotdot, &dirs),
            Err(format!(
                "repo_url {dotdot} is outside the directories this server allows local \
                 repositories in"
            ))
        );
        let missing = allowed.join("missing");
        assert_eq!(
            check_repo_url(&missing.display().to_string(), &dirs),
            Err(format!(
                "repo_url {}: No such file or directory (os error 2)",
                missing.display()
            ))
        );
    }
}
