//! Packed repositories kept between sandboxes, so that a claimed standby (or a cold start) only
//! waits for the upload, not for a clone and a tar.
//!
//! - **Key.** A git repository's archive is kept with the state of its refs when it was packed:
//!   the digest of `git ls-remote --symref` (every ref and the commit it points at, and where
//!   `HEAD` points). Every use asks the repository for its refs again (one `ls-remote`, a few
//!   milliseconds for a local repository) and takes the archive only if they are the same, so a
//!   commit pushed before a launch is always in its sandbox. An archive is kept only if the refs
//!   did not move while it was packed (otherwise it may hold a newer state than its key says).
//!   A plain directory has no such cheap check: it is packed on every use, never kept.
//! - **Bounds.** At most [`CacheLimits::entries`] repositories and [`CacheLimits::bytes`] of
//!   archives; the least recently used go first, and an archive larger than the byte bound is
//!   used once and not kept. One archive per repository: a newer state replaces the older.
//! - **Refresh.** [`RepoCache::refresh`] repacks the recently used repositories whose refs
//!   moved, so the next sandbox finds the new state packed; the docker provider calls it every
//!   [`REFRESH_EVERY`].
//! - **Failures.** A repository that cannot be listed or cloned is an error naming it and what
//!   git said (a URL's credential, `https://user:secret@host/…`, shown as `***`); the cache keeps
//!   what it held.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::process::Command;
use tokio::time::Instant;

use super::archive::{RepoArchive, pack_repository};
use crate::repo::redact_credential as redact;
use crate::sandbox::local::is_plain_directory;

/// How often the provider looks for moved refs of recently used repositories.
pub const REFRESH_EVERY: Duration = Duration::from_secs(10);
/// A repository not used for this long is not refreshed (it stays kept until evicted).
const RECENT: Duration = Duration::from_secs(300);

/// How much the cache keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    /// The most repositories kept.
    pub entries: usize,
    /// The most bytes of archives kept, all repositories together.
    pub bytes: u64,
}

impl Default for CacheLimits {
    /// 16 repositories, 512 MiB.
    fn default() -> CacheLimits {
        CacheLimits {
            entries: 16,
            bytes: 512 * 1024 * 1024,
        }
    }
}

/// The state of a repository's refs: a digest of `git ls-remote --symref`.
type Refs = [u8; 32];

/// Packed repositories by repository (as [`crate::sandbox::SpawnRequest::repo`] names it).
#[derive(Debug)]
pub struct RepoCache {
    limits: CacheLimits,
    entries: Mutex<HashMap<String, Entry>>,
    /// One packing at a time: two sandboxes of one new state wait for one clone, not two.
    packing: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
struct Entry {
    refs: Refs,
    archive: Arc<RepoArchive>,
    used: Instant,
}

impl RepoCache {
    pub fn new(limits: CacheLimits) -> RepoCache {
        RepoCache {
            limits,
            entries: Mutex::new(HashMap::new()),
            packing: tokio::sync::Mutex::new(()),
        }
    }

    /// The packed state of `repo` as it is now: kept, or packed (and kept) on a miss.
    pub async fn get(&self, repo: &str) -> Result<Arc<RepoArchive>, String> {
        self.get_inner(repo).await.map_err(|e| redact(repo, &e))
    }

    async fn get_inner(&self, repo: &str) -> Result<Arc<RepoArchive>, String> {
        if is_plain_directory(repo) {
            return pack_repository(repo).await.map(Arc::new);
        }
        let refs = refs_of(repo).await?;
        if let Some(archive) = self.lookup(repo, &refs) {
            return Ok(archive);
        }
        self.pack(repo, refs).await
    }

    /// Readies `repo` before a sandbox is claimed for it: a git repository is packed (or found
    /// packed) as [`RepoCache::get`] does; a plain directory, packed on every use anyway, is
    /// only checked to be there (packing it here would pack it twice).
    pub async fn prepare(&self, repo: &str) -> Result<(), String> {
        if is_plain_directory(repo) {
            return Ok(());
        }
        self.get(repo).await.map(drop)
    }

    /// How many repositories and bytes are kept.
    pub fn size(&self) -> (usize, u64) {
        let entries = self.lock();
        (
            entries.len(),
            entries.values().map(|e| e.archive.len()).sum(),
        )
    }

    /// Repacks each repository used in the last five minutes whose refs moved since it was
    /// packed. A repository that cannot be listed any more is dropped.
    pub async fn refresh(&self) {
        let recent: Vec<(String, Refs)> = self
            .lock()
            .iter()
            .filter(|(_, e)| e.used.elapsed() < RECENT)
            .map(|(repo, e)| (repo.clone(), e.refs))
            .collect();
        for (repo, kept) in recent {
            match refs_of(&repo).await {
                Ok(refs) if refs == kept => {}
                Ok(refs) => {
                    if let Err(e) = self.pack(&repo, refs).await {
                        let error = redact(&repo, &e);
                        tracing::warn!(%error, "repacking a repository failed");
                    }
                }
                Err(e) => {
                    let error = redact(&repo, &e);
                    tracing::warn!(%error, "a kept repository cannot be listed: dropped");
                    self.lock().remove(&repo);
                }
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The kept archive of `repo` if it was packed at `refs`.
    fn lookup(&self, repo: &str, refs: &Refs) -> Option<Arc<RepoArchive>> {
        let mut entries = self.lock();
        let entry = entries.get_mut(repo).filter(|e| &e.refs == refs)?;
        entry.used = Instant::now();
        Some(entry.archive.clone())
    }

    /// Packs `repo`, seen at `refs`, and keeps it if its refs did not move meanwhile.
    async fn pack(&self, repo: &str, refs: Refs) -> Result<Arc<RepoArchive>, String> {
        let _packing = self.packing.lock().await;
        if let Some(archive) = self.lookup(repo, &refs) {
            return Ok(archive);
        }
        let archive = Arc::new(pack_repository(repo).await?);
        match refs_of(repo).await {
            Ok(after) if after == refs => self.keep(repo, refs, archive.clone()),
            _ => tracing::debug!("the refs moved while the repository was packed: not kept"),
        }
        Ok(archive)
    }

    /// Keeps `archive` as `repo`'s, then evicts the least recently used until the bounds hold.
    fn keep(&self, repo: &str, refs: Refs, archive: Arc<RepoArchive>) {
        if archive.len() > self.limits.bytes || self.limits.entries == 0 {
            self.lock().remove(repo);
            return;
        }
        let mut entries = self.lock();
        entries.insert(
            repo.to_string(),
            Entry {
                refs,
                archive,
                used: Instant::now(),
            },
        );
        let mut bytes: u64 = entries.values().map(|e| e.archive.len()).sum();
        while entries.len() > self.limits.entries || bytes > self.limits.bytes {
            let Some(oldest) = entries
                .iter()
                .filter(|(kept, _)| kept.as_str() != repo)
                .min_by_key(|(_, e)| e.used)
                .map(|(kept, _)| kept.clone())
            else {
                break;
            };
            if let Some(evicted) = entries.remove(&oldest) {
                bytes -= evicted.archive.len();
            }
        }
    }
}

/// The state of `repo`'s refs, or what git said when it could not list them.
async fn refs_of(repo: &str) -> Result<Refs, String> {
    let output = Command::new("git")
        .args(["ls-remote", "--symref", "--"])
        .arg(repo)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("running git ls-remote: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "git ls-remote {repo} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(Sha256::digest(&output.stdout).into())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::sandbox::docker::archive::{tail, upload_body};

    fn git(dir: &Path, args: &[&str]) {
        let status = std::process::Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "git {args:?}");
    }

    /// A bare repository with one commit of `file` = `content`, and a checkout that pushes to it.
    fn remote(root: &Path, name: &str, content: &str) -> (String, std::path::PathBuf) {
        let bare = root.join(format!("{name}.git"));
        let work = root.join(name);
        std::fs::create_dir_all(&bare).unwrap();
        git(&bare, &["init", "--quiet", "--bare", "-b", "main"]);
        std::fs::create_dir_all(&work).unwrap();
        git(&work, &["init", "--quiet", "-b", "main"]);
        commit(&work, content);
        git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
        git(&work, &["push", "--quiet", "origin", "main"]);
        (bare.display().to_string(), work)
    }

    fn commit(work: &Path, content: &str) {
        std::fs::write(work.join("file"), content).unwrap();
        git(work, &["add", "file"]);
        git(work, &["commit", "--quiet", "-m", content]);
    }

    /// The content of `repo/file` in what an upload of `archive` delivers.
    async fn delivered(archive: Arc<RepoArchive>) -> String {
        let body = upload_body(Some(archive), tail(&[], false).unwrap())
            .await
            .unwrap();
        let mut bytes = Vec::new();
        let mut body = std::pin::pin!(body);
        while let Some(chunk) = futures_util::StreamExt::next(&mut body).await {
            bytes.extend_from_slice(&chunk.unwrap());
        }
        let mut read = tar::Archive::new(bytes.as_slice());
        let mut found = None;
        for entry in read.entries().unwrap() {
            let mut entry = entry.unwrap();
            if entry.path().unwrap() == Path::new("repo/file") {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
                found = Some(text);
            }
        }
        found.expect("repo/file in the archive")
    }

    #[tokio::test]
    async fn a_kept_archive_is_reused_until_a_new_commit_lands_then_the_new_state_is_delivered() {
        let root = tempfile::tempdir().unwrap();
        let (repo, work) = remote(root.path(), "r", "one");
        let cache = RepoCache::new(CacheLimits::default());

        let first = cache.get(&repo).await.unwrap();
        assert_eq!(delivered(first.clone()).await, "one");
        let again = cache.get(&repo).await.unwrap();
        assert!(
            Arc::ptr_eq(&first, &again),
            "the same state is not packed twice"
        );

        commit(&work, "two");
        git(&work, &["push", "--quiet", "origin", "main"]);
        let after = cache.get(&repo).await.unwrap();
        assert!(!Arc::ptr_eq(&first, &after));
        assert_eq!(delivered(after).await, "two");
        assert_eq!(cache.size().0, 1, "one archive per repository");

        // A new branch alone is a new state too (the clone holds every branch).
        git(&work, &["push", "--quiet", "origin", "main:other"]);
        let branched = cache.get(&repo).await.unwrap();
        assert!(!Arc::ptr_eq(&first, &branched));
    }

    #[tokio::test]
    async fn refresh_packs_the_new_state_before_the_next_use() {
        let root = tempfile::tempdir().unwrap();
        let (repo, work) = remote(root.path(), "r", "one");
        let cache = RepoCache::new(CacheLimits::default());
        let first = cache.get(&repo).await.unwrap();

        cache.refresh().await;
        let unchanged = cache.get(&repo).await.unwrap();
        assert!(
            Arc::ptr_eq(&first, &unchanged),
            "nothing moved, nothing repacked"
        );

        commit(&work, "two");
        git(&work, &["push", "--quiet", "origin", "main"]);
        cache.refresh().await;
        let refreshed = cache.lookup(&repo, &refs_of(&repo).await.unwrap());
        let refreshed = refreshed.expect("the new state is packed before the next use");
        assert_eq!(delivered(refreshed).await, "two");
    }

    #[tokio::test]
    async fn the_cache_keeps_at_most_its_entries_and_bytes_least_recently_used_out_first() {
        let root = tempfile::tempdir().unwrap();
        let repos: Vec<String> = (0..3)
            .map(|i| remote(root.path(), &format!("r{i}"), &format!("content {i}")).0)
            .collect();
        let cache = RepoCache::new(CacheLimits {
            entries: 2,
            bytes: u64::MAX,
        });
        let a = cache.get(&repos[0]).await.unwrap();
        cache.get(&repos[1]).await.unwrap();
        // r0 used again: r1 is now the least recently used.
        assert!(Arc::ptr_eq(&a, &cache.get(&repos[0]).await.unwrap()));
        cache.get(&repos[2]).await.unwrap();
        assert_eq!(cache.size().0, 2);
        let mut kept: Vec<String> = cache.lock().keys().cloned().collect();
        kept.sort_unstable();
        assert_eq!(kept, vec![repos[0].clone(), repos[2].clone()]);

        // A byte bound smaller than one archive keeps nothing, and the archive is still used.
        let tiny = RepoCache::new(CacheLimits {
            entries: 8,
            bytes: 100,
        });
        let used = tiny.get(&repos[0]).await.unwrap();
        assert_eq!(delivered(used).await, "content 0");
        assert_eq!(tiny.size(), (0, 0));

        // A byte bound of two archives keeps two.
        let two = a.len() * 2 + a.len() / 2;
        let bounded = RepoCache::new(CacheLimits {
            entries: 8,
            bytes: two,
        });
        for repo in &repos {
            bounded.get(repo).await.unwrap();
        }
        let (entries, bytes) = bounded.size();
        assert_eq!(entries, 2);
        assert!(bytes <= two, "{bytes} > {two}");
    }

    #[tokio::test]
    async fn a_repository_that_cannot_be_listed_is_a_clear_error_and_the_cache_keeps_what_it_held()
    {
        let root = tempfile::tempdir().unwrap();
        let (repo, _) = remote(root.path(), "r", "one");
        let cache = RepoCache::new(CacheLimits::default());
        let kept = cache.get(&repo).await.unwrap();

        let missing = root.path().join("missing.git").display().to_string();
        let err = cache.get(&missing).await.unwrap_err();
        assert!(
            err.starts_with(&format!("git ls-remote {missing} failed: ")),
            "{err}"
        );
        assert!(
            err.contains("does not appear to be a git repository"),
            "{err}"
        );
        assert!(Arc::ptr_eq(&kept, &cache.get(&repo).await.unwrap()));
        assert_eq!(cache.size().0, 1);

        // A kept repository that disappears is dropped at the next refresh, and its next use
        // is the same clear error.
        std::fs::remove_dir_all(root.path().join("r.git")).unwrap();
        cache.refresh().await;
        assert_eq!(cache.size(), (0, 0));
        let err = cache.get(&repo).await.unwrap_err();
        assert!(err.starts_with("git ls-remote "), "{err}");
        // An archive in use outlives its eviction.
        assert_eq!(delivered(kept).await, "one");
    }

    #[tokio::test]
    async fn preparing_packs_a_git_repository_once_and_a_plain_directory_not_at_all() {
        let root = tempfile::tempdir().unwrap();
        let (repo, _) = remote(root.path(), "r", "one");
        let cache = RepoCache::new(CacheLimits::default());
        cache.prepare(&repo).await.unwrap();
        assert_eq!(cache.size().0, 1);
        let prepared = cache.lookup(&repo, &refs_of(&repo).await.unwrap()).unwrap();
        assert!(Arc::ptr_eq(&prepared, &cache.get(&repo).await.unwrap()));

        let plain = root.path().join("plain");
        std::fs::create_dir_all(&plain).unwrap();
        cache.prepare(&plain.display().to_string()).await.unwrap();
        assert_eq!(cache.size().0, 1);
        let missing = root.path().join("missing").display().to_string();
        let err = cache.prepare(&missing).await.unwrap_err();
        assert!(
            err.starts_with(&format!("git ls-remote {missing} failed")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_credential_in_a_repository_url_never_shows_in_an_error() {
        let cache = RepoCache::new(CacheLimits::default());
        let repo = "http://ada:s3cret-token@127.0.0.1:9/o/r.git";
        let err = cache.get(repo).await.unwrap_err();
        assert!(!err.contains("s3cret-token"), "{err}");
        assert!(
            err.starts_with("git ls-remote http://ada:***@127.0.0.1:9/o/r.git failed"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_plain_directory_is_packed_on_every_use_and_never_kept() {
        let root = tempfile::tempdir().unwrap();
        let plain = root.path().join("plain");
        std::fs::create_dir_all(&plain).unwrap();
        std::fs::write(plain.join("file"), "one").unwrap();
        let cache = RepoCache::new(CacheLimits::default());
        let repo = plain.display().to_string();
        assert_eq!(delivered(cache.get(&repo).await.unwrap()).await, "one");
        std::fs::write(plain.join("file"), "two").unwrap();
        assert_eq!(delivered(cache.get(&repo).await.unwrap()).await, "two");
        assert_eq!(cache.size(), (0, 0));
    }
}
