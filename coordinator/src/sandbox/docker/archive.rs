//! What goes into a sandbox before it starts, as one tar archive extracted at `/work`: the
//! project's repository under `repo/` (a clone, or a copy of a plain directory, made on the
//! coordinator's side exactly as the local provider makes its workspace) and the provider's extra
//! files, everything owned by the sandbox user.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;
use tar::{EntryType, Header};
use tempfile::TempDir;
use tokio::io::AsyncReadExt;

use super::SandboxFile;
use super::container::SANDBOX_UID;
use crate::sandbox::local::prepare_workspace;

/// The repository's directory inside the archive (and so inside `/work`).
pub const REPO_ENTRY: &str = "repo";

/// How much of the archive one chunk of the upload body holds.
const CHUNK: usize = 64 * 1024;
/// The end of a tar archive: two zero blocks.
const TRAILER: u64 = 1024;

/// A packed repository on disk: the tar entries of `repo/` without the archive's end, so that
/// other entries can follow it in one upload body. Deleted with this value.
#[derive(Debug)]
pub struct RepoArchive {
    _dir: TempDir,
    path: PathBuf,
    body_len: u64,
}

impl RepoArchive {
    /// How many bytes of the file are entries (the archive's end left out).
    pub fn len(&self) -> u64 {
        self.body_len
    }

    /// Whether it holds no entry at all (never: `repo/` itself is one).
    pub fn is_empty(&self) -> bool {
        self.body_len == 0
    }
}

/// Packs `repo` (a clone of a git repository, local or remote, or a copy of a plain directory)
/// as the entries of `repo/`, in a scratch directory of its own.
pub async fn pack_repository(repo: &str) -> Result<RepoArchive, String> {
    let dir = tempfile::Builder::new()
        .prefix("omoi-sandbox-")
        .tempdir()
        .map_err(|e| format!("creating a scratch directory: {e}"))?;
    let workspace = dir.path().join(REPO_ENTRY);
    prepare_workspace(repo, &workspace).await?;
    let path = dir.path().join("repo.tar");
    let tar_path = path.clone();
    let written = tokio::task::spawn_blocking(move || -> std::io::Result<u64> {
        let mut builder = tar::Builder::new(BufWriter::new(File::create(&tar_path)?));
        builder.follow_symlinks(false);
        append_tree(&mut builder, &workspace, Path::new(REPO_ENTRY))?;
        builder.into_inner()?.flush()?;
        // The working copy is in the archive now; only the archive stays.
        std::fs::remove_dir_all(&workspace)?;
        Ok(std::fs::metadata(&tar_path)?.len())
    })
    .await
    .map_err(|e| format!("packing the repository: {e}"))?
    .map_err(|e| format!("packing the repository: {e}"))?;
    let body_len = written
        .checked_sub(TRAILER)
        .ok_or_else(|| "packing the repository: the archive is truncated".to_string())?;
    Ok(RepoArchive {
        _dir: dir,
        path,
        body_len,
    })
}

/// What follows the repository in an upload: an empty `repo/` when there is no repository,
/// then `files`, then the archive's end.
pub fn tail(files: &[SandboxFile], empty_repo: bool) -> Result<Vec<u8>, String> {
    let failed = |e: std::io::Error| format!("writing the sandbox archive: {e}");
    let mut builder = tar::Builder::new(Vec::new());
    if empty_repo {
        let mut header = owned_header(EntryType::Directory, 0o755);
        builder
            .append_data(&mut header, REPO_ENTRY, std::io::empty())
            .map_err(failed)?;
    }
    for file in files {
        let data = std::fs::read(&file.source)
            .map_err(|e| format!("reading {}: {e}", file.source.display()))?;
        let mut header = owned_header(EntryType::Regular, 0o644);
        header.set_size(data.len() as u64);
        builder
            .append_data(&mut header, &file.name, data.as_slice())
            .map_err(failed)?;
    }
    builder.into_inner().map_err(failed)
}

/// One upload body: the packed repository's entries (if any), then `tail` (which ends the
/// archive), as a stream of chunks.
pub async fn upload_body(
    repo: Option<Arc<RepoArchive>>,
    tail: Vec<u8>,
) -> std::io::Result<impl Stream<Item = std::io::Result<Bytes>> + Send + 'static> {
    let file = match &repo {
        Some(repo) => Some(tokio::fs::File::open(&repo.path).await?),
        None => None,
    };
    let left = repo.as_ref().map_or(0, |r| r.body_len);
    let body = Body {
        repo,
        file,
        left,
        tail: Some(Bytes::from(tail)),
    };
    Ok(futures_util::stream::try_unfold(
        body,
        |mut body| async move {
            if let Some(file) = body.file.as_mut().filter(|_| body.left > 0) {
                let want = usize::try_from(body.left).map_or(CHUNK, |left| left.min(CHUNK));
                let mut chunk = vec![0u8; want];
                let n = file.read(&mut chunk).await?;
                if n == 0 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the packed repository is shorter than it was",
                    ));
                }
                chunk.truncate(n);
                body.left -= n as u64;
                return Ok(Some((Bytes::from(chunk), body)));
            }
            // The repository is read: its file (and, if evicted, its archive) can go.
            body.file = None;
            body.repo = None;
            Ok(body.tail.take().map(|tail| (tail, body)))
        },
    ))
}

/// An upload body's state; it holds the packed repository until the body has read it.
struct Body {
    repo: Option<Arc<RepoArchive>>,
    file: Option<tokio::fs::File>,
    left: u64,
    tail: Option<Bytes>,
}

/// A header owned by the sandbox user.
fn owned_header(kind: EntryType, mode: u32) -> Header {
    let mut header = Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_uid(SANDBOX_UID);
    header.set_gid(SANDBOX_UID);
    header.set_mtime(0);
    header.set_size(0);
    header
}

/// Appends `dir` as `name` and everything under it: directories, files (with their permission
/// bits and modification times) and symbolic links, all owned by the sandbox user.
fn append_tree<W: Write>(
    builder: &mut tar::Builder<W>,
    dir: &Path,
    name: &Path,
) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(dir)?;
    let mut header = owned_header(EntryType::Directory, mode_of(&meta) | 0o700);
    header.set_mtime(mtime_of(&meta));
    builder.append_data(&mut header, name, std::io::empty())?;
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let entry_name = name.join(entry.file_name());
        let meta = std::fs::symlink_metadata(&path)?;
        let kind = meta.file_type();
        if kind.is_dir() {
            append_tree(builder, &path, &entry_name)?;
        } else if kind.is_symlink() {
            let mut header = owned_header(EntryType::Symlink, 0o777);
            header.set_mtime(mtime_of(&meta));
            builder.append_link(&mut header, &entry_name, std::fs::read_link(&path)?)?;
        } else if kind.is_file() {
            let mut header = owned_header(EntryType::Regular, mode_of(&meta) | 0o600);
            header.set_mtime(mtime_of(&meta));
            header.set_size(meta.len());
            builder.append_data(&mut header, &entry_name, File::open(&path)?)?;
        }
        // Sockets, fifos and devices have no place in a repository: left out.
    }
    Ok(())
}

fn mode_of(meta: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o7777
}

fn mtime_of(meta: &std::fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    u64::try_from(meta.mtime()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    type Row = (String, EntryType, u32, u64, u64, String);

    async fn collect(body: impl Stream<Item = std::io::Result<Bytes>>) -> Vec<u8> {
        let mut bytes = Vec::new();
        let mut body = std::pin::pin!(body);
        while let Some(chunk) = futures_util::StreamExt::next(&mut body).await {
            bytes.extend_from_slice(&chunk.unwrap());
        }
        bytes
    }

    /// Path, kind, permission bits, owner, group and content (or link target) of each entry.
    fn entries_of(archive: &[u8]) -> Vec<Row> {
        let mut read = tar::Archive::new(archive);
        read.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let h = e.header().clone();
                let mut body = String::new();
                std::io::Read::read_to_string(&mut e, &mut body).unwrap();
                let link = h
                    .link_name()
                    .unwrap()
                    .map(|l| l.display().to_string())
                    .unwrap_or_default();
                (
                    h.path().unwrap().display().to_string(),
                    h.entry_type(),
                    h.mode().unwrap() & 0o777,
                    h.uid().unwrap(),
                    h.gid().unwrap(),
                    if link.is_empty() { body } else { link },
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn the_archive_holds_the_repository_and_the_files_owned_by_the_sandbox_user() {
        let src = tempfile::tempdir().unwrap();
        let repo = src.path().join("plain");
        std::fs::create_dir_all(repo.join("bin")).unwrap();
        std::fs::write(repo.join("README.md"), "hello\n").unwrap();
        std::fs::write(repo.join("bin/run"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            repo.join("bin/run"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        std::os::unix::fs::symlink("README.md", repo.join("link")).unwrap();
        let script = src.path().join("script.json");
        std::fs::write(&script, "{}").unwrap();

        let repo_archive = pack_repository(repo.to_str().unwrap()).await.unwrap();
        let tail = tail(
            &[SandboxFile {
                source: script,
                name: "script.json".into(),
            }],
            false,
        )
        .unwrap();
        let body = collect(
            upload_body(Some(Arc::new(repo_archive)), tail)
                .await
                .unwrap(),
        )
        .await;
        let entries = entries_of(&body);
        let dir_mode = entries[0].2;
        assert_eq!(
            entries,
            vec![
                (
                    "repo".into(),
                    EntryType::Directory,
                    dir_mode,
                    1000,
                    1000,
                    "".into()
                ),
                (
                    "repo/README.md".into(),
                    EntryType::Regular,
                    0o644,
                    1000,
                    1000,
                    "hello\n".into()
                ),
                (
                    "repo/bin".into(),
                    EntryType::Directory,
                    dir_mode,
                    1000,
                    1000,
                    "".into()
                ),
                (
                    "repo/bin/run".into(),
                    EntryType::Regular,
                    0o755,
                    1000,
                    1000,
                    "#!/bin/sh\n".into()
                ),
                (
                    "repo/link".into(),
                    EntryType::Symlink,
                    0o777,
                    1000,
                    1000,
                    "README.md".into()
                ),
                (
                    "script.json".into(),
                    EntryType::Regular,
                    0o644,
                    1000,
                    1000,
                    "{}".into()
                ),
            ]
        );
    }

    #[tokio::test]
    async fn without_a_repository_the_archive_holds_an_empty_repo_and_the_files() {
        let src = tempfile::tempdir().unwrap();
        let script = src.path().join("script.json");
        std::fs::write(&script, "{}").unwrap();
        let files = [SandboxFile {
            source: script,
            name: "script.json".into(),
        }];
        let body = collect(
            upload_body(None, tail(&files, true).unwrap())
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            entries_of(&body),
            vec![
                (
                    "repo".into(),
                    EntryType::Directory,
                    0o755,
                    1000,
                    1000,
                    "".into()
                ),
                (
                    "script.json".into(),
                    EntryType::Regular,
                    0o644,
                    1000,
                    1000,
                    "{}".into()
                ),
            ]
        );
        let missing = [SandboxFile {
            source: src.path().join("gone.json"),
            name: "gone.json".into(),
        }];
        let err = tail(&missing, true).unwrap_err();
        assert!(
            err.starts_with("reading ") && err.contains("gone.json"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_repository_that_cannot_be_cloned_is_a_clear_error() {
        let err = pack_repository("/no/such/repository").await.unwrap_err();
        assert!(
            err.starts_with("git clone /no/such/repository failed:"),
            "{err}"
        );
    }
}
