//! What goes into a sandbox before it starts, as one tar archive extracted at `/work`: the
//! project's repository under `repo/` (a clone, or a copy of a plain directory, made on the
//! coordinator's side exactly as the local provider makes its workspace) and the provider's extra
//! files, everything owned by the sandbox user.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

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

/// An archive on disk, deleted with this value.
#[derive(Debug)]
pub struct Archive {
    _dir: TempDir,
    path: PathBuf,
}

impl Archive {
    /// The archive file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The archive as a stream of chunks, for the upload body.
    pub async fn stream(
        &self,
    ) -> std::io::Result<impl Stream<Item = std::io::Result<Bytes>> + Send + 'static> {
        let file = tokio::fs::File::open(&self.path).await?;
        Ok(futures_util::stream::try_unfold(
            file,
            |mut file| async move {
                let mut chunk = vec![0u8; CHUNK];
                let n = file.read(&mut chunk).await?;
                if n == 0 {
                    return Ok(None);
                }
                chunk.truncate(n);
                Ok(Some((Bytes::from(chunk), file)))
            },
        ))
    }
}

/// Builds the archive: `repo/` from `repo` (or empty), then `files`.
pub async fn build(repo: Option<&str>, files: &[SandboxFile]) -> Result<Archive, String> {
    let dir = tempfile::Builder::new()
        .prefix("omoi-sandbox-")
        .tempdir()
        .map_err(|e| format!("creating a scratch directory: {e}"))?;
    let workspace = dir.path().join(REPO_ENTRY);
    match repo {
        Some(repo) => prepare_workspace(repo, &workspace).await?,
        None => tokio::fs::create_dir_all(&workspace)
            .await
            .map_err(|e| format!("creating {}: {e}", workspace.display()))?,
    }
    let path = dir.path().join("sandbox.tar");
    let (tar_path, files) = (path.clone(), files.to_vec());
    tokio::task::spawn_blocking(move || write_archive(&tar_path, &workspace, &files))
        .await
        .map_err(|e| format!("writing the sandbox archive: {e}"))?
        .map_err(|e| format!("writing the sandbox archive: {e}"))?;
    Ok(Archive { _dir: dir, path })
}

fn write_archive(path: &Path, workspace: &Path, files: &[SandboxFile]) -> std::io::Result<()> {
    let mut builder = tar::Builder::new(BufWriter::new(File::create(path)?));
    builder.follow_symlinks(false);
    append_tree(&mut builder, workspace, Path::new(REPO_ENTRY))?;
    for file in files {
        let data = std::fs::read(&file.source).map_err(|e| {
            std::io::Error::new(e.kind(), format!("reading {}: {e}", file.source.display()))
        })?;
        let mut header = owned_header(EntryType::Regular, 0o644);
        header.set_size(data.len() as u64);
        builder.append_data(&mut header, &file.name, data.as_slice())?;
    }
    builder.into_inner()?.flush()
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

        let archive = build(
            Some(repo.to_str().unwrap()),
            &[SandboxFile {
                source: script,
                name: "script.json".into(),
            }],
        )
        .await
        .unwrap();
        let mut read = tar::Archive::new(File::open(archive.path()).unwrap());
        let entries: Vec<(String, EntryType, u32, u64, u64, String)> = read
            .entries()
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
            .collect();
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
        // The upload body streams the same bytes.
        let mut streamed = Vec::new();
        let mut stream = std::pin::pin!(archive.stream().await.unwrap());
        while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
            streamed.extend_from_slice(&chunk.unwrap());
        }
        assert_eq!(streamed, std::fs::read(archive.path()).unwrap());
    }

    #[tokio::test]
    async fn a_repository_that_cannot_be_cloned_is_a_clear_error() {
        let err = build(Some("/no/such/repository"), &[]).await.unwrap_err();
        assert!(
            err.starts_with("git clone /no/such/repository failed:"),
            "{err}"
        );
    }
}
